//! A client's side of an SMTP conversation through the real protocol state machine
//! (`moat::smtp::machine`, which `moat::session` drives), with the session's asynchronous
//! decisions replaced by simple rules taken from the input. The first input byte sets how the
//! rest is cut into reads (low six bits: 1 to 64 bytes) and two answers (bit 6: STARTTLS is
//! available; bit 7: the TLS handshake succeeds); the rest is what the client sends. MAIL is
//! deferred (450) when the sender contains "defer"; a recipient is accepted when the address
//! policy accepts it for a domain ending in "test" (and answered 250 without being added when
//! repeated); a message is queued when its size is even and refused as spam otherwise.
//!
//! Invariants checked: nothing panics; what the machine writes is whole CRLF-terminated replies
//! with a 2xx-5xx code; the counters stay within their limits; a finished body never holds a
//! bare CR or LF and is never bigger than the size limit (plus the final CRLF); a body relayed
//! (dot-stuffed by `relay::wire`) and read back is the same body; an accepted sender or
//! recipient, written back into a command the way moat writes it downstream, parses to the same
//! mailbox; the `Received:` header of an accepted message is one well-formed header field
//! whatever the client's HELO was; and unless STARTTLS was accepted (it drops what was
//! pipelined after it, so there the cut matters by design), the same bytes in one read give the
//! same replies, questions and messages.
#![no_main]
use libfuzzer_sys::fuzz_target;
use moat::relay::wire::encode_data;
use moat::smtp::address::{self, Mailbox};
use moat::smtp::body::{Body, Framing};
use moat::smtp::command::{self, Command};
use moat::smtp::machine::{Answer, Event, Machine, Settings};
use moat::smtp::received::{Protocol, ReceivedInfo, received_header};
use moat::smtp::reply::replies;

const MAX_LINE: usize = 512;
const MAX_SIZE: usize = 1000;

fn settings() -> Settings {
    Settings {
        hostname: "mx.example.test".into(),
        max_line_length: MAX_LINE,
        max_message_size: MAX_SIZE,
        max_recipients: 5,
        max_commands: 200,
        max_errors: 20,
        max_messages: 10,
    }
}

fn served(domain: &str) -> bool {
    domain.ends_with("test")
}

/// What one run of the conversation produced.
#[derive(Debug, PartialEq)]
struct Transcript {
    output: Vec<u8>,
    /// The questions and notices, in order, with what they carried.
    events: Vec<String>,
    messages: Vec<Vec<u8>>,
    /// STARTTLS was accepted (a handshake ran).
    handshake: bool,
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, stream)) = input.split_first() else { return };
    let read = usize::from(control % 64) + 1;
    let tls_available = control & 0x40 != 0;
    let handshake_ok = control & 0x80 != 0;
    let cut = converse(stream, read, tls_available, handshake_ok);
    let whole = converse(stream, stream.len().max(1), tls_available, handshake_ok);
    if !cut.handshake && !whole.handshake {
        assert_eq!(cut, whole, "the conversation depends on how the input was cut");
    }
});

/// Feeds `stream` in reads of `read` bytes, answering every question the way the rules above say.
fn converse(stream: &[u8], read: usize, tls_available: bool, handshake_ok: bool) -> Transcript {
    let mut machine: Machine<()> = Machine::new(settings());
    let mut transcript = Transcript { output: Vec::new(), events: Vec::new(), messages: Vec::new(), handshake: false };
    let mut reads = stream.chunks(read);
    loop {
        match machine.poll() {
            Event::Read => match reads.next() {
                Some(bytes) => machine.feed(bytes),
                None => break,
            },
            Event::Close(ending) => {
                transcript.events.push(format!("close {ending:?}"));
                break;
            }
            Event::Hello => {
                transcript.events.push(format!("hello {:?} {}", machine.helo(), machine.esmtp()));
                machine.answer_hello(tls_available);
            }
            Event::Mail(mail) => {
                transcript.events.push(format!("mail {:?}", mail.sender));
                check_sender_round_trip(&mail.sender, mail.smtputf8);
                let answer = if mail.sender.contains("defer") { Answer::Reply(replies::rate_limited()) } else { Answer::Accept(()) };
                machine.answer_mail(answer);
            }
            Event::Rcpt(raw) => {
                transcript.events.push(format!("rcpt {raw:?}"));
                let Some(tx) = machine.transaction() else { panic!("RCPT asked about outside a transaction") };
                assert!(tx.recipients.len() < settings().max_recipients, "RCPT asked about over the limit");
                let answer = match address::check_recipient(&raw, tx.mail.smtputf8, served) {
                    Ok(mailbox) => {
                        check_recipient_round_trip(&mailbox, tx.mail.smtputf8);
                        if tx.recipients.iter().any(|r| r.mailbox == mailbox) {
                            Answer::Reply(replies::recipient_ok())
                        } else {
                            Answer::Accept((mailbox, ()))
                        }
                    }
                    Err(_) => Answer::Reply(replies::relay_denied()),
                };
                machine.answer_rcpt(answer);
            }
            Event::Message(message) => {
                transcript.events.push(format!("message {} {}", message.size, message.transaction.recipients.len()));
                assert!(!message.transaction.recipients.is_empty(), "a message without recipients");
                check_body(&message.content);
                check_relayed(&message.content);
                let helo = machine.helo().unwrap_or("");
                check_received(helo, message.transaction.recipients.first().map(|r| &r.mailbox));
                let reply = if message.size % 2 == 0 { replies::queued("0123456789abcdef") } else { replies::rejected_spam("X") };
                transcript.messages.push(message.content);
                machine.answer_message(reply);
            }
            Event::RecipientRefused { sender, recipient, reply } => {
                transcript.events.push(format!("recipient refused {sender:?} {recipient:?} {}", reply.code));
            }
            Event::MessageRefused { transaction, size, reply } => {
                transcript.events.push(format!("message refused {size} {} {}", transaction.recipients.len(), reply.code));
            }
            Event::StartTls => {
                transcript.events.push("starttls".into());
                machine.answer_starttls(tls_available);
            }
            Event::Handshake => {
                transcript.events.push("handshake".into());
                transcript.handshake = true;
                assert!(machine.transaction().is_none(), "STARTTLS accepted inside a transaction");
                machine.handshake_done(handshake_ok);
            }
            Event::Waiting => panic!("the machine waits although every question was answered"),
        }
        let limits = settings();
        assert!(machine.messages() <= limits.max_messages, "{} messages", machine.messages());
        assert!(machine.commands() <= limits.max_commands.saturating_add(1), "{} commands", machine.commands());
    }
    transcript.output = machine.take_output();
    check_replies(&transcript.output);
    transcript
}

