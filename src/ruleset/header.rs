//! Header rule specifications: `Name[:raw|:addr|:name] =~ /re/ [if-unset: STRING]`,
//! `Name !~ /re/`, `exists:Name`, and the pseudo-headers `ALL`, `ToCc`, `MESSAGEID`,
//! `EnvelopeFrom`, `X-Spam-Relays-*` (see `received`). Parsing only; values come from [`super::message::ParsedMessage`].
//! Never panics.

use super::perlre::{self, TranslateError};

/// What a header rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeaderKey {
    /// Lower-cased header name, or a pseudo-header name as written (ALL, ToCc, …).
    pub name: String,
    pub modifier: Modifier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Modifier {
    /// Decoded (RFC 2047) and unfolded.
    Decoded,
    /// As in the message, folding kept.
    Raw,
    /// First address only.
    Addr,
    /// First display name only.
    Name,
}

/// A parsed header rule.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderSpec {
    Exists(String),
    Match { key: HeaderKey, negate: bool, body: String, flags: String, if_unset: Option<String> },
}

/// Pseudo-headers with their own meaning; all other names are real header fields.
pub const PSEUDO: &[&str] = &["ALL", "ToCc", "MESSAGEID", "EnvelopeFrom"];

/// Parses the text after the rule name of a `header` rule.
pub fn parse(text: &str) -> Result<HeaderSpec, TranslateError> {
    let text = text.trim();
    if let Some(name) = text.strip_prefix("exists:") {
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(TranslateError::Syntax("exists: needs one header name".into()));
        }
        let name = if PSEUDO.contains(&name) { name.to_string() } else { name.to_ascii_lowercase() };
        return Ok(HeaderSpec::Exists(name));
    }
    let (field, rest) = super::cf::split_word(text);
    let rest = rest.trim_start();
    let (negate, rest) = if let Some(r) = rest.strip_prefix("=~") {
        (false, r)
    } else if let Some(r) = rest.strip_prefix("!~") {
        (true, r)
    } else {
        return Err(TranslateError::Syntax(format!("expected `=~` or `!~` after header name {field:?}")));
    };
    let key = parse_key(field)?;
    let lit = perlre::split_literal(rest)?;
    let if_unset = parse_if_unset(lit.rest)?;
    Ok(HeaderSpec::Match { key, negate, body: lit.body, flags: lit.flags.to_string(), if_unset })
}

fn parse_key(field: &str) -> Result<HeaderKey, TranslateError> {
    let mut parts = field.split(':');
    let name = parts.next().unwrap_or_default();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TranslateError::Syntax(format!("bad header name {field:?}")));
    }
    let mut modifier = Modifier::Decoded;
    for m in parts {
        // As in SpamAssassin, :addr and :name win over :raw.
        modifier = match (m, modifier) {
            ("raw", Modifier::Decoded) => Modifier::Raw,
            ("raw", other) => other,
            ("addr", _) => Modifier::Addr,
            ("name", _) => Modifier::Name,
            ("host" | "domain" | "ip" | "revip" | "first" | "last", _) => {
                return Err(TranslateError::Unsupported(format!("header modifier :{m}")));
            }
            _ => return Err(TranslateError::Syntax(format!("unknown header modifier :{m}"))),
        };
    }
    let name = if PSEUDO.contains(&name) || name.starts_with("ALL-") || name.starts_with("X-Spam-Relays-") {
        name.to_string()
    } else {
        name.to_ascii_lowercase()
    };
    Ok(HeaderKey { name, modifier })
}

fn parse_if_unset(rest: &str) -> Result<Option<String>, TranslateError> {
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(None);
    }
    let inner = rest
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.trim_start().strip_prefix("if-unset:"))
        .ok_or_else(|| TranslateError::Syntax(format!("unexpected text after the regex: {rest:?}")))?;
    Ok(Some(inner.trim().to_string()))
}

/// The first address in a header value (`a@b`, `Name <a@b>`, `a@b (Name)`, lists, groups).
pub fn first_addr(value: &str) -> String {
    let v = strip_comments(value);
    if let (Some(s), Some(e)) = (v.find('<'), v.find('>'))
        && s < e
    {
        return v[s + 1..e].trim().to_string();
    }
    let v = match v.split_once(':') {
        // A group `display: a@b, c@d;`
        Some((g, rest)) if !g.contains('@') && !g.contains('"') => rest.to_string(),
        _ => v,
    };
    let first = v.split(',').next().unwrap_or("");
    first.trim().trim_end_matches(';').trim().to_string()
}

/// The first display name (`"Name" <a@b>`, `Name <a@b>`, `a@b (Name)`), quotes removed.
pub fn first_name(value: &str) -> String {
    let first = value.split(',').next().unwrap_or("");
    let first = match first.split_once(':') {
        Some((g, rest)) if !g.contains('@') && !g.contains('"') && !g.contains('<') => rest,
        _ => first,
    };
    if let Some(lt) = first.find('<') {
        let name = first[..lt].trim();
        return unquote(name);
    }
    if let (Some(s), Some(e)) = (first.find('('), first.rfind(')'))
        && s < e
    {
        return unquote(first[s + 1..e].trim());
    }
    String::new()
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    let s = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(s);
    let s = s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')).unwrap_or(s);
    s.trim().to_string()
}

fn strip_comments(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut depth = 0usize;
    let mut quoted = false;
    for c in v.chars() {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_and_modifiers() {
        match parse("From:addr =~ /@example\\.com$/i").unwrap() {
            HeaderSpec::Match { key, negate, body, flags, if_unset } => {
                assert_eq!(key, HeaderKey { name: "from".into(), modifier: Modifier::Addr });
                assert!(!negate);
                assert_eq!(body, "@example\\.com$");
                assert_eq!(flags, "i");
                assert_eq!(if_unset, None);
            }
            other => panic!("{other:?}"),
        }
        match parse("Subject:raw !~ /x/ [if-unset: none]").unwrap() {
            HeaderSpec::Match { key, negate, if_unset, .. } => {
                assert_eq!(key.modifier, Modifier::Raw);
                assert!(negate);
                assert_eq!(if_unset.as_deref(), Some("none"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse("exists:X-Mailer").unwrap(), HeaderSpec::Exists("x-mailer".into()));
        assert_eq!(parse("exists:ToCc").unwrap(), HeaderSpec::Exists("ToCc".into()));
        match parse("ALL =~ /x/m").unwrap() {
            HeaderSpec::Match { key, .. } => assert_eq!(key.name, "ALL"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("Subject ~= /x/"), Err(TranslateError::Syntax(_))));
        assert!(matches!(parse("Subject =~ /x/ junk"), Err(TranslateError::Syntax(_))));
        assert!(matches!(parse("From:bogus =~ /x/"), Err(TranslateError::Syntax(_))));
    }

    #[test]
    fn addr_and_name_forms() {
        for v in [
            "example@foo",
            "example@foo (Foo Blah)",
            "example@foo, example@bar",
            "display: example@foo (Foo Blah), example@bar ;",
            "Foo Blah <example@foo>",
            "\"Foo Blah\" <example@foo>",
            "\"'Foo Blah'\" <example@foo>",
        ] {
            assert_eq!(first_addr(v), "example@foo", "{v}");
        }
        for v in [
            "example@foo (Foo Blah)",
            "example@foo (Foo Blah), example@bar",
            "display: example@foo (Foo Blah), example@bar ;",
            "Foo Blah <example@foo>",
            "\"Foo Blah\" <example@foo>",
            "\"'Foo Blah'\" <example@foo>",
        ] {
            assert_eq!(first_name(v), "Foo Blah", "{v}");
        }
    }
}
