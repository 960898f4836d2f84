//! Forward-confirmed reverse DNS and HELO checks through the library API against a real DNS
//! server (dnsmasq on loopback). Clients use TEST-NET addresses, whose reverse zone dnsmasq holds.
//! Note: dnsmasq's `--host-record` (`DnsZone::a`) also creates the matching PTR record.

use crate::support;
use crate::support::dns::{Dns, DnsZone};
use moat::config::{self, Reputation, Seconds};
use moat::filter::rdns::RdnsFilter;
use moat::filter::{Facts, Filter, Findings};
use std::net::IpAddr;

const HOSTNAME: &str = "mx.example.test";

fn records() -> DnsZone {
    DnsZone::new()
        // 192.0.2.10 ⇄ mail.good.test: confirmed.
        .a("mail.good.test", "192.0.2.10")
        // 192.0.2.30 → liar.test, which points elsewhere; 192.0.2.31 → a name that does not exist.
        .ptr("192.0.2.30", "liar.test")
        .a("liar.test", "198.51.100.30")
        .ptr("192.0.2.31", "ghost.test")
        // A confirmed but dynamic-looking name.
        .a("dsl-192-0-2-40.isp.test", "192.0.2.40")
        // A HELO name that exists only as an MX (no address): not NXDOMAIN.
        .mx("mx-only.test", "mail.good.test", 10)
}

fn resolver_for(port: u16) -> hickory_resolver::TokioResolver {
    let config = config::Dns {
        nameservers: vec![format!("127.0.0.1:{port}").parse().expect("address")],
        timeout: Seconds(1),
        attempts: 1,
        ..config::Dns::default()
    };
    moat::dns::resolver(&config).expect("resolver")
}

fn filter_with(config: &Reputation, port: u16) -> RdnsFilter {
    RdnsFilter::new(config, HOSTNAME, &["example.test".to_string(), "other.test".to_string()], resolver_for(port))
}

fn filter(dns: &Dns) -> RdnsFilter {
    filter_with(&Reputation::default(), dns.port)
}

fn facts(ip: &str, helo: Option<&str>) -> Facts {
    Facts { client_ip: Some(ip.parse::<IpAddr>().expect("ip")), helo: helo.map(str::to_string), ..Facts::default() }
}

fn names(findings: &Findings) -> Vec<&str> {
    let mut names: Vec<&str> = findings.symbols.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    names
}

async fn connect(filter: &RdnsFilter, ip: &str) -> Findings {
    filter.connect(&facts(ip, None)).await.expect("findings")
}

async fn helo(filter: &RdnsFilter, ip: &str, name: &str) -> Findings {
    filter.helo(&facts(ip, Some(name))).await.expect("findings")
}

#[tokio::test]
async fn fcrdns_pass_emits_nothing() {
    let dns = records().start();
    let findings = connect(&filter(&dns), "192.0.2.10").await;
    assert!(findings.symbols.is_empty(), "{findings:?}");
}

#[tokio::test]
async fn no_ptr_is_rdns_none() {
    let dns = records().start();
    let findings = connect(&filter(&dns), "192.0.2.20").await;
    assert_eq!(names(&findings), ["RDNS_NONE"], "{findings:?}");
    assert_eq!(findings.symbols[0].detail.as_deref(), Some("192.0.2.20"));
}

#[tokio::test]
async fn ptr_that_does_not_resolve_back_is_rdns_mismatch() {
    let dns = records().start();
    let filter = filter(&dns);
    let findings = connect(&filter, "192.0.2.30").await;
    assert_eq!(names(&findings), ["RDNS_MISMATCH"], "{findings:?}");
    assert_eq!(findings.symbols[0].detail.as_deref(), Some("192.0.2.30 -> liar.test"));
    let findings = connect(&filter, "192.0.2.31").await;
    assert_eq!(names(&findings), ["RDNS_MISMATCH"], "a PTR name that does not exist: {findings:?}");
}

#[tokio::test]
async fn dynamic_pool_name_is_rdns_dynamic() {
    let dns = records().start();
    let findings = connect(&filter(&dns), "192.0.2.40").await;
    assert_eq!(names(&findings), ["RDNS_DYNAMIC"], "confirmed, but dynamic: {findings:?}");
    assert_eq!(findings.symbols[0].detail.as_deref(), Some("dsl-192-0-2-40.isp.test"));
}

