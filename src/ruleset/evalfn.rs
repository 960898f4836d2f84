//! SpamAssassin `eval:` functions that moat runs itself: its own code, under the names the
//! plugins give them, so the stock `.cf` files' rules that call them load and run.
//!
//! Chosen by what they catch on real mail (the stock rules' hits on the SpamAssassin public
//! corpus, README: Rule engine): `check_for_mime_html_only` (MIMEEval), `subject_is_all_caps`,
//! `check_outlook_message_id` and `check_for_shifted_date` (HeaderEval). Each follows the
//! plugin's semantics, quirks included (the agreement test with SpamAssassin checks them side by
//! side); [`parse_rfc822_date`] is SpamAssassin's lenient date reader. A call moat does not know
//! is an error naming it, so the rule is skipped and reported like any other it cannot run.
//! Evaluation reads the prepared [`ParsedMessage`] only; it never panics.

use std::sync::LazyLock;

use regex::Regex;

use super::header::Modifier;
use super::message::ParsedMessage;

/// One `eval:` call moat can run.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalFn {
    /// `check_for_mime_html_only()`: HTML and no other text part.
    MimeHtmlOnly,
    /// `subject_is_all_caps()`: a subject of several words, all letters capitals.
    SubjectAllCaps,
    /// `check_outlook_message_id()`: an Outlook Express style Message-ID whose time token fits
    /// neither the Date nor the Received time.
    OutlookMessageId,
    /// `check_for_shifted_date(MIN, MAX)`: the Date header is between MIN and MAX hours after
    /// (negative: before) the closest Received time; `undef` is no bound.
    ShiftedDate { min_hours: Option<f64>, max_hours: Option<f64> },
}

impl EvalFn {
    /// The function `call` (the text after `eval:`, e.g. `check_for_shifted_date('-6', '-3')`)
    /// names, or why moat cannot run it.
    pub fn parse(call: &str) -> Result<EvalFn, String> {
        let call = call.trim();
        let (name, rest) = call.split_once('(').ok_or_else(|| format!("eval:{call}: not a function call"))?;
        let args = rest.trim_end().strip_suffix(')').ok_or_else(|| format!("eval:{call}: no closing parenthesis"))?;
        let args: Vec<&str> = args.split(',').map(|a| a.trim().trim_matches(|c| c == '\'' || c == '"')).filter(|a| !a.is_empty()).collect();
        let name = name.trim();
        match (name, args.as_slice()) {
            ("check_for_mime_html_only", []) => Ok(EvalFn::MimeHtmlOnly),
            ("subject_is_all_caps", []) => Ok(EvalFn::SubjectAllCaps),
            ("check_outlook_message_id", []) => Ok(EvalFn::OutlookMessageId),
            ("check_for_shifted_date", [min, max]) => {
                Ok(EvalFn::ShiftedDate { min_hours: hours_bound(min, call)?, max_hours: hours_bound(max, call)? })
            }
            _ => Err(format!("eval:{name} (needs SpamAssassin plugin code moat does not have)")),
        }
    }

    /// Whether the rule hits `msg`.
    pub fn hit(&self, msg: &ParsedMessage) -> bool {
        match self {
            EvalFn::MimeHtmlOnly => mime_html_only(msg),
            EvalFn::SubjectAllCaps => subject_all_caps(msg),
            EvalFn::OutlookMessageId => outlook_message_id_invalid(msg),
            EvalFn::ShiftedDate { min_hours, max_hours } => {
                let diff = *msg.date_shift.get_or_init(|| date_diff(msg)) as f64;
                min_hours.is_none_or(|min| diff >= 3600.0 * min) && max_hours.is_none_or(|max| diff < 3600.0 * max)
            }
        }
    }
}

fn hours_bound(arg: &str, call: &str) -> Result<Option<f64>, String> {
    if arg == "undef" {
        return Ok(None);
    }
    arg.parse::<f64>().map(Some).map_err(|_| format!("eval:{call}: {arg:?} is not a number of hours or undef"))
}

