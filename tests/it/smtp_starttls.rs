//! STARTTLS: offered when [tls] is set, a real TLS session afterwards, and no command injection
//! (anything pipelined after STARTTLS in plaintext is discarded).

use crate::support::*;
use std::time::Duration;

fn tls_moat() -> (Sink, Moat) {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).starttls());
    (sink, moat)
}

#[test]
fn starttls_is_offered_and_works() {
    let (sink, moat) = tls_moat();
    let (mut smtp, ehlo) = Smtp::open_ehlo(moat.port);
    assert!(ehlo.keywords().iter().any(|k| k == "STARTTLS"), "EHLO must offer STARTTLS:\n{ehlo}");
    assert_reply(&smtp.cmd("STARTTLS"), 220, "2.0.0", "STARTTLS");
    smtp.starttls(moat.certificate.as_ref().unwrap(), MOAT_HOSTNAME);
    assert!(smtp.tls_version().is_some());
    let ehlo = smtp.cmd("EHLO client.example.org");
    assert_eq!(ehlo.code, 250, "{ehlo}");
    assert!(!ehlo.keywords().iter().any(|k| k == "STARTTLS"), "no STARTTLS inside TLS:\n{ehlo}");
    assert_reply(&smtp.cmd("STARTTLS"), 503, "5.5.1", "STARTTLS twice");
    let id = marker("tls");
    let reply = smtp.send_mail("a@remote.example", &["user@example.test"], &simple_message(&id));
    assert_reply(&reply, 250, "2.0.0", "queued over TLS");
    let mails = sink.wait_for(1, DEADLINE);
    let (received, _) = split_first_header(&mails[0].data);
    let received = text(received);
    assert!(received.contains("TLS"), "the Received header should record TLS: {received}");
}

#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let (sink, moat) = tls_moat();
    let (mut smtp, _) = Smtp::open_ehlo(moat.port);
    // The injection: plaintext commands in the same packet as STARTTLS. If moat kept them, they
    // would run inside the TLS session as if the client had sent them there.
    smtp.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\nRCPT TO:<user@example.test>\r\n");
    assert_reply(&smtp.reply(), 220, "2.0.0", "STARTTLS");
    // Anything moat said after the 220 in plaintext would be left in the buffer: must be nothing.
    std::thread::sleep(Duration::from_millis(300));
    assert!(smtp.pending().is_empty(), "moat answered injected commands in plaintext: {:?}", text(smtp.pending()));
    smtp.starttls(moat.certificate.as_ref().unwrap(), MOAT_HOSTNAME);
    // The first reply inside TLS must be the one to our EHLO, not to an injected command.
    let ehlo = smtp.cmd("EHLO client.example.org");
    assert_eq!(ehlo.code, 250, "{ehlo}");
    assert!(ehlo.lines.len() > 1 && ehlo.lines[0].starts_with(MOAT_HOSTNAME), "first TLS reply must answer EHLO:\n{ehlo}");
    // No transaction was started by the injected MAIL: RCPT needs a MAIL first.
    assert_reply(&smtp.cmd("RCPT TO:<user@example.test>"), 503, "5.5.1", "RCPT without MAIL inside TLS");
    assert_reply(&smtp.cmd("QUIT"), 221, "2.0.0", "QUIT");
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.messages().is_empty());
}

#[test]
fn starttls_without_tls_config_is_not_available() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let mut smtp = moat.smtp_ehlo();
    let reply = smtp.cmd("STARTTLS");
    // 454 (RFC 3207 "TLS not available"), 502 or 503 are all fine; 220 is not.
    assert!(matches!(reply.code, 454 | 500 | 502 | 503), "STARTTLS without [tls]: {reply}");
    assert_reply(&smtp.cmd("NOOP"), 250, "2.0.0", "still plaintext SMTP");
}

#[test]
fn mail_before_starttls_still_works_in_plaintext() {
    // STARTTLS is offered, not required: a plaintext client can still deliver.
    let (sink, moat) = tls_moat();
    let mut smtp = moat.smtp_ehlo();
    let reply = smtp.send_mail("a@remote.example", &["user@example.test"], &simple_message("plain"));
    assert_reply(&reply, 250, "2.0.0", "queued in plaintext");
    sink.wait_for(1, DEADLINE);
}
