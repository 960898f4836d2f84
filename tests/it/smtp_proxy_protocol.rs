//! PROXY protocol listeners: the client address comes from the load balancer's header (v1 text
//! or v2 binary), shows in the log and the Received header, and a connection without a valid
//! header is dropped before any SMTP.

use crate::support::*;
use std::time::Duration;

fn relay_one(smtp: &mut Smtp, marker: &str) {
    let ehlo = smtp.cmd("EHLO client.example.org");
    assert_eq!(ehlo.code, 250, "{ehlo}");
    let reply = smtp.send_mail("alice@remote.example", &["bob@example.test"], format!("Subject: x\r\n\r\n{marker}\r\n").as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    smtp.cmd("QUIT");
}

#[test]
fn v1_and_v2_headers_give_the_real_client_address() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).proxy_protocol());

    let mut smtp = Smtp::connect(moat.port);
    smtp.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n");
    assert_eq!(smtp.reply().code, 220);
    relay_one(&mut smtp, "via v1");

    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0x00, 12]); // v2 PROXY, TCP over IPv4, 12 address bytes
    v2.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1, 0x9c, 0x40, 0, 25]);
    let mut smtp = Smtp::connect(moat.port);
    smtp.send(&v2);
    assert_eq!(smtp.reply().code, 220);
    relay_one(&mut smtp, "via v2");

    let mails = sink.wait_for(2, Duration::from_secs(20));
    let received_from = |marker: &str| {
        let mail = mails.iter().find(|m| m.contains(marker)).expect("delivered");
        text(&mail.data).lines().next().unwrap_or_default().to_string() + &text(&mail.data)
    };
    assert!(received_from("via v1").contains("[192.0.2.7]"), "Received names the proxied client");
    assert!(received_from("via v2").contains("[198.51.100.9]"), "Received names the proxied client");
    let log = moat.log();
    assert!(log.contains("client_ip=192.0.2.7") && log.contains("client_ip=198.51.100.9"), "{log}");
}

#[test]
fn connections_without_a_valid_header_are_dropped_before_smtp() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).proxy_protocol());
    let mut smtp = Smtp::connect(moat.port);
    smtp.send(b"EHLO straight.in\r\n");
    assert!(smtp.closed_within(Duration::from_secs(5)), "no greeting, just a close: {}", smtp.transcript());
    assert!(smtp.pending().is_empty(), "nothing was said to a client without a PROXY header: {:?}", smtp.pending());
    assert!(moat.log().contains("bad_proxy_header"));
}
