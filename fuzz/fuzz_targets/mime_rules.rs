//! Messages from the outside through MIME parsing and a fixed rule set, the way the DATA phase
//! scores them: moat's shipped rules (`rules/*.cf`) plus a few rules of every type and header
//! modifier, compiled once; each input is a raw message, scored by
//! `moat::filter::rules::scan` (what `RulesFilter` runs) and by `evaluate_all`, and its
//! link domains are extracted as the URI-list filter does.
//!
//! Invariants checked: nothing panics; reported hits are never `__` rules, have a non-zero
//! finite score and are reported once; `evaluate` (which runs only the rules that can matter)
//! reports exactly the reportable rules that `evaluate_all` (every rule) finds; at most the
//! limit of link domains, none repeated.
#![no_main]
use libfuzzer_sys::fuzz_target;
use moat::filter::uri::message_domains;
use moat::ruleset::{FilterFacts, ParsedMessage, RuleSet};
use std::collections::HashSet;
use std::sync::OnceLock;

const SHIPPED: &[(&str, &str)] = &[
    ("10_filter_scores.cf", include_str!("../../rules/10_filter_scores.cf")),
    ("10_headers.cf", include_str!("../../rules/10_headers.cf")),
    ("20_body.cf", include_str!("../../rules/20_body.cf")),
    ("30_uri.cf", include_str!("../../rules/30_uri.cf")),
    ("50_meta.cf", include_str!("../../rules/50_meta.cf")),
    ("50_scores.cf", include_str!("../../rules/50_scores.cf")),
];

/// Rules that reach what the shipped set does not: every header modifier and pseudo-header,
/// `if-unset`, lookaround and backreferences (the backtracking engine), `tflags multiple`,
/// arithmetic metas, the `eval:` functions moat runs itself (HTML, free mail, MIME, images,
/// header form) and the SPF/DKIM ones answered by the auth filter, with a meta over them.
const EXTRA: &str = r#"
header   FZ_FROM_ADDR    From:addr =~ /\@example\.(?:test|org)$/i
header   FZ_FROM_NAME    From:name =~ /^[A-Z][a-z]+ [A-Z][a-z]+$/
header   FZ_TO_RAW       To:raw =~ /=\?utf-8\?[bq]\?/i
header   FZ_SUBJ_UNSET   Subject =~ /^none$/ [if-unset: none]
header   FZ_NO_DATE      Date !~ /\d{4}/
header   FZ_HAS_LIST     exists:List-Unsubscribe
header   FZ_ALL          ALL =~ /^X-Mailer: .*(?:mass|bulk)/im
header   FZ_TOCC         ToCc =~ /undisclosed/i
header   FZ_MSGID        MESSAGEID =~ /\@(?!example\.test>)/
header   FZ_ENV_FROM     EnvelopeFrom =~ /^bounce\+/
body     FZ_REPEAT       /\b(\w{4,})\b.*\b\1\b/i
body     FZ_MONEY        /\$\s?\d{1,3}(?:,\d{3})+/
tflags   FZ_MONEY        multiple maxhits=3
rawbody  FZ_RAW_STYLE    /<style[^>]*>(?=.*display)/is
uri      FZ_URI_QUERY    /\?.*(?:token|session)=/i
full     FZ_FULL_BOUNDARY /^--[^\r\n]{40,}$/m
mimeheader FZ_PART_NAME  Content-Type =~ /name="?[^"]*\.(?:exe|scr|js)\b/i
mimeheader FZ_PART_B64   Content-Transfer-Encoding =~ /base64/i
meta     FZ_META_SUM     (FZ_FROM_ADDR + FZ_MONEY + FZ_URI_QUERY + FZ_PART_B64) >= 2
meta     FZ_META_BOOL    (FZ_HAS_LIST || FZ_TOCC) && !FZ_NO_DATE
meta     __FZ_SUB        FZ_REPEAT && FZ_RAW_STYLE
meta     FZ_META_SUB     __FZ_SUB * 2 > 1
score    FZ_MONEY        0.7
score    FZ_META_SUM     1.5
freemail_domains gmail.com *.free.test
body     FZ_HTML         eval:html_test('html')
body     FZ_HTML_LOWC    eval:html_test('font_low_contrast')
body     FZ_HTML_OBFU    eval:html_range('obfuscation_ratio', '0', 'inf')
body     FZ_HTML_IMG     eval:html_image_ratio('0.000', '0.010')
body     FZ_HTML_BAL     eval:html_tag_balance('body', '!= 0')
body     FZ_HTML_CMT     eval:html_text_match('comment', '<!(?!-).{0,6}>')
body     FZ_HTML_TITLE   eval:html_title_subject_ratio('3.5')
header   FZ_FM_FROM      eval:check_freemail_from()
header   FZ_FM_REPLY     eval:check_freemail_replyto('reply')
rawbody  FZ_MIME_QP      eval:check_for_mime('mime_qp_long_line')
body     FZ_MIME_RATIO   eval:check_mime_multipart_ratio('0.00','0.01')
body     FZ_IMAGES       eval:image_count('all', 1)
body     FZ_UPPER        eval:check_for_uppercase('50', '100')
header   FZ_YAHOO        eval:check_for_forged_yahoo_received_headers()
header   FZ_RECIPS       eval:similar_recipients('0.5','undef')
header   FZ_ILLEGAL      eval:check_illegal_chars('ALL','0.010','2')
header   SPF_PASS        eval:check_for_spf_pass()
full     DKIM_VALID_AU   eval:check_dkim_valid_author_sig()
header   FZ_RBL          eval:check_rbl('zen-lastexternal', 'zen.test.', '^127\.0\.0\.[4567]$')
header   FZ_RBL_SUB      eval:check_rbl_sub('zen-lastexternal', '127.0.0.2')
urirhssub FZ_URIBL       dbl.test. A 2
body     FZ_URIBL        eval:check_uridnsbl('FZ_URIBL')
meta     FZ_LISTED       FZ_RBL || FZ_RBL_SUB || FZ_URIBL
score    FZ_RBL          0
score    FZ_RBL_SUB      0
score    FZ_URIBL        0
score    SPF_PASS        0
score    DKIM_VALID_AU   0
meta     __FZ_NOT_SPOOFED SPF_PASS || DKIM_VALID_AU
meta     FZ_SPOOFED      FZ_FROM_ADDR && !__FZ_NOT_SPOOFED
score    FZ_SPOOFED      1.1
"#;

