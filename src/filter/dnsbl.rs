//! DNS lists: DNSBL/DNSWL on the client address (connect) and URIBL/DBL on domains (data).
//!
//! - **connect**: the client IP is looked up in every `[reputation] dnsbl` and `dnswl` zone at
//!   once, as `4.3.2.1.zone.` (IPv4, reversed octets) or as 32 reversed nibbles (IPv6).
//!   Loopback, private, link-local, shared (100.64/10) and multicast addresses are never looked up.
//! - **data**: the registrable domains of the envelope sender and of the URLs in the body (see
//!   [`super::uri`]; at most `max_uri_domains`, de-duplicated) are looked up in every `uribl` zone
//!   as `domain.zone.`, a bounded number of queries at a time.
//!
//! Answers: one in the zone's code map gives its symbol; any other answer in 127.0.0.0/8 gives the
//! zone's default symbol. Answers outside 127.0.0.0/8, in 127.255.255.0/24, or in the zone's
//! `ignore` list are refusals (a list refusing a public resolver answers e.g. 127.255.255.254):
//! logged once per zone, never scored. NXDOMAIN (or no A record) means "not listed". A timeout,
//! SERVFAIL or any other failure gives `DNSBL_TEMPERROR` with the zones as detail; the other
//! zones' answers still count.
//!
//! Each symbol is emitted once per phase; its detail names zone, answer and the looked-up item
//! (client IP or domain), never message content.
//!
//! Besides the symbols, the findings carry every zone's raw answers ([`ListLookup`]: each item
//! asked and its A records, or that the query failed) for the stock rules that read lists
//! (`check_rbl*`, `check_uridnsbl`, answered in `ruleset::filtereval`).

use super::uri;
use super::{Facts, Filter, FilterFuture, Findings};
use crate::config;
use crate::verdict::{ListAnswer, ListKind, ListLookup, ListedItem, Stance, Symbol};
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};

/// Symbol for a list that could not be asked (timeout, SERVFAIL, unreachable resolver).
pub const DNSBL_TEMPERROR: &str = "DNSBL_TEMPERROR";

/// DNS queries in flight at once for one message's URI checks.
const URI_CONCURRENCY: usize = 16;
/// A records considered per answer (lists answer one or a few).
const MAX_ANSWERS: usize = 16;
/// Details kept per symbol (the rest are counted).
const MAX_DETAILS: usize = 5;

/// The DNSBL/DNSWL/URIBL filter. Cheap to share (`Arc`); the resolver caches answers.
pub struct DnsblFilter {
    resolver: TokioResolver,
    ip_zones: Vec<Zone>,
    uri_zones: Vec<Zone>,
    max_uri_domains: usize,
}

/// One configured zone, ready to query.
struct Zone {
    /// Lower-case, no trailing dot.
    name: String,
    symbol: String,
    codes: BTreeMap<Ipv4Addr, String>,
    ignore: Vec<Ipv4Addr>,
    refusal_logged: AtomicBool,
}

impl Zone {
    fn new(config: &config::ListZone) -> Zone {
        let name = config.zone.trim_end_matches('.').to_ascii_lowercase();
        Zone {
            name,
            symbol: config.symbol.clone(),
            codes: config.codes.clone(),
            ignore: config.ignore.clone(),
            refusal_logged: AtomicBool::new(false),
        }
    }

    /// The symbol an answer stands for, or `None` for a refusal.
    fn symbol_for(&self, answer: Ipv4Addr) -> Option<&str> {
        let [a, b, c, _] = answer.octets();
        let refusal = a != 127 || (b == 255 && c == 255) || self.ignore.contains(&answer);
        if refusal {
            if !self.refusal_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    event = "dnsbl_refused",
                    zone = %self.name,
                    answer = %answer,
                    "the list refuses our queries (public resolver or over quota?); its answers are ignored (logged once)"
                );
            }
            return None;
        }
        Some(self.codes.get(&answer).map_or(self.symbol.as_str(), String::as_str))
    }
}

/// What one query found.
enum Answer {
    Listed(Vec<Ipv4Addr>),
    NotListed,
    TempError(String),
}

/// Addresses we never ask public lists about: they say nothing about the sender.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The DNSBL query label for an address: "1.2.0.192" for 192.0.2.1, 32 dot-separated nibbles
/// (least significant first) for IPv6. IPv4-mapped IPv6 addresses use the IPv4 form.
pub fn reversed(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(64);
            for byte in v6.octets().iter().rev() {
                let _ = write!(out, "{:x}.{:x}.", byte & 0x0f, byte >> 4);
            }
            out.pop();
            out
        }
    }
}

/// The name asked for `item` in `zone`: the reversed address or the domain, then the zone.
fn query_name(item: &ListedItem, zone: &Zone) -> String {
    match item {
        ListedItem::Client(ip) => format!("{}.{}.", reversed(*ip), zone.name),
        ListedItem::Domain { name, .. } => format!("{name}.{}.", zone.name),
    }
}

