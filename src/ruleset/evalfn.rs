//! SpamAssassin `eval:` functions that moat runs itself: its own code, under the names the
//! plugins give them, so the stock `.cf` files' rules that call them load and run.
//!
//! Chosen by what they catch on real mail (the stock rules' hits on the SpamAssassin public
//! corpus, README: Scanning throughput): HTMLEval (over `htmleval`'s facts of each HTML part),
//! FreeMail (`freemail`), MIMEEval and ImageInfo (over the facts the MIME walk gathered,
//! `mimeeval`, `imageinfo`), HeaderEval (dates and Outlook ids here, the rest in `headereval`),
//! WLBLEval's `check_from_in_list`, VBounce (`bounce`) and a few of BodyEval (`bodyeval`). Each follows the plugin's semantics,
//! quirks included (the agreement tests with SpamAssassin check them side by side);
//! [`parse_rfc822_date`] is SpamAssassin's lenient date reader. A call moat does not know is an
//! error naming it, so the rule is skipped and reported like any other it cannot run.
//! Evaluation reads the prepared [`ParsedMessage`] through an [`EvalCx`], which computes what
//! several functions share (HTML facts, the alternatives' words) once per message; it never
//! panics.

use std::cell::OnceCell;
use std::sync::LazyLock;

use regex::Regex;

use super::bodyeval;
use super::bounce;
use super::freemail::{self, FreemailConfig};
use super::header::Modifier;
use super::headereval;
use super::htmleval::HtmlFacts;
use super::imageinfo;
use super::message::ParsedMessage;

/// What the `eval:` functions read from the rule files besides their calls.
#[derive(Debug, Default, Clone)]
pub struct EvalConfig {
    /// `freemail_domains` and `freemail_welcomelist`.
    pub freemail: FreemailConfig,
    /// `enlist_addrlist (NAME) PATTERN…`: address patterns by list name, lower-cased.
    pub addrlists: std::collections::HashMap<String, Vec<String>>,
    /// `welcomelist_bounce_relays`: lower-cased host patterns.
    pub bounce_relays: Vec<String>,
}

/// One message as the `eval:` functions see it: what several of them read (the HTML parts'
/// facts) is computed once, on first use.
pub struct EvalCx<'a> {
    pub msg: &'a ParsedMessage,
    pub cfg: &'a EvalConfig,
    html: OnceCell<Vec<HtmlFacts>>,
    /// BodyEval's alternative difference: (per cent, HTML words, text words).
    alternative_difference: OnceCell<(f64, usize, usize)>,
}

impl<'a> EvalCx<'a> {
    pub fn new(msg: &'a ParsedMessage, cfg: &'a EvalConfig) -> EvalCx<'a> {
        EvalCx { msg, cfg, html: OnceCell::new(), alternative_difference: OnceCell::new() }
    }

    fn alternative_difference(&self) -> (f64, usize, usize) {
        *self.alternative_difference.get_or_init(|| alternative_difference(self.msg))
    }

    /// The facts of every text/html part (SpamAssassin's `html_all`).
    fn html(&self) -> &[HtmlFacts] {
        self.html.get_or_init(|| self.msg.html_parts().iter().map(|p| HtmlFacts::analyze(p)).collect())
    }
}

/// A comparison written as text in a call (`'!= 0'`, `'< 512'`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cmp {
    op: CmpOp,
    value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn parse(text: &str) -> Option<Cmp> {
        let t = text.trim();
        let ops = [("==", CmpOp::Eq), ("!=", CmpOp::Ne), ("<=", CmpOp::Le), (">=", CmpOp::Ge), ("<", CmpOp::Lt), (">", CmpOp::Gt)];
        let (rest, op) = ops.iter().find_map(|(s, op)| t.strip_prefix(s).map(|r| (r, *op)))?;
        Some(Cmp { op, value: rest.trim().parse().ok()? })
    }

    fn holds(&self, x: f64) -> bool {
        match self.op {
            CmpOp::Eq => x == self.value,
            CmpOp::Ne => x != self.value,
            CmpOp::Lt => x < self.value,
            CmpOp::Le => x <= self.value,
            CmpOp::Gt => x > self.value,
            CmpOp::Ge => x >= self.value,
        }
    }
}

/// A regex given as an argument, compared by its text.
#[derive(Debug, Clone)]
pub struct ArgRegex(fancy_regex::Regex);

impl PartialEq for ArgRegex {
    fn eq(&self, other: &ArgRegex) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl ArgRegex {
    fn new(pattern: &str, call: &str) -> Result<ArgRegex, String> {
        fancy_regex::RegexBuilder::new(pattern)
            .backtrack_limit(super::compile::BACKTRACK_LIMIT)
            .build()
            .map(ArgRegex)
            .map_err(|e| format!("eval:{call}: regex {pattern:?} does not compile: {e}"))
    }

    fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text).unwrap_or(false)
    }
}

/// The RelayEval functions moat runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTest {
    AllTrusted,
    NoRelays,
    Unparseable,
    HeloIpMismatch,
    NoRdnsDotcomHelo,
    ForgedReceivedTrail,
    /// WLBLEval's `check_mailfrom_matches_rcvd()`.
    MailfromMatchesRcvd,
}

