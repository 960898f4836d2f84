//! The inbound SMTP dialogue, black-box against `moat serve`: greeting, EHLO, the simple
//! commands, sequencing errors and pipelining, with the basic and enhanced codes a client sees.

use crate::support::*;
use std::time::Duration;

fn moat() -> (Sink, Moat) {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    (sink, moat)
}

#[test]
fn greeting_names_the_host() {
    let (_sink, moat) = moat();
    let mut smtp = Smtp::connect(moat.port);
    let greeting = smtp.reply();
    assert_eq!(greeting.code, 220, "{greeting}");
    assert_eq!(greeting.lines, [format!("{MOAT_HOSTNAME} ESMTP moat")], "{greeting}");
}

#[test]
fn ehlo_advertises_the_extensions() {
    let (_sink, moat) = moat();
    let (_smtp, ehlo) = Smtp::open_ehlo(moat.port);
    assert_eq!(ehlo.lines[0].split_whitespace().next(), Some(MOAT_HOSTNAME), "{ehlo}");
    let keywords = ehlo.keywords();
    for wanted in ["PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING"] {
        assert!(keywords.iter().any(|k| k == wanted), "EHLO lacks {wanted}:\n{ehlo}");
    }
    let size = ehlo.lines.iter().find(|l| l.to_ascii_uppercase().starts_with("SIZE")).unwrap();
    assert_eq!(size.split_whitespace().nth(1), Some("26214400"), "default SIZE: {ehlo}");
    // No [tls] section: no STARTTLS. Nothing we do not implement (AUTH, DSN...).
    for absent in ["STARTTLS", "AUTH"] {
        assert!(!keywords.iter().any(|k| k == absent), "EHLO must not offer {absent}:\n{ehlo}");
    }
}

#[test]
fn helo_is_accepted_too() {
    let (_sink, moat) = moat();
    let mut smtp = moat.smtp();
    let reply = smtp.cmd("HELO client.example.org");
    assert_eq!(reply.code, 250, "{reply}");
    assert_eq!(reply.lines.len(), 1, "HELO gets a one-line reply: {reply}");
}

#[test]
fn vrfy_help_noop_rset_quit() {
    let (_sink, moat) = moat();
    let mut smtp = moat.smtp_ehlo();
    smtp.expect_enhanced(&[
        ("VRFY user@example.test", 252, "2.5.0"),
        ("HELP", 214, "2.0.0"),
        ("NOOP", 250, "2.0.0"),
        ("MAIL FROM:<a@remote.example>", 250, "2.1.0"),
        ("RSET", 250, "2.0.0"),
        // RSET ended the transaction: RCPT now needs a new MAIL.
        ("RCPT TO:<user@example.test>", 503, "5.5.1"),
        ("QUIT", 221, "2.0.0"),
    ]);
    assert!(smtp.closed_within(Duration::from_secs(5)), "QUIT must close the connection");
}

#[test]
fn unknown_and_unimplemented_commands() {
    let (_sink, moat) = moat();
    let mut smtp = moat.smtp_ehlo();
    assert_reply(&smtp.cmd("FROBNICATE now"), 500, "5.5.2", "unknown command");
    assert_reply(&smtp.cmd("EXPN staff"), 502, "5.5.1", "EXPN is not implemented");
    // Still usable afterwards.
    assert_reply(&smtp.cmd("NOOP"), 250, "2.0.0", "NOOP after errors");
}

#[test]
fn commands_out_of_sequence_get_503() {
    let (_sink, moat) = moat();
    let mut smtp = moat.smtp_ehlo();
    smtp.expect_enhanced(&[
        ("RCPT TO:<user@example.test>", 503, "5.5.1"),
        ("DATA", 503, "5.5.1"),
        ("MAIL FROM:<a@remote.example>", 250, "2.1.0"),
        ("MAIL FROM:<b@remote.example>", 503, "5.5.1"),
    ]);
    // A BDAT chunk is read (and dropped) even when the command is refused (RFC 3030).
    smtp.send(b"BDAT 5 LAST\r\nhello");
    // No RCPT yet: 503 (Postfix: "need RCPT command") or 554 ("no valid recipients").
    let reply = smtp.reply();
    assert!(reply.is(503, "5.5.1") || reply.is(554, "5.5.1"), "BDAT before RCPT: {reply}");
    assert_reply(&smtp.cmd("NOOP"), 250, "2.0.0", "the chunk was not taken as a command");
}

