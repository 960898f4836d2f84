//! Rule files and messages from the outside: the `.cf` reader, the Perl-regex translator, the
//! compiler and `ParsedMessage::parse`, then one evaluation. The input is split at its first NUL
//! byte: rule text before it, a raw message after it (or the whole input as both).
//! Invariants checked: nothing panics; a failed load reports at least one error with a line
//! inside the file; hits are never `__` rules.
#![no_main]
use libfuzzer_sys::fuzz_target;
use moat::ruleset::{ParsedMessage, RuleSet};

fuzz_target!(|input: &[u8]| {
    let (rules, message) = match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, input),
    };
    let text = String::from_utf8_lossy(rules);
    let lines = text.lines().count();
    let parsed = ParsedMessage::parse(message);
    match RuleSet::load_texts(&[("fuzz.cf", &text)]) {
        Ok((set, _report)) => {
            for hit in set.evaluate(&parsed) {
                assert!(!hit.name.starts_with("__"), "{}", hit.name);
            }
            let _ = set.evaluate_all(&parsed);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.line <= lines.max(1), "{e}");
            }
        }
    }
});