/// One `eval:` call moat can run.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalFn {
    /// RelayEval over the Received trail (see `received`): `check_all_trusted()`,
    /// `check_no_relays()`, `check_relays_unparseable()`, `helo_ip_mismatch()`,
    /// `check_for_no_rdns_dotcom_helo()`, `check_for_forged_received_trail()`.
    Relay(RelayTest),
    /// `check_for_mime_html_only()`: HTML and no other text part.
    MimeHtmlOnly,
    /// `subject_is_all_caps()`: a subject of several words, all letters capitals.
    SubjectAllCaps,
    /// `check_outlook_message_id()`: an Outlook Express style Message-ID whose time token fits
    /// neither the Date nor the Received time.
    OutlookMessageId,
    /// `check_for_shifted_date(MIN, MAX)`: the Date header is between MIN and MAX hours after
    /// (negative: before) the closest Received time; `undef` is no bound.
    ShiftedDate {
        min_hours: Option<f64>,
        max_hours: Option<f64>,
    },
    /// `html_test(NAME)`: a flag of an HTML part (`html`: there is one).
    HtmlTest(String),
    /// `html_range(NAME, MIN, MAX)`: a figure of an HTML part in (MIN, MAX]; MAX `inf` or
    /// absent: above MIN.
    HtmlRange {
        test: String,
        min: f64,
        max: Option<f64>,
    },
    /// `html_eval(NAME, EXPR)`: a figure of an HTML part satisfies `EXPR` (`'< 512'`).
    HtmlEval {
        test: String,
        cmp: Cmp,
    },
    /// `html_image_only(MIN, MAX)`: an HTML part with an image, its length in (MIN, MAX].
    HtmlImageOnly {
        min: f64,
        max: f64,
    },
    /// `html_image_ratio(MIN, MAX)`: visible characters per pixel of image area in (MIN, MAX].
    HtmlImageRatio {
        min: f64,
        max: f64,
    },
    /// `html_tag_exists(TAG)`.
    HtmlTagExists(String),
    /// `html_tag_balance(TAG, EXPR)`: opened minus closed satisfies `EXPR`.
    HtmlTagBalance {
        tag: String,
        cmp: Cmp,
    },
    /// `html_text_match(WHAT, REGEX)`: a comment, title, link text or script matches.
    HtmlTextMatch {
        what: String,
        re: ArgRegex,
    },
    /// `html_title_subject_ratio(RATIO)`: a title more than RATIO times the Subject's length.
    HtmlTitleSubjectRatio(f64),
    /// `html_charset_faraway()`: never true with SpamAssassin's default `ok_locales all`.
    HtmlCharsetFaraway,
    /// `check_iframe_src()`: an iframe with a source.
    IframeSrc,
    /// `check_freemail_from([REGEX])`: a sender address at a free mail provider (matching).
    FreemailFrom(Option<ArgRegex>),
    /// `check_freemail_header(HEADER[, REGEX])`: an address in the header at a free mail
    /// provider (matching).
    FreemailHeader {
        header: String,
        re: Option<ArgRegex>,
    },
    /// `check_freemail_replyto(['replyto'|'reply'])`: Reply-To (or From) and the body or From
    /// name different free mail addresses.
    FreemailReplyTo {
        reply: bool,
    },
    /// `check_for_mime(NAME)`: a MIME fact (`mime_qp_long_line`, `mime_base64_encoded_text`, …).
    Mime(String),
    /// `check_mime_multipart_ratio(MIN, MAX)`: text/plain over text/html bytes in [MIN, MAX).
    MimeMultipartRatio {
        min: f64,
        max: f64,
    },
    /// `check_base64_length(MIN[, MAX])`: the longest base64 line in [MIN, MAX].
    Base64Length {
        min: f64,
        max: Option<f64>,
    },
    /// `check_ma_non_text()`: an alternative that is not text.
    MaNonText,
    /// `check_for_mime_html()`: an HTML part (or a text/html message).
    MimeHtml,
    /// `check_for_uppercase(MIN, MAX)`: per cent of capitals among the body's letters and
    /// digits in (MIN, MAX].
    Uppercase {
        min: f64,
        max: f64,
    },
    /// `image_count(TYPE, MIN[, MAX])`: attached GIF/PNG/JPEG images (`all`) in [MIN, MAX].
    ImageCount {
        kind: String,
        min: f64,
        max: Option<f64>,
    },
    /// `pixel_coverage(TYPE, MIN[, MAX])`: pixels those images cover in [MIN, MAX].
    PixelCoverage {
        kind: String,
        min: f64,
        max: Option<f64>,
    },
    /// The HeaderEval checks of a free mail sender's Received trail.
    ForgedYahoo,
    ForgedHotmail,
    NoHotmailReceived,
    ForgedJuno,
    ForgedEudoramail,
    ForgedGmail,
    /// `sorted_recipients()`.
    SortedRecipients,
    /// `similar_recipients(MIN, MAX)`, `undef` no bound.
    SimilarRecipients {
        min: Option<f64>,
        max: Option<f64>,
    },
    /// `check_for_missing_to_header()`.
    MissingTo,
    /// `check_unresolved_template()`.
    UnresolvedTemplate,
    /// `check_for_to_in_subject('address'|'user')`.
    ToInSubject {
        user: bool,
    },
    /// `check_equal_from_domains()`: From and envelope sender in different domains.
    FromDomainsDiffer,
    /// `check_for_matching_env_and_hdr_from()`.
    EnvMatchesFrom,
    /// `check_header_count_range(NAME, MIN, MAX)`.
    HeaderCount {
        header: String,
        min: f64,
        max: f64,
    },
    /// `gated_through_received_hdr_remover()`: a list server removed the Received trail.
    GatedThroughReceivedRemover,
    /// `check_from_in_list(LIST)`: a sender address on an `enlist_addrlist` list.
    FromInList(String),
    /// `check_body_length(MAX)`: the body as received has at most MAX bytes.
    BodyLength(f64),
    /// `multipart_alternative_difference(MIN, MAX)`: the per cent of an alternative's HTML
    /// words its text part lacks, above MIN (or 0) and at most MAX (`undef`: no bound).
    AlternativeDifference {
        min: f64,
        max: Option<f64>,
    },
    /// `multipart_alternative_difference_count(RATIO, MINHTML)`: text words over HTML words
    /// above RATIO, with more than MINHTML HTML words.
    AlternativeDifferenceCount {
        ratio: f64,
        min_html: f64,
    },
    /// `check_for_fake_aol_relay_in_rcvd()`.
    FakeAolRelay,
    /// `tvd_vertical_words(MIN, MAX)` (BodyEval).
    VerticalWords {
        min: f64,
        max: f64,
    },
    /// `check_stock_info(MIN)` (BodyEval).
    StockInfo(f64),
    /// `image_to_text_ratio(TYPE, MIN, MAX)` (ImageInfo) over the body's lines, or the decoded
    /// raw parts when written as a rawbody rule.
    ImageToTextRatio {
        kind: String,
        min: f64,
        max: f64,
        rawbody: bool,
    },
    /// `check_ratware_envelope_from()` (HeaderEval).
    RatwareEnvelopeFrom,
    /// `have_any_bounce_relays()` (VBounce).
    HaveBounceRelays,
    /// `check_welcomelist_bounce_relays()` (VBounce).
    QuotesOwnRelay,
    /// `check_ratware_name_id()`.
    RatwareNameId,
    /// `check_for_faraway_charset()` and `check_for_faraway_charset_in_headers()`: never true
    /// with SpamAssassin's default `ok_locales all`, which moat keeps.
    FarawayCharset,
    /// `check_illegal_chars(NAME, RATIO, COUNT)`.
    IllegalChars {
        header: String,
        ratio: f64,
        count: usize,
    },
}

/// The arguments of a call: quoted strings (either quote; a backslash keeps the next
/// character) or bare words, separated by commas.
pub(super) fn split_args(args: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut arg = String::new();
        if c == '\'' || c == '"' {
            chars.next();
            let mut closed = false;
            while let Some(x) = chars.next() {
                if x == c {
                    closed = true;
                    break;
                }
                if x == '\\' && chars.peek() == Some(&c) {
                    arg.push(c);
                    chars.next();
                    continue;
                }
                arg.push(x);
            }
            if !closed {
                return Err("unterminated quoted argument".into());
            }
        } else {
            while let Some(&x) = chars.peek() {
                if x == ',' {
                    break;
                }
                arg.push(x);
                chars.next();
            }
            arg = arg.trim().to_string();
        }
        out.push(arg);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(x) => return Err(format!("unexpected {x:?} after an argument")),
        }
    }
    Ok(out)
}

