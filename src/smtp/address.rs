//! Envelope address policy for `MAIL FROM` and `RCPT TO`: the open-relay guard.
//!
//! The session parses commands with smtp-proto, whose `Request::parse` hands over the path between
//! `<` and `>` with source routes (`@a,@b:`) removed and **quoted strings already unquoted**
//! (`<"john doe"@x>` arrives as `john doe@x`, `<"a\"b"@x>` as `a"b@x`). This module turns that text into
//! a [`Mailbox`] or a typed refusal.
//!
//! Guarantees:
//! * [`check_recipient`] returns `Ok` only for `local@domain` where the domain is a plain DNS name that
//!   `served` accepted, and nothing in the address can make a downstream MTA route the message elsewhere:
//!   no `%`, `!` or `@` in the local part (percent hack, UUCP bang paths, quoted `@`), no address
//!   literal, no trailing dot, no all-numeric last label (`1.2.3.4` read as an IP address), no IDNA
//!   full-stop look-alikes (`。`).
//! * Control characters, whitespace other than a plain space inside the local part, and the U+FFFD that
//!   smtp-proto substitutes for invalid UTF-8 are refused everywhere.
//! * Non-ASCII is refused with its own variant unless the transaction uses SMTPUTF8 (RFC 6531, 553 5.6.7).
//! * [`Mailbox::address`] re-quotes the local part whenever it is not a dot-atom, so what we send
//!   downstream means exactly what we checked.
//!
//! smtp-proto returns `""` both for `<>` and for `<postmaster>` (any case, no domain): the two cannot be
//! told apart after parsing. [`check_recipient`] refuses `""` as [`RcptProblem::Syntax`], and
//! [`check_sender`] reads it as the null sender.

use std::fmt;

/// Longest local part in octets, as sent on the wire (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest domain in octets (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 255;
/// Longest DNS label in octets (ASCII) or characters (U-label).
const MAX_LABEL_LEN: usize = 63;

/// A checked envelope address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// The local part, unquoted, case kept.
    pub local: String,
    /// The domain, lower-cased (ASCII, or Unicode lower case for SMTPUTF8 U-labels).
    pub domain: String,
}

impl Mailbox {
    /// The address as it goes on the wire without angle brackets: `local@domain`, with the local part
    /// quoted (and `"`/`\` escaped) when it is not a dot-atom.
    pub fn address(&self) -> String {
        format!("{}@{}", render_local(&self.local), self.domain)
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address())
    }
}

/// Why a forward path (RCPT TO) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RcptProblem {
    /// Not a usable address. Reply `501 5.1.3`.
    #[error("bad recipient address syntax")]
    Syntax,
    /// Non-ASCII in an address without SMTPUTF8. Reply `553 5.6.7` (RFC 6531 §3.5).
    #[error("non-ASCII recipient address requires SMTPUTF8")]
    NeedsSmtpUtf8,
    /// Not a domain we serve, or an address that could be routed elsewhere. Reply `550 5.7.1` (relaying denied).
    #[error("relaying denied")]
    NotLocal,
}

/// Why a reverse path (MAIL FROM) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SenderProblem {
    /// Not a usable address. Reply `501 5.1.7`.
    #[error("bad sender address syntax")]
    Syntax,
    /// Non-ASCII in an address without SMTPUTF8. Reply `553 5.6.7` (RFC 6531 §3.5).
    #[error("non-ASCII sender address requires SMTPUTF8")]
    NeedsSmtpUtf8,
}

/// A reason shared by both checks, mapped to the public variants at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Syntax,
    NeedsSmtpUtf8,
    Routing,
}

impl From<Fault> for RcptProblem {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Syntax => RcptProblem::Syntax,
            Fault::NeedsSmtpUtf8 => RcptProblem::NeedsSmtpUtf8,
            Fault::Routing => RcptProblem::NotLocal,
        }
    }
}

