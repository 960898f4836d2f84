//! Virus scanning through SMTP against a real clamd (started per test with a private signature
//! database, see `support::clamd`): infected mail is refused at the end of DATA however the
//! virus is wrapped (plain, base64, zip, attached message, odd line breaks), clean mail passes
//! untouched, and a clamd that is down, slow or refuses an oversized stream is a failure —
//! 451 when failing closed, delivered with `CLAMAV_FAIL` when failing open — never "clean"
//! and never "virus".

use crate::support;
use crate::support::clamd::{self, Clamd};
use crate::support::*;
use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn moat_with(downstream: u16, section: &str) -> Moat {
    Moat::start(MoatConfig::new(downstream).append(section))
}

/// Standard base64 folded into lines of `width` characters.
fn base64_lines(data: &[u8], width: usize) -> String {
    let flat = support::dns::base64(data);
    let lines: Vec<String> = flat.as_bytes().chunks(width).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    lines.join("\r\n")
}

/// A multipart/mixed message with one text part and one base64 attachment.
fn with_attachment(id: &str, name: &str, content_type: &str, data: &[u8], width: usize) -> Vec<u8> {
    format!(
        "From: <a@remote.example>\r\nTo: <user@{DOMAIN}>\r\nSubject: {id}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"=_b1\"\r\n\r\n\
         --=_b1\r\nContent-Type: text/plain\r\n\r\nplease see the attachment {id}\r\n\
         --=_b1\r\nContent-Type: {content_type}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--=_b1--\r\n",
        base64_lines(data, width)
    )
    .into_bytes()
}

/// A zip archive with stored (uncompressed) entries; CRCs are real, clamd checks them.
fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip(entries, false)
}

/// A zip archive, its entries stored or deflated.
fn zip(entries: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let packed = if deflate {
            let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(data).expect("deflate");
            encoder.finish().expect("deflate")
        } else {
            data.to_vec()
        };
        let method: u16 = if deflate { 8 } else { 0 };
        let mut header = Vec::new();
        header.extend_from_slice(&20u16.to_le_bytes()); // version needed
        header.extend_from_slice(&0u16.to_le_bytes()); // flags
        header.extend_from_slice(&method.to_le_bytes());
        header.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
        header.extend_from_slice(&crc.to_le_bytes());
        header.extend_from_slice(&(packed.len() as u32).to_le_bytes());
        header.extend_from_slice(&(data.len() as u32).to_le_bytes());
        header.extend_from_slice(&(name.len() as u16).to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes()); // extra
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&header);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&packed);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        central.extend_from_slice(&header);
        central.extend_from_slice(&[0; 2 + 2 + 2 + 4]); // comment, disk, internal, external
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[track_caller]
fn assert_refused_as_virus(moat: &Moat, capture: &Capture, message: &[u8], what: &str) {
    let reply = moat.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], message);
    assert_reply(&reply, 550, "5.7.1", what);
    assert!(
        reply.text().contains("contains a virus") && reply.text().contains(".UNOFFICIAL"),
        "{what}: the reply names the virus: {reply}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(capture.messages().is_empty(), "{what}: an infected message was delivered");
}

