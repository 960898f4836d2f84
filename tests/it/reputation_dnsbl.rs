//! DNSBL, DNSWL and URIBL checks through the library API against a real DNS server (dnsmasq on
//! loopback serving a `test.` zone). Clients use TEST-NET addresses: hickory answers reverse
//! lookups of 127.0.0.0/8 itself, and moat never looks up loopback or private clients.

use crate::support;
use crate::support::dns::{Dns, DnsZone};
use moat::config::{self, ListZone, Reputation, Seconds};
use moat::filter::dnsbl::DnsblFilter;
use moat::filter::{Facts, Filter, Findings};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The nibble name of 2001:db8::1.
const V6_NIBBLES: &str = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2";

fn zone(name: &str, symbol: &str, codes: &[(&str, &str)]) -> ListZone {
    ListZone {
        zone: name.into(),
        symbol: symbol.into(),
        codes: codes.iter().map(|(code, symbol)| (code.parse().expect("code"), symbol.to_string())).collect(),
        ignore: Vec::new(),
    }
}

fn reputation() -> Reputation {
    Reputation {
        dnsbl: vec![
            zone("zen.test", "RCVD_IN_ZEN", &[("127.0.0.2", "RCVD_IN_ZEN_SBL"), ("127.0.0.4", "RCVD_IN_ZEN_XBL")]),
            zone("bl2.test", "RCVD_IN_BL2", &[]),
        ],
        dnswl: vec![zone("wl.test", "RCVD_IN_DNSWL", &[("127.0.10.2", "RCVD_IN_DNSWL_HI")])],
        uribl: vec![zone("dbl.test", "URIBL_DBL", &[("127.0.1.2", "DBL_SPAM"), ("127.0.1.4", "DBL_PHISH")])],
        ..Reputation::default()
    }
}

fn records() -> DnsZone {
    DnsZone::new()
        // 192.0.2.1: SBL in zen (mapped code) and listed in bl2 too.
        .a("1.2.0.192.zen.test", "127.0.0.2")
        .a("1.2.0.192.bl2.test", "127.0.0.3")
        // 192.0.2.2: an unmapped code → the zone's default symbol.
        .a("2.2.0.192.zen.test", "127.0.0.10")
        // 192.0.2.4: Spamhaus's "public resolver" refusal; 192.0.2.5: an answer outside 127/8.
        .a("4.2.0.192.zen.test", "127.255.255.254")
        .a("5.2.0.192.zen.test", "192.0.2.250")
        // 198.51.100.7: on the allowlist.
        .a("7.100.51.198.wl.test", "127.0.10.2")
        // 2001:db8::1: nibble format.
        .a(&format!("{V6_NIBBLES}.zen.test"), "127.0.0.4")
        // URI lists.
        .a("spam-domain.test.dbl.test", "127.0.1.2")
        .a("bad-sender.test.dbl.test", "127.0.1.4")
        .a("example.co.uk.dbl.test", "127.0.1.2")
}

fn resolver_for(port: u16, timeout: u64) -> hickory_resolver::TokioResolver {
    let config = config::Dns {
        nameservers: vec![format!("127.0.0.1:{port}").parse().expect("address")],
        timeout: Seconds(timeout),
        attempts: 1,
        ..config::Dns::default()
    };
    moat::dns::resolver(&config).expect("resolver")
}

fn filter(dns: &Dns) -> DnsblFilter {
    DnsblFilter::new(&reputation(), resolver_for(dns.port, 2))
}

fn client(ip: &str) -> Facts {
    Facts { client_ip: Some(ip.parse::<IpAddr>().expect("ip")), ..Facts::default() }
}

fn names(findings: &Findings) -> Vec<&str> {
    let mut names: Vec<&str> = findings.symbols.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    names
}

fn detail<'a>(findings: &'a Findings, name: &str) -> &'a str {
    findings
        .symbols
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.detail.as_deref())
        .unwrap_or_else(|| panic!("no {name} in {findings:?}"))
}