impl From<Fault> for SenderProblem {
    fn from(f: Fault) -> Self {
        match f {
            Fault::NeedsSmtpUtf8 => SenderProblem::NeedsSmtpUtf8,
            Fault::Syntax | Fault::Routing => SenderProblem::Syntax,
        }
    }
}

/// Classifies a forward path (the address text smtp-proto returns for `RCPT TO:<…>`).
///
/// `served` is asked about the lower-cased domain and says whether we relay for it. `""` (from `<>`
/// or a bare `<postmaster>`) is [`RcptProblem::Syntax`].
pub fn check_recipient(raw: &str, smtputf8: bool, served: impl Fn(&str) -> bool) -> Result<Mailbox, RcptProblem> {
    let mailbox = split_checked(raw, smtputf8)?;
    if mailbox.local.contains(['%', '!', '@']) {
        return Err(RcptProblem::NotLocal);
    }
    if !served(&mailbox.domain) {
        return Err(RcptProblem::NotLocal);
    }
    Ok(mailbox)
}

/// Checks a reverse path (the address text smtp-proto returns for `MAIL FROM:<…>`).
///
/// `""` is the null sender, `Ok(None)`; note smtp-proto also returns `""` for `<postmaster>`.
pub fn check_sender(raw: &str, smtputf8: bool) -> Result<Option<Mailbox>, SenderProblem> {
    if raw.is_empty() {
        return Ok(None);
    }
    Ok(Some(split_checked(raw, smtputf8)?))
}

/// Splits at the last `@` and checks both halves; the domain comes back lower-cased.
fn split_checked(raw: &str, smtputf8: bool) -> Result<Mailbox, Fault> {
    if !smtputf8 && !raw.is_ascii() {
        return Err(Fault::NeedsSmtpUtf8);
    }
    if raw.chars().any(|c| !is_address_char(c)) {
        return Err(Fault::Syntax);
    }
    let (local, domain) = raw.rsplit_once('@').ok_or(Fault::Syntax)?;
    if local.is_empty() || render_local(local).len() > MAX_LOCAL_LEN {
        return Err(Fault::Syntax);
    }
    let domain = check_domain(domain)?;
    Ok(Mailbox { local: local.to_owned(), domain })
}

/// Characters that may appear anywhere in an address we accept: printable ASCII including space (a
/// quoted local part can hold one), and non-ASCII that is neither a control, whitespace, nor U+FFFD.
fn is_address_char(c: char) -> bool {
    if c.is_ascii() {
        return c == ' ' || c.is_ascii_graphic();
    }
    !c.is_control() && !c.is_whitespace() && c != char::REPLACEMENT_CHARACTER
}

/// Lower-cases and checks a domain: a DNS name of letters, digits and hyphens (plus non-ASCII
/// U-label characters, which only reach here under SMTPUTF8), no empty label, no trailing dot.
fn check_domain(domain: &str) -> Result<String, Fault> {
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(Fault::Syntax);
    }
    let lower = if domain.is_ascii() { domain.to_ascii_lowercase() } else { domain.to_lowercase() };
    if lower.len() > MAX_DOMAIN_LEN || lower.contains(' ') {
        return Err(Fault::Syntax);
    }
    // Forms that name a place other than a served domain: an address literal, a trailing dot
    // (an absolute name a downstream may resolve differently), IDNA look-alike full stops.
    let lookalike_dot = |c: char| matches!(c, '\u{3002}' | '\u{FF0E}' | '\u{FF61}');
    if lower.starts_with('[') || lower.ends_with('.') || lower.contains(lookalike_dot) {
        return Err(Fault::Routing);
    }
    // Anything else that is not a DNS name (empty, `a..b`, `-a`, `a_b`) is bad syntax.
    if !lower.split('.').all(is_dns_label) {
        return Err(Fault::Syntax);
    }
    let last = lower.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fault::Routing);
    }
    Ok(lower)
}

