//! SMTP smuggling: only CRLF "." CRLF ends DATA. Bare LF and bare CR are normalized to CRLF
//! (so a bare-LF dot line becomes a dot-stuffed line downstream and can neither end nor split
//! the message there), and a MAIL FROM hidden in the body never becomes a second message.

use crate::support::*;
use std::time::Duration;

/// What moat must relay for a body it received: bare LF and bare CR each become CRLF.
fn normalized(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut i = 0;
    while i < data.len() {
        match (data[i], data.get(i + 1)) {
            (b'\r', Some(b'\n')) => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            (b'\r', _) | (b'\n', _) => out.extend_from_slice(b"\r\n"),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    out
}

/// Sends a body in which `fake_end` is followed by a complete smuggled transaction, then the
/// real end. Checks that moat did not answer at the fake end, answered exactly once at the real
/// end, and relayed exactly one message with exactly the (normalized) body.
fn smuggle(fake_end: &str) {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port));
    let mut smtp = moat.smtp_ehlo();
    let id = marker("smuggle");
    let body = format!(
        "From: <a@remote.example>\r\nSubject: {id}\r\n\r\nhello{fake_end}MAIL FROM:<admin@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled-{id}\r\n\r\nsmuggled body\r\n"
    );
    assert_eq!(smtp.cmd("MAIL FROM:<a@remote.example>").code, 250);
    assert_eq!(smtp.cmd("RCPT TO:<user@example.test>").code, 250);
    assert_eq!(smtp.cmd("DATA").code, 354);
    smtp.send(body.as_bytes());
    // Nothing ended the message yet: moat must stay silent.
    smtp.timeout = Duration::from_millis(1500);
    match smtp.try_reply() {
        Err(ReadError::Timeout(pending)) if pending.is_empty() => {}
        other => panic!("{fake_end:?} ended the message or drew a reply: {other:?}"),
    }
    smtp.timeout = DEADLINE;
    smtp.send(b".\r\nQUIT\r\n");
    assert_reply(&smtp.reply(), 250, "2.0.0", "the real end of data");
    assert_reply(&smtp.reply(), 221, "2.0.0", "QUIT right after: no reply for a smuggled command");
    let mails = capture.wait_for(1, DEADLINE);
    std::thread::sleep(Duration::from_millis(1000));
    let mails_later = capture.messages();
    assert_eq!(mails_later.len(), 1, "exactly one message downstream, got {}: {mails:?}", mails_later.len());
    assert_eq!(capture.transactions.load(std::sync::atomic::Ordering::SeqCst), 1, "one MAIL downstream");
    assert_eq!(mails_later[0].recipients, ["user@example.test"], "the smuggled recipient must not appear");
    assert_eq!(mails_later[0].sender, "a@remote.example");
    assert_one_received_then(&mails_later[0].data, &normalized(body.as_bytes()));
}

#[test]
fn lf_dot_lf_does_not_end_data() {
    smuggle("\n.\n");
}

#[test]
fn cr_dot_cr_does_not_end_data() {
    smuggle("\r.\r");
}

#[test]
fn lf_dot_crlf_does_not_end_data() {
    smuggle("\n.\r\n");
}

#[test]
fn crlf_dot_lf_does_not_end_data() {
    smuggle("\r\n.\n");
}

#[test]
fn crlf_dot_cr_does_not_end_data() {
    smuggle("\r\n.\r");
}

#[test]
fn cr_dot_crlf_does_not_end_data() {
    smuggle("\r.\r\n");
}

#[test]
fn dot_stuffed_lines_stay_lines_downstream() {
    // A body line "." (sent stuffed as "..") must reach the downstream as a stuffed line too,
    // not as the end of the message.
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port));
    let mut smtp = moat.smtp_ehlo();
    let message = b"Subject: dots\r\n\r\n.\r\n..\r\n.MAIL FROM:<x@evil.test>\r\nend\r\n";
    assert_reply(&smtp.send_mail("a@remote.example", &["user@example.test"], message), 250, "2.0.0", "queued");
    let mails = capture.wait_for(1, DEADLINE);
    assert_one_received_then(&mails[0].data, message);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(capture.transactions.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn bare_lf_at_the_end_of_the_body_is_normalized() {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port));
    let mut smtp = moat.smtp_ehlo();
    assert_eq!(smtp.cmd("MAIL FROM:<a@remote.example>").code, 250);
    assert_eq!(smtp.cmd("RCPT TO:<user@example.test>").code, 250);
    assert_eq!(smtp.cmd("DATA").code, 354);
    smtp.send(b"Subject: lf\n\nunix line ends\nlast line\r\n.\r\n");
    assert_reply(&smtp.reply(), 250, "2.0.0", "queued");
    let mails = capture.wait_for(1, DEADLINE);
    assert_one_received_then(&mails[0].data, b"Subject: lf\r\n\r\nunix line ends\r\nlast line\r\n");
}