impl EvalFn {
    /// The function `call` (the text after `eval:`, e.g. `check_for_shifted_date('-6', '-3')`)
    /// names, or why moat cannot run it.
    pub fn parse(call: &str) -> Result<EvalFn, String> {
        let call = call.trim();
        let (name, rest) = call.split_once('(').ok_or_else(|| format!("eval:{call}: not a function call"))?;
        let args = rest.trim_end().strip_suffix(')').ok_or_else(|| format!("eval:{call}: no closing parenthesis"))?;
        let args = split_args(args).map_err(|e| format!("eval:{call}: {e}"))?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let name = name.trim();
        let num = |a: &str| a.trim().parse::<f64>().map_err(|_| format!("eval:{call}: {a:?} is not a number"));
        let cmp = |a: &str| Cmp::parse(a).ok_or_else(|| format!("eval:{call}: {a:?} is not a comparison moat reads"));
        let re = |a: &str| ArgRegex::new(a, call);
        match (name, args.as_slice()) {
            ("check_for_mime_html_only", []) => Ok(EvalFn::MimeHtmlOnly),
            ("check_all_trusted", []) => Ok(EvalFn::Relay(RelayTest::AllTrusted)),
            ("check_no_relays", []) => Ok(EvalFn::Relay(RelayTest::NoRelays)),
            ("check_relays_unparseable", []) => Ok(EvalFn::Relay(RelayTest::Unparseable)),
            ("helo_ip_mismatch", []) => Ok(EvalFn::Relay(RelayTest::HeloIpMismatch)),
            ("check_for_no_rdns_dotcom_helo", []) => Ok(EvalFn::Relay(RelayTest::NoRdnsDotcomHelo)),
            ("check_for_forged_received_trail", []) => Ok(EvalFn::Relay(RelayTest::ForgedReceivedTrail)),
            ("check_mailfrom_matches_rcvd", []) => Ok(EvalFn::Relay(RelayTest::MailfromMatchesRcvd)),
            ("subject_is_all_caps", []) => Ok(EvalFn::SubjectAllCaps),
            ("check_outlook_message_id", []) => Ok(EvalFn::OutlookMessageId),
            ("check_for_shifted_date", [min, max]) => {
                Ok(EvalFn::ShiftedDate { min_hours: hours_bound(min, call)?, max_hours: hours_bound(max, call)? })
            }
            ("html_test", [test]) => Ok(EvalFn::HtmlTest(test.to_string())),
            ("html_range", [test, min, rest @ ..]) if rest.len() <= 1 => {
                let max = match rest.first() {
                    None | Some(&"inf") => None,
                    Some(m) => Some(num(m)?),
                };
                Ok(EvalFn::HtmlRange { test: test.to_string(), min: num(min)?, max })
            }
            ("html_eval", [test, expr]) => Ok(EvalFn::HtmlEval { test: test.to_string(), cmp: cmp(expr)? }),
            ("html_image_only", [min, max]) => Ok(EvalFn::HtmlImageOnly { min: num(min)?, max: num(max)? }),
            ("html_image_ratio", [min, max]) => Ok(EvalFn::HtmlImageRatio { min: num(min)?, max: num(max)? }),
            ("html_tag_exists", [tag]) => Ok(EvalFn::HtmlTagExists(tag.to_string())),
            ("html_tag_balance", [tag, expr]) if tag.chars().all(|c| c.is_ascii_alphanumeric()) && !tag.is_empty() => {
                Ok(EvalFn::HtmlTagBalance { tag: tag.to_string(), cmp: cmp(expr)? })
            }
            ("html_text_match", [what, regex]) => Ok(EvalFn::HtmlTextMatch { what: what.to_string(), re: re(regex)? }),
            ("html_title_subject_ratio", [ratio]) => Ok(EvalFn::HtmlTitleSubjectRatio(num(ratio)?)),
            ("html_charset_faraway", []) => Ok(EvalFn::HtmlCharsetFaraway),
            ("check_iframe_src", []) => Ok(EvalFn::IframeSrc),
            ("check_freemail_from", []) => Ok(EvalFn::FreemailFrom(None)),
            ("check_freemail_from", [regex]) => Ok(EvalFn::FreemailFrom(Some(re(regex)?))),
            ("check_freemail_header", [header]) => Ok(EvalFn::FreemailHeader { header: header.to_string(), re: None }),
            ("check_freemail_header", [header, regex]) => Ok(EvalFn::FreemailHeader { header: header.to_string(), re: Some(re(regex)?) }),
            ("check_freemail_replyto", []) | ("check_freemail_replyto", ["replyto"]) => Ok(EvalFn::FreemailReplyTo { reply: false }),
            ("check_freemail_replyto", ["reply"]) => Ok(EvalFn::FreemailReplyTo { reply: true }),
            ("check_for_mime", [test]) => Ok(EvalFn::Mime(test.to_string())),
            ("check_mime_multipart_ratio", [min, max]) => Ok(EvalFn::MimeMultipartRatio { min: num(min)?, max: num(max)? }),
            ("check_base64_length", [min]) => Ok(EvalFn::Base64Length { min: num(min)?, max: None }),
            ("check_base64_length", [min, max]) => Ok(EvalFn::Base64Length { min: num(min)?, max: Some(num(max)?) }),
            ("check_ma_non_text", []) => Ok(EvalFn::MaNonText),
            ("check_for_mime_html", []) => Ok(EvalFn::MimeHtml),
            ("gated_through_received_hdr_remover", []) => Ok(EvalFn::GatedThroughReceivedRemover),
            ("check_from_in_list", [list]) => Ok(EvalFn::FromInList(list.to_string())),
            ("check_body_length", [max]) => Ok(EvalFn::BodyLength(num(max)?)),
            ("check_for_fake_aol_relay_in_rcvd", []) => Ok(EvalFn::FakeAolRelay),
            ("have_any_bounce_relays", []) => Ok(EvalFn::HaveBounceRelays),
            ("tvd_vertical_words", [min, max]) => Ok(EvalFn::VerticalWords { min: num(min)?, max: num(max)? }),
            ("check_stock_info", [min]) => Ok(EvalFn::StockInfo(num(min)?)),
            ("image_to_text_ratio", [kind, min, max]) => {
                Ok(EvalFn::ImageToTextRatio { kind: kind.to_string(), min: num(min)?, max: num(max)?, rawbody: false })
            }
            ("check_ratware_envelope_from", []) => Ok(EvalFn::RatwareEnvelopeFrom),
            ("check_welcomelist_bounce_relays" | "check_whitelist_bounce_relays", []) => Ok(EvalFn::QuotesOwnRelay),
            ("multipart_alternative_difference", [min, max]) => {
                let max = if *max == "undef" { None } else { Some(num(max)?) };
                Ok(EvalFn::AlternativeDifference { min: num(min)?, max })
            }
            ("multipart_alternative_difference_count", [ratio, min_html]) => {
                Ok(EvalFn::AlternativeDifferenceCount { ratio: num(ratio)?, min_html: num(min_html)? })
            }
            ("check_ratware_name_id", []) => Ok(EvalFn::RatwareNameId),
            ("check_for_faraway_charset" | "check_for_faraway_charset_in_headers", []) => Ok(EvalFn::FarawayCharset),
            ("check_for_uppercase", [min, max]) => Ok(EvalFn::Uppercase { min: num(min)?, max: num(max)? }),
            ("image_count" | "pixel_coverage", [kind, min, rest @ ..]) if rest.len() <= 1 => {
                let (kind, min) = (kind.to_string(), num(min)?);
                let max = rest.first().map(|m| num(m)).transpose()?;
                Ok(if name == "image_count" { EvalFn::ImageCount { kind, min, max } } else { EvalFn::PixelCoverage { kind, min, max } })
            }
            ("check_for_forged_yahoo_received_headers", []) => Ok(EvalFn::ForgedYahoo),
            ("check_for_forged_hotmail_received_headers", []) => Ok(EvalFn::ForgedHotmail),
            ("check_for_no_hotmail_received_headers", []) => Ok(EvalFn::NoHotmailReceived),
            ("check_for_forged_juno_received_headers", []) => Ok(EvalFn::ForgedJuno),
            ("check_for_forged_eudoramail_received_headers", []) => Ok(EvalFn::ForgedEudoramail),
            ("check_for_forged_gmail_received_headers", []) => Ok(EvalFn::ForgedGmail),
            ("sorted_recipients", []) => Ok(EvalFn::SortedRecipients),
            ("similar_recipients", [min, max]) => {
                let bound = |a: &str| if a == "undef" { Ok(None) } else { num(a).map(Some) };
                Ok(EvalFn::SimilarRecipients { min: bound(min)?, max: bound(max)? })
            }
            ("check_for_missing_to_header", []) => Ok(EvalFn::MissingTo),
            ("check_unresolved_template", []) => Ok(EvalFn::UnresolvedTemplate),
            ("check_for_to_in_subject", ["user"]) => Ok(EvalFn::ToInSubject { user: true }),
            ("check_for_to_in_subject", ["address"]) => Ok(EvalFn::ToInSubject { user: false }),
            ("check_equal_from_domains", []) => Ok(EvalFn::FromDomainsDiffer),
            ("check_for_matching_env_and_hdr_from", []) => Ok(EvalFn::EnvMatchesFrom),
            ("check_header_count_range", [header, min, max]) => {
                Ok(EvalFn::HeaderCount { header: header.to_string(), min: num(min)?, max: num(max)? })
            }
            ("check_illegal_chars", [header, ratio, count]) => {
                let count = num(count)?;
                let header = header.strip_suffix(":raw").unwrap_or(header).to_string();
                Ok(EvalFn::IllegalChars { header, ratio: num(ratio)?, count: count.max(0.0).ceil() as usize })
            }
            _ => Err(format!("eval:{name} (needs SpamAssassin plugin code moat does not have)")),
        }
    }

