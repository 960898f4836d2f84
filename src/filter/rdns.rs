//! Reverse DNS of the client (connect) and HELO sanity (helo).
//!
//! **connect** (`[reputation] rdns`): forward-confirmed reverse DNS. The client's PTR names (at
//! most [`MAX_PTR_NAMES`]) are looked up forward (A for an IPv4 client, AAAA for IPv6):
//! - `RDNS_NONE`: no PTR record (NXDOMAIN or an empty answer);
//! - `RDNS_MISMATCH`: PTR names exist, but none of them resolves back to the client's address;
//! - `RDNS_DYNAMIC`: a PTR name looks like a dynamic/consumer pool (see [`looks_dynamic`]);
//! - `RDNS_TEMPERROR`: the lookups failed (timeout, SERVFAIL), so nothing can be said.
//!
//! **helo** (`[reputation] helo_checks`):
//! - `HELO_BARE_IP`: an IP address without the brackets of an address literal (`1.2.3.4`);
//! - `HELO_MISMATCH_IP`: an address literal (`[1.2.3.4]`, `[IPv6:…]`) that is not the client's
//!   address (or not an address at all);
//! - `HELO_NOT_FQDN`: a name without a dot (`localhost`, `WIN-7QX`), or not a valid DNS name;
//! - `HELO_IS_OURS`: the client claims our host name or one of our relay domains;
//! - `HELO_NXDOMAIN` (with `helo_nxdomain`): the name does not exist in DNS.
//!
//! Clients on loopback, private or link-local addresses (our own infrastructure) are not
//! checked at all. Details name the client address and DNS names, never message content.

use super::dnsbl::is_public;
use super::uri::registrable_domain;
use super::{Facts, Filter, FilterFuture, Findings};
use crate::config;
use crate::verdict::{Stance, Symbol};
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use std::net::IpAddr;

/// PTR names followed per client.
pub const MAX_PTR_NAMES: usize = 10;

/// Words that, as a label or part of a label of the host part of a PTR name (e.g. `dsl-…`,
/// `ppp123`, `….dynamic.isp.net`), mark a dynamic or consumer address pool.
const DYNAMIC_WORDS: &[&str] = &[
    "dyn",
    "dynamic",
    "dynip",
    "dhcp",
    "dial",
    "dialup",
    "dialin",
    "ppp",
    "pppoe",
    "pool",
    "dsl",
    "adsl",
    "vdsl",
    "xdsl",
    "cable",
    "cpe",
    "broadband",
    "customer",
    "residential",
    "unassigned",
];

/// Whether a PTR name looks like a dynamic pool: below its registrable domain it contains one
/// of [`DYNAMIC_WORDS`] (digits around the word are ignored), or it embeds the client's IPv4
/// address as four decimal numbers in either order (`192-0-2-1.isp.test`, `1.2.0.192.isp.test`)
/// or as eight hex digits (`c0000201.isp.test`). A heuristic: a generic name is not proof, so
/// give the symbol a modest score.
pub fn looks_dynamic(name: &str, ip: IpAddr) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let host_part = match registrable_domain(&name) {
        Some(domain) => name.strip_suffix(domain.as_str()).unwrap_or("").trim_end_matches('.').to_string(),
        None => name.clone(),
    };
    if host_part.is_empty() {
        return false;
    }
    let word = host_part
        .split(['.', '-', '_'])
        .map(|token| token.trim_matches(|c: char| c.is_ascii_digit()))
        .any(|token| DYNAMIC_WORDS.contains(&token));
    if word {
        return true;
    }
    let IpAddr::V4(v4) = ip.to_canonical() else { return false };
    let octets: Vec<Option<u64>> = v4.octets().iter().map(|o| Some(u64::from(*o))).collect();
    let reversed: Vec<Option<u64>> = octets.iter().rev().copied().collect();
    let numbers: Vec<Option<u64>> =
        host_part.split(|c: char| !c.is_ascii_digit()).filter(|run| !run.is_empty()).map(|run| run.parse().ok()).collect();
    let decimal = numbers.windows(4).any(|w| w == octets.as_slice() || w == reversed.as_slice());
    let [a, b, c, d] = v4.octets();
    decimal || host_part.contains(&format!("{a:02x}{b:02x}{c:02x}{d:02x}"))
}

