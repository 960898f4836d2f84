//! URI extraction and normalization for `uri` rules.
//!
//! URIs come from plain text (`http://`, `https://`, `ftp://`, `mailto:`, bare `www.` hosts,
//! and bare addresses, listed as `mailto:` like SpamAssassin does) and from HTML link attributes. Each URI is listed as found and, when different, in a
//! normalized form (scheme added to bare hosts, scheme and host lower-cased, `%XX` escapes in the
//! host decoded) so rules can match either. Bounded: at most [`MAX_URIS`] entries, each at most
//! [`MAX_URI_LEN`] bytes. Never panics.

/// Most URIs kept per message.
pub const MAX_URIS: usize = 1000;
/// Longest URI kept (longer ones are cut).
pub const MAX_URI_LEN: usize = 2048;

const SCHEMES: &[&str] = &["http://", "https://", "ftp://", "mailto:", "www."];

/// Collects URIs into `out` (deduplicated by the caller).
pub fn from_text(text: &str, out: &mut Vec<String>) {
    let lower = text.to_ascii_lowercase();
    let b = lower.as_bytes();
    let mut i = 0;
    while i < b.len() && out.len() < MAX_URIS {
        let Some((start, scheme)) = next_scheme(&lower, i) else { break };
        // `www.` must start a word; other schemes may follow anything (e.g. `(http://…`).
        if scheme == "www." && start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'.' || b[start - 1] == b'/') {
            i = start + scheme.len();
            continue;
        }
        let mut end = start + scheme.len();
        while end < b.len() && is_uri_byte(b[end]) && end - start < MAX_URI_LEN {
            end += 1;
        }
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut uri = &text[start..end];
        uri = uri.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}', '\'', '"', '>']);
        if uri.len() > scheme.len() {
            out.push(uri.to_string());
        }
        i = end.max(start + 1);
    }
    bare_addresses(text, out);
}

/// Adds `mailto:local@domain` for each bare address in `text` (not inside a URI found above).
fn bare_addresses(text: &str, out: &mut Vec<String>) {
    let b = text.as_bytes();
    let local_byte = |c: u8| c.is_ascii_alphanumeric() || b"._%+-=".contains(&c);
    let domain_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
    let mut from = 0;
    while let Some(at) = text[from..].find('@').map(|p| from + p) {
        from = at + 1;
        if out.len() >= MAX_URIS {
            return;
        }
        let mut start = at;
        while start > 0 && local_byte(b[start - 1]) && at - start < 64 {
            start -= 1;
        }
        let mut end = at + 1;
        while end < b.len() && domain_byte(b[end]) && end - at < 255 {
            end += 1;
        }
        let local = text[start..at].trim_start_matches('.');
        let domain = text[at + 1..end].trim_end_matches(['.', '-']);
        // Part of a URI (`mailto:a@b`, `http://user@host`): that URI was listed already.
        let inside_uri = start > 0 && matches!(b[start - 1], b':' | b'/');
        let tld_ok = domain
            .rsplit_once('.')
            .is_some_and(|(name, tld)| !name.is_empty() && tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic()));
        if !local.is_empty() && tld_ok && !inside_uri {
            out.push(format!("mailto:{local}@{domain}"));
        }
    }
}

fn next_scheme(lower: &str, from: usize) -> Option<(usize, &'static str)> {
    SCHEMES.iter().filter_map(|s| lower[from..].find(s).map(|p| (from + p, *s))).min_by_key(|(p, _)| *p)
}

fn is_uri_byte(c: u8) -> bool {
    c > 0x20 && c != 0x7F && !matches!(c, b'<' | b'>' | b'"' | b'\'' | b'`' | b'{' | b'}' | b'|' | b'\\' | b'^')
}

/// Adds an HTML link attribute value if it is an absolute (or scheme-relative, or `www.`) URI.
pub fn from_link(link: &str, out: &mut Vec<String>) {
    if out.len() >= MAX_URIS {
        return;
    }
    let l: String = link.chars().filter(|c| !c.is_whitespace()).take(MAX_URI_LEN).collect();
    let lower = l.to_ascii_lowercase();
    let has_scheme =
        lower.split_once(':').is_some_and(|(s, _)| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)));
    let absolute = has_scheme || lower.starts_with("//") || lower.starts_with("www.");
    if absolute && !lower.starts_with("javascript:") && !lower.starts_with("cid:") && !lower.starts_with("data:") {
        out.push(l);
    }
}