fn rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| {
        let mut files = SHIPPED.to_vec();
        files.push(("90_fuzz.cf", EXTRA));
        let (set, report) = RuleSet::load_texts(&files).expect("the fixed rule set loads");
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        set
    })
}

/// What the auth filter and the DNS lists found, by the input's length: nothing (they did not
/// answer: the SPF/DKIM and list rules and the metas over them are unknown), or SPF fail with a
/// DKIM signature of example.test, the client listed in zen.test and a link in dbl.test.
fn auth_answer(message: &[u8]) -> FilterFacts {
    use moat::verdict::{ListAnswer, ListKind, ListLookup, ListedItem};
    if message.len() % 2 == 1 {
        return FilterFacts::default();
    }
    let answered = [("SPF_FAIL", ""), ("DKIM_VALID", "example.test")].map(|(n, d)| (n.to_string(), d.to_string()));
    let answer = |item, record: [u8; 4]| ListAnswer { item, records: Some(vec![record.into()]) };
    let client = ListedItem::Client(std::net::Ipv4Addr::new(192, 0, 2, 1).into());
    let link = ListedItem::Domain { name: "example.test".into(), sender: false, link: true };
    let lists = vec![
        ListLookup { zone: "zen.test".into(), kind: ListKind::Client, answers: vec![answer(client, [127, 0, 0, 4])] },
        ListLookup { zone: "dbl.test".into(), kind: ListKind::Domains, answers: vec![answer(link, [127, 0, 1, 2])] },
    ];
    FilterFacts { auth: Some(answered.to_vec()), lists }
}

fuzz_target!(|message: &[u8]| {
    let rules = rules();
    let symbols = moat::filter::rules::scan(rules, message, Some("bounce+x@example.test"), None, auth_answer(message));
    let mut reported = HashSet::new();
    for symbol in &symbols {
        assert!(!symbol.name.starts_with("__"), "{}", symbol.name);
        assert!(symbol.score != 0.0 && symbol.score.is_finite(), "{symbol:?}");
        assert!(reported.insert(symbol.name.clone()), "{} reported twice", symbol.name);
    }
    let parsed = ParsedMessage::parse(message).with_envelope_from("bounce+x@example.test").with_filter_facts(auth_answer(message));
    let reportable: HashSet<String> = rules
        .evaluate_all(&parsed)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !name.starts_with("__") && rules.score(name).is_some_and(|s| s != 0.0))
        .collect();
    assert_eq!(reported, reportable, "evaluate and evaluate_all disagree");
    let domains = message_domains(message, 16);
    assert!(domains.len() <= 16);
    assert_eq!(domains.iter().collect::<HashSet<_>>().len(), domains.len(), "{domains:?}");
});
