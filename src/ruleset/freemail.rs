//! SpamAssassin's FreeMail checks: is a sender's address at a free mail provider
//! (`freemail_domains`, wildcards allowed, minus `freemail_welcomelist` and the plugin's own
//! list of role and bounce addresses), for `check_freemail_from`, `check_freemail_header` and
//! `check_freemail_replyto`.
//!
//! moat's own code following `Mail::SpamAssassin::Plugin::FreeMail` (4.0): the same address
//! sources (all `*From` headers and the envelope sender for `check_freemail_from`), the same
//! comparison of Reply-To, From and the addresses written in the body, the same limits (a body
//! with 5 or more addresses, or 3 or more free mail ones, is not compared). The domain list is
//! read from the rule files by `cf`; without one the checks never hit, as in SpamAssassin.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

use super::header::Modifier;
use super::message::ParsedMessage;

/// Unique addresses in the body at which the body is not compared (SpamAssassin's
/// `freemail_max_body_emails`), and unique free mail addresses (`freemail_max_body_freemails`).
const MAX_BODY_EMAILS: usize = 5;
const MAX_BODY_FREEMAILS: usize = 3;

/// The free mail domains and exceptions the rule files list.
#[derive(Debug, Default, Clone)]
pub struct FreemailConfig {
    domains: HashSet<String>,
    /// Patterns with `*` (any run without a dot) and `?` (any one character).
    wildcards: Vec<String>,
    welcomelist: HashSet<String>,
}

impl FreemailConfig {
    /// Adds the words of a `freemail_domains` line; a word with other characters than letters,
    /// digits, `.`, `-`, `*` and `?` is returned as invalid.
    pub fn add_domains(&mut self, line: &str) -> Vec<String> {
        let mut invalid = Vec::new();
        for word in line.split_whitespace() {
            if !word.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '*' | '?' | '-')) {
                invalid.push(word.to_string());
                continue;
            }
            let word = word.to_ascii_lowercase();
            if word.contains(['*', '?']) {
                self.wildcards.push(word);
            } else {
                self.domains.insert(word);
            }
        }
        invalid
    }

    /// Adds the words of a `freemail_welcomelist` line (addresses or domains).
    pub fn add_welcomelist(&mut self, line: &str) -> Vec<String> {
        let mut invalid = Vec::new();
        for word in line.split_whitespace() {
            let lower = word.to_lowercase();
            let b: Vec<char> = lower.chars().collect();
            let ok = b.windows(3).any(|w| is_word(w[0]) && matches!(w[1], '.' | '@') && is_word(w[2]));
            if ok {
                self.welcomelist.insert(lower);
            } else {
                invalid.push(word.to_string());
            }
        }
        invalid
    }

    /// Whether any domain is listed (the plugin is off without).
    pub fn available(&self) -> bool {
        !self.domains.is_empty() || !self.wildcards.is_empty()
    }

    /// SpamAssassin's `_is_freemail` for a lower-cased address.
    pub fn is_freemail(&self, email: &str) -> bool {
        static ROLE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(
                r"(?i)^(?:abuse|support|sales|info|helpdesk|contact|kontakt|(?:post|host|domain)master|undisclosed.*|request-[a-f0-9]{16}|bounced?-|[a-f0-9]{8}(?:\.[a-f0-9]{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})|.+=.+=.+)@",
            )
            .expect("valid")
        });
        if email.is_empty() || self.welcomelist.contains(email) {
            return false;
        }
        let domain = email.rsplit_once('@').map_or(email, |(_, d)| d);
        if self.welcomelist.contains(domain) || ROLE.is_match(email) {
            return false;
        }
        self.domains.contains(domain) || (email.contains('@') && self.wildcards.iter().any(|w| glob(w.as_bytes(), domain.as_bytes())))
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `*` matches a run without dots, `?` any one byte.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => {
            let run = text.iter().take_while(|&&c| c != b'.').count();
            (0..=run).any(|k| glob(rest, &text[k..]))
        }
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// Every address in the named header field(s), lower-cased (SpamAssassin's `get("X:addr")`).
pub fn header_addrs(msg: &ParsedMessage, name: &str) -> Vec<String> {
    if name == "EnvelopeFrom" {
        return envelope_from(msg).map(|e| e.to_lowercase()).into_iter().collect();
    }
    let lower = name.to_ascii_lowercase();
    let key = match name {
        "ToCc" | "MESSAGEID" | "ALL" => name,
        _ => lower.as_str(),
    };
    let Some(values) = msg.header_value(key, Modifier::Decoded) else { return Vec::new() };
    values.split('\n').flat_map(addresses).map(|a| a.to_lowercase()).collect()
}

