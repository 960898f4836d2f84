//! Checks of the test harness itself against the real peers (no moat involved), so that a
//! failing acceptance test points at moat and not at the harness.

use crate::support;
use crate::support::*;
use std::time::Duration;

#[test]
fn sink_records_envelope_and_message_with_lf_endings() {
    let sink = Sink::new();
    let (mut smtp, _) = Smtp::open_ehlo(sink.port);
    let message = b"Subject: hi\r\n\r\n.leading dot\r\nline two\r\n";
    let reply = smtp.send_mail("a@remote.example", &["b@example.test", "c@example.test"], message);
    assert_eq!(reply.code, 250, "{reply}");
    let reply = smtp.send_mail("", &["d@example.test"], b"x\r\n");
    assert_eq!(reply.code, 250, "{reply}");
    let mails = sink.wait_for(2, DEADLINE);
    assert_eq!(mails.len(), 2);
    let first = mails.iter().find(|m| m.sender == "a@remote.example").expect("first message");
    assert_eq!(first.recipients, ["b@example.test", "c@example.test"]);
    assert_eq!(text(&first.data), text(&crlf_to_lf(message)));
    let second = mails.iter().find(|m| m.sender.is_empty()).expect("null-sender message");
    assert_eq!(second.data, b"x\n");
}

#[test]
fn sink_stops_and_starts_again_on_the_same_port() {
    let mut sink = Sink::new();
    sink.stop();
    assert!(!port_accepts(sink.port), "a stopped sink must refuse connections");
    sink.start();
    let (mut smtp, _) = Smtp::open_ehlo(sink.port);
    assert_eq!(smtp.send_mail("a@remote.example", &["b@example.test"], b"x\r\n").code, 250);
    assert_eq!(sink.wait_for(1, DEADLINE).len(), 1);
}

#[test]
fn sink_can_refuse_recipients_temporarily() {
    let sink = Sink::with_args(&["-r", "RCPT"]);
    let (mut smtp, _) = Smtp::open_ehlo(sink.port);
    assert_eq!(smtp.cmd("MAIL FROM:<a@remote.example>").code, 250);
    assert_eq!(smtp.cmd("RCPT TO:<b@example.test>").code / 100, 4);
}

#[test]
fn capture_keeps_exact_bytes_and_undoes_dot_stuffing() {
    let capture = Capture::new();
    let (mut smtp, _) = Smtp::open_ehlo(capture.port);
    let message = b"Subject: x\r\n\r\n.dot\r\n..two dots\r\ntrailing space \r\n\xc3\xa9t\xc3\xa9\r\n\r\n";
    assert_eq!(smtp.send_mail("a@remote.example", &["b@example.test"], message).code, 250);
    let mails = capture.wait_for(1, DEADLINE);
    assert_eq!(mails[0].data, message);
    assert_eq!(mails[0].recipients, ["b@example.test"]);
}

#[test]
fn smtp_client_parses_multiline_replies_and_sees_close() {
    let sink = Sink::new();
    let (mut smtp, ehlo) = Smtp::open_ehlo(sink.port);
    assert!(ehlo.lines.len() > 2, "{ehlo}");
    assert!(ehlo.keywords().contains(&"PIPELINING".to_string()), "{ehlo}");
    let quit = smtp.cmd("QUIT");
    assert_eq!(quit.code, 221);
    assert!(smtp.closed_within(Duration::from_secs(5)));
}

#[test]
fn smtp_dialogue_checks_every_reply_in_order() {
    let capture = Capture::new();
    let (mut smtp, _) = Smtp::open_ehlo(capture.port);
    let replies = smtp.expect(&[("MAIL FROM:<a@remote.example>", 250), ("DATA", 503)]);
    assert_eq!(replies.iter().map(|r| r.code).collect::<Vec<_>>(), [250, 503]);
    smtp.expect_enhanced(&[("RCPT TO:<b@example.test>", 250, "2.1.5"), ("FROB", 500, "5.5.2"), ("RSET", 250, "2.0.0")]);
}

