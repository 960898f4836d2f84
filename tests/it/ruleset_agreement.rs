//! Agreement with SpamAssassin: every message of the rules corpus (`tests/corpus/rules/*.eml`:
//! spam and ham, multipart, base64, quoted-printable, HTML) is scanned by moat and by
//! SpamAssassin 4 (`spamassassin -t -L`, network tests off) with the SAME rule files — the
//! shipped `rules/` plus the corpus' local override directory — and the rule names each one
//! reports must be equal. Every accepted difference is listed in [`KNOWN_DIFFERENCES`] with a
//! reason; a new difference fails, and so does a listed one that no longer happens.
//!
//! SpamAssassin runs once over an mbox of all messages (it takes about a second to start), with
//! a private site configuration: only the plugins our rule syntax needs (Check, MIMEHeader,
//! ReplaceTags), `report_safe 0` and an `X-Spam-Status` header with the hit list, and no user
//! preferences. Needs the `spamassassin` package (scripts/test installs it); without it the
//! test fails with the install command.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use moat::ruleset::{ParsedMessage, RuleSet};

/// (message file, rule, side that reports it, why). Empty: moat and SpamAssassin agree.
const KNOWN_DIFFERENCES: &[(&str, &str, &str, &str)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus() -> PathBuf {
    root().join("tests/corpus/rules")
}

fn cf_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cf")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn messages() -> Vec<(String, Vec<u8>)> {
    let mut emls: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    emls.sort();
    // SpamAssassin's --mbox mode sorts messages by date, so each carries its name in a header
    // (both scanners see exactly the same bytes).
    emls.iter()
        .map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let raw = [format!("X-Moat-Corpus: {name}\r\n").as_bytes(), &std::fs::read(p).expect("read eml")].concat();
            (name, raw)
        })
        .collect()
}

/// The rule names in an `X-Spam-Status: … tests=A,B,…` header (folded over several lines).
fn status_tests(block: &str) -> BTreeSet<String> {
    let mut status = String::new();
    let mut inside = false;
    for line in block.lines() {
        if line.starts_with("X-Spam-Status:") {
            inside = true;
        } else if inside && !line.starts_with([' ', '\t']) {
            break;
        }
        if inside {
            // A fold after a comma continues the list; a fold at a space separates words.
            if !status.is_empty() && !status.ends_with(',') {
                status.push(' ');
            }
            status.push_str(line.trim());
        }
    }
    assert!(!status.is_empty(), "no X-Spam-Status header in SpamAssassin's output:\n{block}");
    let tests = status.split("tests=").nth(1).unwrap_or("").split_whitespace().next().unwrap_or("");
    tests.split(',').filter(|t| !t.is_empty() && *t != "none").map(str::to_string).collect()
}

/// The corpus name in a block of SpamAssassin's output.
fn corpus_name(block: &str) -> Option<&str> {
    block.lines().find_map(|l| l.strip_prefix("X-Moat-Corpus: ")).map(str::trim)
}