/// The addresses in one header value: `a@b`, `Name <a@b>`, lists and groups; comments and
/// quoted names skipped.
pub fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut piece = String::new();
    let (mut quoted, mut angle, mut comment) = (false, false, 0usize);
    let mut angled: Option<String> = None;
    let mut finish = |piece: &mut String, angled: &mut Option<String>| {
        let addr = angled.take().unwrap_or_else(|| piece.trim().to_string());
        let addr = addr.trim().trim_end_matches(';').trim();
        if addr.contains('@') && !addr.contains(char::is_whitespace) {
            out.push(addr.to_string());
        }
        piece.clear();
    };
    let mut current_angle = String::new();
    for c in value.chars() {
        match c {
            '"' if comment == 0 && !angle => quoted = !quoted,
            '(' if !quoted && !angle => comment += 1,
            ')' if !quoted && !angle && comment > 0 => comment -= 1,
            _ if quoted || comment > 0 => {}
            '<' => {
                angle = true;
                current_angle.clear();
            }
            '>' if angle => {
                angle = false;
                angled = Some(std::mem::take(&mut current_angle));
            }
            _ if angle => current_angle.push(c),
            ',' => finish(&mut piece, &mut angled),
            ':' if !piece.contains('@') => piece.clear(),
            ';' => finish(&mut piece, &mut angled),
            _ => piece.push(c),
        }
    }
    finish(&mut piece, &mut angled);
    out
}

/// The envelope sender as SpamAssassin finds it without a configured header: the SMTP one
/// when moat has it, else none when X-Sender and a fetchmail hop say the headers cannot be
/// trusted, else the first of X-Envelope-From, Envelope-Sender and Return-Path that no
/// Received field precedes.
pub fn envelope_from(msg: &ParsedMessage) -> Option<String> {
    if let Some(smtp) = msg.smtp_envelope_from() {
        return Some(smtp.to_string());
    }
    let first = |name: &str| {
        let v = msg.header_value(name, Modifier::Decoded)?;
        addresses(v.split('\n').next().unwrap_or("")).into_iter().next()
    };
    let received = msg.header_value("received", Modifier::Decoded).unwrap_or_default();
    if first("x-sender").is_some() && received.contains("(fetchmail") {
        return None;
    }
    let block = msg.header_value("ALL", Modifier::Raw).unwrap_or_default();
    let starts = |name: &str| -> Vec<usize> {
        let mut at = Vec::new();
        let mut offset = 0;
        for line in block.split_inclusive('\n') {
            if line.len() > name.len() && line.as_bytes()[..name.len()].eq_ignore_ascii_case(name.as_bytes()) {
                at.push(offset);
            }
            offset += line.len();
        }
        at
    };
    let first_received = starts("received:").first().copied();
    let after_received = |name: &str| first_received.is_some_and(|r| starts(name).iter().any(|&p| p > r));
    for (field, name) in [("x-envelope-from", "x-envelope-from:"), ("envelope-sender", "envelope-sender:"), ("return-path", "return-path:")]
    {
        if let Some(addr) = first(field) {
            if after_received(name) {
                if field == "x-envelope-from" {
                    return None;
                }
                continue;
            }
            return Some(addr);
        }
    }
    None
}

/// SpamAssassin's `all_from_addrs`: Resent-From when present, else From, Envelope-Sender,
/// Resent-Sender, X-Envelope-From and the envelope sender; repeated dots squeezed, unique.
pub fn all_from_addrs(msg: &ParsedMessage) -> Vec<String> {
    let resent = header_addrs(msg, "Resent-From");
    let addrs: Vec<String> = if let Some(first) = resent.into_iter().next() {
        vec![first]
    } else {
        ["From", "Envelope-Sender", "Resent-Sender", "X-Envelope-From", "EnvelopeFrom"].iter().flat_map(|h| header_addrs(msg, h)).collect()
    };
    let mut seen = HashSet::new();
    addrs.into_iter().map(|a| squeeze_dots(&a)).filter(|a| !a.is_empty() && seen.insert(a.clone())).collect()
}

fn squeeze_dots(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '.' && out.ends_with('.') {
            continue;
        }
        out.push(c);
    }
    out
}

/// The free mail addresses written in the body (SpamAssassin's `_parse_body`), or None when
/// the body names too many addresses to compare.
pub fn body_freemails(cfg: &FreemailConfig, msg: &ParsedMessage, mailtos: &[String]) -> Option<Vec<String>> {
    let mut seen = HashSet::new();
    let mut emails = Vec::new();
    for m in mailtos {
        if let Some(e) = m.get(7..).and_then(|rest| EMAIL.find(rest).filter(|f| f.start() == 0)) {
            let e = e.as_str().to_lowercase();
            if seen.insert(e.clone()) {
                emails.push(e);
            }
            if emails.len() >= 20 {
                break;
            }
        }
    }
    'body: for line in msg.body_lines(true) {
        for e in body_line_emails(line) {
            if seen.insert(e.clone()) {
                emails.push(e);
            }
            if emails.len() >= 40 {
                break 'body;
            }
        }
    }
    let mut freemails = Vec::new();
    for (i, email) in emails.iter().enumerate() {
        if i + 1 == MAX_BODY_EMAILS {
            return None;
        }
        if !cfg.is_freemail(email) {
            continue;
        }
        freemails.push(email.clone());
        if freemails.len() == MAX_BODY_FREEMAILS {
            return None;
        }
    }
    Some(freemails)
}