#[test]
#[should_panic(expected = "RCPT TO:<b@example.test>: expected 550 5.7.1, got:\n250 2.1.5 Ok")]
fn smtp_dialogue_names_the_command_whose_reply_differs() {
    let capture = Capture::new();
    let (mut smtp, _) = Smtp::open_ehlo(capture.port);
    smtp.expect_enhanced(&[("MAIL FROM:<a@remote.example>", 250, "2.1.0"), ("RCPT TO:<b@example.test>", 550, "5.7.1")]);
}

#[test]
fn swaks_talks_to_the_sink() {
    let sink = Sink::new();
    let server = format!("127.0.0.1:{}", sink.port);
    let out = swaks(&["-s", &server, "-f", "a@remote.example", "-t", "b@example.test", "--body", "swaks-body"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let mails = sink.wait_for(1, DEADLINE);
    assert!(mails[0].contains("swaks-body"));
}

#[test]
fn private_postfix_instances_run_in_parallel_and_deliver_to_a_maildir() {
    let a = Postfix::start("example.test");
    let b = Postfix::start("example.test");
    for (i, postfix) in [&a, &b].iter().enumerate() {
        let (mut smtp, _) = Smtp::open_ehlo(postfix.port);
        let message = format!("Subject: parallel {i}\r\n\r\nbody {i}\r\n");
        let reply = smtp.send_mail("a@remote.example", &["user@example.test"], message.as_bytes());
        assert_eq!(reply.code, 250, "{reply}");
        // Postfix refuses to relay for other domains.
        assert_eq!(smtp.cmd("MAIL FROM:<a@remote.example>").code, 250);
        assert_eq!(smtp.cmd("RCPT TO:<x@elsewhere.test>").code, 554);
        let delivered = postfix.wait_delivered(1, DEADLINE);
        assert_eq!(delivered.len(), 1);
        assert_eq!(text(strip_postfix_headers(&delivered[0])), text(&crlf_to_lf(message.as_bytes())));
    }
}

#[test]
fn test_certificate_verifies_for_the_moat_hostname() {
    let dir = temp_dir();
    let der = write_test_certificate(dir.path());
    assert!(!der.is_empty());
    assert!(dir.path().join("cert.pem").is_file() && dir.path().join("key.pem").is_file());
}

/// The loopback DNS zone answers what was added and NXDOMAIN for the rest of `test.`, through
/// moat's own resolver built from a `[dns]` section.
#[tokio::test]
async fn dns_zone_answers_records_and_nxdomain_through_moats_resolver() {
    let dns = support::dns::DnsZone::new()
        .txt("sender.test", "v=spf1 ip4:127.0.0.1 -all")
        .a("2.0.0.127.zen.test", "127.0.0.2")
        .ptr("192.0.2.9", "mail.sender.test")
        .start();
    let config = moat::config::Dns { nameservers: vec![format!("127.0.0.1:{}", dns.port).parse().unwrap()], ..Default::default() };
    let resolver = moat::dns::resolver(&config).expect("resolver");
    let txt = resolver.txt_lookup("sender.test.").await.expect("TXT answer");
    let text: Vec<String> = txt.answers().iter().map(|r| r.data.to_string()).collect();
    assert_eq!(text, ["v=spf1 ip4:127.0.0.1 -all"], "one character-string, without quotes");
    let a = resolver.ipv4_lookup("2.0.0.127.zen.test.").await.expect("A answer");
    assert_eq!(a.answers().iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), ["127.0.0.2"]);
    let ptr = resolver.reverse_lookup("9.2.0.192.in-addr.arpa.").await.expect("PTR answer");
    assert_eq!(ptr.answers().iter().map(|r| r.data.to_string()).collect::<Vec<_>>(), ["mail.sender.test."]);
    let missing = resolver.ipv4_lookup("3.0.0.127.zen.test.").await;
    assert!(missing.is_err_and(|e| e.is_nx_domain()), "an unlisted name is NXDOMAIN");
}