    /// The function as called from a rule of the kind written (a rawbody rule's functions read
    /// the decoded raw parts where they read text).
    pub fn reading_rawbody(self, rawbody: bool) -> EvalFn {
        match self {
            EvalFn::ImageToTextRatio { kind, min, max, .. } => EvalFn::ImageToTextRatio { kind, min, max, rawbody },
            f => f,
        }
    }

    /// Whether the rule hits the message.
    pub fn hit(&self, cx: &EvalCx<'_>) -> bool {
        let msg = cx.msg;
        match self {
            EvalFn::Relay(test) => {
                let relays = msg.relays();
                match test {
                    RelayTest::AllTrusted => relays.all_trusted(),
                    RelayTest::NoRelays => relays.no_relays(),
                    RelayTest::Unparseable => relays.unparseable > 0,
                    RelayTest::HeloIpMismatch => relays.helo_ip_mismatch(),
                    RelayTest::NoRdnsDotcomHelo => relays.no_rdns_dotcom_helo(),
                    RelayTest::ForgedReceivedTrail => relays.forged_received_trail(),
                    RelayTest::MailfromMatchesRcvd => msg
                        .header_value("EnvelopeFrom", Modifier::Addr)
                        .is_some_and(|sender| relays.addr_matches_rcvd(&sender, crate::domains::registrable_domain)),
                }
            }
            EvalFn::MimeHtmlOnly => mime_html_only(msg),
            EvalFn::SubjectAllCaps => subject_all_caps(msg),
            EvalFn::OutlookMessageId => outlook_message_id_invalid(msg),
            EvalFn::ShiftedDate { min_hours, max_hours } => {
                let diff = *msg.date_shift.get_or_init(|| date_diff(msg)) as f64;
                min_hours.is_none_or(|min| diff >= 3600.0 * min) && max_hours.is_none_or(|max| diff < 3600.0 * max)
            }
            EvalFn::HtmlTest(test) => cx.html().iter().any(|h| h.test(test)),
            EvalFn::HtmlRange { test, min, max } => {
                cx.html().iter().filter_map(|h| h.value(test)).any(|v| v > *min && max.is_none_or(|max| v <= max))
            }
            EvalFn::HtmlEval { test, cmp } => cx.html().iter().filter_map(|h| h.value(test)).any(|v| cmp.holds(v)),
            EvalFn::HtmlImageOnly { min, max } => cx.html().iter().any(|h| {
                let length = h.length as f64;
                h.inside("img").is_some() && length > *min && length <= *max
            }),
            EvalFn::HtmlImageRatio { min, max } => cx.html().iter().any(|h| {
                let area = h.value("image_area").unwrap_or(0.0);
                let ratio = h.value("non_space_len").unwrap_or(0.0) / area;
                area > 0.0 && ratio > *min && ratio <= *max
            }),
            EvalFn::HtmlTagExists(tag) => cx.html().iter().any(|h| h.inside(tag).is_some()),
            EvalFn::HtmlTagBalance { tag, cmp } => cx.html().iter().filter_map(|h| h.inside(tag)).any(|d| cmp.holds(d as f64)),
            EvalFn::HtmlTextMatch { what, re } => cx.html().iter().filter_map(|h| h.texts(what)).flatten().any(|t| re.is_match(t)),
            EvalFn::HtmlTitleSubjectRatio(ratio) => title_subject_ratio(cx, *ratio),
            EvalFn::HtmlCharsetFaraway => false,
            EvalFn::IframeSrc => cx.html().iter().any(HtmlFacts::iframe_src),
            EvalFn::FreemailFrom(re) => freemail_from(cx, re.as_ref()),
            EvalFn::FreemailHeader { header, re } => freemail_header(cx, header, re.as_ref()),
            EvalFn::FreemailReplyTo { reply } => freemail_replyto(cx, *reply),
            EvalFn::Mime(test) => msg.mime_facts().test(test),
            EvalFn::MimeMultipartRatio { min, max } => {
                let r = msg.mime_facts().multipart_ratio();
                r >= *min && r < *max
            }
            EvalFn::Base64Length { min, max } => {
                let len = msg.mime_facts().base64_length() as f64;
                len >= *min && max.is_none_or(|max| len <= max)
            }
            EvalFn::MaNonText => msg.mime_facts().ma_non_text(),
            EvalFn::MimeHtml => mime_top_is_html(msg) || msg.mime_facts().has_html(),
            EvalFn::GatedThroughReceivedRemover => headereval::gated_through_remover(msg),
            EvalFn::FakeAolRelay => headereval::fake_aol_relay(msg),
            EvalFn::VerticalWords { min, max } => bodyeval::vertical_words(msg.body_lines(false), *min, *max),
            EvalFn::StockInfo(min) => bodyeval::stock_info(msg, *min),
            EvalFn::ImageToTextRatio { kind, min, max, rawbody } => {
                let text = if *rawbody { msg.rawbody_chunks() } else { msg.body_lines(false) };
                bodyeval::image_to_text_ratio(text, msg.mime_facts().images().coverage(kind), *min, *max)
            }
            EvalFn::RatwareEnvelopeFrom => headereval::ratware_envelope_from(msg),
            EvalFn::HaveBounceRelays => bounce::have_any_relays(&cx.cfg.bounce_relays),
            EvalFn::QuotesOwnRelay => bounce::quotes_own_relay(msg, &cx.cfg.bounce_relays),
            EvalFn::AlternativeDifference { min, max } => {
                let d = cx.alternative_difference().0;
                (*min == 0.0 || d > *min) && max.is_none_or(|max| d <= max)
            }
            EvalFn::AlternativeDifferenceCount { ratio, min_html } => {
                let (_, html, text) = cx.alternative_difference();
                html as f64 > *min_html && text as f64 / html as f64 > *ratio
            }
            EvalFn::RatwareNameId => headereval::ratware_name_id(msg),
            EvalFn::FarawayCharset => false,
            EvalFn::FromInList(list) => cx.cfg.addrlists.get(list).is_some_and(|p| headereval::from_in_list(msg, p)),
            EvalFn::BodyLength(max) => {
                let full = msg.full();
                (full.len() - crate::headers::body_start(full)) as f64 <= *max
            }
            EvalFn::Uppercase { min, max } => {
                let pct = uppercase_percent(msg);
                pct > *min && pct <= *max
            }
            EvalFn::ImageCount { kind, min, max } => imageinfo::in_range(msg.mime_facts().images().count(kind), *min, *max),
            EvalFn::PixelCoverage { kind, min, max } => imageinfo::in_range(msg.mime_facts().images().coverage(kind), *min, *max),
            EvalFn::ForgedYahoo => headereval::forged_yahoo(msg),
            EvalFn::ForgedHotmail => headereval::forged_hotmail(msg).0,
            EvalFn::NoHotmailReceived => headereval::forged_hotmail(msg).1,
            EvalFn::ForgedJuno => headereval::forged_juno(msg),
            EvalFn::ForgedEudoramail => headereval::forged_eudoramail(msg),
            EvalFn::ForgedGmail => headereval::forged_gmail(msg),
            EvalFn::SortedRecipients => headereval::sorted_recipients(msg),
            EvalFn::SimilarRecipients { min, max } => {
                let s = headereval::recipient_similarity(msg);
                min.is_none_or(|min| s >= min) && max.is_none_or(|max| s < max)
            }
            EvalFn::MissingTo => headereval::missing_to(msg),
            EvalFn::UnresolvedTemplate => headereval::unresolved_template(msg),
            EvalFn::ToInSubject { user } => headereval::to_in_subject(msg, *user),
            EvalFn::FromDomainsDiffer => headereval::from_domains_differ(msg),
            EvalFn::EnvMatchesFrom => headereval::env_matches_from(msg),
            EvalFn::HeaderCount { header, min, max } => {
                let n = headereval::header_count(msg, header) as f64;
                n >= *min && n <= *max
            }
            EvalFn::IllegalChars { header, ratio, count } => headereval::illegal_chars(msg, header, *ratio, *count),
        }
    }
}

