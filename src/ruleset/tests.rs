//! Load-level tests.

use super::*;

#[test]
fn eval_rules_moat_cannot_run_are_reported_as_skipped_and_known_ones_run() {
    let text = "body A eval:foo()\nbody B /b/\nmeta C A || B\nheader CAPS eval:subject_is_all_caps()\nscore CAPS 2.5\n";
    let (rules, report) = RuleSet::load_texts(&[("a.cf", text)]).expect("load");
    let skipped: Vec<(&str, &str)> = report.skipped.iter().map(|s| (s.rule.as_str(), s.reason.as_str())).collect();
    assert_eq!(
        skipped,
        [("A", "eval:foo (needs SpamAssassin plugin code moat does not have)"), ("C", "depends on A, which moat does not run")],
        "the meta reading the eval: rule is skipped too"
    );
    let shouting = ParsedMessage::parse(b"Subject: YOU HAVE WON A PRIZE\r\n\r\nhello\r\n");
    let hits: Vec<String> = rules.evaluate(&shouting).into_iter().map(|h| h.name).collect();
    assert_eq!(hits, ["CAPS"]);
    assert!(rules.evaluate(&ParsedMessage::parse(b"Subject: You have won\r\n\r\nhello\r\n")).is_empty());
}

#[test]
fn nice_rules_default_to_a_negative_score() {
    let (rules, _) = RuleSet::load_texts(&[(
        "a.cf",
        "body HAM /thanks/\ntflags HAM nice\nbody T_HAM /thanks/\ntflags T_HAM nice\nbody SET /thanks/\ntflags SET nice\nscore SET -0.7\n",
    )])
    .expect("load");
    assert_eq!(rules.score("HAM"), Some(-1.0));
    assert_eq!(rules.score("T_HAM"), Some(-0.01));
    assert_eq!(rules.score("SET"), Some(-0.7));
    let hits = rules.evaluate(&ParsedMessage::parse(b"Subject: x\n\nthanks\n"));
    assert_eq!(hits.iter().map(|h| h.score).sum::<f64>(), -1.71);
}

#[test]
fn net_rules_and_metas_over_them_are_skipped() {
    let (rules, report) = RuleSet::load_texts(&[(
        "a.cf",
        "body __DNS /x/\ntflags __DNS net\nmeta NEEDS_DNS __DNS && LOCAL\nmeta NEEDS_NEEDS NEEDS_DNS || LOCAL\nbody LOCAL /x/\n",
    )])
    .expect("load");
    let skipped: Vec<&str> = report.skipped.iter().map(|s| s.rule.as_str()).collect();
    assert_eq!(skipped, ["__DNS", "NEEDS_DNS", "NEEDS_NEEDS"]);
    assert!(report.skipped[1].reason.contains("depends on the network test __DNS"), "{}", report.skipped[1]);
    let hits = rules.evaluate(&ParsedMessage::parse(b"Subject: x\n\nx\n"));
    assert_eq!(hits.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["LOCAL"]);
}

#[test]
fn scores_and_descriptions_without_rules_are_kept_and_later_files_win() {
    let (rules, report) = RuleSet::load_texts(&[
        ("shipped.cf", "score SPF_FAIL 2.0\ndescribe SPF_FAIL SPF failed\nbody B /b/\nscore B 1.5\n"),
        ("local.cf", "score SPF_FAIL 3.5\nscore B 0\n"),
    ])
    .expect("load");
    assert!(report.warnings.is_empty());
    assert_eq!(rules.score("SPF_FAIL"), Some(3.5));
    assert_eq!(rules.describe("SPF_FAIL"), Some("SPF failed"));
    assert!(!rules.runs("SPF_FAIL"));
    assert_eq!(rules.score("B"), Some(0.0));
    assert!(rules.evaluate(&ParsedMessage::parse(b"Subject: b\n\nb\n")).is_empty(), "score 0 disables");
}

