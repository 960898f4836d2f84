//! The one header-field parser, and header-section surgery on raw messages: find fields, drop
//! fields, prepend fields. The rule engine, the forged-header removal, the quarantine and the
//! digests all see the same fields.
//!
//! What a field is: a first line `NAME WSP* ":" VALUE` plus every continuation line that starts
//! with a space or tab. NAME is printable ASCII without spaces (RFC 5322 `ftext`); the white
//! space some senders put before the colon (the obsolete syntax of RFC 5322 §4.5.8, e.g.
//! `Subject :`) is accepted and is not part of the name, so `X-Spam-Flag : YES` is the field
//! `X-Spam-Flag` everywhere (a forged one is removed, a rule on it matches). Any other line in
//! the header section is not a field and is skipped with its continuation lines.
//!
//! Guarantees: everything outside the removed fields is kept byte for byte (the body, the order
//! and folding of the other fields, odd line endings); a message without a header/body separator
//! is all header. Nothing here allocates more than one copy of the message.

use std::borrow::Cow;

/// One header field as it appears in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name as written (compare with `eq_ignore_ascii_case`).
    pub name: &'a [u8],
    /// Everything after the colon, folding included, without the final line ending.
    pub value: &'a [u8],
    /// Byte range of the whole field in the message, final line ending included.
    pub start: usize,
    pub end: usize,
}

impl Field<'_> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value unfolded and trimmed, lossily decoded (for comparisons, not for display).
    pub fn text(&self) -> String {
        let unfolded: Vec<u8> = self.value.iter().copied().filter(|b| *b != b'\r' && *b != b'\n').collect();
        String::from_utf8_lossy(&unfolded).trim().to_string()
    }
}

/// Offset where the body starts (just after the empty line), or the message length when the
/// message has no body separator.
pub fn body_start(message: &[u8]) -> usize {
    let end = header_section_end(message);
    if end < message.len() { line_end(message, end) } else { end }
}

/// Offset of the empty line that ends the header section (the header section is
/// `message[..header_section_end]`), or the message length when there is none.
pub fn header_section_end(message: &[u8]) -> usize {
    let mut at = 0;
    while at < message.len() {
        let end = line_end(message, at);
        let line = &message[at..end];
        if line == b"\r\n" || line == b"\n" {
            return at;
        }
        at = end;
    }
    message.len()
}

/// The header fields, in order. Lines before the first field that do not look like a field
/// (e.g. an mbox "From " line) are skipped.
pub fn fields(message: &[u8]) -> Vec<Field<'_>> {
    let limit = body_start(message);
    let mut out = Vec::new();
    let mut at = 0;
    while at < limit {
        let mut end = line_end(message, at);
        let line = &message[at..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        while end < limit && matches!(message[end], b' ' | b'\t') {
            end = line_end(message, end);
        }
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            let name = trim_blanks_end(&line[..colon]);
            if !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic()) {
                let value = trim_line_ending(&message[at + colon + 1..end]);
                out.push(Field { name, value, start: at, end });
            }
        }
        at = end;
    }
    out
}

