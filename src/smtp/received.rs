//! The one `Received:` trace header moat prepends to each accepted message (RFC 5321 §4.4).
//!
//! Layout, one clause per line, each line folded further if it would pass 78 characters
//! (continuation lines start with a tab, shown here as spaces):
//! ```text
//! Received: from mail.example.org (mail.example.org [192.0.2.1])
//!     (using TLS version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384)
//!     by mx.moat.test (moat) with ESMTPS id 01ABC
//!     for <user@example.test>; Mon, 23 Nov 2026 09:00:00 +0000
//! ```
//! Guarantees:
//! * Every line ends in CRLF and every continuation line starts with a tab (RFC 5322 §2.2.3 folding),
//!   so no input can start a new header field.
//! * Client-supplied text (the HELO argument, the reverse-DNS name) is reduced to characters that are
//!   legal in a domain or address literal; anything else becomes `?`. No CR, LF, control character,
//!   parenthesis or `;` from the client reaches the header. Each field has a length bound.
//! * IPv4-mapped IPv6 clients are written as IPv4; IPv6 as `[IPv6:…]` (RFC 5321 §4.1.3).
//! * Protocol names come from RFC 3848 and RFC 6531.
//! * Pure and total: no I/O, no panics.

use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, FixedOffset};

/// Lines are folded before they would pass this many characters (RFC 5322 §2.1.1).
const MAX_LINE: usize = 78;
/// Longest HELO argument kept; a legal domain is at most 255 characters but real ones are short.
const MAX_HELO: usize = 128;
/// Longest host name (ours or the client's reverse-DNS name) kept.
const MAX_HOST: usize = 255;
/// Longest queue id kept.
const MAX_ID: usize = 64;
/// Longest TLS description kept.
const MAX_TLS: usize = 200;
/// Longest recipient kept: a quoted 64-octet local part, `@`, a 255-octet domain.
const MAX_RCPT: usize = 330;

/// The `with` protocol name (RFC 3848 §2, RFC 6531 §3.7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HELO.
    Smtp,
    /// EHLO.
    Esmtp,
    /// EHLO and STARTTLS.
    Esmtps,
    /// EHLO and SMTPUTF8.
    Utf8Smtp,
    /// EHLO, STARTTLS and SMTPUTF8.
    Utf8Smtps,
}

impl Protocol {
    /// The registered name as written after `with`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Smtp => "SMTP",
            Protocol::Esmtp => "ESMTP",
            Protocol::Esmtps => "ESMTPS",
            Protocol::Utf8Smtp => "UTF8SMTP",
            Protocol::Utf8Smtps => "UTF8SMTPS",
        }
    }
}

/// What the trace header records about one accepted message.
#[derive(Debug, Clone)]
pub struct ReceivedInfo<'a> {
    /// The HELO/EHLO argument, exactly as the client sent it (sanitized here).
    pub helo: &'a str,
    /// The client's IP address (from the socket or the PROXY header).
    pub client_ip: IpAddr,
    /// The client's verified reverse-DNS name, if any.
    pub client_name: Option<&'a str>,
    /// Our host name.
    pub by: &'a str,
    /// How the message came in.
    pub protocol: Protocol,
    /// TLS parameters when the session used TLS, e.g. `version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384`.
    pub tls: Option<&'a str>,
    /// Our queue id for the message.
    pub id: &'a str,
    /// The recipient, only when the message has exactly one (naming one of several would leak it to the others).
    pub for_recipient: Option<&'a str>,
    /// When the message was received.
    pub date: DateTime<FixedOffset>,
}

/// Renders the complete header field, `Received: …` through the final CRLF.
pub fn received_header(info: &ReceivedInfo) -> String {
    fold(&clauses(info))
}

/// The header's clauses, each a list of words that may be separated by folding whitespace. A keyword
/// and its value (`from x`, `by y`, `id z`, `for <r>;`) form one word, so they never part.
fn clauses(info: &ReceivedInfo) -> Vec<Vec<String>> {
    let mut out = vec![from_clause(info)];
    if let Some(tls) = info.tls {
        out.push(tls_clause(tls));
    }
    let mut by = by_clause(info);
    let date = date_text(&info.date);
    match info.for_recipient {
        Some(rcpt) => {
            out.push(by);
            out.push(vec![format!("for <{}>;", clean_recipient(rcpt)), date]);
        }
        None => {
            if let Some(last) = by.last_mut() {
                last.push(';');
            }
            by.push(date);
            out.push(by);
        }
    }
    out
}

/// `from helo (name [ip])`, or `from helo ([ip])` without a reverse-DNS name.
fn from_clause(info: &ReceivedInfo) -> Vec<String> {
    let helo = clean(info.helo, MAX_HELO, is_helo_char);
    let literal = address_literal(info.client_ip);
    match info.client_name {
        Some(name) => vec![format!("from {helo}"), format!("({}", clean(name, MAX_HOST, is_host_char)), format!("{literal})")],
        None => vec![format!("from {helo}"), format!("({literal})")],
    }
}

