//! End to end through moat into a real downstream: what the downstream stores is exactly what
//! the client sent plus one Received header; real clients (swaks) and a real Postfix; logs carry
//! envelope metadata only.

use crate::support::*;
use std::time::Duration;

/// A message that exercises what a transparent relay tends to break: folded headers, 8-bit
/// text, a 998-byte line, lines starting with dots, trailing white space, tabs, an empty line at
/// the end, and a body that looks like SMTP.
fn tricky_message(id: &str) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"Return-Path: <ignored@remote.example>\r\n");
    m.extend_from_slice(b"From: \"S\xc3\xa9bastien\" <sender@remote.example>\r\n");
    m.extend_from_slice(b"To: user@example.test\r\n");
    m.extend_from_slice(format!("Subject: {id}\r\n\tfolded subject line\r\n").as_bytes());
    m.extend_from_slice(b"X-Empty:\r\n");
    m.extend_from_slice(b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n");
    m.extend_from_slice(b"\r\n");
    m.extend_from_slice(b"caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac\r\n");
    m.extend_from_slice(b".leading dot\r\n..two leading dots\r\n.\r\n");
    m.extend_from_slice(b"trailing spaces   \r\n\ttab first\r\n");
    m.extend_from_slice(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nQUIT\r\n");
    m.extend_from_slice(&[b'L'; 996]);
    m.extend_from_slice(b"\r\n");
    m.extend_from_slice(b"From the start of a line\r\n");
    m.extend_from_slice(b"\r\n\r\n");
    m
}

#[test]
fn relayed_message_is_byte_for_byte_plus_one_received_header() {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port));
    let mut smtp = moat.smtp_ehlo();
    let id = marker("exact");
    let message = tricky_message(&id);
    assert_eq!(smtp.cmd("MAIL FROM:<sender@remote.example> BODY=8BITMIME").code, 250);
    assert_eq!(smtp.cmd("RCPT TO:<user@example.test>").code, 250);
    assert_eq!(smtp.cmd("DATA").code, 354);
    smtp.send(&dot_stuff(&message));
    smtp.send(b".\r\n");
    assert_reply(&smtp.reply(), 250, "2.0.0", "queued");
    let mails = capture.wait_for(1, DEADLINE);
    assert_eq!(mails[0].sender, "sender@remote.example");
    assert_eq!(mails[0].recipients, ["user@example.test"]);
    let received = assert_one_received_then(&mails[0].data, &message);
    assert!(received.contains(MOAT_HOSTNAME), "our Received header names us: {received}");
    assert!(received.contains("127.0.0.1"), "our Received header names the client IP: {received}");
    assert!(received.contains("client.example.org"), "our Received header names the HELO: {received}");
}

#[test]
fn empty_message_and_header_only_message_are_relayed_exactly() {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port));
    let mut smtp = moat.smtp_ehlo();
    // DATA immediately followed by the terminator: an empty message.
    assert_eq!(smtp.cmd("MAIL FROM:<a@remote.example>").code, 250);
    assert_eq!(smtp.cmd("RCPT TO:<user@example.test>").code, 250);
    assert_eq!(smtp.cmd("DATA").code, 354);
    smtp.send(b".\r\n");
    assert_reply(&smtp.reply(), 250, "2.0.0", "empty message");
    // Headers only, no body separator.
    let headers_only = b"Subject: no body\r\n";
    assert_reply(&smtp.send_mail("a@remote.example", &["user@example.test"], headers_only), 250, "2.0.0", "headers only");
    let mails = capture.wait_for(2, DEADLINE);
    let empty = mails.iter().find(|m| !m.contains("no body")).unwrap();
    assert_one_received_then(&empty.data, b"");
    let headers = mails.iter().find(|m| m.contains("no body")).unwrap();
    assert_one_received_then(&headers.data, headers_only);
}

#[test]
fn one_mebibyte_message_is_relayed_exactly() {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port));
    let mut smtp = moat.smtp_ehlo();
    let mut message = b"Subject: big\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    let mut n: u32 = 1;
    while message.len() < 1024 * 1024 {
        // Base64-like lines with some dots at line starts.
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let line: String = (0..76)
            .map(|i| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/."[((n >> (i % 24)) as usize + i) % 65] as char)
            .collect();
        message.extend_from_slice(line.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    let reply = smtp.send_mail("a@remote.example", &["user@example.test"], &message);
    assert_reply(&reply, 250, "2.0.0", "1 MiB message");
    let mails = capture.wait_for(1, Duration::from_secs(30));
    assert_one_received_then(&mails[0].data, &message);
}

#[test]
fn every_recipient_is_delivered_once() {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port));
    let mut smtp = moat.smtp_ehlo();
    let reply = smtp.send_mail("a@remote.example", &["one@example.test", "two@example.test", LIST_USER], &simple_message("multi"));
    assert_reply(&reply, 250, "2.0.0", "queued");
    let mails = capture.wait_for(1, DEADLINE);
    std::thread::sleep(Duration::from_millis(500));
    let all: Vec<String> = capture.messages().iter().flat_map(|m| m.recipients.clone()).collect();
    let mut all_sorted = all.clone();
    all_sorted.sort();
    assert_eq!(all_sorted, ["known@list.example.test", "one@example.test", "two@example.test"], "each recipient once: {mails:?}");
}