/// The normalized form of a URI (see module docs).
pub fn normalize(uri: &str) -> String {
    let mut u = uri.trim().to_string();
    let lower = u.to_ascii_lowercase();
    if lower.starts_with("www.") {
        u = format!("http://{u}");
    } else if lower.starts_with("//") {
        u = format!("http:{u}");
    }
    let Some(colon) = u.find(':') else { return u };
    let scheme = u[..colon].to_ascii_lowercase();
    let rest = &u[colon + 1..];
    let Some(after) = rest.strip_prefix("//") else {
        return format!("{scheme}:{rest}");
    };
    let host_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, path) = after.split_at(host_end);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = percent_decode(host).to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (n, Some(p)),
        _ => (host, None),
    };
    // `http://3325234567/` and `http://0xC6336407/` are IPv4 addresses written as one number:
    // like SpamAssassin, list the dotted form so IP-address rules see them.
    let host = match numeric_ipv4(name) {
        Some(ip) => match port {
            Some(p) => format!("{ip}:{p}"),
            None => ip.to_string(),
        },
        None => host.to_string(),
    };
    format!("{scheme}://{host}{path}")
}

/// A host written as one decimal or `0x` hexadecimal number that fits in 32 bits.
fn numeric_ipv4(host: &str) -> Option<std::net::Ipv4Addr> {
    let n = match host.strip_prefix("0x") {
        Some(hex) if !hex.is_empty() && hex.len() <= 8 => u32::from_str_radix(hex, 16).ok()?,
        Some(_) => return None,
        None if !host.is_empty() && host.len() <= 10 && host.bytes().all(|b| b.is_ascii_digit()) => host.parse().ok()?,
        None => return None,
    };
    Some(std::net::Ipv4Addr::from(n))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = (b[i + 1] as char).to_digit(16);
            let l = (b[i + 2] as char).to_digit(16);
            if let (Some(h), Some(l)) = (h, l) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_are_mailto_uris_but_not_twice_and_not_inside_a_uri() {
        let mut out = Vec::new();
        from_text("To unsubscribe write to list-unsub@lists.example.org. Or mailto:a@b.example, see http://user@host.example/x", &mut out);
        assert_eq!(out, ["mailto:a@b.example", "http://user@host.example/x", "mailto:list-unsub@lists.example.org"], "{out:?}");
        let mut none = Vec::new();
        from_text("user@localhost, @handle, a@b.c1, 50 @ 3.50 each, x@y.", &mut none);
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn finds_uris_in_text() {
        let mut v = Vec::new();
        from_text("See http://Example.test/a?b=1. Or (https://x.test/y), www.shop.test and mailto:a@b.test; not foo.www.test", &mut v);
        assert_eq!(v, ["http://Example.test/a?b=1", "https://x.test/y", "www.shop.test", "mailto:a@b.test"]);
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize("www.Shop.test/x"), "http://www.shop.test/x");
        assert_eq!(normalize("HTTP://user@%65vil.TEST./p?q"), "http://evil.test/p?q");
        assert_eq!(normalize("//cdn.test/a"), "http://cdn.test/a");
        assert_eq!(normalize("mailto:A@B.test"), "mailto:A@B.test");
        assert_eq!(normalize("http://3325234567/cheap"), "http://198.51.13.135/cheap");
        assert_eq!(normalize("http://0xC6336407:8080/x"), "http://198.51.100.7:8080/x");
        assert_eq!(normalize("http://99999999999/x"), "http://99999999999/x");
    }

    #[test]
    fn links_filtered() {
        let mut v = Vec::new();
        for l in ["http://a.test", "/relative", "javascript:void(0)", "cid:img1", "www.b.test", "h t t p://c.test"] {
            from_link(l, &mut v);
        }
        assert_eq!(v, ["http://a.test", "www.b.test", "http://c.test"]);
    }
}