/// `(using TLS …)`, the description split into words at whitespace.
fn tls_clause(tls: &str) -> Vec<String> {
    let mut words: Vec<String> = vec!["(using".into(), "TLS".into()];
    let mut budget = MAX_TLS;
    for word in tls.split_whitespace() {
        if word.len() > budget {
            break;
        }
        budget -= word.len();
        words.push(word.chars().map(comment_char).collect());
    }
    if let Some(last) = words.last_mut() {
        last.push(')');
    }
    words
}

/// `by host (moat) with PROTO id X`; the id is left out when empty.
fn by_clause(info: &ReceivedInfo) -> Vec<String> {
    let mut words =
        vec![format!("by {}", clean(info.by, MAX_HOST, is_host_char)), "(moat)".into(), "with".into(), info.protocol.as_str().into()];
    if !info.id.is_empty() {
        words.push(format!("id {}", clean(info.id, MAX_ID, is_host_char)));
    }
    words
}

/// RFC 5322 date-time, e.g. `Mon, 23 Nov 2026 09:00:00 +0000`.
fn date_text(date: &DateTime<FixedOffset>) -> String {
    let mut out = String::new();
    // A formatting error would leave the text short; it cannot panic.
    let _ = write!(out, "{}", date.format("%a, %d %b %Y %H:%M:%S %z"));
    out
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`; IPv4-mapped IPv6 is written as IPv4.
fn address_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// Keeps up to `max` characters, replacing any that `allowed` refuses with `?`; empty becomes `unknown`.
fn clean(text: &str, max: usize, allowed: fn(char) -> bool) -> String {
    let out: String = text.chars().take(max).map(|c| if allowed(c) { c } else { '?' }).collect();
    if out.is_empty() { "unknown".into() } else { out }
}

/// Characters of a domain or an address literal (`[IPv6:…]`).
fn is_helo_char(c: char) -> bool {
    is_host_char(c) || matches!(c, ':' | '[' | ']')
}

/// Characters of a host name (underscore kept: it shows up in real PTR records).
fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// Characters safe inside a comment: printable ASCII other than parentheses and backslash.
fn comment_char(c: char) -> char {
    if c.is_ascii_graphic() && !matches!(c, '(' | ')' | '\\') { c } else { '?' }
}

/// The recipient as checked by the address module, bounded. Controls, line breaks and angle
/// brackets are replaced anyway, so the path cannot end early or break the line.
fn clean_recipient(rcpt: &str) -> String {
    let mut out = String::new();
    for c in rcpt.chars() {
        if out.len() + c.len_utf8() > MAX_RCPT {
            break;
        }
        let safe =
            if c.is_ascii() { c == ' ' || (c.is_ascii_graphic() && c != '<' && c != '>') } else { !c.is_control() && !c.is_whitespace() };
        out.push(if safe { c } else { '?' });
    }
    out
}

/// Joins the clauses: each clause starts a new line; inside a clause, words are joined by a space
/// and wrapped onto a new tab-indented line when the line would pass [`MAX_LINE`].
fn fold(clauses: &[Vec<String>]) -> String {
    let mut out = String::from("Received:");
    let mut line_len = out.len();
    let mut line_has_word = false;
    for (i, clause) in clauses.iter().enumerate() {
        for (j, word) in clause.iter().enumerate() {
            let new_clause = i > 0 && j == 0;
            let too_long = line_len + 1 + word.len() > MAX_LINE;
            if new_clause || (too_long && line_has_word) {
                out.push_str("\r\n\t");
                line_len = 1;
            } else {
                out.push(' ');
                line_len += 1;
            }
            out.push_str(word);
            line_len += word.len();
            line_has_word = true;
        }
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn date() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-23T09:00:00+00:00").unwrap_or_default()
    }

    fn typical() -> ReceivedInfo<'static> {
        ReceivedInfo {
            helo: "mail.example.org",
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            client_name: Some("mail.example.org"),
            by: "mx.moat.test",
            protocol: Protocol::Esmtps,
            tls: Some("version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384"),
            id: "01JDQ3ZK5V",
            for_recipient: Some("user@example.test"),
            date: date(),
        }
    }

    /// Each line ends in CRLF, is at most `max` long, and only the first starts without a tab.
    fn assert_well_formed(h: &str, max: usize) {
        assert!(h.starts_with("Received: "), "{h:?}");
        assert!(h.ends_with("\r\n"), "{h:?}");
        let body = &h[..h.len() - 2];
        for (n, line) in body.split("\r\n").enumerate() {
            assert!(!line.contains(['\r', '\n']), "bare CR or LF in {line:?}");
            assert!(line.len() <= max, "line too long: {line:?}");
            assert!(!line.trim().is_empty(), "blank line in {h:?}");
            if n > 0 {
                assert!(line.starts_with('\t'), "continuation without tab: {line:?}");
            }
        }
        assert!(!h.chars().any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t')));
    }

    #[test]
    fn typical_case_exact() {
        let h = received_header(&typical());
        assert_eq!(
            h,
            "Received: from mail.example.org (mail.example.org [192.0.2.1])\r\n\
             \t(using TLS version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384)\r\n\
             \tby mx.moat.test (moat) with ESMTPS id 01JDQ3ZK5V\r\n\
             \tfor <user@example.test>; Mon, 23 Nov 2026 09:00:00 +0000\r\n"
        );
        assert_well_formed(&h, MAX_LINE);
    }

    #[test]
    fn plain_esmtp_without_name_or_recipient() {
        let info = ReceivedInfo {
            client_name: None,
            protocol: Protocol::Esmtp,
            tls: None,
            for_recipient: None,
            date: DateTime::parse_from_rfc3339("2026-03-05T17:04:09-05:00").unwrap_or_default(),
            ..typical()
        };
        let h = received_header(&info);
        assert_eq!(
            h,
            "Received: from mail.example.org ([192.0.2.1])\r\n\
             \tby mx.moat.test (moat) with ESMTP id 01JDQ3ZK5V;\r\n\
             \tThu, 05 Mar 2026 17:04:09 -0500\r\n"
        );
        assert_well_formed(&h, MAX_LINE);
    }

    #[test]
    fn ipv6_client() {
        let info = ReceivedInfo {
            helo: "[IPv6:2001:db8::25]",
            client_ip: "2001:db8::25".parse().unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            client_name: None,
            protocol: Protocol::Utf8Smtps,
            ..typical()
        };
        let h = received_header(&info);
        assert!(h.starts_with("Received: from [IPv6:2001:db8::25] ([IPv6:2001:db8::25])\r\n"), "{h}");
        assert!(h.contains("with UTF8SMTPS id"));
        assert_well_formed(&h, MAX_LINE);
    }

    #[test]
    fn ipv4_mapped_client_is_written_as_ipv4() {
        let info = ReceivedInfo { client_ip: IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped()), ..typical() };
        assert!(received_header(&info).contains("[192.0.2.9])"));
    }

    #[test]
    fn hostile_helo_cannot_inject_a_header() {
        let info = ReceivedInfo { helo: "x\r\nBcc: evil@example.net", ..typical() };
        let h = received_header(&info);
        assert!(h.starts_with("Received: from x??Bcc:?evil?example.net (mail.example.org"));
        assert!(!h.contains("\r\nBcc"));
        assert_well_formed(&h, MAX_LINE);
    }

    #[test]
    fn hostile_fields_are_neutralised() {
        let info = ReceivedInfo {
            helo: "a) (b; c\\d\0\u{7f}\u{2028}é",
            client_name: Some("ptr\r\n.example(x)"),
            tls: Some("cipher=(x)\r\nX-Evil: 1"),
            id: "id\r\nX: y",
            for_recipient: Some("u\r\n@example.test>\0"),
            ..typical()
        };
        let h = received_header(&info);
        assert_well_formed(&h, MAX_LINE);
        assert!(h.contains("from a???b??c?d???? ("), "{h}");
        assert!(h.contains("(ptr??.example?x? [192.0.2.1])"), "{h}");
        assert!(h.contains("cipher=?x?"), "{h}");
        assert!(h.contains("id id??X??y"), "{h}");
        assert!(h.contains("for <u??@example.test??>;"), "{h}");
        // Parentheses stay balanced: only ours are present.
        assert_eq!(h.matches('(').count(), h.matches(')').count());
    }

    #[test]
    fn quoted_recipient_keeps_its_quotes() {
        let info = ReceivedInfo { for_recipient: Some("\"john doe\"@example.test"), ..typical() };
        assert!(received_header(&info).contains("\tfor <\"john doe\"@example.test>; "));
    }

    #[test]
    fn long_names_fold_and_are_bounded() {
        let helo = "h".repeat(1000);
        let name = format!("{}.example", "n".repeat(60));
        let info = ReceivedInfo { helo: &helo, client_name: Some(&name), ..typical() };
        let h = received_header(&info);
        assert!(h.contains(&format!("from {}\r\n", "h".repeat(MAX_HELO))), "{h}");
        assert!(h.contains(&format!("\t({name}\r\n\t[192.0.2.1])\r\n")), "{h}");
        // The 128-character HELO itself cannot be folded; everything stays under RFC 5322's 998.
        assert_well_formed(&h, 998);
    }

    #[test]
    fn empty_fields_do_not_leave_gaps() {
        let info = ReceivedInfo { helo: "", client_name: Some(""), by: "", tls: Some(""), id: "", ..typical() };
        let h = received_header(&info);
        assert_well_formed(&h, MAX_LINE);
        assert!(h.starts_with("Received: from unknown (unknown [192.0.2.1])\r\n\t(using TLS)\r\n"));
        assert!(h.contains("\tby unknown (moat) with ESMTPS\r\n"), "{h}");
    }

    #[test]
    fn protocol_names() {
        let all = [
            (Protocol::Smtp, "SMTP"),
            (Protocol::Esmtp, "ESMTP"),
            (Protocol::Esmtps, "ESMTPS"),
            (Protocol::Utf8Smtp, "UTF8SMTP"),
            (Protocol::Utf8Smtps, "UTF8SMTPS"),
        ];
        for (p, name) in all {
            assert_eq!(p.as_str(), name);
        }
    }
}