/// The message without the fields for which `drop` is true. Borrowed when nothing matches.
pub fn remove_fields<'a>(message: &'a [u8], mut drop: impl FnMut(&Field<'_>) -> bool) -> Cow<'a, [u8]> {
    let doomed: Vec<(usize, usize)> = fields(message).iter().filter(|f| drop(f)).map(|f| (f.start, f.end)).collect();
    if doomed.is_empty() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut at = 0;
    for (start, end) in doomed {
        out.extend_from_slice(&message[at..start]);
        at = end;
    }
    out.extend_from_slice(&message[at..]);
    Cow::Owned(out)
}

/// `fields` (each a complete field ending in CRLF) followed by `message`.
pub fn prepend(fields: &[String], message: &[u8]) -> Vec<u8> {
    let extra: usize = fields.iter().map(|f| f.len()).sum();
    let mut out = Vec::with_capacity(extra + message.len());
    for field in fields {
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(message);
    out
}

/// The first value of field `name`, unfolded and trimmed.
pub fn first_value(message: &[u8], name: &str) -> Option<String> {
    fields(message).into_iter().find(|f| f.is(name)).map(|f| f.text())
}

/// Longest From display name kept (characters); longer names are cut.
pub const MAX_AUTHOR_NAME: usize = 200;
/// Longest address taken from a From field (RFC 5321's path limit); a longer one counts as none.
const MAX_AUTHOR_ADDRESS: usize = 254;

/// Who the message says it is from: the display name (RFC 2047 decoded, trimmed, cut to
/// [`MAX_AUTHOR_NAME`] characters; "" when there is none or it only repeats the address) and the
/// address (lower-cased) of its From field. `None` unless the message has exactly one From field
/// naming exactly one plausible address (`local@domain`, no spaces or controls): with two, no
/// one can say which of them a reader (or DMARC) would take as the author.
pub fn author(message: &[u8]) -> Option<(String, String)> {
    let mut from = fields(message).into_iter().filter(|f| f.is("From"));
    let field = from.next()?;
    if from.next().is_some() {
        return None;
    }
    let mut alone = Vec::with_capacity(field.value.len() + 9);
    alone.extend_from_slice(b"From:");
    alone.extend_from_slice(field.value);
    alone.extend_from_slice(b"\r\n\r\n");
    let parsed = mail_parser::MessageParser::default().parse_headers(&alone)?;
    let mut addresses = parsed.from()?.iter();
    let (first, more) = (addresses.next()?, addresses.next());
    if more.is_some() {
        return None;
    }
    let address = first.address()?.trim().to_lowercase();
    let plausible = address.len() <= MAX_AUTHOR_ADDRESS
        && address.rsplit_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !address.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>'));
    if !plausible {
        return None;
    }
    let name = first.name().map(str::trim).unwrap_or("");
    let name = if name.eq_ignore_ascii_case(&address) { "" } else { name };
    Some((name.chars().take(MAX_AUTHOR_NAME).collect(), address))
}

fn trim_blanks_end(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn line_end(data: &[u8], from: usize) -> usize {
    memchr_newline(&data[from..]).map_or(data.len(), |i| from + i + 1)
}

fn memchr_newline(data: &[u8]) -> Option<usize> {
    data.iter().position(|b| *b == b'\n')
}

fn trim_line_ending(value: &[u8]) -> &[u8] {
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    value.strip_suffix(b"\r").unwrap_or(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_author_is_the_one_from_fields_decoded_name_and_address() {
        let author = |m: &str| super::author(m.as_bytes());
        assert_eq!(
            author("Subject: x\r\nFrom: =?UTF-8?Q?PayPal_Service?= <Service@PayPal.test>\r\n\r\nbody"),
            Some(("PayPal Service".into(), "service@paypal.test".into()))
        );
        assert_eq!(author("From: \"Bank\" <a@b.test>\r\n\r\n"), Some(("Bank".into(), "a@b.test".into())));
        assert_eq!(author("From: a@b.test\r\n\r\n"), Some((String::new(), "a@b.test".into())));
        assert_eq!(author("From: <a@b.test>\r\n\r\n"), Some((String::new(), "a@b.test".into())));
        assert_eq!(author("From: a@b.test\r\nFrom: c@d.test\r\n\r\n"), None, "two From fields");
        assert_eq!(author("From: a@b.test, c@d.test\r\n\r\n"), None, "two authors");
        assert_eq!(author("From: Nobody\r\n\r\n"), None);
        assert_eq!(author("Subject: none\r\n\r\n"), None);
        let long = format!("From: {} <a@b.test>\r\n\r\n", "x".repeat(600));
        assert_eq!(author(&long).unwrap().0.chars().count(), super::MAX_AUTHOR_NAME);
    }

    use super::*;

    const MESSAGE: &[u8] = b"Received: from a\r\n\tby b\r\nX-Spam-Flag: YES\r\nSubject: hi\r\nx-spam-status: Yes,\r\n score=99\r\n\r\nX-Spam-Flag: body line\r\n";

    #[test]
    fn fields_include_their_continuation_lines() {
        let f = fields(MESSAGE);
        let names: Vec<&[u8]> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, [&b"Received"[..], b"X-Spam-Flag", b"Subject", b"x-spam-status"]);
        assert_eq!(f[0].value, b" from a\r\n\tby b");
        assert_eq!(f[0].text(), "from a\tby b");
        assert_eq!(f[3].text(), "Yes, score=99");
    }

    #[test]
    fn a_blank_before_the_colon_is_obsolete_syntax_not_part_of_the_name() {
        let message =
            b"Subject :  hi\r\nX-Spam-Flag\t: YES\r\nBad Name: x\r\n\tcontinued\r\n: empty\r\nCaf\xc3\xa9: x\r\nTo: a\r\n\r\nbody";
        let found: Vec<(String, String)> =
            fields(message).iter().map(|f| (String::from_utf8_lossy(f.name).into_owned(), f.text())).collect();
        assert_eq!(
            found,
            [("Subject".into(), "hi".into()), ("X-Spam-Flag".into(), "YES".into()), ("To".into(), "a".into())],
            "names with spaces inside, empty or non-ASCII names are not fields"
        );
        let cleaned = remove_fields(message, |f| f.is("X-Spam-Flag"));
        assert!(!cleaned.windows(11).any(|w| w == b"X-Spam-Flag"), "a forged field in the obsolete form is removed too");
    }

    #[test]
    fn removing_keeps_everything_else_byte_for_byte() {
        let out = remove_fields(MESSAGE, |f| f.name.to_ascii_lowercase().starts_with(b"x-spam-"));
        assert_eq!(&out[..], b"Received: from a\r\n\tby b\r\nSubject: hi\r\n\r\nX-Spam-Flag: body line\r\n");
        assert!(matches!(remove_fields(MESSAGE, |f| f.is("DKIM-Signature")), Cow::Borrowed(_)));
    }

    #[test]
    fn body_start_and_headers_only_messages() {
        assert_eq!(&MESSAGE[body_start(MESSAGE)..], b"X-Spam-Flag: body line\r\n");
        assert_eq!(body_start(b"Subject: x\r\n"), 12);
        assert_eq!(header_section_end(MESSAGE), body_start(MESSAGE) - 2);
        assert_eq!(header_section_end(b"A: 1\n\nbody"), 5);
        assert_eq!(first_value(b"Subject: x\n\nbody", "subject").as_deref(), Some("x"));
        assert_eq!(first_value(b"From x\nSubject: y\n\n", "Subject").as_deref(), Some("y"));
    }

    #[test]
    fn prepend_puts_fields_first() {
        let out = prepend(&["A: 1\r\n".into(), "B: 2\r\n".into()], b"C: 3\r\n\r\nbody");
        assert_eq!(out, b"A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody");
    }
}
