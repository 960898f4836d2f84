//! The authentication filter (SPF, DKIM, DMARC, ARC) against a real DNS server: dnsmasq on
//! loopback serving a `test.` zone, reached through moat's own resolver.
//!
//! The filter is built through the library API (the session does not run the chain yet). The
//! client address is from TEST-NET (192.0.2.0/24): hickory answers 127/8 reverse lookups itself.

use crate::support;
use crate::support::dns::{Dns, DnsZone, base64};
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use moat::config::{ArcSeal, Auth, DmarcReject};
use moat::filter::auth::{AuthFilter, strip_forged_results};
use moat::filter::{Chain, Facts, Filter, Findings, Phase};
use moat::verdict::{Failure, Stance, Symbol};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const HOSTNAME: &str = "mx.moat.test";
const CLIENT: &str = "192.0.2.10";
const STRANGER: &str = "198.51.100.7";

/// Keys generated per test run; their public halves go into the zone.
struct Keys {
    dkim_pkcs8: Vec<u8>,
    arc_ed25519: rcgen::KeyPair,
    arc_rsa: rcgen::KeyPair,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            dkim_pkcs8: Ed25519Key::generate_pkcs8().expect("ed25519 key"),
            arc_ed25519: rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519 key"),
            arc_rsa: rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key"),
        }
    }

    fn dkim_key(&self) -> Ed25519Key {
        Ed25519Key::from_pkcs8_der(&self.dkim_pkcs8).expect("parse ed25519 key")
    }
}

/// The test zone: SPF, DMARC and key records for every case below.
fn zone(keys: &Keys) -> Dns {
    DnsZone::new()
        // SPF: MAIL FROM identities
        .txt("sender.test", "v=spf1 ip4:192.0.2.0/24 -all")
        .txt("soft.test", "v=spf1 ip4:203.0.113.1 ~all")
        .txt("neutral.test", "v=spf1 ?all")
        .txt("perm.test", "v=spf1 include:nospf.test -all")
        .txt("xn--bcher-kva.test", "v=spf1 ip4:192.0.2.0/24 -all")
        // SPF: HELO identity (an `a` mechanism, so the zone's A record is used too)
        .a("mail.sender.test", CLIENT)
        .txt("mail.sender.test", "v=spf1 a -all")
        // DMARC policies
        .txt("_dmarc.sender.test", "v=DMARC1; p=reject")
        .txt("_dmarc.reject.test", "v=DMARC1; p=reject")
        .txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine")
        .txt("_dmarc.monitor.test", "v=DMARC1; p=none")
        .txt("_dmarc.pct.test", "v=DMARC1; p=reject; pct=20")
        .txt("_dmarc.testing.test", "v=DMARC1; p=reject; t=y")
        .txt("_dmarc.org.test", "v=DMARC1; p=none; sp=reject")
        .a("sub.org.test", "192.0.2.99")
        // DKIM and ARC keys
        .dkim_key("s1", "sender.test", "ed25519", &keys.dkim_key().public_key())
        .dkim_key("arc", "moat.test", "ed25519", keys.arc_ed25519.public_key_raw())
        .dkim_key("arc-rsa", "moat.test", "rsa", keys.arc_rsa.public_key_raw())
        .start()
}

fn resolver_at(address: SocketAddr) -> hickory_resolver::TokioResolver {
    let config = moat::config::Dns { nameservers: vec![address], attempts: 1, ..Default::default() };
    moat::dns::resolver(&config).expect("resolver")
}

fn resolver(dns: &Dns) -> hickory_resolver::TokioResolver {
    resolver_at(SocketAddr::from(([127, 0, 0, 1], dns.port)))
}

fn filter(dns: &Dns, auth: &Auth) -> AuthFilter {
    AuthFilter::new(auth, HOSTNAME, resolver(dns)).expect("filter")
}

fn message(from: &str) -> Vec<u8> {
    format!(
        "From: Someone <{from}>\r\nTo: user@example.test\r\nSubject: quarterly report\r\n\
Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@sender.test>\r\n\r\nHello,\r\n\r\nthe numbers are in.\r\n"
    )
    .into_bytes()
}

fn facts(ip: &str, helo: &str, sender: &str, message: Vec<u8>) -> Facts {
    Facts {
        client_ip: Some(ip.parse::<IpAddr>().expect("ip")),
        helo: Some(helo.to_string()),
        sender: Some(sender.to_string()),
        recipients: vec!["user@example.test".to_string()],
        message: Some(Arc::new(message)),
        ..Facts::default()
    }
}

