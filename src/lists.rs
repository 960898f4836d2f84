//! Allow and block lists at three levels: global, per recipient domain, per recipient.
//!
//! An entry matches the envelope sender or the client address:
//!
//! | entry                          | matches                                                   |
//! |--------------------------------|-----------------------------------------------------------|
//! | `"sender@x.test"`              | exactly that sender address (case-insensitive)            |
//! | `"x.test"`, `"*@x.test"`       | senders whose domain is exactly `x.test`                  |
//! | `".x.test"`, `"*.x.test"`, `"*@*.x.test"` | senders in `x.test` or any subdomain of it     |
//! | `"192.0.2.7"`, `"2001:db8::1"` | that client address                                       |
//! | `"192.0.2.0/24"`, `"2001:db8::/32"` | client addresses in the network                      |
//!
//! The null sender (`<>`) matches no address or domain entry, only address entries for the
//! client IP. IPv4-mapped IPv6 clients (`::ffff:192.0.2.7`) match IPv4 entries.
//!
//! **The From header field.** Once the message is in (the DATA phase), address and domain
//! entries also match the address of its From field ([`HeaderFrom`]), the sender a user sees
//! and recognises (a newsletter's envelope sender is often a one-off bounce address). A block
//! entry matches it as it is. An allow entry matches it only when the From domain authenticated
//! the message (DMARC pass, or a valid DKIM signature or an SPF pass for a domain aligned with
//! it: see `scoring::from_authenticated`), because anyone can write any From field: a forged
//! From does not ride on an allow entry. Matching the envelope sender is unchanged.
//!
//! **Precedence.** The most specific level that has a matching entry decides: the recipient's
//! own lists first, then the lists of the recipient's domain, then the global lists. So a user
//! can allow a sender their domain blocks, and a domain can block a sender the global list
//! allows. Within one level, a block entry beats an allow entry. A hit is reported as the
//! symbol `ALLOW_LIST` or `BLOCK_LIST` with the level and the entry as detail; what it does is
//! policy: `ALLOW_LIST` forces "accept", which only overrides the spam score, so an allowed
//! sender's virus is still a virus (see `verdict::decide`).
//!
//! **Domains that do not let users opt out** (`user_opt_out = false`). There a user's lists
//! cannot switch filtering off by the back door: their allow entries count only when they name
//! one sender (an address or one exact domain; never a network or a subdomain pattern), and only
//! after the domain's and the global lists found nothing, so they never override a domain-level
//! or global decision. Their block entries still come first. [`Entry::restricted_allow`] tells
//! the Message Center which entries such a user may add.
//!
//! **Filtering on/off.** [`Lists::filtering_enabled`] tells whether spam filtering applies to a
//! recipient: the user's own choice when they made one and their domain allows it
//! (`user_opt_out`, default true), else the domain's `filtering` (default true), else on.
//!
//! **Sources.** [`Lists`] is a plain value. Today it is built from the configuration
//! (`config::Lists::build`); the user store will build one from configuration plus its rows
//! ([`Lists::set_user`]) and swap it in atomically when the rows change. Entries are parsed once,
//! when the value is built: a bad entry in the configuration is a config error with file:line.

use crate::smtp::address::is_domain_name;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// The level a list belongs to, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    User,
    Domain,
    Global,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::User => "user",
            Level::Domain => "domain",
            Level::Global => "global",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The symbol for an allow-list hit.
pub const ALLOW_LIST: &str = "ALLOW_LIST";
/// The symbol for a block-list hit.
pub const BLOCK_LIST: &str = "BLOCK_LIST";

/// Which list decided, at which level, through which entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListHit {
    /// [`ALLOW_LIST`] or [`BLOCK_LIST`].
    pub symbol: &'static str,
    pub level: Level,
    /// The entry as written, e.g. `".x.test"`.
    pub entry: String,
    /// The entry matched the From field's address, not the envelope sender or the client.
    pub by_from: bool,
}

