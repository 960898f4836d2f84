//! Recipient validation by callout: moat asks the real downstream (a private Postfix with two
//! mailboxes) at RCPT time, refuses unknown users there instead of bouncing later, caches what
//! it learnt, and answers 450 when the downstream cannot be asked.

use crate::support::*;
use std::time::Duration;

const DOWNSTREAM_DOMAIN: &str = "downstream.test";

fn callout_domain(port: u16) -> String {
    format!(
        "\n[[domain]]\nname = \"{DOWNSTREAM_DOMAIN}\"\nrecipient_check = \"callout\"\ncallout_cache = \"1h\"\n\
         route = {{ host = \"127.0.0.1\", port = {port}, tls = \"none\" }}\n"
    )
}

#[test]
fn callout_accepts_known_users_refuses_unknown_ones_and_caches() {
    let mut postfix = Postfix::start_with_users(DOWNSTREAM_DOMAIN, &["bob@downstream.test", "carol@downstream.test"]);
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).append(&callout_domain(postfix.port)));

    let mut smtp = moat.smtp_ehlo();
    assert_reply(&smtp.cmd("MAIL FROM:<alice@remote.example>"), 250, "2.1.0", "MAIL");
    assert_reply(&smtp.cmd("RCPT TO:<bob@downstream.test>"), 250, "2.1.5", "known user");
    assert_reply(&smtp.cmd("RCPT TO:<nobody@downstream.test>"), 550, "5.1.1", "unknown user refused at RCPT");
    assert_eq!(smtp.cmd("DATA").code, 354);
    smtp.send(b"Subject: callout\r\n\r\nfor bob\r\n.\r\n");
    let reply = smtp.reply();
    assert_eq!(reply.code, 250, "{reply}");
    smtp.cmd("QUIT");

    // Delivered through the domain's own route to the Postfix mailbox.
    let delivered = postfix.wait_delivered(1, Duration::from_secs(30));
    assert!(text(&delivered[0]).contains("for bob"));

    // With the downstream gone, bob is still known from the cache; carol was never asked, so
    // she cannot be verified now: 450, never a guess.
    postfix.stop();
    let mut smtp = moat.smtp_ehlo();
    assert_reply(&smtp.cmd("MAIL FROM:<alice@remote.example>"), 250, "2.1.0", "MAIL");
    assert_reply(&smtp.cmd("RCPT TO:<bob@downstream.test>"), 250, "2.1.5", "cached answer");
    assert_reply(&smtp.cmd("RCPT TO:<carol@downstream.test>"), 450, "4.1.1", "downstream unreachable");
}
