//! Golden corpus: each `tests/corpus/rules/NAME.eml` is scanned with the shipped `rules/` plus
//! the local override directory `tests/corpus/rules/local/`, and the hits (name and score) must
//! equal `NAME.hits` exactly (one `NAME SCORE` per line, sorted). Covers every rule type
//! (header, body, rawbody, uri, full, mimeheader, meta), tflags, ReplaceTags and local overrides
//! of scores, descriptions and new rules.
//!
//! To regenerate after a deliberate rule change: `MOAT_BLESS=1 cargo test --test it ruleset_corpus`
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
    assert!(total("ham_reply_thread.eml") < 0.0, "ham signs score negative");
    for spam in [
        "spam_lottery.eml",
        "phish_html.eml",
        "pharma_obfu.eml",
        "attach_exe.eml",
        "sextortion.eml",
        "lottery_base64.eml",
        "phish_qp_alternative.eml",
        "pharma_html_entities.eml",
        "bulk_mailer_missing.eml",
    ] {
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
        assert!(rules.score(name).is_some(), "{name}: score line not kept");
        assert!(rules.describe(name).is_some(), "{name} has a score but no description");
    }
}

/// Other filters emit these symbols; their weights come from rules/10_filter_scores.cf.
#[test]
fn other_filters_symbols_are_scored_by_the_shipped_rules() {
    let (rules, report) = RuleSet::load(&[root().join("rules")]).expect("shipped rules load");
    let expected = [
        ("SPF_PASS", -0.1),
        ("SPF_FAIL", 2.0),
        ("SPF_SOFTFAIL", 1.0),
        ("SPF_NEUTRAL", 0.2),
        ("SPF_NONE", 0.5),
        ("SPF_TEMPERROR", 0.0),
        ("SPF_PERMERROR", 0.5),
        ("SPF_HELO_FAIL", 1.0),
        ("DKIM_VALID", -0.1),
        ("DKIM_INVALID", 1.0),
        ("DKIM_NONE", 0.1),
        ("DMARC_PASS", -0.2),
        ("DMARC_FAIL", 2.0),
        ("DMARC_POLICY_REJECT", 4.0),
        ("DMARC_POLICY_QUARANTINE", 3.0),
        ("DMARC_NONE", 0.1),
        ("ARC_VALID", -0.1),
        ("ARC_INVALID", 0.5),
        ("AUTH_TEMPERROR", 0.0),
        ("CLAMAV_VIRUS", 100.0),
        ("CLAMAV_FAIL", 0.0),
        ("RCVD_IN_DNSBL", 3.0),
        ("RCVD_IN_DNSWL", -2.0),
        ("URIBL_BLOCK", 4.0),
        ("DBL_SENDER", 3.0),
        ("RDNS_NONE", 1.0),
        ("RDNS_MISMATCH", 0.5),
        ("HELO_BARE_IP", 1.5),
        ("HELO_NOT_FQDN", 1.0),
        ("HELO_IS_OURS", 3.0),
        ("PREGREET", 5.0),
        ("ALLOW_LIST", -100.0),
        ("BLOCK_LIST", 100.0),
    ];
    for (name, score) in expected {
        assert_eq!(rules.score(name), Some(score), "{name}");
        assert!(rules.describe(name).is_some_and(|d| !d.is_empty()), "{name} has no description");
        assert!(!rules.runs(name), "{name} is not a rule");
    }
    assert!(report.warnings.is_empty() && report.skipped.is_empty(), "{report:?}");
    assert_eq!(rules.score("NO_SUCH_SYMBOL"), None);
}

#[test]
fn a_local_rule_definition_replaces_the_shipped_one() {
    let rules = load();
    let msg = b"From: a@b.example\r\nSubject: x\r\nX-Priority: 2 (High)\r\n\r\nhello\r\n";
    let hits = rules.evaluate(&ParsedMessage::parse(msg));
    assert!(hits.iter().any(|h| h.name == "MOAT_PRIORITY_HIGH"), "{hits:?}");
    let (shipped, _) = RuleSet::load(&[root().join("rules")]).expect("shipped rules load");
    assert!(!shipped.evaluate(&ParsedMessage::parse(msg)).iter().any(|h| h.name == "MOAT_PRIORITY_HIGH"));
}

#[test]
fn perl_only_regexes_are_skipped_with_file_line_and_reason() {
    let dir = corpus().join("unsupported");
    let (rules, report) = RuleSet::load(std::slice::from_ref(&dir)).expect("a skipped rule is not an error");
    let file = dir.join("10_perl_only.cf");
    let at: Vec<(usize, &str, &str)> = report.skipped.iter().map(|s| (s.line, s.rule.as_str(), s.kind.as_str())).collect();
    assert_eq!(at, [(2, "PERL_CODE_BLOCK", "body"), (5, "PERL_CASE_MOD", "header"), (8, "META_OVER_SKIPPED", "meta")]);
    assert!(report.skipped.iter().all(|s| s.file == file));
    assert!(report.skipped[0].reason.contains("code block"), "{}", report.skipped[0]);
    assert!(report.skipped[1].reason.contains("\\U"), "{}", report.skipped[1]);
    assert_eq!(report.skipped[0].to_string().split(": ").next(), Some(format!("{}:2", file.display()).as_str()));
    assert_eq!(report.skipped_by_kind.get("body"), Some(&1));
    // The meta reading a skipped rule is skipped too (reading it as not hit would make
    // !PERL_CODE_BLOCK always true), and says why; the rest runs.
    assert!(report.skipped[2].reason.contains("depends on PERL_CODE_BLOCK"), "{}", report.skipped[2]);
    let hits = rules.evaluate(&ParsedMessage::parse(b"Subject: x\r\n\r\nA perfectly normal ab.\r\n"));
    let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["PLAIN_OK"]);
}