/// The output is whole replies: lines "ddd-..." or "ddd ..." ending in CRLF, codes 2xx-5xx.
fn check_replies(output: &[u8]) {
    assert!(output.is_empty() || output.ends_with(b"\r\n"), "a reply without its CRLF");
    for line in output.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.ends_with(b"\r") && !line[..line.len() - 1].contains(&b'\r'), "bad reply line {line:?}");
        assert!(line.len() >= 4 && matches!(line[0], b'2'..=b'5') && line[1..3].iter().all(u8::is_ascii_digit), "bad code in {line:?}");
        assert!(matches!(line[3], b' ' | b'-' | b'\r'), "bad separator in {line:?}");
    }
}

/// An accepted sender written back into MAIL parses to the same mailbox.
fn check_sender_round_trip(sender: &str, smtputf8: bool) {
    let Ok(Some(mailbox)) = address::check_sender(sender, smtputf8) else { return };
    let param = if smtputf8 { " SMTPUTF8" } else { "" };
    let line = format!("MAIL FROM:<{}>{param}\r\n", mailbox.address());
    let Ok(Command::Mail(again)) = command::parse(line.as_bytes()) else {
        panic!("accepted sender {mailbox:?} does not parse back from {line:?}")
    };
    assert_eq!(address::check_sender(&again.sender, smtputf8), Ok(Some(mailbox)), "{line:?}");
}

/// An accepted recipient written back into RCPT parses to the same mailbox.
fn check_recipient_round_trip(mailbox: &Mailbox, smtputf8: bool) {
    let line = format!("RCPT TO:<{}>\r\n", mailbox.address());
    let Ok(Command::Rcpt(again)) = command::parse(line.as_bytes()) else {
        panic!("accepted recipient {mailbox:?} does not parse back from {line:?}")
    };
    assert_eq!(address::check_recipient(&again, smtputf8, served).as_ref(), Ok(mailbox), "{line:?}");
}

/// What the relay sends downstream reads back as the same message.
fn check_relayed(message: &[u8]) {
    let wire = encode_data(message);
    let mut back = Body::new(Framing::Data, usize::MAX);
    assert_eq!(back.feed(&wire), wire.len(), "relayed DATA ended early: {wire:?}");
    assert!(back.is_done(), "relayed DATA did not end: {wire:?}");
    assert_eq!(back.finish(), message, "relayed DATA changed the message");
}

/// The trace header moat would prepend to an accepted message.
fn check_received(helo: &str, rcpt: Option<&Mailbox>) {
    let rcpt = rcpt.map(Mailbox::address);
    let header = received_header(&ReceivedInfo {
        helo,
        client_ip: "192.0.2.1".parse().expect("IP"),
        client_name: Some(helo),
        by: "mx.example.test",
        protocol: Protocol::Esmtp,
        tls: None,
        id: "0123456789abcdef",
        for_recipient: rcpt.as_deref(),
        date: chrono::DateTime::parse_from_rfc2822("Tue, 1 Jul 2025 10:00:00 +0000").expect("date"),
    });
    assert!(header.starts_with("Received: ") && header.ends_with("\r\n"), "{header:?}");
    check_body(header.as_bytes());
    for (i, line) in header.split_terminator("\r\n").enumerate() {
        assert!(!line.chars().any(|c| c.is_control() && c != '\t'), "control character in {header:?}");
        assert!(i == 0 || line.starts_with([' ', '\t']), "continuation line without folding in {header:?}");
        assert!(!line.trim().is_empty(), "empty line in {header:?}");
    }
}

/// Line endings are CRLF only, and the size limit holds.
fn check_body(out: &[u8]) {
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF in output");
        }
        if b == b'\r' {
            assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR in output");
        }
    }
    assert!(out.len() <= MAX_SIZE + 2, "body of {} bytes", out.len());
}