/// Runs the DATA phase under a test deadline (nothing may hang).
async fn run(filter: &AuthFilter, facts: &Facts) -> Result<Findings, Failure> {
    tokio::time::timeout(Duration::from_secs(30), filter.data(facts)).await.expect("auth filter finished in time")
}

async fn findings(filter: &AuthFilter, facts: &Facts) -> Findings {
    run(filter, facts).await.expect("no failure")
}

fn names(findings: &Findings) -> Vec<&str> {
    findings.symbols.iter().map(|s| s.name.as_str()).collect()
}

fn symbol<'a>(findings: &'a Findings, name: &str) -> Option<&'a Symbol> {
    findings.symbols.iter().find(|s| s.name == name)
}

fn has(findings: &Findings, name: &str) -> bool {
    symbol(findings, name).is_some()
}

/// `message` signed by sender.test (selector s1, ed25519), the signature prepended.
fn dkim_signed(keys: &Keys, message: &[u8]) -> Vec<u8> {
    signed_as(keys, message, "sender.test", "s1")
}

/// `message` with a signature made with the test key but claiming `domain` and `selector`.
fn signed_as(keys: &Keys, message: &[u8], domain: &str, selector: &str) -> Vec<u8> {
    let signature = DkimSigner::from_key(keys.dkim_key())
        .domain(domain)
        .selector(selector)
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(message)
        .expect("sign");
    let mut signed = signature.to_header().into_bytes();
    signed.extend_from_slice(message);
    signed
}

fn with_headers(headers: &[String], message: &[u8]) -> Vec<u8> {
    moat::headers::prepend(headers, message)
}

