//! Debian's stock SpamAssassin 4 rules (package `spamassassin`, files in
//! /usr/share/spamassassin/*.cf) load into moat's rule engine: at least 95 % of the
//! header/body/rawbody/uri/full/meta rules that are not `eval:` plugin calls load and run (net
//! rules, which moat leaves to its DNS filters, count as not loaded), and evaluating the corpus
//! messages hits plausible rules without panicking. `moat rules check` accepts the directory.
//!
//! Without the package this test FAILS on purpose: install it with
//! `apt-get install -y --no-install-recommends spamassassin`.

use std::path::{Path, PathBuf};

use moat::ruleset::{ParsedMessage, RuleSet};

const STOCK: &str = "/usr/share/spamassassin";

fn stock_dir() -> PathBuf {
    let dir = std::env::var_os("MOAT_SA_RULES").map_or_else(|| PathBuf::from(STOCK), PathBuf::from);
    let has_cf =
        std::fs::read_dir(&dir).map(|d| d.filter_map(Result::ok).any(|e| e.path().extension().is_some_and(|x| x == "cf"))).unwrap_or(false);
    assert!(
        has_cf,
        "SpamAssassin's stock rules are not in {} — install them with \
         `apt-get install -y --no-install-recommends spamassassin` (or set MOAT_SA_RULES)",
        dir.display()
    );
    dir
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/rules")
}

#[test]
fn stock_rules_load_at_least_95_percent() {
    let dir = stock_dir();
    let (rules, report) = match RuleSet::load(&[dir]) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            panic!("{} errors loading the stock rules", errors.len());
        }
    };
    const KINDS: &[&str] = &["header", "body", "rawbody", "uri", "full", "meta", "mimeheader"];
    let of_kind: Vec<_> = report.skipped.iter().filter(|s| KINDS.contains(&s.kind.as_str())).collect();
    // Rules moat cannot run by design: plugin code (eval:), and metas reading such a rule (skipped
    // rather than reading it as "not hit"). The bar is for everything else: the regex translation.
    let by_design = |reason: &str| reason.starts_with("eval:") || reason.starts_with("depends on ");
    let not_eval_skips: Vec<_> = of_kind.iter().filter(|s| !by_design(&s.reason)).collect();
    let dependent = of_kind.iter().filter(|s| s.reason.starts_with("depends on ")).count();
    let eval_skips = of_kind.len() - not_eval_skips.len() - dependent;
    let attempted = report.loaded + not_eval_skips.len();
    let pct = 100.0 * report.loaded as f64 / attempted as f64;
    let pct_all = 100.0 * report.loaded as f64 / (report.loaded + of_kind.len()) as f64;
    eprintln!("stock rules: {} files, {} loaded {:?}", report.files, report.loaded, report.loaded_by_kind);
    eprintln!("  skipped per type: {:?}", report.skipped_by_kind);
    eprintln!(
        "  {eval_skips} eval: rules skipped (plugin code), {dependent} metas reading a rule moat does not run, {} other skips",
        not_eval_skips.len()
    );
    eprintln!("  backtracking-engine rules: {}, prefiltered: {}", report.backtracking_rules, report.prefiltered_rules);
    eprintln!("  load rate of the rules moat can run (not eval:, not reading one): {pct:.2} % ({} of {attempted})", report.loaded);
    eprintln!("  load rate counting eval: rules too: {pct_all:.2} %");
    for (cat, n) in report.skip_categories() {
        eprintln!("  skip category {cat:?}: {n}");
    }
    for s in &report.skipped {
        eprintln!("  {s}");
    }
    for w in report.warnings.iter().take(20) {
        eprintln!("  warning: {w}");
    }
    assert!(pct >= 95.0, "only {pct:.2} % of the stock rules loaded");
    assert!(rules.len() > 1500, "suspiciously few rules: {}", rules.len());
    assert_eq!(rules.hash().len(), 64);
}

#[test]
fn stock_rules_evaluate_corpus_without_panic() {
    let (rules, _) = RuleSet::load(&[stock_dir()]).expect("stock rules load");
    let mut total_hits = 0;
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    for path in &files {
        let raw = std::fs::read(path).expect("read eml");
        let hits = rules.evaluate(&ParsedMessage::parse(&raw));
        let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
        eprintln!("{}: {names:?}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
        total_hits += hits.len();
    }
    assert!(total_hits > 0, "stock rules hit nothing on the corpus");
    let spam = std::fs::read(corpus_dir().join("spam_lottery.eml")).expect("spam_lottery.eml");
    let hits = rules.evaluate(&ParsedMessage::parse(&spam));
    let score: f64 = hits.iter().map(|h| h.score).sum();
    assert!(score >= 3.0, "stock rules scored the lottery spam only {score}: {hits:?}");
}

#[test]
fn rules_check_cli_accepts_the_stock_rules() {
    let dir = stock_dir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat")).args(["rules", "check"]).arg(&dir).output().expect("run moat");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("loaded ") && stdout.contains("  body "), "{stdout}");
    // Every skipped rule is listed with FILE:LINE.
    let skipped = stdout.lines().filter(|l| l.contains(" skipped: ")).collect::<Vec<_>>();
    assert!(!skipped.is_empty());
    for line in skipped {
        let location = line.split(": ").next().unwrap_or_default();
        let (file, number) = location.rsplit_once(':').unwrap_or_default();
        assert!(file.ends_with(".cf") && number.parse::<usize>().is_ok_and(|n| n > 0), "{line}");
    }
}

#[test]
fn rules_check_cli_reports_errors_with_file_line_and_exits_65() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("10_bad.cf"), "body OK /fine/\nbody BROKEN /(unclosed/\nmeta M OK && MISSING\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat")).args(["rules", "check"]).arg(dir.path()).output().expect("run moat");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    let file = dir.path().join("10_bad.cf");
    assert!(stderr.contains(&format!("{}:2: ", file.display())), "{stderr}");
    assert!(stderr.contains(&format!("{}:3: ", file.display())) && stderr.contains("MISSING"), "{stderr}");
}