#[test]
fn eicar_is_refused_at_data_however_it_is_wrapped() {
    let clamd = Clamd::start();
    let capture = Capture::new();
    let moat = moat_with(capture.port, &clamd.tcp_section(""));
    let eicar = clamd::eicar();
    let id = marker("virus");

    let plain = format!("From: <a@remote.example>\r\nSubject: {id}\r\n\r\n{eicar}\r\n");
    assert_refused_as_virus(&moat, &capture, plain.as_bytes(), "EICAR in the body");
    assert!(moat.log().contains("Test.EICAR.Pattern.UNOFFICIAL"), "the signature name is logged");

    let attached = with_attachment(&id, "eicar.com.txt", "application/octet-stream", eicar.as_bytes(), 76);
    assert_refused_as_virus(&moat, &capture, &attached, "EICAR as a base64 attachment");

    let stored = stored_zip(&[("readme.txt", b"nothing to see"), ("eicar.com", eicar.as_bytes())]);
    let zipped = with_attachment(&id, "archive.zip", "application/zip", &stored, 76);
    assert_refused_as_virus(&moat, &capture, &zipped, "EICAR inside a zip");
    // Padding makes deflate choose a compressed block rather than a stored one.
    let padded = format!("{eicar}\r\n{}", "padding ".repeat(500));
    let deflated = zip(&[("readme.txt", b"nothing to see".as_slice()), ("eicar.txt", padded.as_bytes())], true);
    assert!(!deflated.windows(14).any(|w| w == b"EICAR-STANDARD"), "the pattern is only visible after inflating");
    let zipped = with_attachment(&id, "packed.zip", "application/zip", &deflated, 76);
    assert_refused_as_virus(&moat, &capture, &zipped, "EICAR inside a deflated zip");

    let inner = String::from_utf8(with_attachment("inner", "e.txt", "text/plain", eicar.as_bytes(), 60)).expect("utf8");
    let nested = format!(
        "From: <a@remote.example>\r\nSubject: {id} fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: text/plain\r\n\r\nforwarded\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--outer--\r\n"
    );
    assert_refused_as_virus(&moat, &capture, nested.as_bytes(), "EICAR in an attached message");

    for width in [7, 13, 61] {
        let odd = with_attachment(&id, "odd.bin", "application/octet-stream", eicar.as_bytes(), width);
        assert_refused_as_virus(&moat, &capture, &odd, &format!("EICAR in base64 lines of {width}"));
    }
    let qp: String = eicar
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let c = if b == b'=' { "=3D".to_string() } else { (b as char).to_string() };
            if i % 11 == 10 { format!("{c}=\r\n") } else { c }
        })
        .collect();
    let split_qp = format!(
        "From: <a@remote.example>\r\nSubject: {id} qp\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream; name=\"x.dat\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp}\r\n"
    );
    assert_refused_as_virus(&moat, &capture, split_qp.as_bytes(), "EICAR split by quoted-printable soft breaks");
}

#[test]
fn custom_signatures_match_over_the_unix_socket_and_clean_mail_passes_untouched() {
    let clamd = Clamd::start();
    let capture = Capture::new();
    let moat = moat_with(capture.port, &clamd.unix_section("max_concurrent = 2\n"));
    let id = marker("custom");
    let marked = format!("From: <a@remote.example>\r\nSubject: {id}\r\n\r\nhere: {}\r\n", clamd::CUSTOM_MARKER);
    assert_refused_as_virus(&moat, &capture, marked.as_bytes(), "the custom .ndb signature");
    assert!(moat.log().contains("Moat.Test.Marker.UNOFFICIAL"), "{}", moat.log());
    let hashed = with_attachment(&id, "data.txt", "text/plain", clamd::HASHED_FILE.as_bytes(), 76);
    assert_refused_as_virus(&moat, &capture, &hashed, "the custom .hdb signature on an attachment");

    let clean = with_attachment(&id, "report.pdf", "application/pdf", b"%PDF-1.4 harmless", 76);
    let reply = moat.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], &clean);
    assert_reply(&reply, 250, "2.0.0", "clean mail");
    let mail = &capture.wait_for(1, DEADLINE)[0];
    assert_one_received_then(&mail.data, &clean);
}

#[test]
fn clamd_down_tempfails_when_failing_closed_and_delivers_marked_when_failing_open() {
    let capture = Capture::new();
    let dead = free_port();
    let closed = moat_with(capture.port, &format!("\n[clamav]\naddress = \"127.0.0.1:{dead}\"\nconnect_timeout = \"1s\"\n"));
    let message = simple_message(&marker("down"));
    let reply = closed.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], &message);
    assert_reply(&reply, 451, "4.7.1", "clamd down, fail closed");
    assert!(closed.log().contains("clamav_fail") && closed.log().contains("unreachable"), "{}", closed.log());
    std::thread::sleep(Duration::from_millis(200));
    assert!(capture.messages().is_empty());

    let open = moat_with(capture.port, &format!("\n[clamav]\naddress = \"127.0.0.1:{dead}\"\nfailure = \"fail_open\"\n"));
    let forged = [b"X-Virus-Scan: clean, trust me\r\n".as_slice(), &message].concat();
    let reply = open.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], &forged);
    assert_reply(&reply, 250, "2.0.0", "clamd down, fail open");
    let mail = &capture.wait_for(1, DEADLINE)[0];
    assert!(mail.contains("X-Virus-Scan: not scanned (virus scanner unavailable)\r\n"), "{}", text(&mail.data));
    assert!(!mail.contains("trust me"), "a sender's X-Virus-Scan is removed: {}", text(&mail.data));
    assert!(open.log().contains("CLAMAV_FAIL"), "the verdict names the failure: {}", open.log());
    assert!(!mail.contains(&format!("127.0.0.1:{dead}")), "internal hosts stay out of the message");
}