#[test]
fn base64_helper_matches_rfc_4648_vectors() {
    let vectors = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")];
    for (plain, encoded) in vectors {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
}

#[tokio::test]
async fn spf_results_for_mail_from_and_helo() {
    let keys = Keys::new();
    let dns = zone(&keys);
    let auth = filter(&dns, &Auth::default());
    let cases = [
        (CLIENT, "a@sender.test", "SPF_PASS", "sender.test"),
        (STRANGER, "a@sender.test", "SPF_FAIL", "sender.test"),
        (CLIENT, "a@soft.test", "SPF_SOFTFAIL", "soft.test"),
        (CLIENT, "a@neutral.test", "SPF_NEUTRAL", "neutral.test"),
        (CLIENT, "a@nospf.test", "SPF_NONE", "nospf.test"),
        (CLIENT, "a@perm.test", "SPF_PERMERROR", "perm.test"),
        // SMTPUTF8: a U-label domain is looked up as its A-label (the detail keeps the U-label).
        (CLIENT, "a@bücher.test", "SPF_PASS", "bücher.test"),
    ];
    for (ip, sender, expected, domain) in cases {
        let found = findings(&auth, &facts(ip, "mail.sender.test", sender, message(sender))).await;
        let spf: Vec<&Symbol> = found.symbols.iter().filter(|s| s.name.starts_with("SPF_") && !s.name.starts_with("SPF_HELO_")).collect();
        assert_eq!(spf.len(), 1, "{sender} from {ip}: {:?}", names(&found));
        assert_eq!((spf[0].name.as_str(), spf[0].detail.as_deref()), (expected, Some(domain)), "{sender} from {ip}");
    }

    let helo_pass = findings(&auth, &facts(CLIENT, "mail.sender.test", "a@sender.test", message("a@sender.test"))).await;
    assert_eq!(symbol(&helo_pass, "SPF_HELO_PASS").and_then(|s| s.detail.as_deref()), Some("mail.sender.test"));
    let helo_fail = findings(&auth, &facts(STRANGER, "mail.sender.test", "a@sender.test", message("a@sender.test"))).await;
    assert!(has(&helo_fail, "SPF_HELO_FAIL"), "{:?}", names(&helo_fail));
    let helo_none = findings(&auth, &facts(CLIENT, "nohelo.sender.test", "a@sender.test", message("a@sender.test"))).await;
    assert!(has(&helo_none, "SPF_HELO_NONE"), "{:?}", names(&helo_none));
    let literal = findings(&auth, &facts(CLIENT, "[192.0.2.10]", "a@sender.test", message("a@sender.test"))).await;
    assert!(!names(&literal).iter().any(|n| n.starts_with("SPF_HELO_")), "an address literal is not checked: {:?}", names(&literal));
    assert!(has(&literal, "SPF_PASS"));
}

/// RFC 7208 §2.4: with a null reverse path the MAIL FROM check uses postmaster@<HELO>.
#[tokio::test]
async fn null_sender_is_checked_with_the_helo_identity() {
    let keys = Keys::new();
    let dns = zone(&keys);
    let auth = filter(&dns, &Auth::default());
    let bounce = findings(&auth, &facts(CLIENT, "mail.sender.test", "", message("mailer-daemon@sender.test"))).await;
    assert_eq!(symbol(&bounce, "SPF_PASS").and_then(|s| s.detail.as_deref()), Some("mail.sender.test"), "{:?}", names(&bounce));
    let forged = findings(&auth, &facts(STRANGER, "mail.sender.test", "", message("mailer-daemon@sender.test"))).await;
    assert!(has(&forged, "SPF_FAIL"), "{:?}", names(&forged));
    assert!(forged.headers[0].contains("smtp.mailfrom=<>"), "{}", forged.headers[0]);
    let unknown = findings(&auth, &facts(CLIENT, "localhost", "<>", message("mailer-daemon@sender.test"))).await;
    assert!(has(&unknown, "SPF_NONE"), "no checkable identity: {:?}", names(&unknown));
}

#[tokio::test]
async fn dkim_valid_then_invalid_when_the_body_changes() {
    let keys = Keys::new();
    let dns = zone(&keys);
    let auth = filter(&dns, &Auth::default());
    let signed = dkim_signed(&keys, &message("a@sender.test"));
    // Sent from an address SPF does not allow: DMARC passes on the aligned signature alone.
    let found = findings(&auth, &facts(STRANGER, "relay.other.test", "bounce@nospf.test", signed.clone())).await;
    assert_eq!(symbol(&found, "DKIM_VALID").and_then(|s| s.detail.as_deref()), Some("sender.test"), "{:?}", names(&found));
    assert!(has(&found, "DMARC_PASS"), "{:?}", names(&found));
    assert!(!has(&found, "DKIM_INVALID") && !has(&found, "DKIM_NONE"));

    let mut altered = signed.clone();
    altered.extend_from_slice(b"P.S. pay to account 666\r\n");
    let found = findings(&auth, &facts(STRANGER, "relay.other.test", "bounce@nospf.test", altered)).await;
    let invalid = symbol(&found, "DKIM_INVALID").unwrap_or_else(|| panic!("{:?}", names(&found)));
    assert!(invalid.detail.as_deref().is_some_and(|d| d.starts_with("sender.test")), "{invalid:?}");
    assert!(!has(&found, "DKIM_VALID"));
    assert!(has(&found, "DMARC_FAIL") && has(&found, "DMARC_POLICY_REJECT"), "{:?}", names(&found));

    let unsigned = findings(&auth, &facts(CLIENT, "mail.sender.test", "a@sender.test", message("a@sender.test"))).await;
    assert!(has(&unsigned, "DKIM_NONE"), "{:?}", names(&unsigned));
    assert!(unsigned.headers[0].contains("dkim=none"), "{}", unsigned.headers[0]);
}

#[tokio::test]
async fn dmarc_pass_fail_and_the_domains_policy() {
    let keys = Keys::new();
    let dns = zone(&keys);
    let auth = filter(&dns, &Auth::default());
    // SPF passes for sender.test everywhere below; only the From domain changes.
    let check = |from: &'static str| {
        let auth = &auth;
        async move { findings(auth, &facts(CLIENT, "mail.sender.test", "a@sender.test", message(from))).await }
    };

    let aligned = check("a@sender.test").await;
    assert_eq!(symbol(&aligned, "DMARC_PASS").and_then(|s| s.detail.as_deref()), Some("sender.test"), "{:?}", names(&aligned));
    assert!(!names(&aligned).iter().any(|n| n.starts_with("DMARC_POLICY_")));

    let cases = [
        ("ceo@reject.test", Some("DMARC_POLICY_REJECT")),
        ("ceo@quarantine.test", Some("DMARC_POLICY_QUARANTINE")),
        ("ceo@monitor.test", None),
        // pct below 100: one step weaker, every time.
        ("ceo@pct.test", Some("DMARC_POLICY_QUARANTINE")),
        // RFC 9989 test mode: one step weaker as well.
        ("ceo@testing.test", Some("DMARC_POLICY_QUARANTINE")),
        // A subdomain gets the organisational domain's sp=, the domain itself its p=.
        ("ceo@sub.org.test", Some("DMARC_POLICY_REJECT")),
        ("ceo@org.test", None),
    ];
    for (from, policy) in cases {
        let found = check(from).await;
        assert!(has(&found, "DMARC_FAIL"), "{from}: {:?}", names(&found));
        let policies: Vec<&str> = names(&found).into_iter().filter(|n| n.starts_with("DMARC_POLICY_")).collect();
        assert_eq!(policies, policy.into_iter().collect::<Vec<_>>(), "{from}");
    }
    let pct = check("ceo@pct.test").await;
    assert!(symbol(&pct, "DMARC_POLICY_QUARANTINE").and_then(|s| s.detail.as_deref()).is_some_and(|d| d.contains("pct=20")));

    let none = check("ceo@nospf.test").await;
    assert!(has(&none, "DMARC_NONE"), "{:?}", names(&none));
    assert!(!has(&none, "DMARC_FAIL"));
}

