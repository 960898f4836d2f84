//! Domains of the URLs in a message, for URI blocklists.
//!
//! The message is MIME-decoded with mail-parser (base64 and quoted-printable text and HTML parts,
//! attached `message/rfc822` parts up to [`MAX_NESTING`] deep). In every text and HTML part we
//! look for `http://`, `https://` and scheme-less `www.` links, and in HTML also for protocol-relative
//! `href="//host/…"` links. Hosts are reduced to their registrable domain (see
//! [`registrable_domain`]), de-duplicated, and collected up to a limit, in order of appearance.
//!
//! Limitations (documented, deliberate): IP-address hosts are skipped; non-ASCII (IDN) hosts are
//! skipped rather than converted to punycode; HTML character references inside a host name
//! (`&#46;`) are not decoded; links in non-text attachments (PDF, Office) are not seen.

use mail_parser::{Message, MessageParser, PartType};

/// How deep attached messages are searched.
pub const MAX_NESTING: usize = 4;

pub use crate::domains::registrable_domain;

/// Registrable domains of the URLs in `message`, de-duplicated, at most `limit`, in order of
/// appearance.
pub fn message_domains(message: &[u8], limit: usize) -> Vec<String> {
    let mut found = Domains { list: Vec::new(), limit };
    if limit == 0 {
        return found.list;
    }
    // An unclosed last part is read, as mail clients read it.
    let closed = crate::mime::close_multiparts(message);
    match MessageParser::default().parse(closed.as_deref().unwrap_or(message)) {
        Some(parsed) => walk(&parsed, &mut found, 0),
        None => scan_text(&String::from_utf8_lossy(message), &mut found),
    }
    found.list
}

struct Domains {
    list: Vec<String>,
    limit: usize,
}

impl Domains {
    fn full(&self) -> bool {
        self.list.len() >= self.limit
    }

    fn add_host(&mut self, host: &str) {
        if self.full() {
            return;
        }
        if let Some(domain) = registrable_domain(host)
            && !self.list.contains(&domain)
        {
            self.list.push(domain);
        }
    }
}

fn walk(message: &Message<'_>, found: &mut Domains, depth: usize) {
    for part in &message.parts {
        if found.full() {
            return;
        }
        match &part.body {
            PartType::Text(text) => scan_text(text, found),
            PartType::Html(html) => {
                scan_text(html, found);
                scan_protocol_relative(html, found);
            }
            PartType::Message(inner) if depth < MAX_NESTING => walk(inner, found, depth + 1),
            _ => {}
        }
    }
}

/// Finds `http://`, `https://` and `www.` links (case-insensitive) in text or HTML.
fn scan_text(text: &str, found: &mut Domains) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && !found.full() {
        let rest = &bytes[i..];
        let host_start = if starts_with_ci(rest, b"http://") {
            Some(i + 7)
        } else if starts_with_ci(rest, b"https://") {
            Some(i + 8)
        } else if starts_with_ci(rest, b"www.") && (i == 0 || !is_host_byte(bytes[i - 1])) {
            Some(i)
        } else {
            None
        };
        match host_start {
            Some(start) => {
                let end = host_end(bytes, start);
                if let Some(host) = text.get(start..end) {
                    found.add_host(strip_userinfo(host));
                }
                i = end.max(i + 1);
            }
            None => i += 1,
        }
    }
}

/// Finds `href="//host/…"` (and `src=`, single-quoted or bare) links in HTML.
fn scan_protocol_relative(html: &str, found: &mut Domains) {
    let bytes = html.as_bytes();
    let mut i = 0;
    while i + 2 < bytes.len() && !found.full() {
        if bytes[i] == b'=' {
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j] == b'"' || bytes[j] == b'\'' || bytes[j].is_ascii_whitespace()) {
                j += 1;
            }
            if bytes.get(j..j + 2) == Some(b"//") {
                let end = host_end(bytes, j + 2);
                if let Some(host) = html.get(j + 2..end) {
                    found.add_host(strip_userinfo(host));
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
}

fn starts_with_ci(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// The end of the authority (`userinfo@host:port`) starting at `start`; at most 320 bytes.
fn host_end(bytes: &[u8], start: usize) -> usize {
    let authority = |b: u8| is_host_byte(b) || matches!(b, b'@' | b':' | b'%' | b'!' | b'$' | b'&' | b'+' | b'=' | b'~' | b'*');
    let mut end = start;
    while end < bytes.len() && end - start < 320 && authority(bytes[end]) {
        end += 1;
    }
    end
}

/// The host of an authority: without `userinfo@`, `:port` and trailing dots.
fn strip_userinfo(authority: &str) -> &str {
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = host.split_once(':').map_or(host, |(host, _port)| host);
    host.trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains() {
        assert_eq!(registrable_domain("Mail.Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(registrable_domain("a.b.example.co.uk").as_deref(), Some("example.co.uk"));
        assert_eq!(registrable_domain("example.com").as_deref(), Some("example.com"));
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(registrable_domain("localhost"), None);
        assert_eq!(registrable_domain("192.0.2.1"), None);
        assert_eq!(registrable_domain("bad..name"), None);
        assert_eq!(registrable_domain(""), None);
    }

    #[test]
    fn urls_in_plain_text() {
        let text = b"Subject: x\r\n\r\nSee http://a.spam.test/x?y, HTTPS://User:pw@Shop.Example.co.uk:8080/ and www.plain.test.\r\nhttp://a.spam.test again, http://192.0.2.1/ and mailto:x@mail.test\r\n";
        assert_eq!(message_domains(text, 20), ["spam.test", "example.co.uk", "plain.test"]);
        assert_eq!(message_domains(text, 2), ["spam.test", "example.co.uk"]);
        assert!(message_domains(text, 0).is_empty());
    }

    #[test]
    fn base64_html_and_quoted_printable_parts_are_decoded() {
        use base64_encode as b64;
        let html = "<html><a href=\"http://click.evil.test/track\">x</a><img src=\"//img.cdn.test/p.gif\"></html>";
        let message = format!(
            "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nvisit http://qp.te=\r\nst/ now\r\n--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            b64(html.as_bytes())
        );
        assert_eq!(message_domains(message.as_bytes(), 20), ["qp.test", "evil.test", "cdn.test"]);
    }

    #[test]
    fn garbage_does_not_panic() {
        for input in [
            &b""[..],
            b"http://",
            b"www.",
            b"=//",
            b"\xff\xfe http://\xff.test",
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
        ] {
            let _ = message_domains(input, 20);
        }
    }

    /// A test-only base64 encoder (no dependency needed for production code).
    fn base64_encode(data: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