#[tokio::test]
async fn listed_ip_gets_the_mapped_symbol_from_every_zone_that_lists_it() {
    let dns = records().start();
    let findings = filter(&dns).connect(&client("192.0.2.1")).await.expect("findings");
    assert_eq!(names(&findings), ["RCVD_IN_BL2", "RCVD_IN_ZEN_SBL"], "{findings:?}");
    assert_eq!(detail(&findings, "RCVD_IN_ZEN_SBL"), "192.0.2.1 in zen.test (127.0.0.2)");
    assert_eq!(detail(&findings, "RCVD_IN_BL2"), "192.0.2.1 in bl2.test (127.0.0.3)");
}

#[tokio::test]
async fn unmapped_code_gets_the_zones_default_symbol() {
    let dns = records().start();
    let findings = filter(&dns).connect(&client("192.0.2.2")).await.expect("findings");
    assert_eq!(names(&findings), ["RCVD_IN_ZEN"], "{findings:?}");
    assert_eq!(detail(&findings, "RCVD_IN_ZEN"), "192.0.2.2 in zen.test (127.0.0.10)");
}

#[tokio::test]
async fn nxdomain_is_not_listed() {
    let dns = records().start();
    let findings = filter(&dns).connect(&client("192.0.2.3")).await.expect("findings");
    assert!(findings.symbols.is_empty(), "{findings:?}");
}

#[tokio::test]
async fn refusal_codes_are_ignored_not_scored() {
    let dns = records().start();
    let filter = filter(&dns);
    for refused in ["192.0.2.4", "192.0.2.5"] {
        let findings = filter.connect(&client(refused)).await.expect("findings");
        assert!(findings.symbols.is_empty(), "{refused}: {findings:?}");
    }
    // A zone-specific refusal code from `ignore`.
    let mut config = reputation();
    config.dnsbl[0].ignore = vec!["127.0.0.10".parse().expect("code")];
    let findings = DnsblFilter::new(&config, resolver_for(dns.port, 2)).connect(&client("192.0.2.2")).await.expect("findings");
    assert!(findings.symbols.is_empty(), "{findings:?}");
}

#[tokio::test]
async fn dnswl_hit() {
    let dns = records().start();
    let findings = filter(&dns).connect(&client("198.51.100.7")).await.expect("findings");
    assert_eq!(names(&findings), ["RCVD_IN_DNSWL_HI"], "{findings:?}");
    assert_eq!(detail(&findings, "RCVD_IN_DNSWL_HI"), "198.51.100.7 in wl.test (127.0.10.2)");
}

#[tokio::test]
async fn ipv6_client_is_queried_in_nibble_format() {
    let dns = records().start();
    let findings = filter(&dns).connect(&client("2001:db8::1")).await.expect("findings");
    assert_eq!(names(&findings), ["RCVD_IN_ZEN_XBL"], "{findings:?}");
    assert_eq!(detail(&findings, "RCVD_IN_ZEN_XBL"), "2001:db8::1 in zen.test (127.0.0.4)");
    let findings = filter(&dns).connect(&client("2001:db8::2")).await.expect("findings");
    assert!(findings.symbols.is_empty(), "{findings:?}");
}

#[tokio::test]
async fn private_and_loopback_clients_are_never_looked_up() {
    // A resolver that cannot answer: a lookup would show up as DNSBL_TEMPERROR.
    let dead = DnsblFilter::new(&reputation(), resolver_for(support::free_port(), 1));
    for ip in ["127.0.0.1", "10.0.0.1", "192.168.1.1", "::1", "fd00::1"] {
        let findings = dead.connect(&client(ip)).await.expect("findings");
        assert!(findings.symbols.is_empty(), "{ip}: {findings:?}");
    }
}

#[tokio::test]
async fn unreachable_resolver_is_dnsbl_temperror_not_a_crash() {
    let dead = DnsblFilter::new(&reputation(), resolver_for(support::free_port(), 1));
    let started = Instant::now();
    let findings = dead.connect(&client("192.0.2.1")).await.expect("findings");
    assert_eq!(names(&findings), ["DNSBL_TEMPERROR"], "{findings:?}");
    assert_eq!(detail(&findings, "DNSBL_TEMPERROR"), "zen.test; bl2.test; wl.test");
    assert!(started.elapsed() < Duration::from_secs(5), "zones are asked concurrently: {:?}", started.elapsed());
    let findings = dead.data(&message_facts()).await.expect("findings");
    assert_eq!(names(&findings), ["DNSBL_TEMPERROR"], "{findings:?}");
    assert_eq!(detail(&findings, "DNSBL_TEMPERROR"), "dbl.test");
}