/// SpamAssassin reads the Subject with its line end, so the ratio is to its length plus one.
fn title_subject_ratio(cx: &EvalCx<'_>, ratio: f64) -> bool {
    let Some(subject) = cx.msg.header_value("subject", Modifier::Decoded) else { return false };
    let subject_len = subject.split('\n').next_back().unwrap_or("").chars().count() + 1;
    cx.html().iter().any(|h| {
        let longest = h.texts("title").unwrap_or(&[]).iter().map(|t| t.chars().count()).max().unwrap_or(0);
        longest as f64 / subject_len as f64 > ratio
    })
}

fn freemail_from(cx: &EvalCx<'_>, re: Option<&ArgRegex>) -> bool {
    let fm = &cx.cfg.freemail;
    fm.available() && freemail::all_from_addrs(cx.msg).iter().any(|e| fm.is_freemail(e) && re.is_none_or(|re| re.is_match(e)))
}

fn freemail_header(cx: &EvalCx<'_>, header: &str, re: Option<&ArgRegex>) -> bool {
    let fm = &cx.cfg.freemail;
    let header = header.strip_suffix(":addr").unwrap_or(header);
    fm.available() && freemail::header_addrs(cx.msg, header).iter().any(|e| fm.is_freemail(e) && re.is_none_or(|re| re.is_match(e)))
}

/// SpamAssassin's `check_freemail_replyto`: From and Reply-To different free mail addresses,
/// or the reply address (Reply-To; with `reply`, From when there is no Reply-To) free mail and
/// a different free mail address in the body.
fn freemail_replyto(cx: &EvalCx<'_>, reply: bool) -> bool {
    let fm = &cx.cfg.freemail;
    if !fm.available() {
        return false;
    }
    let envfrom = freemail::header_addrs(cx.msg, "EnvelopeFrom");
    if envfrom.first().is_some_and(|e| freemail::bulk_envelope(e)) {
        return false;
    }
    let from = freemail::header_addrs(cx.msg, "From");
    let replyto = freemail::header_addrs(cx.msg, "Reply-To");
    let from_fm = from.iter().any(|e| fm.is_freemail(e));
    let replyto_fm = replyto.iter().any(|e| fm.is_freemail(e));
    let from_not_in_replyto = !from.iter().any(|f| replyto.contains(f));
    if from_fm && replyto_fm && from_not_in_replyto {
        return true;
    }
    if !reply && !replyto_fm {
        return false;
    }
    if reply && ((!replyto.is_empty() && !replyto_fm) || !from_fm) {
        return false;
    }
    let mailtos: Vec<String> = cx.html().iter().flat_map(|h| h.mailtos().iter().cloned()).collect();
    let Some(body) = freemail::body_freemails(fm, cx.msg, &mailtos) else { return false };
    let reply_addrs = if !reply || replyto_fm { &replyto } else { &from };
    body.iter().any(|b| reply_addrs.iter().any(|r| r != b))
}