#[tokio::test]
async fn authentication_results_header_and_forged_copies() {
    let keys = Keys::new();
    let dns = zone(&keys);
    let auth = filter(&dns, &Auth::default());
    let forged = b"Authentication-Results: mx.moat.test; spf=pass; dkim=pass; dmarc=pass\r\n";
    let mut received = forged.to_vec();
    received.extend_from_slice(&dkim_signed(&keys, &message("a@sender.test")));
    let found = findings(&auth, &facts(CLIENT, "mail.sender.test", "a@sender.test", received.clone())).await;

    assert_eq!(found.headers.len(), 1, "no ARC fields without a sealing key: {:?}", found.headers);
    let header = &found.headers[0];
    assert!(header.starts_with("Authentication-Results: mx.moat.test;\r\n\t"), "{header}");
    assert!(header.ends_with("\r\n") && !header[..header.len() - 2].contains("\r\n\r\n"), "{header:?}");
    for line in header.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
        assert!(line.starts_with('\t'), "continuation lines are folded: {line:?}");
        assert!(line.len() < 200, "{line:?}");
    }
    for expected in [
        "spf=pass (mx.moat.test: domain of postmaster@mail.sender.test designates 192.0.2.10 as permitted sender) smtp.helo=mail.sender.test",
        "spf=pass (mx.moat.test: domain of a@sender.test designates 192.0.2.10 as permitted sender) smtp.mailfrom=a@sender.test",
        "dkim=pass header.d=sender.test header.s=s1 header.b=",
        "dmarc=pass header.from=sender.test policy.dmarc=reject",
        "arc=none smtp.remote-ip=192.0.2.10",
    ] {
        assert!(header.contains(expected), "missing {expected:?} in {header}");
    }

    // What the integrator delivers: our fields on top of the message minus the forgery.
    let delivered = with_headers(&found.headers, &strip_forged_results(&received, auth.authserv_id()));
    let claims = moat::headers::fields(&delivered).into_iter().filter(|f| f.is("Authentication-Results")).count();
    assert_eq!(claims, 1);
    assert_eq!(&delivered[header.len()..], &received[forged.len()..], "the rest is byte for byte the same");

    // A configured authserv-id is used instead of the hostname.
    let custom = Auth { authserv_id: Some("auth.moat.test".into()), ..Auth::default() };
    let found = findings(&filter(&dns, &custom), &facts(CLIENT, "mail.sender.test", "a@sender.test", message("a@sender.test"))).await;
    assert!(found.headers[0].starts_with("Authentication-Results: auth.moat.test;"), "{}", found.headers[0]);
}

fn sealing(dir: &Path, key: &rcgen::KeyPair, selector: &str) -> Auth {
    let key_file = dir.join(format!("{selector}.pem"));
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    Auth { arc_seal: Some(ArcSeal { domain: "moat.test".into(), selector: selector.into(), key_file }), ..Auth::default() }
}