#[test]
fn a_clamd_that_never_answers_hits_the_scan_deadline() {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    // Accepts and reads, never answers.
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut sink = [0u8; 65536];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    let capture = Capture::new();
    let moat = moat_with(capture.port, &format!("\n[clamav]\naddress = \"127.0.0.1:{port}\"\nscan_timeout = \"2s\"\n"));
    let started = Instant::now();
    let reply = moat.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], &simple_message(&marker("slow")));
    assert_reply(&reply, 451, "4.7.1", "silent clamd");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(10), "the 2s scan deadline decides: {took:?}");
    assert!(moat.log().contains("did not answer"), "{}", moat.log());
}

#[test]
fn a_message_over_clamds_stream_limit_is_a_failure_not_clean() {
    let clamd = Clamd::start();
    let capture = Capture::new();
    let mut big = b"From: <a@remote.example>\r\nSubject: big\r\n\r\n".to_vec();
    while big.len() < 1536 * 1024 {
        big.extend_from_slice(b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n");
    }
    let closed = moat_with(capture.port, &clamd.tcp_section(""));
    let reply = closed.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], &big);
    assert_reply(&reply, 451, "4.7.1", &format!("a message over StreamMaxLength {}", clamd::STREAM_MAX));
    assert!(closed.log().contains("clamav_fail"), "{}", closed.log());

    let open = moat_with(capture.port, &clamd.tcp_section("failure = \"fail_open\"\n"));
    let reply = open.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], &big);
    assert_reply(&reply, 250, "2.0.0", "fail open");
    let mail = &capture.wait_for(1, DEADLINE)[0];
    assert!(mail.contains("X-Virus-Scan: not scanned"), "an unscanned message is marked, never passed as clean");
}

#[test]
fn a_clamd_restart_under_load_loses_no_mail_and_misclassifies_none() {
    let mut clamd = Clamd::start();
    let capture = Capture::new();
    let moat = moat_with(capture.port, &clamd.tcp_section("connect_timeout = \"1s\"\nscan_timeout = \"3s\"\n"));
    let eicar = clamd::eicar();
    let (mut delivered, mut tempfailed) = (0usize, 0usize);
    for round in 0..12 {
        if round == 4 {
            clamd.kill();
        }
        if round == 8 {
            clamd.restart();
        }
        let clean = simple_message(&marker("load"));
        let reply = moat.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], &clean);
        match reply.code {
            250 => delivered += 1,
            451 => tempfailed += 1,
            _ => panic!("round {round}: clean mail got {reply}"),
        }
        let infected = format!("Subject: r{round}\r\n\r\n{eicar}\r\n");
        let reply = moat.smtp_ehlo().send_mail("a@remote.example", &["user@example.test"], infected.as_bytes());
        assert!(reply.code == 550 || reply.code == 451, "round {round}: infected mail got {reply}");
    }
    assert!(tempfailed >= 4 && delivered >= 8, "delivered {delivered}, tempfailed {tempfailed}");
    let mails = capture.wait_for(delivered, DEADLINE);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(capture.messages().len(), delivered, "every 250 was delivered, nothing else: {mails:?}");
    assert!(capture.messages().iter().all(|m| !m.contains("EICAR")), "no infected message got through");
}