/// The reverse-DNS and HELO filter.
pub struct RdnsFilter {
    resolver: TokioResolver,
    rdns: bool,
    helo_checks: bool,
    helo_nxdomain: bool,
    /// Our host name and relay domains, lower-case.
    ours: Vec<String>,
}

fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl RdnsFilter {
    /// `hostname` is ours (`Config::hostname`), `relay_domains` the `[[domain]]` names.
    pub fn new(config: &config::Reputation, hostname: &str, relay_domains: &[String], resolver: TokioResolver) -> RdnsFilter {
        let ours = std::iter::once(hostname).chain(relay_domains.iter().map(String::as_str)).map(normalise).collect();
        RdnsFilter { resolver, rdns: config.rdns, helo_checks: config.helo_checks, helo_nxdomain: config.helo_nxdomain, ours }
    }

    /// Forward-confirmed reverse DNS of `ip` (the connect phase).
    pub async fn check_rdns(&self, ip: IpAddr) -> Findings {
        if !self.rdns || !is_public(ip) {
            return Findings::default();
        }
        let ip = ip.to_canonical();
        let names = match self.resolver.reverse_lookup(reverse_name(ip)).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::PTR(ptr) => Some(normalise(&ptr.0.to_string())),
                    _ => None,
                })
                .filter(|name| !name.is_empty())
                .take(MAX_PTR_NAMES)
                .collect::<Vec<String>>(),
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => {
                tracing::debug!(event = "rdns_temperror", client = %ip, error = %e);
                return vec![Symbol::with_detail("RDNS_TEMPERROR", format!("PTR of {ip}"))].into();
            }
        };
        if names.is_empty() {
            return vec![Symbol::with_detail("RDNS_NONE", ip.to_string())].into();
        }
        let forward = names.iter().map(|name| self.resolves_to(name, ip));
        let results = futures_util::future::join_all(forward).await;
        let mut symbols = Vec::new();
        let confirmed = results.contains(&Some(true));
        if !confirmed {
            if results.contains(&None) {
                symbols.push(Symbol::with_detail("RDNS_TEMPERROR", format!("forward lookup for {ip}")));
            } else {
                symbols.push(Symbol::with_detail("RDNS_MISMATCH", format!("{ip} -> {}", names.join(", "))));
            }
        }
        if let Some(name) = names.iter().find(|name| looks_dynamic(name, ip)) {
            symbols.push(Symbol::with_detail("RDNS_DYNAMIC", name.clone()));
        }
        symbols.into()
    }

    /// `Some(true)` when `name` has an address record equal to `ip`, `None` on a DNS failure.
    async fn resolves_to(&self, name: &str, ip: IpAddr) -> Option<bool> {
        let fqdn = format!("{name}.");
        let answers = match ip {
            IpAddr::V4(_) => self.resolver.ipv4_lookup(fqdn).await,
            IpAddr::V6(_) => self.resolver.ipv6_lookup(fqdn).await,
        };
        match answers {
            Ok(lookup) => Some(lookup.answers().iter().any(|record| match &record.data {
                RData::A(a) => IpAddr::V4(a.0) == ip,
                RData::AAAA(aaaa) => IpAddr::V6(aaaa.0) == ip,
                _ => false,
            })),
            Err(e) if e.is_no_records_found() => Some(false),
            Err(_) => None,
        }
    }

    /// HELO sanity checks (the helo phase). `client_ip` is the connection's address.
    pub async fn check_helo(&self, helo: &str, client_ip: Option<IpAddr>) -> Findings {
        if !self.helo_checks || client_ip.is_some_and(|ip| !is_public(ip)) {
            return Findings::default();
        }
        let helo = helo.trim();
        if helo.is_empty() {
            return Findings::default();
        }
        let symbol = |name: &str, detail: String| Findings::from(vec![Symbol::with_detail(name, detail)]);
        if let Some(literal) = helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let address = match literal.get(..5) {
                Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => {
                    literal.get(5..).and_then(|a| a.parse::<std::net::Ipv6Addr>().ok()).map(IpAddr::V6)
                }
                _ => literal.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
            };
            return match (address, client_ip) {
                (Some(claimed), Some(client)) if claimed.to_canonical() == client.to_canonical() => Findings::default(),
                (Some(_), None) => Findings::default(),
                _ => symbol(
                    "HELO_MISMATCH_IP",
                    match client_ip {
                        Some(client) => format!("{helo} from {client}"),
                        None => helo.to_string(),
                    },
                ),
            };
        }
        if helo.parse::<IpAddr>().is_ok() {
            return symbol("HELO_BARE_IP", helo.to_string());
        }
        let name = normalise(helo);
        if self.ours.contains(&name) {
            return symbol("HELO_IS_OURS", name);
        }
        if !name.contains('.') || !crate::smtp::address::is_domain_name(&name) {
            return symbol("HELO_NOT_FQDN", helo.to_string());
        }
        if self.helo_nxdomain {
            match self.resolver.lookup_ip(format!("{name}.")).await {
                Err(e) if e.is_nx_domain() => return symbol("HELO_NXDOMAIN", name),
                Err(e) if !e.is_no_records_found() => {
                    tracing::debug!(event = "helo_lookup_failed", helo = %name, error = %e);
                }
                _ => {}
            }
        }
        Findings::default()
    }
}