#[tokio::test]
async fn arc_none_then_pass_after_sealing_with_ed25519_and_rsa() {
    let keys = Keys::new();
    let dns = zone(&keys);
    let dir = tempfile::tempdir().expect("temp dir");
    let verifier = MessageAuthenticator(resolver(&dns));
    for (key, selector) in [(&keys.arc_ed25519, "arc"), (&keys.arc_rsa, "arc-rsa")] {
        let auth = filter(&dns, &sealing(dir.path(), key, selector));
        let original = dkim_signed(&keys, &message("a@sender.test"));
        let found = findings(&auth, &facts(CLIENT, "mail.sender.test", "a@sender.test", original.clone())).await;
        assert!(has(&found, "ARC_NONE"), "{:?}", names(&found));
        assert_eq!(found.headers.len(), 2, "{:?}", found.headers);
        let arc_fields: Vec<String> =
            moat::headers::fields(found.headers[0].as_bytes()).iter().map(|f| String::from_utf8_lossy(f.name).into_owned()).collect();
        assert_eq!(arc_fields, ["ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results"], "{selector}");
        assert!(found.headers[0].contains("cv=none") && found.headers[0].contains("ARC-Authentication-Results: i=1; mx.moat.test;"));
        assert!(found.headers[1].starts_with("Authentication-Results: mx.moat.test;"));

        // The downstream verifies our seal against the published key.
        let sealed = with_headers(&found.headers, &original);
        let parsed = AuthenticatedMessage::parse(&sealed).expect("parse sealed message");
        let arc = verifier.verify_arc(&parsed).await;
        assert_eq!(arc.result(), &DkimResult::Pass, "{selector}: {arc:?}");

        // And so do we, on a second pass, which extends the chain (i=2, cv=pass).
        let again = findings(&auth, &facts(CLIENT, "mail.sender.test", "a@sender.test", sealed.clone())).await;
        assert_eq!(symbol(&again, "ARC_VALID").and_then(|s| s.detail.as_deref()), Some("i=1"), "{:?}", names(&again));
        assert!(again.headers[0].contains("i=2") && again.headers[0].contains("cv=pass"), "{}", again.headers[0]);
        let twice = with_headers(&again.headers, &sealed);
        let parsed = AuthenticatedMessage::parse(&twice).expect("parse");
        assert_eq!(verifier.verify_arc(&parsed).await.result(), &DkimResult::Pass, "{selector}: two sets");

        // A body changed after sealing breaks the chain.
        let mut tampered = sealed.clone();
        tampered.extend_from_slice(b"appended\r\n");
        let broken = findings(&auth, &facts(CLIENT, "mail.sender.test", "a@sender.test", tampered)).await;
        assert!(has(&broken, "ARC_INVALID"), "{:?}", names(&broken));
    }
}

#[test]
fn a_bad_sealing_key_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("broken.pem");
    std::fs::write(&key_file, "not a key").expect("write");
    let auth = Auth { arc_seal: Some(ArcSeal { domain: "moat.test".into(), selector: "arc".into(), key_file }), ..Auth::default() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _guard = runtime.enter();
    let error = AuthFilter::new(&auth, HOSTNAME, resolver_at("127.0.0.1:9".parse().expect("addr"))).err().expect("an error");
    assert!(error.to_string().contains("broken.pem"), "{error}");
}

/// A resolver that gets no answers: nothing on the port, or a socket that never replies. Either
/// way every query runs into its timeout (1 s here; hickory tries UDP, then TCP).
#[tokio::test]
async fn dns_failures_are_temperrors_or_a_fail_closed_failure() {
    let keys = Keys::new();
    let nothing = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let silent_socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent = silent_socket.local_addr().expect("address");
    let signed = dkim_signed(&keys, &message("a@sender.test"));
    let facts = facts(CLIENT, "mail.sender.test", "a@sender.test", signed);
    let dead = |server: SocketAddr, stance: Stance| {
        let config = moat::config::Dns { nameservers: vec![server], timeout: moat::config::Seconds(1), attempts: 1, ..Default::default() };
        let auth = Auth { dns_failure: stance, ..Auth::default() };
        AuthFilter::new(&auth, HOSTNAME, moat::dns::resolver(&config).expect("resolver")).expect("filter")
    };
    let open = [dead(nothing, Stance::FailOpen), dead(silent, Stance::FailOpen)];
    let closed = [dead(nothing, Stance::FailClosed), dead(silent, Stance::FailClosed)];
    let started = std::time::Instant::now();
    let (open_results, closed_results) = tokio::join!(
        futures_util::future::join_all(open.iter().map(|f| run(f, &facts))),
        futures_util::future::join_all(closed.iter().map(|f| run(f, &facts))),
    );
    assert!(started.elapsed() < Duration::from_secs(15), "bounded by the resolver's deadlines: {:?}", started.elapsed());
    for found in open_results {
        let found = found.expect("fail open gives findings");
        for expected in ["SPF_TEMPERROR", "SPF_HELO_TEMPERROR", "DKIM_TEMPERROR", "DMARC_TEMPERROR"] {
            assert!(has(&found, expected), "{expected} in {:?}", names(&found));
        }
        assert!(found.headers[0].contains("spf=temperror"), "{}", found.headers[0]);
    }
    for failure in closed_results {
        let failure = failure.expect_err("fail closed gives a failure");
        assert_eq!((failure.symbol.as_str(), failure.stance), ("AUTH_TEMPERROR", Stance::FailClosed));
        assert!(failure.detail.contains("SPF_TEMPERROR"), "{failure:?}");
    }
    assert_eq!(closed[0].failure(), ("AUTH_TEMPERROR", Stance::FailClosed), "timeouts in the chain use the same stance");
    assert_eq!(open[0].failure(), ("AUTH_TEMPERROR", Stance::FailOpen));
    drop(silent_socket);
}