#[test]
fn rules_without_a_literal_count_the_same_whether_their_set_or_their_own_regex_decides() {
    // Twenty rules with no prefilter literal fill several sets of their own; PHONE is decided by
    // its set alone (one hit at most), PHONES counts hits with its own regex (tflags multiple),
    // SUBJ_PHONE does not look at the subject line (nosubject), NOPE never matches.
    let mut text = String::from(
        "body PHONE /\\d{3}-\\d{4}/\nbody PHONES /\\d{3}-\\d{4}/\ntflags PHONES multiple\n\
         body SUBJ_PHONE /\\d{3}-\\d{2}-/\ntflags SUBJ_PHONE nosubject\nbody NOPE /\\d{9}-\\d/\n",
    );
    for i in 0..16 {
        text.push_str(&format!("body FILL{i} /\\d{{{}}}=/\n", i + 10));
    }
    let (rules, _) = RuleSet::load_texts(&[("a.cf", &text)]).expect("load");
    let message = ParsedMessage::parse(b"Subject: call 555-12-34\n\nring 555-1234 or 555-4321, or 555-9876\n");
    let mut values = rules.evaluate_all(&message);
    values.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(values, [("PHONE".to_string(), 1.0), ("PHONES".to_string(), 3.0)]);
    let message = ParsedMessage::parse(b"Subject: x\n\nring 555-12-34\n");
    let names: Vec<String> = rules.evaluate_all(&message).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["SUBJ_PHONE"]);
}

#[test]
fn backreference_rules_tried_only_where_their_prefix_occurs_count_every_match() {
    // DUP needs the backtracker (a backreference) and starts with "dup " — tried anchored at each
    // "dup " (any case), and unanchored after 32 failed tries; the counts must be the plain ones.
    let (rules, _) =
        RuleSet::load_texts(&[("a.cf", "body DUP /dup (\\w+) \\1\\b/i\ntflags DUP multiple\nbody ONE /dup (\\w+) \\1\\b/i\n")])
            .expect("load");
    let count = |body: &str| {
        let message = ParsedMessage::parse(format!("Subject: x\n\n{body}\n").as_bytes());
        rules.evaluate_all(&message).into_iter().collect::<std::collections::BTreeMap<_, _>>()
    };
    // What an unanchored search over the whole text counts, independently of the rule engine.
    let reference = fancy_regex::Regex::new(r"(?i)dup (\w+) \1\b").expect("regex");
    let expected = |body: &str| reference.find_iter(body).filter(Result::is_ok).count() as f64;
    let misses = "dup a b ".repeat(40);
    for body in ["dup a b, DUP x x, dup dup dup y y, dup z zz, dup w w", &format!("{misses} dup q q {misses} dup r r")] {
        let values = count(body);
        assert_eq!(values.get("DUP"), Some(&expected(body)), "{body}: {values:?}");
        assert_eq!(values.get("ONE"), Some(&1.0));
    }
    assert_eq!(expected("dup a b, DUP x x, dup dup dup y y, dup z zz, dup w w"), 3.0);
    assert!(count("dup a b dup c d").is_empty());
}

#[test]
fn literal_less_body_rules_match_within_a_line_never_across_lines() {
    // No literal to prefilter on: these run in always-sets, the first two searched once over the
    // joined body before any line is searched, the anchored one line by line.
    let text = "body ACROSS /[a-c]\\s[x-z]/\nbody INSIDE /[p-q]\\d[p-q]/\nbody ANCHORED /^[x-z]\\d/\n";
    let (rules, _) = RuleSet::load_texts(&[("a.cf", text)]).expect("load");
    let hits = |body: &str| -> Vec<String> {
        let raw = format!("Subject: s\r\n\r\n{body}");
        let mut names: Vec<String> = rules.evaluate(&ParsedMessage::parse(raw.as_bytes())).into_iter().map(|h| h.name).collect();
        names.sort();
        names
    };
    assert!(hits("one line ends in b\r\n\r\nz begins the next\r\n").is_empty(), "a match across lines is no match");
    assert_eq!(hits("plain\r\n\r\nnothing\r\n\r\nthen p7q here\r\n"), ["INSIDE"]);
    assert_eq!(hits("first\r\n\r\nz9 starts the second\r\n"), ["ANCHORED"]);
    assert_eq!(hits("b z and p1p\r\n\r\ny2\r\n"), ["ACROSS", "ANCHORED", "INSIDE"]);
    assert!(hits("first z9\r\n").is_empty(), "^ is the start of a line's text, not any position");
}

#[test]
fn a_multiline_caret_rule_over_all_headers_is_tried_at_each_line_start() {
    // Backtracking (lookarounds) and anchored with (?m)^: tried only where a header line starts.
    let text = "header RAND ALL =~ /^(?!Skip)[a-z]+-[a-z]+:\\s+\\d(?=\\d)/im\nscore RAND 1\n";
    let (rules, _) = RuleSet::load_texts(&[("a.cf", text)]).expect("load");
    let hit = |headers: &str| !rules.evaluate(&ParsedMessage::parse(format!("{headers}\r\n\r\nbody\r\n").as_bytes())).is_empty();
    assert!(hit("Subject: s\r\nTracking-Id: 42"), "a later line");
    assert!(hit("Tracking-Id: 42\r\nSubject: s"), "the first line");
    assert!(!hit("Subject: s\r\nSkip-Id: 42"), "the lookahead excludes it");
    assert!(!hit("Subject: s tracking-id: 42\r\nTracking-Id: 4"), "not at a line start / one digit only");
}