impl ListHit {
    /// The detail its symbol carries as evidence, e.g. `domain list: .x.test`, or
    /// `user list: a@x.test (From field)`.
    pub fn detail(&self) -> String {
        let from = if self.by_from { " (From field)" } else { "" };
        format!("{} list: {}{from}", self.level, self.entry)
    }
}

/// The message's From field address and whether its domain authenticated the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFrom<'a> {
    pub address: &'a str,
    pub authenticated: bool,
}

/// One parsed list entry. Deserializes from its string form (config errors carry the location).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Entry {
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A full address, lower-cased.
    Address(String),
    /// A domain, lower-cased, without trailing dot; `subdomains` also matches below it.
    Domain { name: String, subdomains: bool },
    /// A client network.
    Net(Cidr),
}

impl Entry {
    /// Parses `"sender@x.test"`, `"x.test"`, `".x.test"`, `"*.x.test"`, `"*@x.test"`, an IP address
    /// or a CIDR network.
    pub fn parse(text: &str) -> Result<Entry, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("empty list entry".into());
        }
        let kind = if let Some(cidr) = Cidr::parse(trimmed)? {
            Kind::Net(cidr)
        } else if let Some((local, domain)) = trimmed.rsplit_once('@') {
            if local.is_empty() || local == "*" {
                domain_kind(domain, text)?
            } else {
                if local.contains('*') {
                    return Err(format!("list entry {text:?}: wildcards are only allowed as \"*@domain\""));
                }
                let Kind::Domain { name, subdomains: false } = domain_kind(domain, text)? else {
                    return Err(format!("list entry {text:?}: an address cannot name a domain pattern"));
                };
                Kind::Address(format!("{}@{name}", local.to_ascii_lowercase()))
            }
        } else {
            domain_kind(trimmed, text)?
        };
        Ok(Entry { text: trimmed.to_string(), kind })
    }

    /// Whether the entry names one sender: an address or one exact domain, not a network or a
    /// subdomain pattern.
    pub fn names_one_sender(&self) -> bool {
        matches!(self.kind, Kind::Address(_) | Kind::Domain { subdomains: false, .. })
    }

    /// Whether a user whose domain does not let users opt out may allow this entry; the error
    /// says why not, in words for the user.
    pub fn restricted_allow(&self) -> Result<(), String> {
        if self.names_one_sender() {
            Ok(())
        } else {
            Err(format!(
                "your domain's policy lets you allow one sender address or one domain (friend@example.com or example.com), not {:?}",
                self.text
            ))
        }
    }

    /// The entry as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How this entry matches `who`, if it does: `Some(false)` through the envelope sender or the
    /// client, `Some(true)` through the From field only (for an allow entry, only when the From
    /// domain authenticated the message).
    fn matches_who(&self, who: &Who<'_>, client_ip: Option<IpAddr>, allow: bool) -> Option<bool> {
        if self.matches(&who.envelope, client_ip) {
            return Some(false);
        }
        let (from, authenticated) = who.from.as_ref()?;
        let by_from = !matches!(self.kind, Kind::Net(_)) && (*authenticated || !allow) && self.matches(from, None);
        by_from.then_some(true)
    }

    fn matches(&self, sender: &Sender<'_>, client_ip: Option<IpAddr>) -> bool {
        match &self.kind {
            Kind::Address(address) => sender.address.as_deref() == Some(address.as_str()),
            Kind::Domain { name, subdomains } => sender.domain.as_deref().is_some_and(|domain| {
                domain == name
                    || (*subdomains
                        && domain.len() > name.len()
                        && domain.ends_with(name.as_str())
                        && domain.as_bytes()[domain.len() - name.len() - 1] == b'.')
            }),
            Kind::Net(cidr) => client_ip.is_some_and(|ip| cidr.contains(ip)),
        }
    }
}