fn mime_html_only(msg: &ParsedMessage) -> bool {
    let top = msg.header_value("content-type", Modifier::Decoded).unwrap_or_default();
    if top.trim_start().to_ascii_lowercase().starts_with("text/html") {
        return true;
    }
    msg.stats.declared_html > 0 && msg.stats.declared_other_text == 0
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
        Regex::new(r"\bfrom (?:localhost\s|(?:\S+ ){1,2}\S*\b127\.0\.0\.1\b)|qmail \d+ invoked by uid \d+").expect("valid")
    });
    static FETCHMAIL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bby localhost with \w+ \(fetchmail-[\d.]+").expect("valid"));
    static DATE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\s.?\d+ \S\S\S \d+ \d+:\d+:\d+ \S+)").expect("valid"));
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
/// Seconds since the epoch, or None when no date is found.
pub fn parse_rfc822_date(text: &str) -> Option<i64> {
    static COMMAS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r", *").expect("valid"));
    static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("valid"));
    const MON: &str = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
    static DMY: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!(r"(?i) (\d+) {MON} (\d{{4}}) ")).expect("valid"));
    static MDY: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!(r"(?i) {MON} +(\d+) \d+:\d+:\d+ (\d{{4}}) ")).expect("valid"));
    static DMY_SHORT: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!(r"(?i) (\d+) {MON} (\d{{2,3}}) ")).expect("valid"));
    static TIME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r" (\d?\d):(\d\d)(:(\d\d))? ").expect("valid"));
    static NUMERIC_ZONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r" ([-+]\d{4}) ").expect("valid"));
    static NAMED_ZONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b([A-Z]{2,4}(?:-DST)?)\b").expect("valid"));

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
        assert!(EvalFn::parse("check_freemail_from()").unwrap_err().contains("check_freemail_from"));
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
    }

    #[test]
    fn html_only_and_all_caps_subjects() {
        let html = msg("Subject: x\nContent-Type: text/html\n\n<p>hi</p>\n");
        assert!(EvalFn::MimeHtmlOnly.hit(&html));
        let alternative = msg(
            "Subject: x\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: text/html\n\n<p>hi</p>\n--b--\n",
        );
        assert!(!EvalFn::MimeHtmlOnly.hit(&alternative));
        assert!(EvalFn::SubjectAllCaps.hit(&msg("Subject: Re: FREE MONEY NOW\n\nx\n")));
        assert!(!EvalFn::SubjectAllCaps.hit(&msg("Subject: FREEMONEYNOW\n\nx\n")), "one word");
        assert!(!EvalFn::SubjectAllCaps.hit(&msg("Subject: Free money now\n\nx\n")));
        assert!(!EvalFn::SubjectAllCaps.hit(&msg("Subject: =?koi8-r?B?8NLJ18XU?= AND MORE\n\nx\n")), "charsets that look capitalised");
    }

    #[test]
    fn shifted_dates_compare_the_date_with_the_closest_received_time() {
        let m = msg("Received: from a by b; Mon, 22 Jul 2002 08:06:38 -0500\nDate: Mon, 22 Jul 2002 16:06:38 -0500\nSubject: x\n\nx\n");
        let future = |min, max| EvalFn::ShiftedDate { min_hours: Some(min), max_hours: Some(max) };
        assert!(future(6.0, 12.0).hit(&m), "8 hours ahead");
        assert!(!future(3.0, 6.0).hit(&m));
        let unknown = msg("Date: Mon, 22 Jul 2002 16:06:38 -0500\nSubject: x\n\nx\n");
        assert_eq!(date_diff(&unknown), 0, "no Received time: no difference");
    }

    #[test]
    fn outlook_ids_must_fit_the_date() {
        // Token for 22 Jul 2002 13:06:38 UTC: int(1027343198 * x + y).
        let token = (1_027_343_198f64 * 0.002_328_306_436_538_7 + 27_111_902.832_984_9) as i64;
        let id = format!("<0000{token:08x}$0000abcd$00001234@host>");
        let fits = msg(&format!("Message-ID: {id}\nDate: Mon, 22 Jul 2002 13:06:38 +0000\nSubject: x\n\nx\n"));
        assert!(!EvalFn::OutlookMessageId.hit(&fits));
        let forged = msg(&format!("Message-ID: {id}\nDate: Mon, 22 Jul 2005 13:06:38 +0000\nSubject: x\n\nx\n"));
        assert!(EvalFn::OutlookMessageId.hit(&forged));
        assert!(!EvalFn::OutlookMessageId.hit(&msg("Message-ID: <abc@host>\nSubject: x\n\nx\n")), "not Outlook's format");
    }
}