#[tokio::test]
async fn a_dead_uri_zone_is_asked_once_per_message_not_once_per_domain() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let mut config = reputation();
    config.max_uri_domains = 100;
    let filter = DnsblFilter::new(&config, resolver_for(port, 1));
    let body: String = (0..100).map(|i| format!("http://d{i}.test/\r\n")).collect();
    let facts = Facts { message: Some(Arc::new(format!("Subject: x\r\n\r\n{body}").into_bytes())), ..Facts::default() };
    let started = Instant::now();
    let findings = filter.data(&facts).await.expect("findings");
    assert_eq!(names(&findings), ["DNSBL_TEMPERROR"], "{findings:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "one round of timeouts: {:?}", started.elapsed());
    drop(silent);
}

#[tokio::test]
async fn timeout_is_dnsbl_temperror() {
    // A UDP socket that never answers: the query times out rather than being refused.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let filter = DnsblFilter::new(&reputation(), resolver_for(port, 1));
    let started = Instant::now();
    let findings = filter.connect(&client("192.0.2.1")).await.expect("findings");
    assert_eq!(names(&findings), ["DNSBL_TEMPERROR"], "{findings:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "a real timeout: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(4), "zones time out together: {:?}", started.elapsed());
    drop(silent);
}

/// A message whose only link is inside a base64-encoded HTML part, from a listed sender domain.
fn message_facts() -> Facts {
    let html = "<html><body><p>Cheap!</p><a href=\"http://www.Spam-Domain.test/buy?id=1\">buy</a> \
                <a href='https://clean.test/'>x</a> <a href=\"http://shop.example.co.uk/\">y</a></body></html>";
    let message = format!(
        "From: someone@mail.bad-sender.test\r\nSubject: offer\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         Cheap, see the HTML part=\r\n.\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        base64(html.as_bytes())
    );
    assert!(!message.contains("spam-domain") && !message.contains("Spam-Domain"), "the link is only in the base64 part");
    Facts {
        client_ip: Some("192.0.2.3".parse().expect("ip")),
        sender: Some("someone@mail.bad-sender.test".into()),
        recipients: vec!["user@example.test".into()],
        message: Some(Arc::new(message.into_bytes())),
        ..Facts::default()
    }
}

#[tokio::test]
async fn uribl_hits_on_a_url_in_a_base64_html_part_and_on_the_sender_domain() {
    let dns = records().start();
    let findings = filter(&dns).data(&message_facts()).await.expect("findings");
    assert_eq!(names(&findings), ["DBL_PHISH", "DBL_SPAM"], "{findings:?}");
    assert_eq!(detail(&findings, "DBL_PHISH"), "bad-sender.test in dbl.test (127.0.1.4)");
    assert_eq!(
        detail(&findings, "DBL_SPAM"),
        "spam-domain.test in dbl.test (127.0.1.2); example.co.uk in dbl.test (127.0.1.2)",
        "one symbol per name, every listed domain in the detail"
    );
    for symbol in &findings.symbols {
        assert!(!symbol.detail.as_deref().unwrap_or("").contains("Cheap"), "no message content in details");
    }
}

#[tokio::test]
async fn uri_domains_are_bounded_per_message() {
    let dns = records().start();
    let mut config = reputation();
    config.max_uri_domains = 5;
    let filter = DnsblFilter::new(&config, resolver_for(dns.port, 2));
    let mut body = String::new();
    for i in 0..30 {
        body.push_str(&format!("http://d{i}.test/ http://d{i}.test/again\r\n"));
    }
    body.push_str("http://spam-domain.test/\r\n");
    let facts = Facts { message: Some(Arc::new(format!("Subject: x\r\n\r\n{body}").into_bytes())), ..Facts::default() };
    let findings = filter.data(&facts).await.expect("findings");
    assert!(findings.symbols.is_empty(), "the listed domain is the 31st: {findings:?}");
    let facts = Facts { message: Some(Arc::new(b"Subject: x\r\n\r\nhttp://spam-domain.test/\r\n".to_vec())), ..Facts::default() };
    assert_eq!(names(&filter.data(&facts).await.expect("findings")), ["DBL_SPAM"]);
}