impl TryFrom<String> for Entry {
    type Error = String;
    fn try_from(text: String) -> Result<Entry, String> {
        Entry::parse(&text)
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn domain_kind(pattern: &str, text: &str) -> Result<Kind, String> {
    let (name, subdomains) = match pattern.strip_prefix("*.").or_else(|| pattern.strip_prefix('.')) {
        Some(rest) => (rest, true),
        None => (pattern, false),
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if !name.contains('.') || !is_domain_name(&name) {
        return Err(format!("list entry {text:?} is not an address, a domain (x.test, .x.test, *.x.test), an IP address or a network"));
    }
    Ok(Kind::Domain { name, subdomains })
}

/// An IPv4 or IPv6 network, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `Ok(None)` when `text` does not look like an address at all; an error when it does but
    /// is not a valid one (bad prefix, host bits set).
    pub fn parse(text: &str) -> Result<Option<Cidr>, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let Ok(network) = address.parse::<IpAddr>() else {
            return match prefix {
                Some(_) => Err(format!("list entry {text:?}: {address:?} is not an IP address")),
                None => Ok(None),
            };
        };
        let network = network.to_canonical();
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= bits => p,
                _ => return Err(format!("list entry {text:?}: prefix length must be 0..={bits}")),
            },
        };
        let cidr = Cidr { network, prefix };
        if cidr.mask(network) != network {
            return Err(format!("list entry {text:?} has host bits set; the network is {}/{prefix}", cidr.mask(network)));
        }
        Ok(Some(cidr))
    }

    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.mask(ip) == self.network
    }
}

/// The allow and block entries of one level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListSet {
    pub allow: Vec<Entry>,
    pub block: Vec<Entry>,
}

impl ListSet {
    /// Parses entries from any source (configuration, user store).
    pub fn parse<'a>(allow: impl IntoIterator<Item = &'a str>, block: impl IntoIterator<Item = &'a str>) -> Result<ListSet, String> {
        Ok(ListSet {
            allow: allow.into_iter().map(Entry::parse).collect::<Result<_, _>>()?,
            block: block.into_iter().map(Entry::parse).collect::<Result<_, _>>()?,
        })
    }

    fn find(&self, sender: &Who<'_>, client_ip: Option<IpAddr>, level: Level) -> Option<ListHit> {
        self.find_block(sender, client_ip, level).or_else(|| self.find_allow(sender, client_ip, level, false))
    }

    fn find_block(&self, sender: &Who<'_>, client_ip: Option<IpAddr>, level: Level) -> Option<ListHit> {
        first_hit(BLOCK_LIST, &self.block, sender, client_ip, level)
    }

    /// The first matching allow entry; with `one_sender_only`, entries that name more than one
    /// sender (networks, subdomain patterns) are passed over.
    fn find_allow(&self, sender: &Who<'_>, client_ip: Option<IpAddr>, level: Level, one_sender_only: bool) -> Option<ListHit> {
        let entries = self.allow.iter().filter(|e| !one_sender_only || e.names_one_sender());
        first_hit(ALLOW_LIST, entries, sender, client_ip, level)
    }
}

fn first_hit<'e>(
    symbol: &'static str,
    entries: impl IntoIterator<Item = &'e Entry>,
    who: &Who<'_>,
    client_ip: Option<IpAddr>,
    level: Level,
) -> Option<ListHit> {
    let allow = symbol == ALLOW_LIST;
    entries
        .into_iter()
        .find_map(|e| e.matches_who(who, client_ip, allow).map(|by_from| ListHit { symbol, level, entry: e.text.clone(), by_from }))
}

/// Lists and filtering choice of one recipient domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPolicy {
    pub lists: ListSet,
    /// Spam filtering for the domain's recipients.
    pub filtering: bool,
    /// Users may make their own filtering choice.
    pub user_opt_out: bool,
}