/// Network `eval:` rules answered by moat's auth filter: a meta over them runs when the filter
/// answered, and is unknown (not hit, whatever its negations) when it did not; the echo of the
/// filter's own symbol is never reported.
#[test]
fn metas_over_spf_and_dkim_run_on_the_auth_filters_answer_and_are_unknown_without_it() {
    let (rules, report) = RuleSet::load_texts(&[(
        "a.cf",
        "header SPF_PASS eval:check_for_spf_pass()\ntflags SPF_PASS net nice\nscore SPF_PASS -0.5\n\
         full DKIM_VALID eval:check_dkim_valid()\ntflags DKIM_VALID net\n\
         meta __NOT_SPOOFED SPF_PASS || DKIM_VALID\n\
         body __PITCH /wire the fee/\n\
         meta SPOOFED_PITCH __PITCH && !__NOT_SPOOFED\nscore SPOOFED_PITCH 3.0\n",
    )])
    .expect("load");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let pitch = b"From: a@bank.test\r\nSubject: x\r\n\r\nPlease wire the fee today.\r\n";
    let with = |auth: Option<&[&str]>| {
        let facts = FilterFacts { auth: auth.map(|a| a.iter().map(|n| (n.to_string(), String::new())).collect()), ..Default::default() };
        let hits = rules.evaluate(&ParsedMessage::parse(pitch).with_filter_facts(facts));
        hits.into_iter().map(|h| h.name).collect::<Vec<_>>()
    };
    assert_eq!(with(Some(&["SPF_FAIL", "DKIM_NONE"])), ["SPOOFED_PITCH"]);
    assert!(with(Some(&["SPF_PASS", "DKIM_NONE"])).is_empty(), "SPF_PASS itself is the auth filter's symbol, not reported again");
    assert!(with(Some(&["SPF_FAIL", "DKIM_VALID"])).is_empty());
    assert!(with(None).is_empty(), "the filter did not answer: unknown, not 'not spoofed = false'");
    assert!(with(Some(&["DKIM_NONE"])).is_empty(), "SPF not checked: unknown");
}