#[test]
fn data_without_any_accepted_recipient_gets_554() {
    let (sink, moat) = moat();
    let mut smtp = moat.smtp_ehlo();
    smtp.expect_enhanced(&[
        ("MAIL FROM:<a@remote.example>", 250, "2.1.0"),
        ("RCPT TO:<user@elsewhere.test>", 550, "5.7.1"),
        ("DATA", 554, "5.5.1"),
        ("QUIT", 221, "2.0.0"),
    ]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.messages().is_empty(), "nothing may be relayed");
}

#[test]
fn bad_address_syntax_gets_501() {
    let (_sink, moat) = moat();
    let mut smtp = moat.smtp_ehlo();
    assert_reply(&smtp.cmd("MAIL FROM:<a@remote.example>"), 250, "2.1.0", "MAIL");
    let mut wrong = Vec::new();
    for bad in [
        "RCPT TO:<user@@example.test>",
        "RCPT TO:<user@example..test>",
        "RCPT TO:<user@-example.test>",
        "RCPT TO:<@>",
        "RCPT TO:<>",
        "RCPT TO:user@example.test extra",
    ] {
        let reply = smtp.cmd(bad);
        if !(reply.is(501, "5.1.3") || reply.is(501, "5.5.4")) {
            wrong.push(format!("{bad} got {}", reply.to_string().trim_end()));
        }
    }
    assert!(wrong.is_empty(), "expected 501 5.1.3 for each:\n{}", wrong.join("\n"));
}

#[test]
fn mail_with_size_body_and_smtputf8_parameters_is_accepted() {
    // The capture downstream offers SMTPUTF8 (smtp-sink does not).
    let sink = Capture::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let mut smtp = moat.smtp_ehlo();
    assert_reply(&smtp.cmd("MAIL FROM:<a@remote.example> SIZE=1000 BODY=8BITMIME SMTPUTF8"), 250, "2.1.0", "MAIL");
    assert_reply(&smtp.cmd("RCPT TO:<usér@example.test>"), 250, "2.1.5", "UTF-8 RCPT");
    assert_eq!(smtp.cmd("DATA").code, 354);
    smtp.send("Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n.\r\n".as_bytes());
    let reply = smtp.reply();
    assert_eq!(reply.code, 250, "{reply}");
    let mails = sink.wait_for(1, DEADLINE);
    assert_eq!(mails[0].recipients, ["usér@example.test"]);
    assert!(mails[0].contains("na\u{ef}ve"), "8-bit body relayed: {}", text(&mails[0].data));
}

#[test]
fn pipelined_transaction_gets_every_reply_in_order() {
    let (sink, moat) = moat();
    let mut smtp = moat.smtp_ehlo();
    let id = marker("pipe");
    smtp.send(
        b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<one@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\nRCPT TO:<two@example.test>\r\nDATA\r\n",
    );
    assert_reply(&smtp.reply(), 250, "2.1.0", "MAIL");
    assert_reply(&smtp.reply(), 250, "2.1.5", "RCPT one");
    assert_reply(&smtp.reply(), 550, "5.7.1", "RCPT elsewhere");
    assert_reply(&smtp.reply(), 250, "2.1.5", "RCPT two");
    assert_eq!(smtp.reply().code, 354);
    // The message, the end of data, the next transaction and QUIT, all in one write.
    smtp.send(
        format!("Subject: {id}\r\n\r\nfirst\r\n.\r\nMAIL FROM:<b@remote.example>\r\nRCPT TO:<three@example.test>\r\nDATA\r\n").as_bytes(),
    );
    let queued = smtp.reply();
    assert_reply(&queued, 250, "2.0.0", "end of data");
    assert!(queued.text().contains("queued as"), "{queued}");
    assert_reply(&smtp.reply(), 250, "2.1.0", "second MAIL");
    assert_reply(&smtp.reply(), 250, "2.1.5", "second RCPT");
    assert_eq!(smtp.reply().code, 354);
    smtp.send(b"Subject: second\r\n\r\nsecond\r\n.\r\nQUIT\r\n");
    assert_reply(&smtp.reply(), 250, "2.0.0", "second end of data");
    assert_reply(&smtp.reply(), 221, "2.0.0", "QUIT");
    let mails = sink.wait_for(2, DEADLINE);
    let first = mails.iter().find(|m| m.contains(&id)).expect("first message relayed");
    let mut rcpts = first.recipients.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["one@example.test", "two@example.test"], "only accepted recipients are relayed");
    let second = mails.iter().find(|m| m.contains("second")).expect("second message relayed");
    assert_eq!(second.recipients, ["three@example.test"]);
    assert_eq!(second.sender, "b@remote.example");
}

