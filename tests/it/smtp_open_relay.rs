//! Never an open relay: only recipients in the configured domains are accepted, whatever the
//! address tricks, and recipient validation refuses unknown users at RCPT time.

use crate::support::*;
use std::time::Duration;

/// Recipient addresses that must not be accepted, and why.
const TRICKS: &[(&str, &str)] = &[
    ("<user@evil.test>", "a foreign domain"),
    ("<user%other.test@example.test>", "percent hack (user%other@domain)"),
    ("<user%evil.test@example.test>", "percent hack to a foreign domain"),
    ("<@example.test:user@evil.test>", "source route through our domain"),
    ("<@example.test,@other.test:user@evil.test>", "source route with two hops"),
    ("<\"user@evil.test\"@example.test>", "quoted local part containing an @"),
    ("<user@example.test.>", "trailing dot"),
    ("<user@[127.0.0.1]>", "IP address literal"),
    ("<user@[IPv6:::1]>", "IPv6 address literal"),
    ("<user!evil.test@example.test>", "bang path"),
    ("<user@evil.test@example.test>", "two @"),
    ("<user@sub.example.test>", "a subdomain of ours"),
    ("<user@example.test.evil.test>", "our domain as a prefix of a foreign one"),
    ("<user@evilexample.test>", "our domain as a suffix of a foreign one"),
    ("<postmaster@evil.test>", "postmaster of a foreign domain"),
];

#[test]
fn relay_tricks_are_refused_and_our_domain_is_accepted() {
    let sink = Sink::new();
    // Every refusal counts as an error: allow more than there are tricks.
    let moat = Moat::start(MoatConfig::new(sink.port).limit("max_errors", 100));
    let mut smtp = moat.smtp_ehlo();
    assert_reply(&smtp.cmd("MAIL FROM:<a@remote.example>"), 250, "2.1.0", "MAIL");
    let mut failures = Vec::new();
    for (address, why) in TRICKS {
        let reply = smtp.cmd(&format!("RCPT TO:{address}"));
        // 550 5.7.1 (relaying denied) is the answer; a 501 for addresses that are not even
        // valid syntax also keeps the relay closed, but no 2xx and no 4xx (a 4xx invites retries).
        let refused = reply.is(550, "5.7.1") || reply.code == 501 || reply.code == 553;
        if !refused {
            failures.push(format!("RCPT TO:{address} ({why}) got {}", reply.to_string().trim_end()));
        }
    }
    assert_reply(&smtp.cmd("RCPT TO:<user@example.test>"), 250, "2.1.5", "our domain");
    assert_reply(&smtp.cmd("RCPT TO:<Other@EXAMPLE.Test>"), 250, "2.1.5", "our domain in other case");
    assert!(failures.is_empty(), "moat must not relay:\n{}", failures.join("\n"));
    assert_eq!(smtp.cmd("DATA").code, 354);
    smtp.send(b"Subject: relay check\r\n\r\nbody\r\n.\r\n");
    assert_reply(&smtp.reply(), 250, "2.0.0", "queued");
    let mails = sink.wait_for(1, DEADLINE);
    let mut rcpts: Vec<String> = mails[0].recipients.iter().map(|r| r.to_ascii_lowercase()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["other@example.test", "user@example.test"], "only our recipients are relayed");
}

#[test]
fn the_plain_foreign_domain_gets_exactly_550_5_7_1() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let mut smtp = moat.smtp_ehlo();
    assert_eq!(smtp.cmd("MAIL FROM:<a@remote.example>").code, 250);
    for address in [
        "<user@evil.test>",
        "<user%other@example.test>",
        "<@example.test:user@evil.test>",
        "<\"user@evil.test\"@example.test>",
        "<user@example.test.>",
        "<user@[127.0.0.1]>",
    ] {
        assert_reply(&smtp.cmd(&format!("RCPT TO:{address}")), 550, "5.7.1", address);
    }
}

#[test]
fn only_foreign_recipients_means_nothing_is_relayed() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let out = swaks(&["-s", &format!("127.0.0.1:{}", moat.port), "-f", "a@remote.example", "-t", "victim@evil.test", "--body", "spam"]);
    let transcript = text(&out.stdout);
    assert!(!out.status.success(), "swaks must fail: {transcript}");
    assert!(transcript.contains("<** 550 5.7.1"), "swaks should see 550 5.7.1:\n{transcript}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.messages().is_empty());
}

#[test]
fn unknown_user_of_a_listed_domain_is_refused_at_rcpt() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let mut smtp = moat.smtp_ehlo();
    assert_eq!(smtp.cmd("MAIL FROM:<a@remote.example>").code, 250);
    assert_reply(&smtp.cmd(&format!("RCPT TO:<nobody@{LIST_DOMAIN}>")), 550, "5.1.1", "unknown user");
    assert_reply(&smtp.cmd(&format!("RCPT TO:<{LIST_USER}>")), 250, "2.1.5", "listed user");
    assert_reply(&smtp.cmd(&format!("RCPT TO:<{}>", LIST_USER.to_ascii_uppercase())), 250, "2.1.5", "listed user, other case");
}
