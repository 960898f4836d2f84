//! Messages from the outside through the attachment policy: mail-parser, the bounded MIME
//! walk, the zip central-directory reader (on the whole input too, as if it were an attached
//! archive) and the base64 prefix decoder.
//! Invariants checked: nothing panics; every symbol is one of the filter's names and carries
//! a detail without control characters; tight bounds never yield more than one bound symbol each.
#![no_main]
use libfuzzer_sys::fuzz_target;
use moat::config::Attachments;
use moat::filter::attachments::{Policy, base64_prefix, check, zip_entries};

const NAMES: &[&str] = &[
    "ATTACH_BLOCKED_EXT",
    "ATTACH_DOUBLE_EXT",
    "ATTACH_BLOCKED_TYPE",
    "ATTACH_EXECUTABLE",
    "ARCHIVE_ENCRYPTED",
    "ARCHIVE_UNREADABLE",
    "MIME_MALFORMED",
    "MIME_TOO_DEEP",
    "MIME_TOO_MANY_PARTS",
];

fuzz_target!(|input: &[u8]| {
    let tight = Policy::new(&Attachments { max_depth: 3, max_parts: 8, ..Attachments::default() });
    for policy in [Policy::new(&Attachments::default()), tight] {
        for symbol in check(&policy, input) {
            assert!(NAMES.contains(&symbol.name.as_str()), "{}", symbol.name);
            let detail = symbol.detail.unwrap_or_default();
            assert!(!detail.chars().any(char::is_control), "{detail:?}");
        }
    }
    if let Ok(entries) = zip_entries(input) {
        for entry in entries {
            if let Some(range) = entry.stored {
                assert!(range.end <= input.len());
            }
        }
    }
    assert!(base64_prefix(input, 64).len() <= 64);
});