async fn query(resolver: &TokioResolver, name: &str) -> Answer {
    let started = std::time::Instant::now();
    let answer = resolver.ipv4_lookup(name).await;
    metrics::histogram!("moat_dns_lookup_seconds", "kind" => "dnsbl").record(started.elapsed().as_secs_f64());
    match answer {
        Ok(lookup) => {
            let answers: Vec<Ipv4Addr> = lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .take(MAX_ANSWERS)
                .collect();
            if answers.is_empty() { Answer::NotListed } else { Answer::Listed(answers) }
        }
        Err(e) if e.is_no_records_found() => Answer::NotListed,
        Err(e) => Answer::TempError(e.to_string()),
    }
}

/// Gathers hits and failures into one symbol per name, and every zone's raw answers.
#[derive(Default)]
struct Tally {
    hits: BTreeMap<String, Vec<String>>,
    failures: Vec<String>,
    lookups: Vec<ListLookup>,
}

impl Tally {
    /// A tally for `zones`, each asked about everything it is meant to be asked about.
    fn for_zones(zones: &[Zone], kind: ListKind) -> Tally {
        let lookups = zones.iter().map(|zone| ListLookup { zone: zone.name.clone(), kind, answers: Vec::new() }).collect();
        Tally { lookups, ..Tally::default() }
    }

    /// `listed` is what was looked up; a domain from the message (its links) is never named in
    /// the log, a client address is.
    fn record(&mut self, zone: &Zone, listed: &ListedItem, answer: Answer) {
        let (item, from_message) = match listed {
            ListedItem::Client(ip) => (ip.to_string(), false),
            ListedItem::Domain { name, .. } => (name.clone(), true),
        };
        let item = item.as_str();
        let records = match answer {
            Answer::NotListed => Some(Vec::new()),
            Answer::TempError(error) => {
                let (shown, error) = match from_message {
                    true => ("a domain from the message", error.replace(item, "<domain>")),
                    false => (item, error),
                };
                tracing::debug!(event = "dnsbl_temperror", zone = %zone.name, item = shown, error = %error);
                if !self.failures.contains(&zone.name) {
                    self.failures.push(zone.name.clone());
                }
                None
            }
            Answer::Listed(answers) => {
                for &address in &answers {
                    if let Some(symbol) = zone.symbol_for(address) {
                        let detail = format!("{item} in {} ({address})", zone.name);
                        let details = self.hits.entry(symbol.to_string()).or_default();
                        if !details.contains(&detail) {
                            details.push(detail);
                        }
                    }
                }
                Some(answers)
            }
        };
        if let Some(lookup) = self.lookups.iter_mut().find(|l| l.zone == zone.name) {
            lookup.answers.push(ListAnswer { item: listed.clone(), records });
        }
    }

    fn findings(self) -> Findings {
        let mut symbols: Vec<Symbol> = self.hits.into_iter().map(|(name, details)| Symbol::with_detail(name, join(details))).collect();
        if !self.failures.is_empty() {
            symbols.push(Symbol::with_detail(DNSBL_TEMPERROR, join(self.failures)));
        }
        Findings { symbols, headers: Vec::new(), lists: self.lookups }
    }
}

fn join(mut items: Vec<String>) -> String {
    let more = items.len().saturating_sub(MAX_DETAILS);
    items.truncate(MAX_DETAILS);
    let mut text = items.join("; ");
    if more > 0 {
        let _ = write!(text, "; and {more} more");
    }
    text
}

impl DnsblFilter {
    /// The filter for `[reputation]`'s `dnsbl`, `dnswl` and `uribl` zones, asking `resolver`
    /// (from [`crate::dns::resolver`]).
    pub fn new(config: &config::Reputation, resolver: TokioResolver) -> DnsblFilter {
        DnsblFilter {
            resolver,
            ip_zones: config.dnsbl.iter().chain(&config.dnswl).map(Zone::new).collect(),
            uri_zones: config.uribl.iter().map(Zone::new).collect(),
            max_uri_domains: config.max_uri_domains,
        }
    }

    /// Whether any zone is configured (an empty filter need not be in the chain).
    pub fn is_active(&self) -> bool {
        !self.ip_zones.is_empty() || !self.uri_zones.is_empty()
    }

    /// Looks the client address up in every DNSBL and DNSWL zone, concurrently.
    pub async fn check_ip(&self, ip: IpAddr) -> Findings {
        if self.ip_zones.is_empty() || !is_public(ip) {
            return Findings::default();
        }
        let item = ListedItem::Client(ip.to_canonical());
        let queries = self.ip_zones.iter().map(|zone| {
            let name = query_name(&item, zone);
            async move { (zone, query(&self.resolver, &name).await) }
        });
        let mut tally = Tally::for_zones(&self.ip_zones, ListKind::Client);
        for (zone, answer) in futures_util::future::join_all(queries).await {
            tally.record(zone, &item, answer);
        }
        tally.findings()
    }