/// The PTR query name for an address: `1.2.0.192.in-addr.arpa.` or 32 nibbles `….ip6.arpa.`.
fn reverse_name(ip: IpAddr) -> String {
    let suffix = if ip.is_ipv4() { "in-addr.arpa." } else { "ip6.arpa." };
    format!("{}.{suffix}", super::dnsbl::reversed(ip))
}

impl Filter for RdnsFilter {
    fn name(&self) -> &'static str {
        "rdns"
    }

    fn failure(&self) -> (&'static str, Stance) {
        ("RDNS_TEMPERROR", Stance::FailOpen)
    }

    fn connect<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
        Box::pin(async move {
            Ok(match facts.client_ip {
                Some(ip) => self.check_rdns(ip).await,
                None => Findings::default(),
            })
        })
    }

    fn helo<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
        Box::pin(async move {
            Ok(match facts.helo.as_deref() {
                Some(helo) => self.check_helo(helo, facts.client_ip).await,
                None => Findings::default(),
            })
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
    fn dynamic_pool_names() {
        let client = ip("192.0.2.1");
        for dynamic in [
            "dsl-187-12.isp.test",
            "ppp123.isp.test",
            "host.dynamic.isp.test",
            "pool-7.bstn.isp.test",
            "cpe-5-6.nyc.isp.co.uk",
            "192-0-2-1.isp.test",
            "1.2.0.192.isp.test",
            "host192.000.002.001.isp.test",
            "c0000201.isp.test",
        ] {
            assert!(looks_dynamic(dynamic, client), "{dynamic}");
        }
        for fixed in [
            "mail.sender.test",
            "mx1.isp.test",
            "dsl.test",
            "smtp.cable-company.test",
            "192-0-2-9.isp.test",
            "poolside.isp.test",
            "isp.test",
        ] {
            assert!(!looks_dynamic(fixed, client), "{fixed}");
        }
    }

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_name(ip("192.0.2.1")), "1.2.0.192.in-addr.arpa.");
        assert!(reverse_name(ip("2001:db8::1")).ends_with(".8.b.d.0.1.0.0.2.ip6.arpa."));
    }
}