/// Runs SpamAssassin once over all messages; returns each message's hit names, in order.
fn spamassassin(messages: &[(String, Vec<u8>)], configpath: &Path, site_extra: &[PathBuf]) -> Vec<BTreeSet<String>> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site");
    std::fs::create_dir(&site).expect("site dir");
    std::fs::write(
        site.join("init.pre"),
        "loadplugin Mail::SpamAssassin::Plugin::Check\n\
         loadplugin Mail::SpamAssassin::Plugin::MIMEHeader\n\
         loadplugin Mail::SpamAssassin::Plugin::ReplaceTags\n",
    )
    .expect("init.pre");
    std::fs::write(
        site.join("00_moat_test.cf"),
        "report_safe 0\nclear_headers\nadd_header all Status \"_YESNO_, score=_SCORE_ tests=_TESTS_ end\"\n",
    )
    .expect("site cf");
    // SpamAssassin needs its TLD list to find URIs; it has no rules in it.
    let tlds = Path::new("/usr/share/spamassassin/20_aux_tlds.cf");
    if tlds.is_file() {
        std::fs::copy(tlds, site.join("01_aux_tlds.cf")).expect("copy tlds");
    }
    // Site .cf files are read after the configpath: the local override directory.
    for (i, f) in site_extra.iter().enumerate() {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        std::fs::copy(f, site.join(format!("9{i}_{name}"))).expect("copy local cf");
    }
    std::fs::write(tmp.path().join("prefs"), "").expect("prefs");
    let mut mbox = Vec::new();
    for (_, raw) in messages {
        mbox.extend_from_slice(b"From moat-test@localhost Thu Jan  1 00:00:00 1970\n");
        for line in raw.split_inclusive(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r\n").map_or(line.to_vec(), |l| [l, b"\n"].concat());
            if line.starts_with(b"From ") {
                mbox.push(b'>');
            }
            mbox.extend_from_slice(&line);
        }
        if !mbox.ends_with(b"\n") {
            mbox.push(b'\n');
        }
        mbox.push(b'\n');
    }
    let mut child = Command::new("spamassassin")
        .arg("-t")
        .arg("-L")
        .arg("--mbox")
        .arg(format!("--siteconfigpath={}", site.display()))
        .arg(format!("--configpath={}", configpath.display()))
        .arg(format!("--prefspath={}", tmp.path().join("prefs").display()))
        .env("HOME", tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run `spamassassin` — install it with `apt-get install -y --no-install-recommends spamassassin`");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&mbox));
    let out = child.wait_with_output().expect("spamassassin output");
    writer.join().expect("writer").expect("write mbox");
    assert!(out.status.success(), "spamassassin failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let blocks: Vec<&str> = text.split("From moat-test@localhost ").filter(|b| !b.trim().is_empty()).collect();
    assert_eq!(blocks.len(), messages.len(), "SpamAssassin returned another number of messages:\n{text}");
    messages
        .iter()
        .map(|(name, _)| {
            let block = blocks.iter().find(|b| corpus_name(b) == Some(name.as_str()));
            status_tests(block.unwrap_or_else(|| panic!("{name} missing from SpamAssassin's output:\n{text}")))
        })
        .collect()
}

#[test]
fn moat_and_spamassassin_report_the_same_rules_with_the_shipped_rule_files() {
    let rules_dir = root().join("rules");
    let local = corpus().join("local");
    let (rules, _) = RuleSet::load(&[rules_dir.clone(), local.clone()]).expect("shipped rules load");
    let messages = messages();
    assert!(messages.len() >= 10, "the agreement corpus needs at least 10 messages");
    let started = std::time::Instant::now();
    let sa = spamassassin(&messages, &rules_dir, &cf_files(&local));
    eprintln!("spamassassin: {} messages in {:.1?}", messages.len(), started.elapsed());
    let mut seen = BTreeSet::new();
    let mut unexplained = Vec::new();
    let (mut both, mut total) = (0, 0);
    for ((name, raw), sa) in messages.iter().zip(&sa) {
        let ours: BTreeSet<String> = rules.evaluate(&ParsedMessage::parse(raw)).into_iter().map(|h| h.name).collect();
        eprintln!("{name}: {} hits agree", sa.intersection(&ours).count());
        both += sa.intersection(&ours).count();
        total += sa.union(&ours).count();
        for (side, set, other) in [("sa-only", sa, &ours), ("moat-only", &ours, sa)] {
            for rule in set.difference(other) {
                match KNOWN_DIFFERENCES.iter().find(|(m, r, s, _)| m == name && r == rule && *s == side) {
                    Some(d) => {
                        eprintln!("  known difference {name} {rule} {side}: {}", d.3);
                        seen.insert((d.0, d.1, d.2));
                    }
                    None => unexplained.push(format!("{name}: {rule} ({side})")),
                }
            }
        }
    }
    eprintln!("agreement: {both} of {total} distinct hits reported by both");
    let stale: Vec<_> = KNOWN_DIFFERENCES.iter().filter(|d| !seen.contains(&(d.0, d.1, d.2))).collect();
    assert!(unexplained.is_empty(), "differences from SpamAssassin without a reason:\n{}", unexplained.join("\n"));
    assert!(stale.is_empty(), "listed differences that no longer happen: {stale:?}");
    assert!(both >= 40, "suspiciously few hits: {both}");
}