/// Through the chain, as the session will run it: evidence carries the symbols and the header.
#[tokio::test]
async fn the_chain_runs_the_filter_in_the_data_phase_only() {
    let keys = Keys::new();
    let dns = zone(&keys);
    let auth = Auth { dmarc_reject: DmarcReject::Reject, ..Auth::default() };
    let forced = auth.forced_actions();
    let chain = Chain::new(vec![Arc::new(filter(&dns, &auth))], Duration::from_secs(10));
    let facts = facts(CLIENT, "mail.sender.test", "a@sender.test", message("ceo@reject.test"));
    let mail = chain.run(Phase::Mail, &facts).await;
    assert!(mail.symbols.is_empty() && mail.headers.is_empty());
    let data = chain.run(Phase::Data, &facts).await;
    assert!(data.failures.is_empty(), "{:?}", data.failures);
    assert!(data.has("SPF_PASS") && data.has("DMARC_FAIL") && data.has("DMARC_POLICY_REJECT"), "{:?}", data.symbols);
    assert_eq!(data.headers.len(), 1);
    let policy = moat::verdict::Policy { forced: forced.into_iter().collect(), ..Default::default() };
    let verdict = moat::verdict::decide(&data, |_| 0.0, &policy);
    assert_eq!(verdict.action, moat::verdict::Action::Reject, "{}", verdict.reason);
}

/// `moat scan` without `--ip`: no SPF, the rest as usual (so DMARC can only pass on DKIM).
/// Messages that are not messages and an empty HELO give "none" results, never a panic, and
/// need no DNS (that resolver answers nothing).
#[tokio::test]
async fn missing_facts_and_garbage_messages_give_none_results() {
    let keys = Keys::new();
    let dns = zone(&keys);
    let auth = filter(&dns, &Auth::default());
    let bare = Facts { message: Some(Arc::new(message("a@sender.test"))), ..Facts::default() };
    let found = findings(&auth, &bare).await;
    assert!(!names(&found).iter().any(|n| n.starts_with("SPF")), "no client IP, no SPF: {:?}", names(&found));
    assert!(has(&found, "DKIM_NONE") && has(&found, "ARC_NONE") && has(&found, "DMARC_FAIL"), "{:?}", names(&found));
    assert_eq!(found.headers.len(), 1);
    assert!(!found.headers[0].contains("spf="), "{}", found.headers[0]);
    assert!(found.headers[0].contains("dkim=none") && found.headers[0].contains("\tarc=none\r\n"), "{}", found.headers[0]);

    let nothing = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let offline = AuthFilter::new(&Auth::default(), HOSTNAME, resolver_at(nothing)).expect("filter");
    for garbage in [&b""[..], b"\r\n\r\n", b"no colon here\r\n", b"\xff\xfe\x00\x01:\r\n\r\n", b"From:\r\n\r\n", b"From: <@>\r\n\r\n"] {
        let facts = Facts { message: Some(Arc::new(garbage.to_vec())), helo: Some(String::new()), ..Facts::default() };
        let found = tokio::time::timeout(Duration::from_secs(1), offline.data(&facts)).await.expect("no lookups").expect("findings");
        assert!(has(&found, "DKIM_NONE") && has(&found, "DMARC_NONE"), "{garbage:?}: {:?}", names(&found));
        assert!(found.headers[0].starts_with("Authentication-Results: mx.moat.test;"), "{}", found.headers[0]);
    }
}

/// A UDP DNS proxy in front of dnsmasq that drops every query whose name contains `drop`:
/// those lookups run into the resolver's timeout. Stopped on Drop.
struct DroppingProxy {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DroppingProxy {
    fn start(upstream: u16, drop: &'static str) -> DroppingProxy {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind proxy");
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
        let address = socket.local_addr().expect("proxy address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut query = [0u8; 4096];
            let mut reply = [0u8; 4096];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, client)) = socket.recv_from(&mut query) else { continue };
                if query_name(&query[..n]).contains(drop) {
                    continue;
                }
                let Ok(up) = UdpSocket::bind("127.0.0.1:0") else { continue };
                let _ = up.set_read_timeout(Some(Duration::from_secs(2)));
                if up.send_to(&query[..n], ("127.0.0.1", upstream)).is_ok()
                    && let Ok((m, _)) = up.recv_from(&mut reply)
                {
                    let _ = socket.send_to(&reply[..m], client);
                }
            }
        });
        DroppingProxy { address, stop, thread: Some(thread) }
    }
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The question name of a DNS query, lower-cased ("" when malformed).
fn query_name(packet: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut at = 12;
    while let Some(&len) = packet.get(at) {
        if len == 0 || len > 63 {
            break;
        }
        let Some(label) = packet.get(at + 1..at + 1 + len as usize) else { break };
        labels.push(String::from_utf8_lossy(label).to_lowercase());
        at += 1 + len as usize;
    }
    labels.join(".")
}