fn hours_bound(arg: &str, call: &str) -> Result<Option<f64>, String> {
    if arg == "undef" {
        return Ok(None);
    }
    arg.parse::<f64>().map(Some).map_err(|_| format!("eval:{call}: {arg:?} is not a number of hours or undef"))
}

fn mime_top_is_html(msg: &ParsedMessage) -> bool {
    let top = msg.header_value("content-type", Modifier::Decoded).unwrap_or_default();
    top.trim_start().to_ascii_lowercase().starts_with("text/html")
}

fn mime_html_only(msg: &ParsedMessage) -> bool {
    mime_top_is_html(msg) || (msg.stats.declared_html > 0 && msg.stats.declared_other_text == 0)
}

/// MIMEEval's `check_for_uppercase` measure: capitals per hundred letters and digits on the
/// body lines with two words (not base64-looking), 0 under 200 bytes or when a charset is one
/// whose text looks capitalised.
fn uppercase_percent(msg: &ParsedMessage) -> f64 {
    static BASE64ISH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(?:[A-Za-z0-9+/=]{60,76} ){2}").expect("valid"));
    static TWO_WORDS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\S\s+\S").expect("valid"));
    static ISO2022: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)\x1b\$B.*\x1b\(B").expect("valid"));
    static FP_CHARSET: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|windows-1251|georgianps|pt154|tis)[-_a-z0-9]*$").expect("valid")
    });
    let top = msg.header_value("content-type", Modifier::Decoded).and_then(|ct| charset_of_ct_line(&ct));
    if top.iter().chain(msg.mime_facts().charsets()).any(|c| FP_CHARSET.is_match(c)) {
        return 0.0;
    }
    let (mut len, mut lower, mut upper) = (0usize, 0usize, 0usize);
    for line in msg.body_lines(false) {
        if !TWO_WORDS.is_match(line) || BASE64ISH.is_match(line) {
            continue;
        }
        let line = ISO2022.replace_all(line, "");
        len += line.len();
        lower += line.bytes().filter(|b| b.is_ascii_lowercase() || b.is_ascii_digit()).count();
        upper += line.bytes().filter(u8::is_ascii_uppercase).count();
    }
    if len < 200 || upper + lower == 0 {
        return 0.0;
    }
    upper as f64 / (upper + lower) as f64 * 100.0
}

/// BodyEval's `_multipart_alternative_difference`: for each multipart/alternative, the HTML
/// parts' words (whitespace-separated, with a word character; an HTML part of images only
/// counts one) less those its text parts have as often; the largest share left, in per cent,
/// and the word counts of the last alternative with HTML words.
fn alternative_difference(msg: &ParsedMessage) -> (f64, usize, usize) {
    use std::collections::HashMap;
    let words = |text: &str, into: &mut HashMap<String, i64>| {
        for w in text.split(char::is_whitespace).filter(|w| w.chars().any(|c| c.is_alphanumeric() || c == '_')) {
            *into.entry(w.to_string()).or_default() += 1;
        }
    };
    let (mut best, mut html_count, mut text_count) = (0.0f64, 0usize, 0usize);
    for alternative in msg.mime_facts().alternatives() {
        let (mut html, mut text) = (HashMap::new(), HashMap::new());
        for (is_html, body) in alternative {
            if body.is_empty() {
                continue;
            }
            if *is_html {
                let (facts, rendered) = HtmlFacts::analyze_with_text(body);
                words(&rendered, &mut html);
                if html.is_empty() && facts.inside("img").is_some() {
                    html.insert("\n".into(), 1);
                }
            } else {
                words(body, &mut text);
            }
        }
        let orig = html.len();
        if orig == 0 {
            continue;
        }
        (html_count, text_count) = (orig, text.len());
        html.retain(|w, n| text.get(w).is_none_or(|t| *n - t >= 1));
        best = best.max(html.len() as f64 / orig as f64 * 100.0);
    }
    (best, html_count, text_count)
}

/// MIMEEval's `get_charset_from_ct_line`.
fn charset_of_ct_line(ct: &str) -> Option<String> {
    let lower = ct.to_ascii_lowercase();
    let at = lower.find("charset=")? + "charset=".len();
    let rest = &ct[at..];
    let value = match rest.chars().next()? {
        q @ ('"' | '\'') => rest[1..].split(q).next().unwrap_or(""),
        _ => rest.split(char::is_whitespace).next().unwrap_or(""),
    };
    (!value.is_empty()).then(|| value.to_string())
}

fn subject_all_caps(msg: &ParsedMessage) -> bool {
    static PREFIXES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)^(?:(?:Re|Fwd|Fw|Aw|Antwort|WG|SV|VB|VS|VL):\s*)+").expect("valid"));
    static FP_CHARSETS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)=\?[-_a-z0-9]*(?:koi|jp|jis|euc|gb|big5|isoir|cp1251|windows-1251|georgianps|pt154|tis)[-_a-z0-9]*\?")
            .expect("valid")
    });
    let subject = msg.header_value("subject", Modifier::Decoded).unwrap_or_default();
    let subject = PREFIXES.replace(subject.trim(), "");
    if !subject.chars().any(char::is_whitespace) || subject.chars().count() < 10 {
        return false;
    }
    let raw = msg.header_value("subject", Modifier::Raw).unwrap_or_default();
    if FP_CHARSETS.is_match(&raw) {
        return false;
    }
    let letters: Vec<char> = subject.chars().filter(char::is_ascii_alphabetic).collect();
    !letters.is_empty() && letters.iter().all(char::is_ascii_uppercase)
}

fn outlook_message_id_invalid(msg: &ParsedMessage) -> bool {
    static OUTLOOK_ID: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^<[0-9a-f]{4}([0-9a-f]{8})\$[0-9a-f]{8}\$[0-9a-f]{8}@").expect("valid"));
    let ids = msg.header_value("MESSAGEID", Modifier::Decoded).unwrap_or_default();
    let Some(token) = OUTLOOK_ID.captures(&ids).and_then(|c| i64::from_str_radix(&c[1], 16).ok()) else {
        return false;
    };
    // The token counts time in units of about 429.5 s from an epoch of its own.
    let expected = |time: i64| (time as f64 * 0.002_328_306_436_538_7 + 27_111_902.832_984_9) as i64;
    let fits = |header: &str| {
        let text = msg.header_value(header, Modifier::Decoded).unwrap_or_default();
        (token - expected(parse_rfc822_date(&text).unwrap_or(0))).abs() < 250
    };
    !fits("date") && !fits("received")
}