/// One label: 1 to 63 characters from `a-z 0-9 -` or non-ASCII, not starting or ending with `-`.
/// IDNA full stops (`。 ． ｡`) are refused, since an IDNA-aware downstream would read them as dots.
fn is_dns_label(label: &str) -> bool {
    let ok_char = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!c.is_ascii() && !matches!(c, '\u{3002}' | '\u{FF0E}' | '\u{FF61}'))
    };
    (1..=MAX_LABEL_LEN).contains(&label.chars().count()) && !label.starts_with('-') && !label.ends_with('-') && label.chars().all(ok_char)
}

/// RFC 5321 `atext` plus, for SMTPUTF8, any non-ASCII character (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// `true` when `local` can be sent as is: dot-separated non-empty runs of atext.
fn is_dot_atom(local: &str) -> bool {
    local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// The local part as it must appear on the wire: itself when a dot-atom, otherwise a quoted string.
fn render_local(local: &str) -> String {
    if is_dot_atom(local) {
        return local.to_owned();
    }
    let mut out = String::with_capacity(local.len() + 2);
    out.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A plausible DNS name: labels of letters, digits and hyphens, no trailing dot.
pub fn is_domain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(domain: &str) -> bool {
        matches!(domain, "example.test" | "served.test" | "bücher.test")
    }

    fn rcpt(raw: &str) -> Result<Mailbox, RcptProblem> {
        check_recipient(raw, false, served)
    }

    fn rcpt_utf8(raw: &str) -> Result<Mailbox, RcptProblem> {
        check_recipient(raw, true, served)
    }

    fn mb(local: &str, domain: &str) -> Mailbox {
        Mailbox { local: local.into(), domain: domain.into() }
    }

    /// What smtp-proto's parser hands the session for `RCPT TO:<path>`: `Ok(address)` or the error text.
    fn proto_rcpt(path: &[u8]) -> Result<String, String> {
        let line = [b"RCPT TO:", path, b"\r\n"].concat();
        match smtp_proto::Request::parse(&mut line.iter()) {
            Ok(smtp_proto::Request::Rcpt { to }) => Ok(to.address.into_owned()),
            other => Err(format!("{other:?}")),
        }
    }

    fn proto_mail(path: &[u8]) -> Result<String, String> {
        let line = [b"MAIL FROM:", path, b"\r\n"].concat();
        match smtp_proto::Request::parse(&mut line.iter()) {
            Ok(smtp_proto::Request::Mail { from }) => Ok(from.address.into_owned()),
            other => Err(format!("{other:?}")),
        }
    }

    fn ok(s: &str) -> Result<String, String> {
        Ok(s.to_owned())
    }

    // ---- smtp-proto 0.2.5 behaviour we rely on (pinned; a change here needs a look at this module) ----

    #[test]
    fn smtp_proto_plain_and_source_route() {
        assert_eq!(proto_rcpt(b"<a@b>"), ok("a@b"));
        assert_eq!(proto_rcpt(b"<@x,@y:a@c>"), ok("a@c"));
        assert_eq!(proto_rcpt(b"<@x:a@c>"), ok("a@c"));
        assert_eq!(proto_rcpt(b"< a@b>"), ok("a@b"));
    }

    #[test]
    fn smtp_proto_postmaster_and_null_are_both_empty() {
        assert_eq!(proto_rcpt(b"<>"), ok(""));
        assert_eq!(proto_rcpt(b"<postmaster>"), ok(""));
        assert_eq!(proto_rcpt(b"<PostMaster>"), ok(""));
        assert_eq!(proto_rcpt(b"<\"postmaster\">"), ok(""));
        assert_eq!(proto_mail(b"<postmaster>"), ok(""));
        assert_eq!(proto_rcpt(b"<postmaster@x.test>"), ok("postmaster@x.test"));
    }

    #[test]
    fn smtp_proto_unquotes_quoted_local_parts() {
        assert_eq!(proto_rcpt(b"<\"a b\"@c>"), ok("a b@c"));
        assert_eq!(proto_rcpt(b"<\"a@b\"@c>"), ok("a@b@c"));
        assert_eq!(proto_rcpt(b"<\"a\\\"b\"@c>"), ok("a\"b@c"));
        assert_eq!(proto_rcpt(b"<\"a\\\\b\"@c>"), ok("a\\b@c"));
        assert_eq!(proto_rcpt(b"<\"a>b\"@c>"), ok("a>b@c"));
        assert_eq!(proto_rcpt(b"<a\"b\"c@d>"), ok("abc@d"));
        assert_eq!(proto_rcpt(b"<\"a\tb\"@c>"), ok("a\tb@c"));
        assert_eq!(proto_rcpt(b"<\"a\0b\"@c>"), ok("a\0b@c"));
        // Quotes work in the domain too, hiding an '@' from its count.
        assert_eq!(proto_rcpt(b"<a@\"evil.test@served.test\">"), ok("a@evil.test@served.test"));
        assert!(proto_rcpt(b"<\"\"@c>").is_err());
    }

    #[test]
    fn smtp_proto_drops_carriage_returns_inside_the_path() {
        assert_eq!(proto_rcpt(b"<a\rb@c>"), ok("ab@c"));
    }

    #[test]
    fn smtp_proto_dots() {
        assert_eq!(proto_rcpt(b"<a@b.>"), ok("a@b."));
        assert_eq!(proto_rcpt(b"<a.@b>"), ok("a.@b"));
        assert!(proto_rcpt(b"<.a@b>").is_err());
        assert!(proto_rcpt(b"<a..b@c>").is_err());
        assert!(proto_rcpt(b"<a@.b>").is_err());
        assert!(proto_rcpt(b"<a@b..c>").is_err());
    }

    #[test]
    fn smtp_proto_refuses_ip_literals() {
        assert!(proto_rcpt(b"<a@[192.0.2.1]>").is_err());
        assert!(proto_rcpt(b"<a@[IPv6:::1]>").is_err());
    }

    #[test]
    fn smtp_proto_passes_routing_characters_and_odd_domains() {
        assert_eq!(proto_rcpt(b"<a%b@c>"), ok("a%b@c"));
        assert_eq!(proto_rcpt(b"<a!b@c>"), ok("a!b@c"));
        assert_eq!(proto_rcpt(b"<a@>"), ok("a@"));
        assert_eq!(proto_rcpt(b"<a@-b>"), ok("a@-b"));
        assert_eq!(proto_rcpt(b"<a@b_c>"), ok("a@b_c"));
        assert_eq!(proto_rcpt(b"<a@b#c>"), ok("a@b#c"));
        assert_eq!(proto_rcpt(b"<a@b\x7f>"), ok("a@b\x7f"));
        assert!(proto_rcpt(b"<b!a>").is_err());
        assert!(proto_rcpt(b"<a@b@c>").is_err());
        assert!(proto_rcpt(b"<@b>").is_err());
    }

    #[test]
    fn smtp_proto_non_ascii_is_not_its_business() {
        assert_eq!(proto_rcpt("<ü@b>".as_bytes()), ok("ü@b"));
        assert_eq!(proto_rcpt("<a@b\u{3002}c>".as_bytes()), ok("a@b\u{3002}c"));
        // Invalid UTF-8 becomes U+FFFD.
        assert_eq!(proto_rcpt(b"<a@\xff>"), ok("a@\u{FFFD}"));
    }

    // ---- check_recipient ----

    #[test]
    fn valid_recipient_is_lower_cased_in_the_domain_only() {
        assert_eq!(rcpt("User.Name+tag@Example.TEST"), Ok(mb("User.Name+tag", "example.test")));
        assert_eq!(rcpt("a@served.test").map(|m| m.address()), ok_addr("a@served.test"));
    }

    fn ok_addr(s: &str) -> Result<String, RcptProblem> {
        Ok(s.to_owned())
    }

    #[test]
    fn other_domains_are_not_local() {
        assert_eq!(rcpt("a@elsewhere.test"), Err(RcptProblem::NotLocal));
        assert_eq!(rcpt("a@sub.example.test"), Err(RcptProblem::NotLocal));
    }

    #[test]
    fn percent_bang_and_quoted_at_are_not_local() {
        assert_eq!(rcpt("a%evil.test@example.test"), Err(RcptProblem::NotLocal));
        assert_eq!(rcpt("evil.test!a@example.test"), Err(RcptProblem::NotLocal));
        // <"a@evil.test"@example.test> after smtp-proto's unquoting:
        assert_eq!(rcpt("a@evil.test@example.test"), Err(RcptProblem::NotLocal));
        // <a@"evil.test@example.test">, quoted domain trick, arrives the same way.
        let raw = proto_rcpt(b"<a@\"evil.test@example.test\">").unwrap_or_default();
        assert_eq!(rcpt(&raw), Err(RcptProblem::NotLocal));
    }

    #[test]
    fn literals_trailing_dots_and_numeric_domains_are_not_local() {
        for raw in ["a@[192.0.2.1]", "a@[IPv6:::1]", "a@example.test.", "a@192.0.2.1", "a@example.123"] {
            assert_eq!(rcpt(raw), Err(RcptProblem::NotLocal), "{raw}");
        }
    }

    #[test]
    fn domains_that_are_not_dns_names_are_bad_syntax() {
        for raw in ["a@", "a@.example.test", "a@example..test", "a@-example.test", "a@example-.test", "a@exa_mple.test", "a@exa#mple.test"]
        {
            assert_eq!(rcpt(raw), Err(RcptProblem::Syntax), "{raw}");
        }
    }

    #[test]
    fn idna_full_stops_are_not_local() {
        for dot in ['\u{3002}', '\u{FF0E}', '\u{FF61}'] {
            let raw = format!("a@example{dot}test");
            assert_eq!(check_recipient(&raw, true, |_| true), Err(RcptProblem::NotLocal), "{raw}");
        }
    }

    #[test]
    fn syntax_errors() {
        for raw in [
            "",
            "nodomain",
            "@example.test",
            "a\tb@example.test",
            "a\0b@example.test",
            "a\rb@example.test",
            "a\nb@example.test",
            "a@example.test\x7f",
            "a@exa mple.test",
        ] {
            assert_eq!(rcpt(raw), Err(RcptProblem::Syntax), "{raw:?}");
        }
    }

    #[test]
    fn lengths() {
        let local64 = "a".repeat(64);
        assert!(rcpt(&format!("{local64}@example.test")).is_ok());
        assert_eq!(rcpt(&format!("{local64}b@example.test")), Err(RcptProblem::Syntax));
        // The limit applies to the quoted form: 62 characters plus a space need quotes (65 octets).
        let spaced = format!("{} b", "a".repeat(61));
        assert_eq!(rcpt(&format!("{spaced}@example.test")), Err(RcptProblem::Syntax));
        let long_domain = format!("{}.test", vec!["a".repeat(63); 4].join("."));
        assert!(long_domain.len() > 255);
        assert_eq!(check_recipient(&format!("a@{long_domain}"), false, |_| true), Err(RcptProblem::Syntax));
        let long_label = format!("{}.test", "a".repeat(64));
        assert_eq!(check_recipient(&format!("a@{long_label}"), false, |_| true), Err(RcptProblem::Syntax));
        let ok_label = format!("{}.test", "a".repeat(63));
        assert!(check_recipient(&format!("a@{ok_label}"), false, |_| true).is_ok());
    }

    #[test]
    fn non_ascii_needs_smtputf8() {
        assert_eq!(rcpt("ü@example.test"), Err(RcptProblem::NeedsSmtpUtf8));
        assert_eq!(rcpt("a@Bücher.test"), Err(RcptProblem::NeedsSmtpUtf8));
        assert_eq!(rcpt("a@\u{FFFD}"), Err(RcptProblem::NeedsSmtpUtf8));
        assert_eq!(rcpt_utf8("ü@Example.test"), Ok(mb("ü", "example.test")));
        assert_eq!(rcpt_utf8("Ü@BÜCHER.test"), Ok(mb("Ü", "bücher.test")));
        assert_eq!(rcpt_utf8("a@\u{FFFD}.test"), Err(RcptProblem::Syntax));
        assert_eq!(rcpt_utf8("a\u{2028}b@example.test"), Err(RcptProblem::Syntax));
        assert_eq!(rcpt_utf8("a\u{85}b@example.test"), Err(RcptProblem::Syntax));
    }

    #[test]
    fn quoted_local_parts_are_requoted() {
        assert_eq!(rcpt("john doe@example.test").map(|m| m.address()), ok_addr("\"john doe\"@example.test"));
        assert_eq!(rcpt("a\"b@example.test").map(|m| m.address()), ok_addr("\"a\\\"b\"@example.test"));
        assert_eq!(rcpt("a\\b@example.test").map(|m| m.address()), ok_addr("\"a\\\\b\"@example.test"));
        assert_eq!(rcpt("a.@example.test").map(|m| m.address()), ok_addr("\"a.\"@example.test"));
        assert_eq!(rcpt("a>b@example.test").map(|m| m.address()), ok_addr("\"a>b\"@example.test"));
        assert_eq!(rcpt("o'brien@example.test").map(|m| m.to_string()), ok_addr("o'brien@example.test"));
    }

    #[test]
    fn parsed_paths_end_to_end() {
        let check = |path: &[u8]| match proto_rcpt(path) {
            Ok(raw) => rcpt(&raw).map(|m| m.address()),
            Err(_) => Err(RcptProblem::Syntax),
        };
        assert_eq!(check(b"<@relay.test:a@example.test>"), ok_addr("a@example.test"));
        assert_eq!(check(b"<\"a%b\"@example.test>"), Err(RcptProblem::NotLocal));
        assert_eq!(check(b"<a@example.test.>"), Err(RcptProblem::NotLocal));
        assert_eq!(check(b"<postmaster>"), Err(RcptProblem::Syntax));
        assert_eq!(check(b"<\"a\0\"@example.test>"), Err(RcptProblem::Syntax));
    }

    // ---- check_sender ----

    #[test]
    fn sender_null_and_valid() {
        assert_eq!(check_sender("", false), Ok(None));
        assert_eq!(check_sender("Bounce+x=y@Lists.Example.ORG", false), Ok(Some(mb("Bounce+x=y", "lists.example.org"))));
        // Routing characters are no threat in a reverse path.
        assert!(check_sender("a%b@example.org", false).is_ok());
    }

    #[test]
    fn sender_problems() {
        for raw in ["nodomain", "@example.org", "a@", "a@example.org.", "a@[192.0.2.1]", "a@exa_mple.org", "a\0@example.org"] {
            assert_eq!(check_sender(raw, false), Err(SenderProblem::Syntax), "{raw:?}");
        }
        assert_eq!(check_sender("ü@example.org", false), Err(SenderProblem::NeedsSmtpUtf8));
        assert!(check_sender("ü@example.org", true).is_ok());
    }

    #[test]
    fn never_panics_on_awkward_input() {
        let samples = [
            "@",
            "@@",
            "a@@",
            ".@.",
            "\u{130}@\u{130}.test",
            "a@\u{212A}.test",
            "\"",
            "\\",
            "a@-",
            "a@.",
            "a@..",
            "x@xn--",
            "\u{0}",
            "a@\u{10FFFF}",
        ];
        for s in samples {
            let _ = check_recipient(s, true, |_| true);
            let _ = check_recipient(s, false, |_| true);
            let _ = check_sender(s, true);
            let _ = check_sender(s, false);
        }
    }
}