/// A spoofer controls its own DNS: slow SPF and slow DKIM keys for its domain must not stall
/// the filter past the chain deadline (which would hide the DMARC failure of the From domain).
/// A slow key for an aligned signature, on the other hand, is a DMARC temperror, not a failure.
#[tokio::test]
async fn a_senders_slow_dns_cannot_hide_the_from_domains_dmarc_failure() {
    let keys = Keys::new();
    let dns = zone(&keys);
    let proxy = DroppingProxy::start(dns.port, "slow");
    let config =
        moat::config::Dns { nameservers: vec![proxy.address], timeout: moat::config::Seconds(10), attempts: 1, ..Default::default() };
    let auth = Auth { timeout: moat::config::Seconds(1), ..Auth::default() };
    let auth = AuthFilter::new(&auth, HOSTNAME, moat::dns::resolver(&config).expect("resolver")).expect("filter");

    // Signatures: one whose key never answers (the spoofer's), one claiming the victim's domain.
    let spoofed = signed_as(&keys, &message("ceo@reject.test"), "reject.test", "s1");
    let spoofed = signed_as(&keys, &spoofed, "slow-spoofer.test", "s1");
    let started = std::time::Instant::now();
    let found = findings(&auth, &facts(CLIENT, "mail.slow-spoofer.test", "a@slow-spoofer.test", spoofed)).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "the budget bounds the checks, not the resolver: {elapsed:?}");
    for expected in ["SPF_TEMPERROR", "DKIM_TEMPERROR", "DKIM_INVALID", "DMARC_FAIL", "DMARC_POLICY_REJECT"] {
        assert!(has(&found, expected), "{expected} in {:?}", names(&found));
    }

    // An aligned signature whose key lookup runs out of time: DMARC cannot fail on it.
    let legit = signed_as(&keys, &message("ceo@quarantine.test"), "quarantine.test", "slowsel");
    let found = findings(&auth, &facts(STRANGER, "mail.sender.test", "a@nospf.test", legit)).await;
    assert!(has(&found, "DKIM_TEMPERROR") && has(&found, "DMARC_TEMPERROR"), "{:?}", names(&found));
    assert!(!names(&found).iter().any(|n| n.starts_with("DMARC_POLICY_")), "{:?}", names(&found));
    drop(proxy);
}

/// `[dns] attempts` counts tries: a server that never answers costs `timeout` × `attempts` per
/// query (hickory's own setting counts retries; before, each query took one timeout more).
#[tokio::test]
async fn a_silent_name_server_costs_timeout_times_attempts_per_query() {
    let silent_socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent = silent_socket.local_addr().expect("address");
    let mut took = Vec::new();
    for attempts in [1, 2] {
        let config = moat::config::Dns { nameservers: vec![silent], timeout: moat::config::Seconds(1), attempts, ..Default::default() };
        let resolver = moat::dns::resolver(&config).expect("resolver");
        let started = std::time::Instant::now();
        let answer = resolver.txt_lookup("_dmarc.sender.test.").await;
        assert!(answer.is_err_and(|e| !e.is_no_records_found()), "no answer is a failure, not 'no records'");
        took.push(started.elapsed());
    }
    assert!(took[0] >= Duration::from_millis(900) && took[0] < Duration::from_millis(1800), "1 attempt of 1 s: {:?}", took[0]);
    assert!(took[1] >= Duration::from_millis(1900) && took[1] < Duration::from_millis(2800), "2 attempts of 1 s: {:?}", took[1]);
    drop(silent_socket);
}

