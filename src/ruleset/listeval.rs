//! SpamAssassin's DNS-list `eval:` functions, answered from what moat's dnsbl filter asked its
//! lists ([`ListLookup`]): `check_rbl(set, zone[, subtest])` and `check_rbl_sub(set, subtest)`
//! on the client's address, `check_uridnsbl(rule)` with the rule's `urirhssub`/`urirhsbl` line
//! on the links' domains.
//!
//! Guarantees, following SpamAssassin's `Dns.pm`, `DNSEval` and `URIDNSBL` plugins:
//! - a rule reads only a zone the operator configured in `[reputation]` (`dnsbl`/`dnswl` for the
//!   client, `uribl` for links), by name; a zone moat did not ask, a client moat does not look
//!   up (loopback, private) or a failed query without a hit leaves the rule *unknown*, never
//!   "not hit";
//! - subtests: for `check_rbl*`, a number is a bitmask, a dotted quad an exact answer, anything
//!   else a regex over the answer's text, and only answers in 127.0.0.0/8 count; for URI rules,
//!   SpamAssassin's forms `m`, `n1-n2` and `n/m` (decimal, `0x` hex or dotted quads);
//! - sets: `-lastexternal` and `-firsttrusted` name the host that handed the message to us, the
//!   client moat looks up, so both hit and miss are known; a set over every untrusted relay
//!   (no suffix, `-notfirsthop`) hits when the client is listed and is unknown otherwise (moat
//!   does not look up the relays the Received trail names); `-untrusted` (every relay but the
//!   client) is not answered; nor are TXT lookups (`check_rbl_txt`) and `uridnsbl`/`uridnssub`
//!   (they look up the addresses of a domain's name servers).

use crate::verdict::{ListKind, ListLookup, ListedItem};
use std::net::Ipv4Addr;

/// Which lookups a list rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The client: the last external host (`-lastexternal`, `-firsttrusted`).
    Client,
    /// Any untrusted relay (no suffix, `-notfirsthop`): moat knows only the client's answer.
    AnyRelay,
    /// The domains of the message's links (`check_uridnsbl`).
    Links,
}

/// What an answer must be for the rule to hit.
#[derive(Debug, Clone)]
pub enum Subtest {
    /// Any answer in 127.0.0.0/8.
    Any,
    /// Exactly this answer.
    Address(Ipv4Addr),
    /// An answer in 127.0.0.0/8 with one of these bits set.
    Mask(u32),
    /// An answer in this range, both ends included.
    Range(u32, u32),
    /// An answer equal to `value` under `mask`.
    Masked { value: u32, mask: u32 },
    /// An answer whose dotted text matches (`check_rbl*` only).
    Regex(regex::Regex),
}

impl PartialEq for Subtest {
    fn eq(&self, other: &Subtest) -> bool {
        match (self, other) {
            (Subtest::Regex(a), Subtest::Regex(b)) => a.as_str() == b.as_str(),
            (Subtest::Any, Subtest::Any) => true,
            (Subtest::Address(a), Subtest::Address(b)) => a == b,
            (Subtest::Mask(a), Subtest::Mask(b)) => a == b,
            (Subtest::Range(a, b), Subtest::Range(c, d)) => (a, b) == (c, d),
            (Subtest::Masked { value: a, mask: b }, Subtest::Masked { value: c, mask: d }) => (a, b) == (c, d),
            _ => false,
        }
    }
}

fn in_loopback(answer: u32) -> bool {
    answer >> 24 == 127
}

impl Subtest {
    /// A `check_rbl`/`check_rbl_sub` subtest: a bitmask, an address, or a regex.
    pub fn of_rbl(text: &str) -> Option<Subtest> {
        if let Ok(mask) = text.parse::<u32>() {
            return Some(Subtest::Mask(mask));
        }
        if let Ok(address) = text.parse::<Ipv4Addr>() {
            return Some(Subtest::Address(address));
        }
        regex::Regex::new(text).ok().map(Subtest::Regex)
    }