#[tokio::test]
async fn clean_message_and_no_zones_find_nothing() {
    let dns = records().start();
    let facts = Facts {
        sender: Some("a@clean.test".into()),
        message: Some(Arc::new(b"Subject: x\r\n\r\nsee https://clean.test/ and www.other.test\r\n".to_vec())),
        ..Facts::default()
    };
    assert!(filter(&dns).data(&facts).await.expect("findings").symbols.is_empty());
    let none = DnsblFilter::new(&Reputation::default(), resolver_for(dns.port, 2));
    assert!(!none.is_active());
    assert!(none.data(&message_facts()).await.expect("findings").symbols.is_empty());
    assert!(none.connect(&client("192.0.2.1")).await.expect("findings").symbols.is_empty());
}

#[tokio::test]
async fn the_filter_runs_in_a_chain() {
    let dns = records().start();
    let chain = moat::filter::Chain::new(vec![Arc::new(filter(&dns))], Duration::from_secs(5));
    let evidence = chain.run(moat::filter::Phase::Connect, &client("192.0.2.1")).await;
    assert!(evidence.has("RCVD_IN_ZEN_SBL") && evidence.failures.is_empty(), "{evidence:?}");
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (n, chunk) in data.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.push_str("\r\n");
        }
        let bits = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(bits >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// The findings carry each zone's raw answers for the stock rules that read lists: every zone
/// asked, every item with its A records (refusal codes included, as SpamAssassin sees them), a
/// failed query as unknown, the sender's domain told apart from the links'.
#[tokio::test]
async fn findings_carry_every_zones_raw_answers_for_the_list_rules() {
    use moat::verdict::{ListKind, ListedItem};
    let dns = records().start();
    let records_of = |findings: &Findings| -> Vec<(String, Vec<Option<Vec<String>>>)> {
        let mut all: Vec<_> = findings
            .lists
            .iter()
            .map(|l| {
                let answers = l.answers.iter().map(|a| a.records.as_ref().map(|r| r.iter().map(|ip| ip.to_string()).collect())).collect();
                (l.zone.clone(), answers)
            })
            .collect();
        all.sort();
        all
    };
    let listed = filter(&dns).connect(&client("192.0.2.1")).await.expect("findings");
    assert!(
        listed
            .lists
            .iter()
            .all(|l| l.kind == ListKind::Client && l.answers[0].item == ListedItem::Client("192.0.2.1".parse().expect("ip")))
    );
    let some = |r: &[&str]| Some(r.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        records_of(&listed),
        [
            ("bl2.test".into(), vec![some(&["127.0.0.3"])]),
            ("wl.test".into(), vec![some(&[])]),
            ("zen.test".into(), vec![some(&["127.0.0.2"])])
        ]
    );
    let refused = filter(&dns).connect(&client("192.0.2.4")).await.expect("findings");
    assert!(refused.symbols.is_empty() && records_of(&refused).contains(&("zen.test".into(), vec![some(&["127.255.255.254"])])));
    let private = filter(&dns).connect(&client("10.0.0.1")).await.expect("findings");
    assert!(private.lists.is_empty(), "a client moat does not look up: no zone was asked");
    let dead = DnsblFilter::new(&reputation(), resolver_for(support::free_port(), 1));
    assert!(records_of(&dead.connect(&client("192.0.2.1")).await.expect("findings")).iter().all(|(_, answers)| answers == &[None]));

    let data = filter(&dns).data(&message_facts()).await.expect("findings");
    let [dbl] = data.lists.as_slice() else { panic!("one URI zone: {:?}", data.lists) };
    assert_eq!((dbl.zone.as_str(), dbl.kind), ("dbl.test", ListKind::Domains));
    let items: Vec<(&str, bool, bool, usize)> = dbl
        .answers
        .iter()
        .filter_map(|a| match &a.item {
            ListedItem::Domain { name, sender, link } => Some((name.as_str(), *sender, *link, a.records.as_ref().map_or(0, Vec::len))),
            ListedItem::Client(_) => None,
        })
        .collect();
    assert_eq!(
        items,
        [
            ("bad-sender.test", true, false, 1),
            ("spam-domain.test", false, true, 1),
            ("clean.test", false, true, 0),
            ("example.co.uk", false, true, 1)
        ]
    );
}