#[tokio::test]
async fn dns_failure_is_rdns_temperror_and_private_clients_are_skipped() {
    let dead = filter_with(&Reputation::default(), support::free_port());
    assert_eq!(names(&connect(&dead, "192.0.2.10").await), ["RDNS_TEMPERROR"]);
    for private in ["10.0.0.1", "127.0.0.1", "::1"] {
        assert!(connect(&dead, private).await.symbols.is_empty(), "{private}");
    }
}

#[tokio::test]
async fn rdns_off_checks_nothing() {
    let config = Reputation { rdns: false, ..Reputation::default() };
    let dead = filter_with(&config, support::free_port());
    assert!(connect(&dead, "192.0.2.20").await.symbols.is_empty());
}

#[tokio::test]
async fn helo_bare_ip() {
    let dns = records().start();
    assert_eq!(names(&helo(&filter(&dns), "192.0.2.10", "192.0.2.10").await), ["HELO_BARE_IP"]);
    assert_eq!(names(&helo(&filter(&dns), "2001:db8::1", "2001:db8::1").await), ["HELO_BARE_IP"]);
}

#[tokio::test]
async fn helo_address_literal_must_be_the_clients_address() {
    let dns = records().start();
    let filter = filter(&dns);
    let findings = helo(&filter, "192.0.2.10", "[198.51.100.1]").await;
    assert_eq!(names(&findings), ["HELO_MISMATCH_IP"], "{findings:?}");
    assert_eq!(findings.symbols[0].detail.as_deref(), Some("[198.51.100.1] from 192.0.2.10"));
    assert_eq!(names(&helo(&filter, "192.0.2.10", "[not-an-ip]").await), ["HELO_MISMATCH_IP"]);
    assert!(helo(&filter, "192.0.2.10", "[192.0.2.10]").await.symbols.is_empty());
    assert!(helo(&filter, "2001:db8::1", "[IPv6:2001:DB8::1]").await.symbols.is_empty());
    assert_eq!(names(&helo(&filter, "2001:db8::1", "[IPv6:2001:db8::2]").await), ["HELO_MISMATCH_IP"]);
}

#[tokio::test]
async fn helo_not_fqdn() {
    let dns = records().start();
    let filter = filter(&dns);
    for name in ["localhost", "WIN-7QXJ2", "bad_name.test"] {
        assert_eq!(names(&helo(&filter, "192.0.2.10", name).await), ["HELO_NOT_FQDN"], "{name}");
    }
}

#[tokio::test]
async fn helo_is_ours_for_remote_clients_only() {
    let dns = records().start();
    let filter = filter(&dns);
    for name in ["MX.Example.Test", "mx.example.test.", "example.test", "other.test"] {
        let findings = helo(&filter, "192.0.2.10", name).await;
        assert_eq!(names(&findings), ["HELO_IS_OURS"], "{name}: {findings:?}");
    }
    assert!(helo(&filter, "10.1.2.3", "mx.example.test").await.symbols.is_empty(), "our own network may");
    let findings = helo(&filter, "192.0.2.10", "sub.example.test").await;
    assert_eq!(names(&findings), ["HELO_NXDOMAIN"], "only exact names are ours: {findings:?}");
}

#[tokio::test]
async fn helo_nxdomain() {
    let dns = records().start();
    let filter = filter(&dns);
    let findings = helo(&filter, "192.0.2.10", "nonexistent.test").await;
    assert_eq!(names(&findings), ["HELO_NXDOMAIN"], "{findings:?}");
    assert!(helo(&filter, "192.0.2.10", "mail.good.test").await.symbols.is_empty());
    assert!(helo(&filter, "192.0.2.10", "mx-only.test").await.symbols.is_empty(), "exists, without an address");
    let quiet = filter_with(&Reputation { helo_nxdomain: false, ..Reputation::default() }, dns.port);
    assert!(helo(&quiet, "192.0.2.10", "nonexistent.test").await.symbols.is_empty());
}

#[tokio::test]
async fn helo_checks_off_checks_nothing() {
    let config = Reputation { helo_checks: false, ..Reputation::default() };
    let dead = filter_with(&config, support::free_port());
    for name in ["localhost", "192.0.2.1", "[198.51.100.1]", "mx.example.test"] {
        assert!(helo(&dead, "192.0.2.10", name).await.symbols.is_empty(), "{name}");
    }
}