#[test]
fn swaks_through_moat_into_smtp_sink() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let dir = temp_dir();
    let id = marker("swaks");
    let message =
        format!("From: <sender@remote.example>\r\nTo: <user@example.test>\r\nSubject: {id}\r\n\r\nhello from swaks\r\n.dot line\r\n");
    let file = dir.path().join("message.eml");
    // swaks sends the file, then CRLF "." CRLF: a final line break in the file would become an
    // extra empty line, so the file leaves it out.
    std::fs::write(&file, message.strip_suffix("\r\n").unwrap()).unwrap();
    let server = format!("127.0.0.1:{}", moat.port);
    let out = swaks(&[
        "-s",
        &server,
        "--ehlo",
        "client.example.org",
        "-f",
        "sender@remote.example",
        "-t",
        "user@example.test",
        "--pipeline",
        "--data",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "swaks failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    let mails = sink.wait_for(1, DEADLINE);
    assert_eq!(mails[0].sender, "sender@remote.example");
    assert_eq!(mails[0].recipients, ["user@example.test"]);
    // smtp-sink stores LF line endings: compare in that form.
    assert_one_received_then(&mails[0].data, &crlf_to_lf(message.as_bytes()));
}

#[test]
fn swaks_through_moat_into_a_real_postfix_maildir() {
    let postfix = Postfix::start(DOMAIN);
    let moat = Moat::start(MoatConfig::new(postfix.port));
    let dir = temp_dir();
    let id = marker("postfix");
    let message = format!(
        "From: <sender@remote.example>\r\nTo: <user@example.test>\r\nSubject: {id}\r\nMessage-ID: <{id}@remote.example>\r\n\r\nto the provider\r\n"
    );
    let file = dir.path().join("message.eml");
    // swaks sends the file, then CRLF "." CRLF: a final line break in the file would become an
    // extra empty line, so the file leaves it out.
    std::fs::write(&file, message.strip_suffix("\r\n").unwrap()).unwrap();
    let server = format!("127.0.0.1:{}", moat.port);
    let out = swaks(&["-s", &server, "-f", "sender@remote.example", "-t", "user@example.test", "--data", file.to_str().unwrap()]);
    assert!(out.status.success(), "swaks failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    let delivered = postfix.wait_delivered(1, DEADLINE);
    let stored = strip_postfix_headers(&delivered[0]);
    assert_one_received_then(stored, &crlf_to_lf(message.as_bytes()));
    let maillog = postfix.maillog();
    assert!(maillog.contains("status=sent"), "Postfix delivered it:\n{maillog}");
}

#[test]
fn logs_have_envelope_metadata_but_never_subject_or_body() {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port));
    let mut smtp = moat.smtp_ehlo();
    let id = marker("private");
    let reply = smtp.send_mail("sender@remote.example", &["user@example.test"], &simple_message(&id));
    assert_reply(&reply, 250, "2.0.0", "queued");
    let queue_id = reply.text().rsplit("queued as ").next().unwrap().trim().to_string();
    // A refused message must not leak either.
    assert_eq!(smtp.cmd("MAIL FROM:<sender@remote.example>").code, 250);
    assert_eq!(smtp.cmd("RCPT TO:<user@example.test>").code, 250);
    assert_eq!(smtp.cmd("DATA").code, 354);
    smtp.send(format!("Subject: refused-{id}\r\n\r\nrefused-body-{id}\0\r\n.\r\n").as_bytes());
    assert_eq!(smtp.reply().code, 554);
    assert_eq!(smtp.cmd("QUIT").code, 221);
    capture.wait_for(1, DEADLINE);
    // Give the delivery log line time to be written.
    let log = wait_until("the delivery to be logged", Duration::from_secs(10), || {
        let log = moat.log();
        log.contains("CAP1").then_some(log)
    });
    for secret in [format!("subject-{id}"), format!("body-{id}"), format!("refused-{id}"), format!("refused-body-{id}")] {
        assert!(!log.contains(&secret), "the log contains {secret:?}:\n{log}");
    }
    for expected in ["sender@remote.example", "user@example.test", "127.0.0.1", queue_id.as_str()] {
        assert!(log.contains(expected), "the log should mention {expected:?}:\n{log}");
    }
}