#[test]
fn moat_scan_shows_antivirus_and_attachment_symbols() {
    let clamd = Clamd::start();
    let dir = temp_dir();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let config = MoatConfig::new(2526).append(&format!("\n[rules]\ndirs = [\"{}\"]\n{}", rules.display(), clamd.tcp_section(""))).render();
    std::fs::write(dir.path().join("moat.toml"), config).expect("config");
    let zip = stored_zip(&[("eicar.com", clamd::eicar().as_bytes()), ("invoice.pdf.exe", b"not really")]);
    std::fs::write(dir.path().join("m.eml"), with_attachment("scan", "docs.zip", "application/zip", &zip, 76)).expect("eml");
    let out = moat_cli(&["scan", "-c", "moat.toml", "--rcpt", "user@example.test", "m.eml"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("user@example.test: reject"), "{report}");
    for needle in
        ["CLAMAV_VIRUS", "Test.EICAR.Pattern.UNOFFICIAL", "ATTACH_BLOCKED_EXT", "invoice.pdf.exe in docs.zip", "ATTACH_DOUBLE_EXT"]
    {
        assert!(report.contains(needle), "{needle} missing from:\n{report}");
    }
}

#[test]
fn a_domain_that_quarantines_viruses_files_them_as_virus_and_notifies_the_recipient_once_with_a_working_opt_out() {
    // The recipient chose Tokyo time in the Message Center; the notice's times are in it.
    let clamd = Clamd::start();
    let capture = Capture::new();
    let web = free_port();
    let config = MoatConfig::new(capture.port)
        .append(&clamd.tcp_section(""))
        .append(&web_section(web))
        .append("\n[[domain]]\nname = \"hold.test\"\npolicy = { forced = { CLAMAV_VIRUS = \"quarantine\" } }\n");
    let moat = Moat::start(config);
    let tokyo = moat::store::Preferences { time_zone: "Asia/Tokyo".into(), ..moat::store::Preferences::default() };
    moat.store().set_preferences_blocking("user@hold.test", &tokyo);
    let id = marker("notice");
    let infected = format!(
        "From: <a@remote.example>\r\nSubject: Invoice {id}\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n{}\r\nsecret body {id}\r\n",
        clamd::eicar()
    );
    let reply = moat.smtp_ehlo().send_mail("a@remote.example", &["user@hold.test"], infected.as_bytes());
    assert_reply(&reply, 250, "2.0.0", "the domain holds viruses instead of refusing them");

    let held = moat.wait_quarantined(1);
    assert_eq!(held[0].item.category, moat::store::Category::Virus);
    let virus = held[0].item.symbols.iter().find(|s| s.name == "CLAMAV_VIRUS").expect("the virus symbol");
    assert!(virus.detail.as_deref().unwrap_or("").contains("Test.EICAR.Pattern.UNOFFICIAL"), "the signature is kept: {virus:?}");

    let notice = &capture.wait_for(1, DEADLINE)[0];
    assert_eq!((notice.sender.as_str(), notice.recipients.as_slice()), ("", ["user@hold.test".to_string()].as_slice()));
    let parsed = mail_parser::MessageParser::default().parse(&notice.data).expect("the notice parses");
    let body = parsed.body_text(0).expect("a text body").into_owned();
    assert!(body.contains(&format!("Invoice {id}")) && body.contains("a@remote.example"), "names subject and sender: {body}");
    assert!(body.contains("Test.EICAR.Pattern.UNOFFICIAL"), "names the virus: {body}");
    let when = moat::clock::day_minute_in(held[0].item.date, "Asia/Tokyo");
    assert!(when.ends_with(" JST") && body.contains(&format!("Date:    {when}")), "in the user's zone, named: {body}");
    assert!(!body.contains("secret body") && !text(&notice.data).contains("secret body"), "nothing of the infected message's contents");
    assert!(!text(&notice.data).contains(clamd::eicar().as_str()), "the virus itself is not in the notice");
    let unsubscribe =
        parsed.header_raw("List-Unsubscribe").expect("List-Unsubscribe").trim().trim_start_matches('<').trim_end_matches('>').to_string();
    assert_eq!(parsed.header_raw("List-Unsubscribe-Post").map(str::trim), Some("List-Unsubscribe=One-Click"));

    let page = http(web, "GET", &link_path(&unsubscribe), "");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("<form method=\"post\">"), "a GET only shows a button: {}", page.body);
    assert!(!moat.store().get_preferences_blocking("user@hold.test").opt_out, "a GET changes nothing");
    let done = http(web, "POST", &link_path(&unsubscribe), "List-Unsubscribe=One-Click");
    assert_eq!(done.status, 200, "{done:?}");
    assert!(moat.store().get_preferences_blocking("user@hold.test").opt_out, "RFC 8058 one-click unsubscribe works");

    let reply = moat.smtp_ehlo().send_mail("a@remote.example", &["user@hold.test"], infected.as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    moat.wait_quarantined(2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(capture.messages().len(), 1, "no notice after opting out");
    moat.assert_log_lacks("secret body");
}