/// The plugin's patterns read octets in Perl, so these are ASCII (`-u`, ASCII spaces): that is
/// also what keeps their counted repeats (`{0,255}`, `{0,59}`) small automata.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i-u)[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,59}[a-z0-9])?\.){1,4}[a-z]{2,63}",
    )
    .expect("valid")
});

/// Addresses in one body line, less those in URLs and those quoted as a `… wrote:` attribution
/// or closed by `>`, as the plugin strips them.
fn body_line_emails(line: &str) -> Vec<String> {
    static URL_WITH_AT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i-u:<?https?://)[^\t\n\x0B\f\r ]{0,255}(?:@|%40)[^\t\n\x0B\f\r ]{0,255}").expect("valid"));
    static TRAILER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i-u)^(?:>|[\t\n\x0B\f\r ]{1,10}([a-z]{2,11}):)").expect("valid"));
    static KEEP_WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i-u)^(?:fa(?:x|csi)|tel|phone|e?-?mail)").expect("valid"));
    if !line.contains('@') {
        return Vec::new();
    }
    let line = URL_WITH_AT.replace_all(line, " ");
    let mut out = Vec::new();
    for m in EMAIL.find_iter(&line) {
        let before = &line[..m.start()];
        if before.ends_with(|c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c)) {
            continue;
        }
        let local = m.as_str().split('@').next().unwrap_or("");
        if local.len() > 64 {
            continue;
        }
        let after = &line[m.end()..];
        let stripped = !before.to_ascii_lowercase().ends_with("mailto:")
            && TRAILER.captures(after).is_some_and(|c| c.get(1).is_none_or(|w| !KEEP_WORD.is_match(w.as_str())));
        if !stripped {
            out.push(m.as_str().to_lowercase());
        }
    }
    out
}

/// Envelope senders of bulk mail, for which `check_freemail_replyto` does not look.
pub fn bulk_envelope(envfrom: &str) -> bool {
    static BULK: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)(?:^(?:post|host|domain)master|^double-bounce|^(?:sentto|owner|return|(?:gr)?bounced?)-.+|-(?:request|bounces?|admin|owner)|\b(?:do[._-t]?)?no[._-t]?repl(?:y|ies)|.+=.+)@")
            .expect("valid")
    });
    BULK.is_match(envfrom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FreemailConfig {
        let mut c = FreemailConfig::default();
        assert!(c.add_domains("gmail.com yahoo.co.uk aol.* *.free.hr").is_empty());
        assert_eq!(c.add_domains("bad_domain.com"), vec!["bad_domain.com".to_string()]);
        assert!(c.add_welcomelist("friend@gmail.com").is_empty());
        c
    }

    #[test]
    fn domains_wildcards_and_welcomelists() {
        let c = cfg();
        assert!(c.is_freemail("joe123@gmail.com"));
        assert!(c.is_freemail("x@aol.de"));
        assert!(!c.is_freemail("x@aol.co.uk"), "* does not cross a dot");
        assert!(c.is_freemail("x@mail.free.hr"));
        assert!(!c.is_freemail("friend@gmail.com"), "welcomelisted");
        assert!(!c.is_freemail("support@gmail.com"), "role address");
        assert!(!c.is_freemail("joe@example.com"));
        assert!(!FreemailConfig::default().available());
    }

    #[test]
    fn addresses_are_read_from_lists_groups_and_comments() {
        assert_eq!(addresses("\"Doe, John\" <JD@x.test>, b@y.test (Bee)"), ["JD@x.test", "b@y.test"]);
        assert_eq!(addresses("friends: a@x.test, b@y.test;"), ["a@x.test", "b@y.test"]);
        assert!(addresses("undisclosed-recipients:;").is_empty());
    }

    #[test]
    fn body_addresses_skip_attributions_and_urls() {
        assert_eq!(body_line_emails("mail me at joe@gmail.com today"), ["joe@gmail.com"]);
        assert!(body_line_emails("joe@gmail.com wrote:").is_empty());
        assert_eq!(body_line_emails("joe@gmail.com email: x"), ["joe@gmail.com"]);
        assert!(body_line_emails("<joe@gmail.com>").is_empty());
        assert!(body_line_emails("http://x.test/a@b.com").is_empty());
        // Octets, as the plugin's Perl reads them: a no-break space is not a space, so it does
        // not end the URL; letters fold in ASCII only.
        assert!(body_line_emails("see http://x.test/a\u{a0}b@gmail.com").is_empty());
        assert_eq!(body_line_emails("JOE@GMAIL.COM"), ["joe@gmail.com"]);
        assert!(bulk_envelope("owner-list@lists.test"));
        assert!(!bulk_envelope("joe@gmail.com"));
    }
}