#[test]
fn null_sender_is_accepted_and_relayed() {
    let (sink, moat) = moat();
    let mut smtp = moat.smtp_ehlo();
    let reply = smtp.send_mail("", &["user@example.test"], &simple_message("bounce"));
    assert_reply(&reply, 250, "2.0.0", "bounce accepted");
    let mails = sink.wait_for(1, DEADLINE);
    assert_eq!(mails[0].sender, "");
}

#[test]
fn bdat_chunks_are_delivered_as_one_message() {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port));
    let mut smtp = moat.smtp_ehlo();
    let part1 = b"Subject: chunked\r\n\r\nfirst part, ";
    let part2 = b"second part\r\n.not a terminator\r\n";
    assert_reply(&smtp.cmd("MAIL FROM:<a@remote.example>"), 250, "2.1.0", "MAIL");
    assert_reply(&smtp.cmd("RCPT TO:<user@example.test>"), 250, "2.1.5", "RCPT");
    smtp.send(format!("BDAT {}\r\n", part1.len()).as_bytes());
    smtp.send(part1);
    assert_eq!(smtp.reply().code, 250, "first chunk");
    smtp.send(format!("BDAT {} LAST\r\n", part2.len()).as_bytes());
    smtp.send(part2);
    let reply = smtp.reply();
    assert_reply(&reply, 250, "2.0.0", "last chunk");
    let mails = capture.wait_for(1, DEADLINE);
    let whole: Vec<u8> = [&part1[..], &part2[..]].concat();
    assert_one_received_then(&mails[0].data, &whole);
}

#[test]
fn bdat_pipelined_in_one_write() {
    let (sink, moat) = moat();
    let mut smtp = moat.smtp_ehlo();
    let body = b"Subject: one write\r\n\r\nbdat body\r\n";
    let mut packet = format!("MAIL FROM:<a@remote.example>\r\nRCPT TO:<user@example.test>\r\nBDAT {} LAST\r\n", body.len()).into_bytes();
    packet.extend_from_slice(body);
    packet.extend_from_slice(b"QUIT\r\n");
    smtp.send(&packet);
    assert_reply(&smtp.reply(), 250, "2.1.0", "MAIL");
    assert_reply(&smtp.reply(), 250, "2.1.5", "RCPT");
    assert_reply(&smtp.reply(), 250, "2.0.0", "BDAT LAST");
    assert_reply(&smtp.reply(), 221, "2.0.0", "QUIT");
    let mails = sink.wait_for(1, DEADLINE);
    assert!(mails[0].contains("bdat body"));
}

#[test]
fn several_messages_on_one_connection() {
    let (sink, moat) = moat();
    let mut smtp = moat.smtp_ehlo();
    for i in 0..5 {
        let reply = smtp.send_mail("a@remote.example", &["user@example.test"], &simple_message(&format!("multi{i}")));
        assert_reply(&reply, 250, "2.0.0", "queued");
    }
    let mails = sink.wait_for(5, DEADLINE);
    for i in 0..5 {
        assert_eq!(mails.iter().filter(|m| m.contains(&format!("body-multi{i}"))).count(), 1, "message {i} exactly once");
    }
}

#[test]
fn queue_ids_are_unique() {
    let (_sink, moat) = moat();
    let mut smtp = moat.smtp_ehlo();
    let mut ids = Vec::new();
    for i in 0..3 {
        let reply = smtp.send_mail("a@remote.example", &["user@example.test"], &simple_message(&format!("id{i}")));
        let id = reply.text().rsplit("queued as ").next().unwrap().trim().to_string();
        assert!(!id.is_empty() && reply.text().contains("queued as"), "{reply}");
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "queue ids repeat: {ids:?}");
}
