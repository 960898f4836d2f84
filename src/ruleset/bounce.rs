//! SpamAssassin's VBounce plugin: `have_any_bounce_relays()` and
//! `check_welcomelist_bounce_relays()` (alias `check_whitelist_bounce_relays()`), over the
//! `welcomelist_bounce_relays` (alias `whitelist_bounce_relays`) hosts of the rule files: the
//! relays the site's own outgoing mail leaves through. A bounce that quotes a Received line
//! naming one of them answers mail the site really sent, so the stock rules do not call it
//! backscatter (BOUNCE_MESSAGE, VBOUNCE_MESSAGE, CRBOUNCE_MESSAGE and the metas over
//! ANY_BOUNCE_MESSAGE such as `__NOT_A_PERSON`).
//!
//! Guarantees: with no relays configured (the default) both are false, as in SpamAssassin.
//! Otherwise the quoted Received lines are read as the plugin reads them (the rendered body's
//! lines, then the raw body's header-like lines with their continuations), hosts compared
//! lower-cased, exactly or by `*`/`?` pattern. Linear in the body; never panics.

use super::headereval::wildcard;
use super::message::ParsedMessage;
use super::perlre::is_perl_space;

/// `have_any_bounce_relays()`.
pub fn have_any_relays(relays: &[String]) -> bool {
    !relays.is_empty()
}

/// `check_welcomelist_bounce_relays()`: a quoted Received line names one of `relays`.
pub fn quotes_own_relay(msg: &ParsedMessage, relays: &[String]) -> bool {
    if relays.is_empty() {
        return false;
    }
    let listed = |host: &str| {
        let host = host.to_lowercase();
        relays.iter().any(|r| *r == host || wildcard(r.as_bytes(), host.as_bytes()))
    };
    let rendered = msg.body_lines(false).iter().filter(|l| starts_received(l)).any(|l| dotted_words(l, |c| c == ' ').any(listed));
    rendered || raw_received_lines(raw_body(msg)).iter().any(|h| dotted_words(h, is_perl_space).any(listed))
}

/// The message body as received (after the header block).
fn raw_body(msg: &ParsedMessage) -> &str {
    let full = msg.full();
    let body = &full[crate::headers::body_start(full).min(full.len())..];
    std::str::from_utf8(body).unwrap_or_else(|e| std::str::from_utf8(&body[..e.valid_up_to()]).unwrap_or_default())
}

/// `^[> ]*Received:` (case-insensitive).
fn starts_received(line: &str) -> bool {
    let rest = line.trim_start_matches(['>', ' ']);
    rest.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("received:"))
}

/// From the first Received line on, each header-like line of the raw body joined with its
/// continuation lines (those starting with white space), kept when it is a Received line.
fn raw_received_lines(body: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut found = false;
    for line in body.split('\n') {
        if !found {
            if !starts_received(line) {
                continue;
            }
            found = true;
        }
        if line.starts_with(is_perl_space) {
            current.push_str(line);
        } else {
            if starts_received(&current) {
                out.push(std::mem::take(&mut current));
            }
            current = line.to_string();
        }
    }
    if starts_received(&current) {
        out.push(current);
    }
    out
}

/// The words Perl's `/SEP(\S+\.\S+)SEP/g` captures in `text`: a run of non-space characters
/// with a dot inside it (not first, not last), between two separators; the separator after a
/// captured word is consumed, so it cannot also open the next one.
fn dotted_words(text: &str, is_sep: fn(char) -> bool) -> impl Iterator<Item = &str> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while let Some((i, c)) = text[pos..].char_indices().next().map(|(i, c)| (pos + i, c)) {
            pos = i + c.len_utf8();
            if !is_sep(c) {
                continue;
            }
            let start = pos;
            let end = text[start..].find(is_perl_space).map_or(text.len(), |e| start + e);
            let word = &text[start..end];
            let next = text[end..].chars().next();
            let dotted = word.len() > 2 && word[1..word.len() - 1].contains('.');
            if dotted && next.is_some_and(is_sep) {
                pos = end + next.map_or(0, char::len_utf8);
                return Some(word);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relays(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn captures_dotted_words_as_perls_global_match_does() {
        let words: Vec<&str> = dotted_words(" a.b c.d  e.f g .h i. j.k", |c| c == ' ').collect();
        // " a.b " consumes the space before c.d; ".h" and "i." have no inner dot; j.k ends the text.
        assert_eq!(words, ["a.b", "e.f"]);
    }

    #[test]
    fn a_bounce_quoting_an_own_relay_is_recognised_and_nothing_is_without_relays() {
        let bounce = b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\n\r\n\
This is the mail system.\r\n\r\n--- original message ---\r\n\
Received: from out1.mail.example.org (out1.mail.example.org [192.0.2.7])\r\n\
\tby mx.example.net with ESMTP id 1234\r\n\r\nhi\r\n";
        let msg = ParsedMessage::parse(bounce);
        assert!(quotes_own_relay(&msg, &relays(&["out1.mail.example.org"])));
        assert!(quotes_own_relay(&msg, &relays(&["out?.mail.*.org"])), "glob patterns");
        assert!(!quotes_own_relay(&msg, &relays(&["relay.example.com"])));
        assert!(!quotes_own_relay(&msg, &[]), "no relays configured: never");
        assert!(!have_any_relays(&[]));
        let plain = ParsedMessage::parse(b"Subject: hello\r\n\r\nout1.mail.example.org is our relay\r\n");
        assert!(!quotes_own_relay(&plain, &relays(&["out1.mail.example.org"])), "only quoted Received lines count");
    }

    #[test]
    fn continuation_lines_of_a_quoted_received_field_count() {
        let bounce = b"Subject: failure\r\n\r\n> Received: from client\r\n\tby out2.example.org (Postfix) with ESMTP\r\n";
        let msg = ParsedMessage::parse(bounce);
        assert!(quotes_own_relay(&msg, &relays(&["out2.example.org"])));
    }
}