/// DNS-list `eval:` rules, written as the stock rules write them, answered from the dnsbl
/// filter's lookups: `check_rbl_sub` finds its zone through its set's `check_rbl`,
/// `check_uridnsbl` through its `urirhssub` line; metas over them run when the zone was asked,
/// and are unknown otherwise; calls moat cannot answer are skipped with the reason.
#[test]
fn dns_list_rules_read_the_dnsbl_filters_lookups_and_are_unknown_for_zones_not_asked() {
    use crate::verdict::{ListAnswer, ListKind, ListLookup, ListedItem};
    let (rules, report) = RuleSet::load_texts(&[(
        "a.cf",
        r"header __RCVD_IN_WL eval:check_rbl('wl-firsttrusted', 'list.wl.test.')
tflags __RCVD_IN_WL net nice
header RCVD_IN_WL_HI eval:check_rbl_sub('wl-firsttrusted', '^127\.0\.\d+\.3$')
tflags RCVD_IN_WL_HI net nice
header RCVD_IN_XBL eval:check_rbl('zen-lastexternal', 'zen.test.', '^127\.0\.0\.[4567]$')
header RCVD_IN_ANY eval:check_rbl('zen', 'zen.test.')
header RCVD_IN_TXT eval:check_rbl_txt('spamcop', 'bl.test.', '(?i:spamcop)')
header RCVD_IN_LOST eval:check_rbl_sub('nosuchset', '127.0.0.2')
urirhssub URIBL_BLACK multi.uribl.test. A 2
body URIBL_BLACK eval:check_uridnsbl('URIBL_BLACK')
uridnssub URIBL_SBL zen.test. A 127.0.0.2
body URIBL_SBL eval:check_uridnsbl('URIBL_SBL')
header __HELO_BARE X-Helo =~ /^mx$/
meta HELO_BARE_UNLISTED __HELO_BARE && !__RCVD_IN_WL
score HELO_BARE_UNLISTED 1.0
meta LISTED_AND_LINKED RCVD_IN_XBL && URIBL_BLACK
score LISTED_AND_LINKED 2.0
meta ANY_RELAY_UNLISTED !RCVD_IN_ANY
score ANY_RELAY_UNLISTED 1.0
meta ANY_RELAY_LISTED RCVD_IN_ANY
score ANY_RELAY_LISTED 1.0
",
    )])
    .expect("load");
    let mut skipped: Vec<(&str, &str)> = report.skipped.iter().map(|s| (s.rule.as_str(), s.reason.as_str())).collect();
    skipped.sort();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert_eq!(skipped[0].0, "RCVD_IN_LOST");
    assert!(skipped[0].1.contains("no check_rbl rule of set \"nosuchset\""), "{skipped:?}");
    assert_eq!(skipped[1].0, "RCVD_IN_TXT");
    assert!(skipped[2].0 == "URIBL_SBL" && skipped[2].1.starts_with("uridnssub:"), "{skipped:?}");
    assert_eq!(report.list_zones.keys().map(String::as_str).collect::<Vec<_>>(), ["list.wl.test", "multi.uribl.test", "zen.test"]);
    let client = |zone: &str, records: &[&str]| ListLookup {
        zone: zone.into(),
        kind: ListKind::Client,
        answers: vec![ListAnswer {
            item: ListedItem::Client("192.0.2.1".parse().expect("ip")),
            records: Some(records.iter().map(|r| r.parse().expect("record")).collect()),
        }],
    };
    let links = |records: &[&str]| ListLookup {
        zone: "multi.uribl.test".into(),
        kind: ListKind::Domains,
        answers: vec![ListAnswer {
            item: ListedItem::Domain { name: "spam.test".into(), sender: false, link: true },
            records: Some(records.iter().map(|r| r.parse().expect("record")).collect()),
        }],
    };
    let hits = |lists: Vec<ListLookup>| {
        let msg = ParsedMessage::parse(b"X-Helo: mx\r\nSubject: x\r\n\r\nhttp://spam.test/\r\n")
            .with_filter_facts(FilterFacts { lists, ..Default::default() });
        let mut names: Vec<String> = rules.evaluate(&msg).into_iter().map(|h| h.name).collect();
        names.sort();
        names
    };
    assert!(hits(vec![]).is_empty(), "no zone asked: every list rule and meta over one unknown");
    assert_eq!(hits(vec![client("list.wl.test", &[])]), ["HELO_BARE_UNLISTED"]);
    assert_eq!(hits(vec![client("list.wl.test", &["127.0.10.3"])]), Vec::<String>::new(), "listed: the meta's negation holds");
    let listed = hits(vec![client("zen.test", &["127.0.0.4"]), links(&["127.0.0.2"])]);
    assert_eq!(
        listed,
        ["ANY_RELAY_LISTED", "LISTED_AND_LINKED"],
        "the list rules echo the dnsbl filter's own symbols: never reported themselves"
    );
    assert_eq!(hits(vec![client("zen.test", &["127.0.0.4"]), links(&["127.0.0.4"])]), ["ANY_RELAY_LISTED"], "mask 2 not set");
    assert!(hits(vec![client("zen.test", &[])]).is_empty(), "not listed: 'any relay' stays unknown, so does its negation");
    assert_eq!(hits(vec![client("zen.test", &["127.0.0.2"])]), ["ANY_RELAY_LISTED"]);
}

#[test]
fn header_rules_tried_only_where_their_literals_occur_match_as_before() {
    let text = "header FREE Subject =~ /free\\s+money/i\n\
header NOT_HELLO Subject !~ /hello/\n\
header DIGITS From =~ /\\d{3}/\n\
header PILLS Subject =~ /(?:cheap|free)\\s+pills/i\n\
header UNSET X-Foo =~ /unset/ [if-unset: still unset]\n";
    let (rules, report) = RuleSet::load_texts(&[("a.cf", text)]).expect("load");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let names = |raw: &str| {
        let mut n: Vec<String> = rules.evaluate(&ParsedMessage::parse(raw.as_bytes())).into_iter().map(|h| h.name).collect();
        n.sort();
        n
    };
    assert_eq!(names("From: a@b.test\r\nSubject: FREE   Money and Cheap pills\r\n\r\nx\r\n"), ["FREE", "NOT_HELLO", "PILLS", "UNSET"]);
    assert_eq!(
        names("From: 123@b.test\r\nSubject: hello there\r\nX-Foo: set\r\n\r\nx\r\n"),
        ["DIGITS"],
        "negated rule misses where its literal occurs"
    );
    assert_eq!(
        names("From: a@b.test\r\nSubject: nothing\r\nX-Foo: set\r\n\r\nx\r\n"),
        ["NOT_HELLO"],
        "negated rule hits where its literal is absent"
    );
}
