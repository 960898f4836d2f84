//! The attachment policy through SMTP, with the shipped rule files as the score table: a
//! program is refused at DATA, a blocked disk image is held in the quarantine, a plain PDF is
//! delivered untouched, and `[policy] forced` turns a symbol into a hard action.

use crate::support;
use crate::support::*;
use std::path::Path;
use std::time::Duration;

fn shipped_rules() -> String {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    format!("\n[rules]\ndirs = [\"{}\"]\n", rules.display())
}

fn with_attachment(id: &str, name: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
    format!(
        "From: <a@remote.example>\r\nTo: <user@{DOMAIN}>\r\nSubject: files {id}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nattached {id}\r\n\
         --b\r\nContent-Type: {content_type}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        support::dns::base64(data)
    )
    .into_bytes()
}

fn program() -> Vec<u8> {
    let mut pe = vec![0u8; 512];
    pe[..2].copy_from_slice(b"MZ");
    pe[0x3c] = 0x80;
    pe[0x80..0x84].copy_from_slice(b"PE\0\0");
    pe
}

#[test]
fn programs_are_refused_disk_images_held_and_documents_delivered() {
    let capture = Capture::new();
    let moat = Moat::start(MoatConfig::new(capture.port).append(&shipped_rules()));
    let id = marker("attach");

    let reply = moat.smtp_ehlo().send_mail(
        "a@remote.example",
        &["user@example.test"],
        &with_attachment(&id, "setup.exe", "application/x-msdownload", &program()),
    );
    assert_reply(&reply, 550, "5.7.1", "a program scores over the reject threshold");
    assert!(moat.log().contains("ATTACH_EXECUTABLE"), "{}", moat.log());

    let reply = moat.smtp_ehlo().send_mail(
        "a@remote.example",
        &["user@example.test"],
        &with_attachment(&id, "shipment.iso", "application/octet-stream", b"CD001"),
    );
    assert_reply(&reply, 250, "2.0.0", "a disk image is accepted and held");
    let held = moat.wait_quarantined(1);
    assert!(held[0].item.symbols.iter().any(|s| s.name.starts_with("ATTACH")), "{:?}", held[0].item.symbols);

    let pdf = with_attachment(&id, "report.pdf", "application/pdf", b"%PDF-1.4 harmless");
    let reply = moat.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], &pdf);
    assert_reply(&reply, 250, "2.0.0", "a document");
    let mails = capture.wait_for(1, DEADLINE);
    assert_one_received_then(&mails[0].data, &pdf);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(capture.messages().len(), 1, "only the document was delivered");
}

#[test]
fn a_forced_action_makes_a_symbol_a_hard_reject() {
    let capture = Capture::new();
    let policy = "\n[policy]\nforced = { ATTACH_DOUBLE_EXT = \"reject\" }\n";
    let moat = Moat::start(MoatConfig::new(capture.port).append(policy));
    let reply = moat.smtp_ehlo().send_mail(
        "a@remote.example",
        &["user@example.test"],
        &with_attachment("x", "invoice.pdf.js", "application/octet-stream", b"x"),
    );
    assert_reply(&reply, 550, "5.7.1", "forced reject without any rule files");
    assert!(reply.text().contains("ATTACH_DOUBLE_EXT"), "{reply}");
    let reply = moat.smtp_ehlo().send_mail(
        "a@remote.example",
        &["user@example.test"],
        &with_attachment("y", "notes.js", "application/octet-stream", b"x"),
    );
    assert_reply(&reply, 250, "2.0.0", "without scores a blocked extension alone decides nothing");
    capture.wait_for(1, DEADLINE);
}