impl Default for DomainPolicy {
    fn default() -> Self {
        DomainPolicy { lists: ListSet::default(), filtering: true, user_opt_out: true }
    }
}

/// Lists and filtering choice of one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPolicy {
    pub lists: ListSet,
    /// `None`: the domain decides.
    pub filtering: Option<bool>,
}

/// All allow and block lists; cheap to query, built once per configuration (or store change).
#[derive(Debug, Clone, Default)]
pub struct Lists {
    global: ListSet,
    /// By lower-cased domain name.
    domains: HashMap<String, DomainPolicy>,
    /// By lower-cased address.
    users: HashMap<String, UserPolicy>,
}

/// The envelope sender, normalised once per check.
struct Sender<'a> {
    address: Option<String>,
    domain: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Sender<'a> {
    fn new(sender: &'a str) -> Sender<'a> {
        let sender = sender.trim().trim_start_matches('<').trim_end_matches('>');
        match sender.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                let domain = domain.strip_suffix('.').unwrap_or(domain).to_ascii_lowercase();
                Sender { address: Some(format!("{}@{domain}", local.to_ascii_lowercase())), domain: Some(domain.into()) }
            }
            _ => Sender { address: None, domain: None },
        }
    }
}

/// Everything an entry can match besides the client: the envelope sender and, once the message
/// is in, its From field's address with whether its domain authenticated it.
struct Who<'a> {
    envelope: Sender<'a>,
    from: Option<(Sender<'a>, bool)>,
}

fn domain_of(address: &str) -> String {
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
    domain.strip_suffix('.').unwrap_or(domain).to_ascii_lowercase()
}

impl Lists {
    /// No lists at all: nothing matches, filtering is on for everyone.
    pub fn new(global: ListSet) -> Lists {
        Lists { global, ..Lists::default() }
    }

    /// Sets (replaces) the policy of a recipient domain.
    pub fn set_domain(&mut self, domain: &str, policy: DomainPolicy) {
        let domain = domain.strip_suffix('.').unwrap_or(domain).to_ascii_lowercase();
        self.domains.insert(domain, policy);
    }

    /// Sets (replaces) the policy of one recipient, e.g. from the user store.
    pub fn set_user(&mut self, address: &str, policy: UserPolicy) {
        self.users.insert(address.to_ascii_lowercase(), policy);
    }

    /// The list hit that decides for this sender, client and recipient, if any (see the module
    /// documentation for the precedence). `sender` is the reverse path ("" for the null sender).
    pub fn check(&self, sender: &str, client_ip: Option<IpAddr>, recipient: &str) -> Option<ListHit> {
        self.check_message(sender, None, client_ip, recipient)
    }

    /// [`Lists::check`] once the message is in: address and domain entries also match its From
    /// field's address (an allow entry only when `from.authenticated`; see the module docs).
    pub fn check_message(&self, sender: &str, from: Option<HeaderFrom<'_>>, client_ip: Option<IpAddr>, recipient: &str) -> Option<ListHit> {
        let from = from.map(|f| (Sender::new(f.address), f.authenticated)).filter(|(f, _)| f.address.is_some());
        let sender = Who { envelope: Sender::new(sender), from };
        let client_ip = client_ip.map(|ip| ip.to_canonical());
        let user = self.users.get(&recipient.to_ascii_lowercase());
        let domain = self.domains.get(&domain_of(recipient));
        if let (Some(user), Some(domain)) = (user, domain.filter(|d| !d.user_opt_out)) {
            return user
                .lists
                .find_block(&sender, client_ip, Level::User)
                .or_else(|| domain.lists.find(&sender, client_ip, Level::Domain))
                .or_else(|| self.global.find(&sender, client_ip, Level::Global))
                .or_else(|| user.lists.find_allow(&sender, client_ip, Level::User, true));
        }
        let levels =
            [(Level::User, user.map(|u| &u.lists)), (Level::Domain, domain.map(|d| &d.lists)), (Level::Global, Some(&self.global))];
        levels
            .into_iter()
            .filter_map(|(level, set)| set.map(|set| (level, set)))
            .find_map(|(level, set)| set.find(&sender, client_ip, level))
    }