    /// Looks registrable domains up in every URI zone, [`URI_CONCURRENCY`] queries at a time.
    /// A zone that failed (timeout, SERVFAIL) is not asked again for this message, so a dead
    /// resolver costs one round of timeouts, not one per batch.
    pub async fn check_domains(&self, domains: &[ListedItem]) -> Findings {
        let pairs: Vec<(&ListedItem, &Zone)> = domains.iter().flat_map(|d| self.uri_zones.iter().map(move |zone| (d, zone))).collect();
        let mut tally = Tally::for_zones(&self.uri_zones, ListKind::Domains);
        let mut remaining = pairs.as_slice();
        while !remaining.is_empty() {
            let (batch, rest) = remaining.split_at(remaining.len().min(URI_CONCURRENCY));
            remaining = rest;
            let batch: Vec<&(&ListedItem, &Zone)> = batch.iter().filter(|(_, zone)| !tally.failures.contains(&zone.name)).collect();
            let queries = batch.iter().map(|(item, zone)| {
                let name = query_name(item, zone);
                async move { query(&self.resolver, &name).await }
            });
            let answers = futures_util::future::join_all(queries).await;
            for ((item, zone), answer) in batch.into_iter().zip(answers) {
                tally.record(zone, item, answer);
            }
        }
        tally.findings()
    }

    /// The domains the data phase looks up: the sender's registrable domain first, then up to
    /// `max_uri_domains` from the message's URLs (parsed off the async threads), each once.
    async fn message_domains(&self, facts: &Facts) -> Vec<ListedItem> {
        let sender = facts
            .sender
            .as_deref()
            .and_then(|s| s.rsplit_once('@'))
            .and_then(|(_, domain)| uri::registrable_domain(domain.trim_end_matches('>')));
        let mut links: Vec<String> = Vec::new();
        if let Some(message) = facts.message.clone() {
            let limit = self.max_uri_domains;
            match tokio::task::spawn_blocking(move || uri::message_domains(&message, limit)).await {
                Ok(found) => links = found,
                Err(e) => tracing::error!(event = "uri_extract_failed", error = %e),
            }
        }
        let mut items = Vec::with_capacity(links.len() + 1);
        if let Some(sender) = sender {
            let link = links.contains(&sender);
            links.retain(|d| *d != sender);
            items.push(ListedItem::Domain { name: sender, sender: true, link });
        }
        items.extend(links.into_iter().map(|name| ListedItem::Domain { name, sender: false, link: true }));
        items
    }
}

impl Filter for DnsblFilter {
    fn name(&self) -> &'static str {
        "dnsbl"
    }

    fn failure(&self) -> (&'static str, Stance) {
        (DNSBL_TEMPERROR, Stance::FailOpen)
    }

    fn connect<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
        Box::pin(async move {
            Ok(match facts.client_ip {
                Some(ip) => self.check_ip(ip).await,
                None => Findings::default(),
            })
        })
    }

    fn data<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
        Box::pin(async move {
            if self.uri_zones.is_empty() {
                return Ok(Findings::default());
            }
            let domains = self.message_domains(facts).await;
            Ok(self.check_domains(&domains).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn query_labels() {
        assert_eq!(reversed(ip("192.0.2.1")), "1.2.0.192");
        assert_eq!(reversed(ip("::ffff:192.0.2.1")), "1.2.0.192");
        assert_eq!(reversed(ip("2001:db8::1")), "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2");
    }

    #[test]
    fn private_addresses_are_never_looked_up() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in ["192.0.2.1", "198.51.100.7", "203.0.113.1", "8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn answers_map_to_symbols_and_refusals_to_nothing() {
        let config = config::ListZone {
            zone: "Zen.Test.".into(),
            symbol: "RCVD_IN_ZEN".into(),
            codes: [(Ipv4Addr::new(127, 0, 0, 2), "RCVD_IN_ZEN_SBL".to_string())].into(),
            ignore: vec![Ipv4Addr::new(127, 0, 0, 1)],
        };
        let zone = Zone::new(&config);
        assert_eq!(zone.name, "zen.test");
        assert_eq!(zone.symbol_for(Ipv4Addr::new(127, 0, 0, 2)), Some("RCVD_IN_ZEN_SBL"));
        assert_eq!(zone.symbol_for(Ipv4Addr::new(127, 0, 0, 10)), Some("RCVD_IN_ZEN"));
        assert!(!zone.refusal_logged.load(Ordering::Relaxed));
        assert_eq!(zone.symbol_for(Ipv4Addr::new(127, 255, 255, 254)), None);
        assert!(zone.refusal_logged.load(Ordering::Relaxed), "the first refusal is logged, later ones are not");
        assert_eq!(zone.symbol_for(Ipv4Addr::new(192, 0, 2, 1)), None);
        assert_eq!(zone.symbol_for(Ipv4Addr::new(127, 0, 0, 1)), None);
    }

    #[test]
    fn details_are_bounded() {
        let items: Vec<String> = (0..8).map(|i| i.to_string()).collect();
        assert_eq!(join(items), "0; 1; 2; 3; 4; and 3 more");
    }
}