/// Answers are cached within their TTL, found and not found alike: with the name server gone,
/// a name asked for before still resolves, and one that did not exist still does not (no wait).
#[tokio::test]
async fn answers_and_nxdomain_are_served_from_the_cache_within_their_ttl() {
    let dns = DnsZone::new().a("cached.test", "192.0.2.55").ttl(300).start();
    let config = moat::config::Dns {
        nameservers: vec![format!("127.0.0.1:{}", dns.port).parse().expect("address")],
        timeout: moat::config::Seconds(1),
        attempts: 1,
        ..Default::default()
    };
    let resolver = moat::dns::resolver(&config).expect("resolver");
    let found = resolver.ipv4_lookup("cached.test.").await.expect("an answer");
    assert_eq!(found.answers().len(), 1);
    let missing = resolver.ipv4_lookup("missing.test.").await.expect_err("NXDOMAIN");
    assert!(missing.is_no_records_found(), "{missing}");
    drop(dns);
    let started = std::time::Instant::now();
    let again = resolver.ipv4_lookup("cached.test.").await.expect("the cached answer");
    assert_eq!(again.answers().len(), 1);
    let missing = resolver.ipv4_lookup("missing.test.").await.expect_err("the cached NXDOMAIN");
    assert!(missing.is_no_records_found(), "{missing}");
    assert!(started.elapsed() < Duration::from_millis(500), "served from the cache: {:?}", started.elapsed());
    let uncached = resolver.ipv4_lookup("other.test.").await.expect_err("the server is gone");
    assert!(!uncached.is_no_records_found(), "a name not asked before cannot be answered: {uncached}");
}

/// The stock rules' SPF and DKIM `eval:` functions read this filter's answers: in one chain with
/// the rules filter, a meta over `!__NOT_SPOOFED` (written as in SpamAssassin's rules) fires for
/// a message whose sender fails SPF and is not DKIM-signed by its author's domain, and not for
/// the same message when SPF passes or the author's domain signed it; with the auth filter off,
/// the meta does not run at all.
#[tokio::test]
async fn stock_style_metas_over_spf_and_dkim_read_the_auth_filters_answers() {
    let keys = Keys::new();
    let dns = zone(&keys);
    let (rules, report) = moat::ruleset::RuleSet::load_texts(&[(
        "auth.cf",
        "header SPF_PASS eval:check_for_spf_pass()\ntflags SPF_PASS net nice\n\
         full DKIM_VALID_AU eval:check_dkim_valid_author_sig()\ntflags DKIM_VALID_AU net nice\n\
         meta __NOT_SPOOFED SPF_PASS || DKIM_VALID_AU\n\
         body __REPORT /numbers are in/\n\
         meta SPOOFED_REPORT __REPORT && !__NOT_SPOOFED\nscore SPOOFED_REPORT 3.0\n",
    )])
    .expect("rules load");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let rules: Arc<dyn Filter> = Arc::new(moat::filter::rules::RulesFilter::new(Arc::new(rules)));
    let auth: Arc<dyn Filter> = Arc::new(filter(&dns, &Auth::default()));
    let chain = Chain::new(vec![rules.clone(), auth], Duration::from_secs(20));
    let spoofed = |evidence: &moat::verdict::Evidence| evidence.symbols.iter().any(|s| s.name == "SPOOFED_REPORT");

    let forged = chain.run(Phase::Data, &facts(STRANGER, "mx.stranger.test", "a@sender.test", message("a@sender.test"))).await;
    assert!(spoofed(&forged) && forged.has("SPF_FAIL"), "{:?}", forged.symbols);
    assert_eq!(forged.symbols.iter().filter(|s| s.name == "SPF_PASS").count(), 0);
    let passing = chain.run(Phase::Data, &facts(CLIENT, "mail.sender.test", "a@sender.test", message("a@sender.test"))).await;
    assert!(!spoofed(&passing) && passing.has("SPF_PASS"), "{:?}", passing.symbols);
    assert_eq!(passing.symbols.iter().filter(|s| s.name == "SPF_PASS").count(), 1, "the rule does not repeat the filter's symbol");
    let signed = dkim_signed(&keys, &message("a@sender.test"));
    let signed = chain.run(Phase::Data, &facts(STRANGER, "mx.stranger.test", "a@sender.test", signed)).await;
    assert!(!spoofed(&signed) && signed.has("DKIM_VALID") && signed.has("SPF_FAIL"), "{:?}", signed.symbols);

    let rules_alone = Chain::new(vec![rules], Duration::from_secs(20));
    let unknown = rules_alone.run(Phase::Data, &facts(STRANGER, "mx.stranger.test", "a@sender.test", message("a@sender.test"))).await;
    assert!(!spoofed(&unknown) && unknown.failures.is_empty(), "no auth filter: not known to be spoofed, {:?}", unknown.symbols);
}