    /// Whether spam filtering applies to this recipient.
    pub fn filtering_enabled(&self, recipient: &str) -> bool {
        let domain = self.domains.get(&domain_of(recipient));
        let user_choice = self.users.get(&recipient.to_ascii_lowercase()).and_then(|u| u.filtering);
        match (domain, user_choice) {
            (Some(d), Some(choice)) if d.user_opt_out => choice,
            (Some(d), _) => d.filtering,
            (None, Some(choice)) => choice,
            (None, None) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(allow: &[&str], block: &[&str]) -> ListSet {
        ListSet::parse(allow.iter().copied(), block.iter().copied()).expect("valid entries")
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    fn lists() -> Lists {
        let mut lists =
            Lists::new(set(&["friend@partner.test", ".trusted.test", "198.51.100.0/24"], &["spam.test", "192.0.2.66", "bad@partner.test"]));
        lists.set_domain(
            "example.test",
            DomainPolicy { lists: set(&["spam.test"], &["*.partner.test", "2001:db8:bad::/48"]), ..DomainPolicy::default() },
        );
        lists.set_user(
            "Alice@Example.test",
            UserPolicy { lists: set(&["news@partner.test", "192.0.2.66"], &["friend@trusted.test"]), filtering: None },
        );
        lists
    }

    fn hit(symbol: &'static str, level: Level, entry: &str) -> Option<ListHit> {
        Some(ListHit { symbol, level, entry: entry.into(), by_from: false })
    }

    #[test]
    fn entries_parse_and_bad_ones_are_errors() {
        for good in [
            "a@x.test",
            "x.test",
            ".x.test",
            "*.x.test",
            "*@x.test",
            "@x.test",
            "*@*.x.test",
            "192.0.2.1",
            "192.0.2.0/24",
            "2001:db8::/32",
            "::ffff:192.0.2.1",
            "0.0.0.0/0",
        ] {
            assert!(Entry::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "x",
            "a@",
            "a@b@",
            "192.0.2.1/24",
            "192.0.2.0/33",
            "300.1.1.1/8",
            "2001:db8::1/32",
            "a*b@x.test",
            "a@.x.test",
            "x_y.test",
            "x..test",
        ] {
            assert!(Entry::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(Entry::parse("192.0.2.1/24").unwrap_err(), "list entry \"192.0.2.1/24\" has host bits set; the network is 192.0.2.0/24");
    }

    #[test]
    fn matching_is_case_insensitive_and_subdomains_need_a_leading_dot() {
        let global = set(&[], &["Sender@X.test", "exact.test", ".sub.test", "*.star.test"]);
        let lists = Lists::new(global);
        let blocked = |sender: &str| lists.check(sender, None, "u@example.test").is_some();
        assert!(blocked("sender@x.TEST"));
        assert!(blocked("<SENDER@x.test>"));
        assert!(!blocked("other@x.test"));
        assert!(blocked("a@Exact.Test"));
        assert!(!blocked("a@mail.exact.test"));
        assert!(blocked("a@sub.test") && blocked("a@deep.mail.sub.test") && blocked("a@x.star.test") && blocked("a@star.test"));
        assert!(!blocked("a@notsub.test"), "a suffix match must stop at a label boundary");
        assert!(!blocked(""), "the null sender matches no domain entry");
    }

    #[test]
    fn networks_match_v4_v6_and_mapped_addresses() {
        let lists = Lists::new(set(&[], &["192.0.2.0/25", "2001:db8::/32", "203.0.113.9"]));
        let blocked = |client: &str| lists.check("", ip(client), "u@example.test").is_some();
        assert!(blocked("192.0.2.1") && blocked("192.0.2.127") && !blocked("192.0.2.128"));
        assert!(blocked("::ffff:192.0.2.5"));
        assert!(blocked("2001:db8:1::7") && !blocked("2001:db9::1"));
        assert!(blocked("203.0.113.9") && !blocked("203.0.113.10"));
        assert!(lists.check("a@b.test", None, "u@example.test").is_none());
    }

    #[test]
    fn global_level_block_beats_allow() {
        let lists = Lists::new(set(&["partner.test"], &["bad@partner.test"]));
        assert_eq!(lists.check("bad@partner.test", None, "u@other.test"), hit(BLOCK_LIST, Level::Global, "bad@partner.test"));
        assert_eq!(lists.check("good@partner.test", None, "u@other.test"), hit(ALLOW_LIST, Level::Global, "partner.test"));
    }

    #[test]
    fn domain_level_overrides_global_and_block_beats_allow_within_it() {
        let lists = lists();
        // Global blocks spam.test, the domain allows it: the domain wins.
        assert_eq!(lists.check("x@spam.test", None, "bob@example.test"), hit(ALLOW_LIST, Level::Domain, "spam.test"));
        // Other domains still see the global block.
        assert_eq!(lists.check("x@spam.test", None, "bob@other.test"), hit(BLOCK_LIST, Level::Global, "spam.test"));
        // Global allows friend@partner.test, the domain blocks *.partner.test: the domain wins.
        assert_eq!(lists.check("friend@partner.test", None, "bob@example.test"), hit(BLOCK_LIST, Level::Domain, "*.partner.test"));
        assert_eq!(lists.check("friend@partner.test", None, "bob@other.test"), hit(ALLOW_LIST, Level::Global, "friend@partner.test"));
        // An IPv6 block at the domain level.
        assert_eq!(lists.check("a@b.test", ip("2001:db8:bad::1"), "bob@example.test"), hit(BLOCK_LIST, Level::Domain, "2001:db8:bad::/48"));
        // No domain entry matches: the global lists still apply.
        assert_eq!(lists.check("a@b.test", ip("198.51.100.3"), "bob@example.test"), hit(ALLOW_LIST, Level::Global, "198.51.100.0/24"));
        // Within the domain level, block beats allow.
        let mut both = Lists::default();
        both.set_domain("example.test", DomainPolicy { lists: set(&["a@b.test"], &["b.test"]), ..DomainPolicy::default() });
        assert_eq!(both.check("a@b.test", None, "u@example.test"), hit(BLOCK_LIST, Level::Domain, "b.test"));
    }

    #[test]
    fn user_level_overrides_domain_and_global_and_block_beats_allow_within_it() {
        let lists = lists();
        // The domain blocks *.partner.test; Alice allows news@partner.test.
        assert_eq!(lists.check("news@partner.test", None, "alice@example.test"), hit(ALLOW_LIST, Level::User, "news@partner.test"));
        // The global list blocks 192.0.2.66; Alice allows it.
        assert_eq!(lists.check("", ip("192.0.2.66"), "ALICE@example.TEST"), hit(ALLOW_LIST, Level::User, "192.0.2.66"));
        // Global allows .trusted.test; Alice blocks one address in it.
        assert_eq!(lists.check("friend@trusted.test", None, "alice@example.test"), hit(BLOCK_LIST, Level::User, "friend@trusted.test"));
        // Bob has no user lists: the domain decides.
        assert_eq!(lists.check("news@partner.test", None, "bob@example.test"), hit(BLOCK_LIST, Level::Domain, "*.partner.test"));
        // Within the user level, block beats allow.
        let mut both = Lists::default();
        both.set_user("u@example.test", UserPolicy { lists: set(&["a@b.test"], &["192.0.2.0/24"]), filtering: None });
        assert_eq!(both.check("a@b.test", ip("192.0.2.1"), "u@example.test"), hit(BLOCK_LIST, Level::User, "192.0.2.0/24"));
        assert_eq!(both.check("a@b.test", ip("198.51.100.1"), "u@example.test"), hit(ALLOW_LIST, Level::User, "a@b.test"));
    }

    #[test]
    fn users_of_a_domain_without_opt_out_cannot_allow_networks_nor_override_the_domain() {
        let mut lists = Lists::new(set(&[], &["globally-bad.test"]));
        lists.set_domain("strict.test", DomainPolicy { lists: set(&[], &["bad.test"]), user_opt_out: false, ..DomainPolicy::default() });
        let everything = set(
            &["0.0.0.0/0", "::/0", ".x.test", "*.spam.test", "friend@bad.test", "globally-bad.test", "pal@ok.test", "ok2.test"],
            &["nope@ok.test"],
        );
        lists.set_user("u@strict.test", UserPolicy { lists: everything.clone(), filtering: None });
        lists.set_user("u@free.test", UserPolicy { lists: everything, filtering: None });
        // The bypass that was reported: a user's 0.0.0.0/0 and ::/0 allowed every spam.
        assert_eq!(lists.check("spammer@spam.test", ip("203.0.113.5"), "u@strict.test"), None);
        assert_eq!(lists.check("spammer@spam.test", ip("2001:db8::5"), "u@strict.test"), None);
        assert_eq!(lists.check("a@x.test", ip("203.0.113.5"), "u@strict.test"), None, "subdomain patterns do not count");
        // The domain's and the global block lists win over the user's allow entries.
        assert_eq!(lists.check("friend@bad.test", None, "u@strict.test"), hit(BLOCK_LIST, Level::Domain, "bad.test"));
        assert_eq!(lists.check("a@globally-bad.test", None, "u@strict.test"), hit(BLOCK_LIST, Level::Global, "globally-bad.test"));
        // One sender or one domain is still allowed, and the user's own blocks still come first.
        assert_eq!(lists.check("pal@ok.test", ip("203.0.113.5"), "u@strict.test"), hit(ALLOW_LIST, Level::User, "pal@ok.test"));
        assert_eq!(lists.check("x@ok2.test", None, "u@strict.test"), hit(ALLOW_LIST, Level::User, "ok2.test"));
        assert_eq!(lists.check("nope@ok.test", None, "u@strict.test"), hit(BLOCK_LIST, Level::User, "nope@ok.test"));
        // Where the domain lets users opt out, their lists keep their full reach.
        assert_eq!(lists.check("spammer@spam.test", ip("203.0.113.5"), "u@free.test"), hit(ALLOW_LIST, Level::User, "0.0.0.0/0"));
    }

    #[test]
    fn restricted_users_may_allow_one_sender_or_one_domain_only() {
        for ok in ["friend@x.test", "x.test", "@x.test", "*@x.test"] {
            assert!(Entry::parse(ok).unwrap().restricted_allow().is_ok(), "{ok}");
        }
        for refused in ["0.0.0.0/0", "::/0", "192.0.2.7", ".x.test", "*.x.test", "*@*.x.test"] {
            assert!(Entry::parse(refused).unwrap().restricted_allow().is_err(), "{refused}");
        }
    }

    #[test]
    fn nothing_matches_gives_none() {
        assert_eq!(lists().check("who@nowhere.test", ip("203.0.113.1"), "carol@example.test"), None);
        assert_eq!(Lists::default().check("", None, ""), None);
    }

    #[test]
    fn filtering_follows_user_then_domain_then_default() {
        let mut lists = Lists::default();
        assert!(lists.filtering_enabled("anyone@anywhere.test"));
        lists.set_domain("off.test", DomainPolicy { filtering: false, ..DomainPolicy::default() });
        lists.set_domain("strict.test", DomainPolicy { user_opt_out: false, ..DomainPolicy::default() });
        lists.set_user("me@off.test", UserPolicy { filtering: Some(true), ..UserPolicy::default() });
        lists.set_user("me@strict.test", UserPolicy { filtering: Some(false), ..UserPolicy::default() });
        lists.set_user("me@free.test", UserPolicy { filtering: Some(false), ..UserPolicy::default() });
        assert!(!lists.filtering_enabled("you@off.test"));
        assert!(lists.filtering_enabled("Me@Off.test"), "a user may switch filtering on");
        assert!(lists.filtering_enabled("me@strict.test"), "the domain does not let users opt out");
        assert!(!lists.filtering_enabled("me@free.test"));
    }

    #[test]
    fn a_hit_says_its_level_and_entry() {
        let hit = ListHit { symbol: BLOCK_LIST, level: Level::Domain, entry: ".x.test".into(), by_from: false };
        assert_eq!(hit.detail(), "domain list: .x.test");
        assert_eq!(ListHit { by_from: true, ..hit }.detail(), "domain list: .x.test (From field)");
    }

    #[test]
    fn the_from_field_matches_block_entries_and_allow_entries_only_when_authenticated() {
        let mut lists = Lists::new(ListSet::default());
        lists.set_user("alice@example.test", UserPolicy { lists: set(&["service@paypal.test"], &["spam@bulk.test"]), filtering: None });
        lists.set_domain("example.test", DomainPolicy { lists: set(&["ok.test"], &["198.51.100.0/24"]), ..DomainPolicy::default() });
        let check = |envelope: &str, from: &str, authenticated: bool| {
            lists.check_message(envelope, Some(HeaderFrom { address: from, authenticated }), None, "alice@example.test")
        };
        let by_from = |symbol, level, entry: &str| Some(ListHit { symbol, level, entry: entry.into(), by_from: true });
        assert_eq!(check("bounce-1@mailer.test", "Service@PayPal.test", true), by_from(ALLOW_LIST, Level::User, "service@paypal.test"));
        assert_eq!(check("bounce-2@mailer.test", "service@paypal.test", false), None, "a forged From does not ride the entry");
        assert_eq!(check("x@other.test", "a@ok.test", true), by_from(ALLOW_LIST, Level::Domain, "ok.test"));
        assert_eq!(check("x@other.test", "spam@bulk.test", false), by_from(BLOCK_LIST, Level::User, "spam@bulk.test"));
        // The envelope sender matches as before, authenticated or not, and is named as such.
        assert_eq!(check("service@paypal.test", "else@where.test", false), hit(ALLOW_LIST, Level::User, "service@paypal.test"));
        // Networks are about the client, never the From field; no message, no From.
        assert_eq!(
            lists.check_message("a@b.test", None, ip("198.51.100.9"), "alice@example.test"),
            hit(BLOCK_LIST, Level::Domain, "198.51.100.0/24")
        );
        assert_eq!(lists.check("bounce-1@mailer.test", None, "alice@example.test"), None);
    }

    #[test]
    fn a_domain_without_opt_out_still_lets_its_users_allow_an_authenticated_from_address() {
        let mut lists = Lists::new(ListSet::default());
        lists.set_domain("strict.test", DomainPolicy { user_opt_out: false, ..DomainPolicy::default() });
        lists.set_user("u@strict.test", UserPolicy { lists: set(&["service@paypal.test", "0.0.0.0/0"], &[]), filtering: None });
        let check = |from: &str, authenticated: bool, client: &str| {
            lists.check_message("bounce@mailer.test", Some(HeaderFrom { address: from, authenticated }), ip(client), "u@strict.test")
        };
        assert!(check("service@paypal.test", true, "203.0.113.5").is_some_and(|h| h.symbol == ALLOW_LIST && h.by_from));
        assert_eq!(check("service@paypal.test", false, "203.0.113.5"), None);
        assert_eq!(check("x@spam.test", true, "203.0.113.5"), None, "the network entry still counts for nothing");
    }
}