/// Seconds the Date header (Resent-Date first) lies after the Received time closest to it; 0
/// when either is unknown.
fn date_diff(msg: &ParsedMessage) -> i64 {
    let Some(date) = date_header_time(msg) else { return 0 };
    let received = received_times(msg);
    if received.is_empty() {
        return 0;
    }
    let mut diffs: Vec<i64> = received.iter().map(|t| date - t).collect();
    if diffs.len() > 1 && diffs.last() == Some(&0) {
        diffs.pop();
    }
    // The smallest difference; the first of equals (a stable choice, as SpamAssassin's sort).
    diffs.iter().copied().min_by_key(|d| d.unsigned_abs()).unwrap_or(0)
}

fn date_header_time(msg: &ParsedMessage) -> Option<i64> {
    ["resent-date", "date"].iter().find_map(|name| {
        let values = msg.header_value(name, Modifier::Decoded)?;
        values.split('\n').filter(|v| !v.is_empty()).find_map(parse_rfc822_date)
    })
}

/// The times of the Received fields (top first), without the local fetchmail hop.
fn received_times(msg: &ParsedMessage) -> Vec<i64> {
    static LOCAL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?-u:\b)from (?:localhost[\t\n\x0B\f\r ]|(?:[^\t\n\x0B\f\r ]+ ){1,2}[^\t\n\x0B\f\r ]*(?-u:\b)127\.0\.0\.1(?-u:\b))|qmail [0-9]+ invoked by uid [0-9]+").expect("valid")
    });
    static FETCHMAIL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?-u:\b)by localhost with (?-u:\w)+ \(fetchmail-[0-9.]+").expect("valid"));
    static DATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"([\t\n\x0B\f\r ].?[0-9]+ [^\t\n\x0B\f\r ]{3} [0-9]+ [0-9]+:[0-9]+:[0-9]+ [^\t\n\x0B\f\r ]+)").expect("valid")
    });
    let all = msg.header_value("received", Modifier::Decoded).unwrap_or_default();
    let mut received: Vec<&str> = all.split('\n').filter(|l| l.chars().any(|c| !c.is_whitespace())).collect();
    // A first hop from localhost is dropped only when fetchmail's own hop follows it.
    let mut skip = usize::from(received.first().is_some_and(|r| LOCAL.is_match(r)));
    if received.get(skip).is_some_and(|r| FETCHMAIL.is_match(r)) {
        skip += 1;
    } else {
        skip = 0;
    }
    received.drain(..skip.min(received.len()));
    received.iter().filter_map(|r| DATE.captures(r)).filter_map(|c| parse_rfc822_date(&c[1])).collect()
}

/// SpamAssassin's `parse_rfc822_date`: the first `DD Mon YYYY` (or `Mon DD hh:mm:ss YYYY`, or a
/// two- or three-digit year) anywhere in `text`, the first `hh:mm[:ss]`, the first numeric or
/// known named zone (else UTC); out-of-range fields are forced into range the way it does.
/// Seconds since the epoch, or None when no date is found. Classes are ASCII (`[0-9]`, ASCII
/// spaces, ASCII word boundaries), as Perl reads a header's octets; that also keeps these
/// regexes on the lazy DFA.
pub fn parse_rfc822_date(text: &str) -> Option<i64> {
    static COMMAS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r", *").expect("valid"));
    static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[\t\n\x0B\f\r ]+").expect("valid"));
    const MON: &str = "((?i-u:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec))";
    static DMY: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!(r" ([0-9]+) {MON} ([0-9]{{4}}) ")).expect("valid"));
    static MDY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(&format!(r" {MON} +([0-9]+) [0-9]+:[0-9]+:[0-9]+ ([0-9]{{4}}) ")).expect("valid"));
    static DMY_SHORT: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!(r" ([0-9]+) {MON} ([0-9]{{2,3}}) ")).expect("valid"));
    static TIME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r" ([0-9]?[0-9]):([0-9][0-9])(:([0-9][0-9]))? ").expect("valid"));
    static NUMERIC_ZONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r" ([-+][0-9]{4}) ").expect("valid"));
    static NAMED_ZONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?-u:\b)([A-Z]{2,4}(?:-DST)?)(?-u:\b)").expect("valid"));

    let spaced = format!(" {text} ");
    let mut s = SPACES.replace_all(&COMMAS.replace_all(&spaced, " "), " ").into_owned();
    // (pattern, capture groups of day, month and year); the last one has a short year.
    let forms: [(&Regex, [usize; 3]); 3] = [(&DMY, [1, 2, 3]), (&MDY, [2, 1, 3]), (&DMY_SHORT, [1, 2, 3])];
    let (form, [day, month, year]) = forms.iter().enumerate().find_map(|(i, (re, [d, m, y]))| {
        re.captures(&s).map(|c| (i, [c[*d].to_string(), c[*m].to_ascii_lowercase(), c[*y].to_string()]))
    })?;
    s = forms[form].0.replace(&s, " ").into_owned();
    let short_year = form == forms.len() - 1;
    let mut yyyy: i64 = year.parse().ok()?;
    if short_year {
        yyyy += if year.len() == 2 && yyyy < 50 { 2000 } else { 1900 };
    }
    let (mut hh, mut mm, mut ss) = (0i64, 0i64, 0i64);
    if let Some(c) = TIME.captures(&s) {
        hh = c[1].parse().unwrap_or(0);
        mm = c[2].parse().unwrap_or(0);
        ss = c.get(4).and_then(|m| m.as_str().parse().ok()).unwrap_or(0);
        s = TIME.replace(&s, " ").into_owned();
    }
    let zone = if let Some(c) = NUMERIC_ZONE.captures(&s) {
        Some(c[1].to_string())
    } else {
        NAMED_ZONE.captures(&s).and_then(|c| named_zone(&c[1])).map(str::to_string)
    };
    let mut mmm = month_number(&month)?;
    let mut dd: i64 = day.parse().ok()?;
    ss = ss.min(59);
    mm = mm.min(59);
    hh = hh.min(23);
    if dd > days_in_month(mmm, yyyy) {
        dd = 1;
        mmm += 1;
        if mmm > 12 {
            mmm = 1;
            yyyy += 1;
        }
    }
    yyyy = yyyy.clamp(1970, 2037);
    if dd < 1 {
        return None; // Time::Local refuses day 0
    }
    let mut time = days_from_civil(yyyy, mmm, dd) * 86_400 + hh * 3600 + mm * 60 + ss;
    if let Some(zone) = zone {
        let sign = zone.as_bytes()[0];
        let digits: i64 = zone[1..].parse().unwrap_or(0);
        let offset = ((digits / 100) * 60 + digits % 100) * 60;
        if sign == b'-' {
            time += offset;
        } else if time < offset {
            time = 0;
        } else {
            time -= offset;
        }
    }
    Some(time)
}

fn month_number(mon: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    MONTHS.iter().position(|m| *m == mon).map(|i| i as i64 + 1)
}

