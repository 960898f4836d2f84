//! Agreement with SpamAssassin: for each corpus message, the rules moat reports with the
//! stock rule files (/usr/share/spamassassin) are compared with what `spamassassin -L -t`
//! (local tests only) reports with the same files. Every difference must be explained in
//! `tests/corpus/rules/agreement.txt` (`MESSAGE RULE side reason`); a new, unexplained
//! difference fails the test, and so does an explanation that no longer applies.
//!
//! Needs the `spamassassin` package: `apt-get install -y --no-install-recommends spamassassin`.
//! Slow (SpamAssassin takes about a second per message), so it is `#[ignore]`d by default:
//! run it with `cargo test --test ruleset_agreement -- --ignored --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use moat::ruleset::{ParsedMessage, RuleSet};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/rules")
}

/// Runs `spamassassin -L -t` and returns the rule names in X-Spam-Status `tests=`.
fn spamassassin_hits(raw: &[u8]) -> BTreeSet<String> {
    use std::io::Write;
    let mut child = Command::new("spamassassin")
        .args(["-L", "-t"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run `spamassassin` — install it with `apt-get install -y --no-install-recommends spamassassin`");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(raw).expect("write to spamassassin");
    }
    let out = child.wait_with_output().expect("spamassassin output");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut status = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("X-Spam-Status:") {
            inside = true;
        } else if inside && !line.starts_with([' ', '\t']) {
            break;
        }
        if inside {
            // Continuation lines of the tests= list follow a trailing comma.
            if !status.is_empty() && !status.ends_with(',') {
                status.push(' ');
            }
            status.push_str(line.trim());
        }
    }
    let tests = status.split("tests=").nth(1).unwrap_or("").split_whitespace().next().unwrap_or("");
    tests.split(',').filter(|t| !t.is_empty() && *t != "none").map(str::to_string).collect()
}

#[test]
#[ignore = "runs SpamAssassin (slow); run with --ignored"]
fn agreement_with_spamassassin_is_explained() {
    let (rules, _) = RuleSet::load(&[PathBuf::from("/usr/share/spamassassin")]).expect("stock rules load");
    let explained_text = std::fs::read_to_string(corpus().join("agreement.txt")).unwrap_or_default();
    let mut explained: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for line in explained_text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let mut w = line.splitn(4, ' ');
        let (m, r, side, why) = (w.next(), w.next(), w.next(), w.next());
        if let (Some(m), Some(r), Some(side)) = (m, r, side) {
            explained.insert((m.into(), r.into(), side.into()), why.unwrap_or("").into());
        }
    }
    let mut emls: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    emls.sort();
    let mut unexplained = Vec::new();
    let mut seen = BTreeSet::new();
    let (mut agree, mut total) = (0, 0);
    for eml in &emls {
        let name = eml.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let raw = std::fs::read(eml).expect("read");
        let sa = spamassassin_hits(&raw);
        let ours: BTreeSet<String> = rules.evaluate(&ParsedMessage::parse(&raw)).into_iter().map(|h| h.name).collect();
        agree += sa.intersection(&ours).count();
        total += sa.union(&ours).count();
        for (side, set, other) in [("sa-only", &sa, &ours), ("moat-only", &ours, &sa)] {
            for rule in set.difference(other) {
                let key = (name.clone(), rule.clone(), side.to_string());
                seen.insert(key.clone());
                match explained.get(&key) {
                    Some(why) => eprintln!("{name}: {rule} {side} — {why}"),
                    None => {
                        let hint = if rules.runs(rule) { "moat runs this rule" } else { "moat does not run this rule (eval/plugin)" };
                        unexplained.push(format!("{name} {rule} {side} ({hint})"));
                    }
                }
            }
        }
    }
    eprintln!("agreement: {agree} of {total} distinct hits reported by both");
    let stale: Vec<_> = explained.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(unexplained.is_empty(), "unexplained differences:\n{}", unexplained.join("\n"));
    assert!(stale.is_empty(), "explanations that no longer apply: {stale:?}");
}