    /// A `urirhssub` subtest: `m`, `n1-n2` or `n/m`, each a decimal, `0x` hex or dotted quad.
    pub fn of_uri(text: &str) -> Option<Subtest> {
        let number = |t: &str| -> Option<(u32, bool)> {
            if let Some(hex) = t.strip_prefix("0x") {
                return u32::from_str_radix(hex, 16).ok().filter(|_| hex.len() <= 8).map(|n| (n, false));
            }
            if t.len() <= 10 && t.bytes().all(|b| b.is_ascii_digit()) {
                return t.parse::<u32>().ok().map(|n| (n, false));
            }
            t.parse::<Ipv4Addr>().ok().map(|a| (u32::from(a), true))
        };
        if let Some((a, b)) = text.split_once('-') {
            return Some(Subtest::Range(number(a)?.0, number(b)?.0));
        }
        if let Some((value, mask)) = text.split_once('/') {
            return Some(Subtest::Masked { value: number(value)?.0, mask: number(mask)?.0 });
        }
        Some(match number(text)? {
            (address, true) => Subtest::Address(Ipv4Addr::from(address)),
            (mask, false) => Subtest::Mask(mask),
        })
    }

    fn passes(&self, answer: Ipv4Addr) -> bool {
        let n = u32::from(answer);
        match self {
            Subtest::Any => in_loopback(n),
            Subtest::Address(a) => *a == answer,
            Subtest::Mask(mask) => in_loopback(n) && n & mask != 0,
            Subtest::Range(low, high) => (*low..=*high).contains(&n),
            Subtest::Masked { value, mask } => n & mask == value & mask,
            Subtest::Regex(re) => re.is_match(&answer.to_string()),
        }
    }
}

/// One list rule, resolved: the zone it reads, whose lookups, and the answer it wants.
#[derive(Debug, Clone, PartialEq)]
pub struct ListTest {
    /// Lower-case, no trailing dot.
    pub zone: String,
    pub scope: Scope,
    pub subtest: Subtest,
}

/// A `check_rbl*` set's scope by its name's suffix; None for one moat cannot answer.
pub fn scope_of_set(set: &str) -> Option<Scope> {
    let suffix = set.rsplit_once('-').map_or("", |(_, s)| s);
    match suffix {
        "lastexternal" | "firsttrusted" => Some(Scope::Client),
        "untrusted" => None,
        _ => Some(Scope::AnyRelay),
    }
}