fn days_in_month(month: i64, year: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The zones SpamAssassin knows by name, as offsets.
fn named_zone(name: &str) -> Option<&'static str> {
    Some(match name {
        "UT" | "UTC" | "GMT" | "WET" => "+0000",
        "NDT" => "-0230",
        "AST" => "-0400",
        "ADT" => "-0300",
        "NST" => "-0330",
        "EST" => "-0500",
        "EDT" => "-0400",
        "CST" => "-0600",
        "CDT" => "-0500",
        "MST" => "-0700",
        "MDT" => "-0600",
        "PST" => "-0800",
        "PDT" => "-0700",
        "HST" | "HAST" => "-1000",
        "AKST" | "HADT" => "-0900",
        "AKDT" => "-0800",
        "BST" | "IST" | "WEST" | "CET" | "MET" | "MEZ" => "+0100",
        "CEST" | "EET" | "MEST" | "MESZ" => "+0200",
        "EEST" | "MSK" | "IDT" => "+0300",
        "MSD" => "+0400",
        "BRST" => "-0200",
        "BRT" => "-0300",
        "AEST" => "+1000",
        "AEDT" => "+1100",
        "ACST" => "+0930",
        "ACDT" => "+1030",
        "AWST" | "HKT" | "SGT" | "PHT" => "+0800",
        "NZST" => "+1200",
        "NZDT" => "+1300",
        "JST" | "KST" => "+0900",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    impl EvalFn {
        fn hits(&self, msg: &ParsedMessage) -> bool {
            self.hit(&EvalCx::new(msg, &EvalConfig::default()))
        }
    }

    fn msg(text: &str) -> ParsedMessage {
        ParsedMessage::parse(text.replace('\n', "\r\n").as_bytes())
    }

    #[test]
    fn calls_are_parsed_and_unknown_ones_named() {
        assert_eq!(EvalFn::parse("check_for_mime_html_only()"), Ok(EvalFn::MimeHtmlOnly));
        assert_eq!(
            EvalFn::parse("check_for_shifted_date('-6', '-3')"),
            Ok(EvalFn::ShiftedDate { min_hours: Some(-6.0), max_hours: Some(-3.0) })
        );
        assert_eq!(
            EvalFn::parse("check_for_shifted_date('undef', '-96')"),
            Ok(EvalFn::ShiftedDate { min_hours: None, max_hours: Some(-96.0) })
        );
        assert!(EvalFn::parse("check_razor2()").unwrap_err().contains("check_razor2"));
        assert!(
            matches!(EvalFn::parse(r"html_text_match('comment', '<!(?!-).{0,6}>')"), Ok(EvalFn::HtmlTextMatch { .. })),
            "commas inside a quoted argument"
        );
        assert!(EvalFn::parse("check_for_shifted_date('x', '1')").is_err());
        assert!(EvalFn::parse("nonsense").is_err());
    }

    #[test]
    fn dates_are_read_as_spamassassin_reads_them() {
        assert_eq!(parse_rfc822_date("Mon, 22 Jul 2002 08:06:38 -0500 (CDT)"), Some(1_027_343_198));
        assert_eq!(parse_rfc822_date("22 Jul 2002 08:06:38 CDT"), Some(1_027_343_198), "a named zone");
        // asctime style: SpamAssassin's pattern swallows the time with the date, so midnight UTC.
        assert_eq!(parse_rfc822_date("Mon Jul 22 13:06:38 2002"), Some(1_027_296_000));
        assert_eq!(parse_rfc822_date("22 Jul 02 13:06:38 +0000"), Some(1_027_343_198), "two-digit year");
        assert_eq!(parse_rfc822_date("31 Feb 2002 00:00:00 +0000"), parse_rfc822_date("1 Mar 2002 00:00:00 +0000"), "day overflow");
        assert_eq!(parse_rfc822_date("no date here"), None);
        // Octets, as Perl reads a header: a non-ASCII letter is not a word character, so the
        // zone after it is still a word of its own; a non-ASCII space does not separate.
        assert_eq!(parse_rfc822_date("22 Jul 2002 08:06:38 \u{e9}CDT"), Some(1_027_343_198), "zone after a non-ASCII letter");
        assert_eq!(parse_rfc822_date("22\u{a0}Jul 2002 08:06:38 +0000"), None, "no-break space is not a space");
        assert_eq!(parse_rfc822_date("22 jUL 2002 08:06:38 +0000"), Some(1_027_325_198), "months in any case");
    }

    #[test]
    fn html_only_and_all_caps_subjects() {
        let html = msg("Subject: x\nContent-Type: text/html\n\n<p>hi</p>\n");
        assert!(EvalFn::MimeHtmlOnly.hits(&html));
        let alternative = msg(
            "Subject: x\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: text/html\n\n<p>hi</p>\n--b--\n",
        );
        assert!(!EvalFn::MimeHtmlOnly.hits(&alternative));
        assert!(EvalFn::SubjectAllCaps.hits(&msg("Subject: Re: FREE MONEY NOW\n\nx\n")));
        assert!(!EvalFn::SubjectAllCaps.hits(&msg("Subject: FREEMONEYNOW\n\nx\n")), "one word");
        assert!(!EvalFn::SubjectAllCaps.hits(&msg("Subject: Free money now\n\nx\n")));
        assert!(!EvalFn::SubjectAllCaps.hits(&msg("Subject: =?koi8-r?B?8NLJ18XU?= AND MORE\n\nx\n")), "charsets that look capitalised");
    }

    #[test]
    fn shifted_dates_compare_the_date_with_the_closest_received_time() {
        let m = msg("Received: from a by b; Mon, 22 Jul 2002 08:06:38 -0500\nDate: Mon, 22 Jul 2002 16:06:38 -0500\nSubject: x\n\nx\n");
        let future = |min, max| EvalFn::ShiftedDate { min_hours: Some(min), max_hours: Some(max) };
        assert!(future(6.0, 12.0).hits(&m), "8 hours ahead");
        assert!(!future(3.0, 6.0).hits(&m));
        let unknown = msg("Date: Mon, 22 Jul 2002 16:06:38 -0500\nSubject: x\n\nx\n");
        assert_eq!(date_diff(&unknown), 0, "no Received time: no difference");
    }

    #[test]
    fn outlook_ids_must_fit_the_date() {
        // Token for 22 Jul 2002 13:06:38 UTC: int(1027343198 * x + y).
        let token = (1_027_343_198f64 * 0.002_328_306_436_538_7 + 27_111_902.832_984_9) as i64;
        let id = format!("<0000{token:08x}$0000abcd$00001234@host>");
        let fits = msg(&format!("Message-ID: {id}\nDate: Mon, 22 Jul 2002 13:06:38 +0000\nSubject: x\n\nx\n"));
        assert!(!EvalFn::OutlookMessageId.hits(&fits));
        let forged = msg(&format!("Message-ID: {id}\nDate: Mon, 22 Jul 2005 13:06:38 +0000\nSubject: x\n\nx\n"));
        assert!(EvalFn::OutlookMessageId.hits(&forged));
        assert!(!EvalFn::OutlookMessageId.hits(&msg("Message-ID: <abc@host>\nSubject: x\n\nx\n")), "not Outlook's format");
    }
}
