//! Golden corpus for the attachment policy: each `tests/corpus/attachments/NAME.eml` is checked
//! with the default `[attachments]` settings, and its symbols with their details (one
//! `SYMBOL detail` per line, sorted) must equal `NAME.symbols` exactly.
//!
//! The expectations were written by hand with the messages. After a deliberate change, run
//! `MOAT_BLESS=1 cargo test --test it attachments_corpus` and review the diff of the `.symbols` files.

use moat::config::Attachments;
use moat::filter::attachments::{Policy, check};
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/attachments")
}

fn render(raw: &[u8]) -> String {
    let policy = Policy::new(&Attachments::default());
    let mut lines: Vec<String> = check(&policy, raw).into_iter().map(|s| format!("{} {}", s.name, s.detail.unwrap_or_default())).collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn corpus_symbols_match_expected() {
    let bless = std::env::var_os("MOAT_BLESS").is_some();
    let mut emls: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    emls.sort();
    assert!(emls.len() >= 15, "corpus is missing messages");
    let mut failures = Vec::new();
    for eml in &emls {
        let got = render(&std::fs::read(eml).expect("read eml"));
        let expected_path = eml.with_extension("symbols");
        if bless {
            std::fs::write(&expected_path, &got).expect("write .symbols");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| panic!("{} has no .symbols file", eml.display()));
        if got != expected {
            failures.push(format!("{}:\n  expected:\n{expected}  got:\n{got}", eml.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_corpus_message_is_safe_to_check_when_cut_short() {
    // Truncated messages (a client that disconnects mid-attachment leaves none, but a broken
    // sender can) must never panic, only find less or flag more.
    for entry in std::fs::read_dir(corpus()).expect("corpus dir").filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "eml") {
            continue;
        }
        let raw = std::fs::read(&path).expect("read eml");
        for cut in (0..raw.len()).step_by((raw.len() / 40).max(1)) {
            let _ = render(&raw[..cut]);
        }
    }
}
