//! Reading broken MIME as mail clients (and SpamAssassin) read it.
//!
//! A multipart whose closing delimiter (`--BOUNDARY--`) never comes is common in spam: the
//! sender stops writing after the last part. Mail clients show that last part anyway; the MIME
//! parser moat uses drops it as undecodable, so its text, links and attachment would go
//! unread by the rules, the classifier and the attachment checks. [`close_multiparts`] gives
//! them a copy of the message with the missing delimiters added at the end.
//!
//! Guarantees: the original bytes are never changed (callers still see and report the
//! malformation); a copy is made only when a boundary declared in a `Content-Type` header field
//! is opened and never closed; work is linear in the message size.

use memchr::memmem;

/// The message with a closing delimiter appended for every multipart boundary that is opened
/// (`--BOUNDARY` somewhere) but never closed, innermost first; None when nothing is missing.
pub fn close_multiparts(raw: &[u8]) -> Option<Vec<u8>> {
    let mut missing: Vec<&[u8]> = Vec::new();
    for boundary in declared_boundaries(raw) {
        let open = [b"--", boundary].concat();
        let close = [open.as_slice(), b"--"].concat();
        if memmem::find(raw, &open).is_some() && memmem::find(raw, &close).is_none() && !missing.contains(&boundary) {
            missing.push(boundary);
        }
    }
    if missing.is_empty() {
        return None;
    }
    let mut closed = Vec::with_capacity(raw.len() + missing.iter().map(|b| b.len() + 6).sum::<usize>() + 2);
    closed.extend_from_slice(raw);
    if !raw.ends_with(b"\n") {
        closed.extend_from_slice(b"\r\n");
    }
    // Declared outermost first: the inner ones close first.
    for boundary in missing.iter().rev() {
        closed.extend_from_slice(b"--");
        closed.extend_from_slice(boundary);
        closed.extend_from_slice(b"--\r\n");
    }
    Some(closed)
}

/// The `boundary` parameters of the `Content-Type` header fields in `raw` (the message's and
/// its parts'), in order of appearance.
fn declared_boundaries(raw: &[u8]) -> Vec<&[u8]> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = find_ignore_case(&raw[from..], b"boundary").map(|i| from + i) {
        from = at + b"boundary".len();
        if let Some(value) = parameter_value(&raw[from..])
            && in_content_type_field(raw, at)
        {
            found.push(value);
        }
    }
    found
}

/// The value after `= ` in `rest` (`="quoted"` or a token), if `rest` starts a parameter.
fn parameter_value(rest: &[u8]) -> Option<&[u8]> {
    let skip_blanks = |s: &[u8]| s.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(s.len());
    let rest = &rest[skip_blanks(rest)..];
    let rest = rest.strip_prefix(b"=")?;
    let rest = &rest[skip_blanks(rest)..];
    let value = match rest.strip_prefix(b"\"") {
        // A quoted value broken by a line end is not one (nor is it one to the MIME parser).
        Some(quoted) => quoted.split(|b| *b == b'"').next().filter(|v| v.len() < quoted.len() && !v.contains(&b'\n'))?,
        None => &rest[..rest.iter().position(|b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n')).unwrap_or(rest.len())],
    };
    // RFC 2046: 1 to 70 characters.
    (1..=70).contains(&value.len()).then_some(value)
}

/// Whether the header line holding `at` (followed back over folded continuation lines) is a
/// `Content-Type:` field.
fn in_content_type_field(raw: &[u8], at: usize) -> bool {
    let mut start = raw[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    while start > 0 && matches!(raw.get(start), Some(b' ' | b'\t')) {
        start = raw[..start - 1].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    }
    raw[start..].len() >= 13 && raw[start..start + 13].eq_ignore_ascii_case(b"content-type:")
}

/// Where `needle` first occurs in `haystack`, ASCII case ignored (None for an empty needle):
/// only where its first byte occurs (memchr) is the rest compared.
fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut candidates = memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), haystack);
    candidates.find(|&at| haystack.get(at + 1..at + needle.len()).is_some_and(|w| w.eq_ignore_ascii_case(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNCLOSED: &[u8] = b"Subject: x\r\nContent-Type: multipart/mixed;\r\n\tboundary=\"outer\"\r\n\r\n--outer\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
--inner\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+Ym9sZDwvYj4=\r\n";

    #[test]
    fn unclosed_multiparts_are_closed_innermost_first_and_the_last_part_is_read() {
        let closed = close_multiparts(UNCLOSED).expect("two boundaries to close");
        assert!(closed.starts_with(UNCLOSED), "the message itself is kept");
        assert!(closed.ends_with(b"PGI+Ym9sZDwvYj4=\r\n--inner--\r\n--outer--\r\n"), "{}", String::from_utf8_lossy(&closed));
        let parsed = mail_parser::MessageParser::default().parse(&closed).expect("parses");
        assert_eq!(parsed.body_html(0).as_deref(), Some("<b>bold</b>"), "the last part decodes");
        let broken = mail_parser::MessageParser::default().parse(UNCLOSED).expect("parses");
        assert_ne!(broken.body_html(0).as_deref(), Some("<b>bold</b>"), "without the repair the parser loses it");
    }

    #[test]
    fn closed_or_unused_boundaries_and_boundaries_outside_content_type_are_left_alone() {
        let closed = [UNCLOSED, b"--inner--\r\n--outer--\r\n"].concat();
        assert_eq!(close_multiparts(&closed), None);
        let only_outer = [UNCLOSED, b"--inner--\r\n"].concat();
        assert!(close_multiparts(&only_outer).is_some_and(|c| c.ends_with(b"--inner--\r\n--outer--\r\n")));
        let unused = b"Content-Type: multipart/mixed; boundary=\"never\"\r\n\r\nno parts at all\r\n";
        assert_eq!(close_multiparts(unused), None, "a boundary never opened");
        let broken = b"Content-Type: multipart/mixed; boundary=\"abc\r\n def\"\r\n\r\n--abc\r\n def\r\ntext\r\n";
        assert_eq!(close_multiparts(broken), None, "a quoted value broken by a line end");
        let prose = b"Subject: MIME question\r\n\r\nWhat does boundary=abc do?\r\n--abc\r\nis a delimiter\r\n";
        assert_eq!(close_multiparts(prose), None, "not a Content-Type field");
        assert_eq!(close_multiparts(b""), None);
        let no_newline = b"Content-Type: multipart/mixed; Boundary=b1\r\n\r\n--b1\r\n\r\ntext";
        assert_eq!(
            close_multiparts(no_newline).as_deref(),
            Some(&b"Content-Type: multipart/mixed; Boundary=b1\r\n\r\n--b1\r\n\r\ntext\r\n--b1--\r\n"[..])
        );
    }
}
