//! Golden corpus: each `tests/corpus/rules/NAME.eml` is scanned with the shipped `rules/` plus
//! the local override directory `tests/corpus/rules/local/`, and the hits (name and score) must
//! equal `NAME.hits` exactly (one `NAME SCORE` per line, sorted). Covers every rule type
//! (header, body, rawbody, uri, full, mimeheader, meta), tflags, ReplaceTags and local overrides
//! of scores, descriptions and new rules.
//!
//! To regenerate after a deliberate rule change: `MOAT_BLESS=1 cargo test --test ruleset_corpus`
//! and review the diff of the `.hits` files.

use std::path::{Path, PathBuf};

use moat::ruleset::{ParsedMessage, RuleHit, RuleSet};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus() -> PathBuf {
    root().join("tests/corpus/rules")
}

fn load() -> RuleSet {
    let dirs = [root().join("rules"), corpus().join("local")];
    match RuleSet::load(&dirs) {
        Ok((rules, report)) => {
            assert!(report.skipped.is_empty(), "shipped rules skipped: {:?}", report.skipped);
            assert!(report.warnings.is_empty(), "shipped rules warn: {:?}", report.warnings);
            rules
        }
        Err(errors) => panic!("shipped rules do not load:\n{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")),
    }
}

fn render(hits: &[RuleHit]) -> String {
    let mut lines: Vec<String> = hits.iter().map(|h| format!("{} {}", h.name, h.score)).collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn scan(rules: &RuleSet, path: &Path) -> Vec<RuleHit> {
    let raw = std::fs::read(path).expect("read eml");
    rules.evaluate(&ParsedMessage::parse(&raw))
}

#[test]
fn corpus_hits_match_expected() {
    let rules = load();
    let bless = std::env::var_os("MOAT_BLESS").is_some();
    let mut emls: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    emls.sort();
    assert!(emls.len() >= 8, "corpus is missing messages");
    let mut failures = Vec::new();
    for eml in &emls {
        let got = render(&scan(&rules, eml));
        let expected_path = eml.with_extension("hits");
        if bless {
            std::fs::write(&expected_path, &got).expect("write hits");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!("{}:\n--- expected\n{expected}--- got\n{got}", eml.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn local_directory_overrides_scores_descriptions_and_adds_rules() {
    let rules = load();
    assert_eq!(rules.rule_info("MOAT_PHARMA"), Some((5.0, Some("Local: drug spam"))));
    let hits = scan(&rules, &corpus().join("pharma_obfu.eml"));
    let pharma = hits.iter().find(|h| h.name == "MOAT_PHARMA").expect("MOAT_PHARMA hits");
    assert_eq!(pharma.score, 5.0);
    // score 0 in the local file disables a shipped rule
    let hits = scan(&rules, &corpus().join("phish_html.eml"));
    assert!(!hits.iter().any(|h| h.name == "MOAT_HTML_ONLY"));
    let hits = scan(&rules, &corpus().join("forged_outlook.eml"));
    assert!(hits.iter().any(|h| h.name == "LOCAL_ACME" && h.score == 0.5));
}

#[test]
fn ham_scores_low_and_spam_scores_high() {
    let rules = load();
    let total = |name: &str| -> f64 { scan(&rules, &corpus().join(name)).iter().map(|h| h.score).sum() };
    assert!(total("ham_plain.eml") < 1.0);
    assert!(total("newsletter_ham.eml") < 1.0);
    for spam in ["spam_lottery.eml", "phish_html.eml", "pharma_obfu.eml", "attach_exe.eml", "sextortion.eml"] {
        assert!(total(spam) >= 5.0, "{spam} scored only {}", total(spam));
    }
}

#[test]
fn shipped_rules_alone_load_with_descriptions_for_every_scored_rule() {
    let (rules, report) = RuleSet::load(&[root().join("rules")]).expect("shipped rules load");
    assert!(report.loaded >= 60, "only {} rules", report.loaded);
    let text: String = std::fs::read_dir(root().join("rules"))
        .expect("rules dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cf"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    for line in text.lines().filter(|l| l.starts_with("score ")) {
        let name = line.split_whitespace().nth(1).unwrap_or_default();
        let info = rules.rule_info(name);
        assert!(info.is_some_and(|(_, d)| d.is_some()), "{name} has a score but no description or rule");
    }
}