/// A zone as the rule files write it, as moat's configuration keeps it.
pub fn zone_name(zone: &str) -> String {
    zone.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl ListTest {
    /// Whether the rule hits; None when unknown (see the module's guarantees).
    pub fn answer(&self, lists: &[ListLookup]) -> Option<bool> {
        let kind = if self.scope == Scope::Links { ListKind::Domains } else { ListKind::Client };
        let mut asked = false;
        let mut failed = false;
        for lookup in lists.iter().filter(|l| l.kind == kind && l.zone == self.zone) {
            asked = true;
            for answer in lookup.answers.iter().filter(|a| self.reads(&a.item)) {
                match &answer.records {
                    None => failed = true,
                    Some(records) if records.iter().any(|&r| self.counts(r) && self.subtest.passes(r)) => return Some(true),
                    Some(_) => {}
                }
            }
        }
        (asked && !failed && self.scope != Scope::AnyRelay).then_some(false)
    }

    fn reads(&self, item: &ListedItem) -> bool {
        match item {
            ListedItem::Client(_) => self.scope != Scope::Links,
            ListedItem::Domain { link, .. } => self.scope == Scope::Links && *link,
        }
    }

    /// `check_rbl*` counts only answers in 127.0.0.0/8; URI subtests decide for themselves.
    fn counts(&self, answer: Ipv4Addr) -> bool {
        self.scope == Scope::Links || in_loopback(u32::from(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::ListAnswer;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("address")
    }

    fn client(zone: &str, records: Option<&[&str]>) -> ListLookup {
        let records = records.map(|r| r.iter().map(|a| ip(a)).collect());
        ListLookup {
            zone: zone.into(),
            kind: ListKind::Client,
            answers: vec![ListAnswer { item: ListedItem::Client("192.0.2.1".parse().expect("ip")), records }],
        }
    }

    fn test(zone: &str, scope: Scope, subtest: Subtest) -> ListTest {
        ListTest { zone: zone.into(), scope, subtest }
    }

    #[test]
    fn rbl_subtests_follow_spamassassin() {
        assert_eq!(Subtest::of_rbl("2"), Some(Subtest::Mask(2)));
        assert_eq!(Subtest::of_rbl("127.0.0.2"), Some(Subtest::Address(ip("127.0.0.2"))));
        let Some(Subtest::Regex(re)) = Subtest::of_rbl(r"^127\.0\.0\.[4567]$") else { panic!("a regex") };
        assert!(re.is_match("127.0.0.5") && !re.is_match("127.0.0.2"));
        assert_eq!(Subtest::of_rbl("(unclosed"), None);
        let xbl = test("zen.test", Scope::Client, Subtest::of_rbl(r"^127\.0\.0\.[4567]$").expect("regex"));
        assert_eq!(xbl.answer(&[client("zen.test", Some(&["127.0.0.4"]))]), Some(true));
        assert_eq!(xbl.answer(&[client("zen.test", Some(&["127.0.0.2"]))]), Some(false));
        let dul = test("maps.test", Scope::Client, Subtest::Mask(2));
        assert_eq!(dul.answer(&[client("maps.test", Some(&["127.0.0.3"]))]), Some(true));
        assert_eq!(dul.answer(&[client("maps.test", Some(&["10.0.0.2"]))]), Some(false), "only 127/8 answers count");
    }

    #[test]
    fn unknown_unless_the_zone_was_asked_about_the_client_and_answered() {
        let any = test("zen.test", Scope::Client, Subtest::Any);
        assert_eq!(any.answer(&[]), None, "zone not configured");
        assert_eq!(any.answer(&[client("other.test", Some(&["127.0.0.2"]))]), None);
        assert_eq!(any.answer(&[client("zen.test", None)]), None, "the query failed");
        assert_eq!(any.answer(&[client("zen.test", Some(&[]))]), Some(false), "not listed");
        let relays = test("zen.test", Scope::AnyRelay, Subtest::Any);
        assert_eq!(relays.answer(&[client("zen.test", Some(&["127.0.0.2"]))]), Some(true));
        assert_eq!(relays.answer(&[client("zen.test", Some(&[]))]), None, "other relays were not looked up");
    }

    #[test]
    fn uri_subtests_and_links() {
        assert_eq!(Subtest::of_uri("2"), Some(Subtest::Mask(2)));
        assert_eq!(Subtest::of_uri("0x10"), Some(Subtest::Mask(16)));
        assert_eq!(Subtest::of_uri("127.0.1.2"), Some(Subtest::Address(ip("127.0.1.2"))));
        assert_eq!(Subtest::of_uri("127.0.1.20-127.0.1.39"), Some(Subtest::Range(0x7f00_0114, 0x7f00_0127)));
        assert_eq!(Subtest::of_uri("0.0.0.16/0.0.0.16"), Some(Subtest::Masked { value: 16, mask: 16 }));
        assert_eq!(Subtest::of_uri("^127"), None);
        let links = |answers: Vec<(&str, bool, &[&str])>| ListLookup {
            zone: "dbl.test".into(),
            kind: ListKind::Domains,
            answers: answers
                .into_iter()
                .map(|(name, link, records)| ListAnswer {
                    item: ListedItem::Domain { name: name.into(), sender: !link, link },
                    records: Some(records.iter().map(|a| ip(a)).collect()),
                })
                .collect(),
        };
        let spam = test("dbl.test", Scope::Links, Subtest::of_uri("127.0.1.2").expect("subtest"));
        assert_eq!(spam.answer(&[links(vec![("a.test", true, &[]), ("b.test", true, &["127.0.1.2"])])]), Some(true));
        assert_eq!(spam.answer(&[links(vec![("sender.test", false, &["127.0.1.2"])])]), Some(false), "the sender's domain is no link");
        assert_eq!(spam.answer(&[links(vec![])]), Some(false), "no links: asked about nothing");
        assert_eq!(spam.answer(&[client("dbl.test", Some(&["127.0.1.2"]))]), None, "a client lookup is not a URI lookup");
    }
}
