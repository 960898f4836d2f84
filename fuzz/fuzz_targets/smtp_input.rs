//! The sans-IO path of a session: line framing, command parsing, the envelope address policy,
//! DATA bodies and BDAT chunks, driven like `moat::session` drives them. The first input byte
//! sets how the rest is cut into reads (1 to 64 bytes); the rest is what a client sends.
//! After `DATA` the body is read up to `CRLF.CRLF`; after `BDAT n [LAST]` exactly `n` bytes
//! are read raw into the message, whatever they hold, and the next command follows them.
//!
//! Invariants checked: nothing panics; a finished body never holds a bare CR or LF and is
//! never bigger than the size limit (plus the final CRLF added to it); how the input was cut
//! into reads changes neither a body that fits nor the verdict on its size; a DATA body relayed
//! (dot-stuffed by `relay::wire`) and read back is the same body; an accepted sender or
//! recipient, written back into a command the way moat writes it downstream, parses to the
//! same mailbox; the `Received:` header of an accepted message is one well-formed header field
//! whatever the client's HELO was.
#![no_main]
use libfuzzer_sys::fuzz_target;
use moat::relay::wire::encode_data;
use moat::smtp::address::{self, Mailbox};
use moat::smtp::body::{Body, Framing};
use moat::smtp::command::{self, Command};
use moat::smtp::line::{Line, LineFramer};
use moat::smtp::received::{Protocol, ReceivedInfo, received_header};

const MAX_LINE: usize = 512;
const MAX_SIZE: usize = 1000;

fn served(domain: &str) -> bool {
    domain.ends_with("test")
}

enum Mode {
    Command,
    /// The body and every byte it consumed, as the client sent them.
    Data(Body, Vec<u8>),
    Chunk {
        remaining: usize,
        last: bool,
    },
}

struct Session {
    framer: LineFramer,
    input: Vec<u8>,
    mode: Mode,
    helo: Option<String>,
    /// MAIL's SMTPUTF8 and the accepted recipients.
    tx: Option<(bool, Vec<Mailbox>)>,
    /// The BDAT message so far and the raw bytes of its chunks.
    bdat: Option<(Body, Vec<u8>)>,
    quit: bool,
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, stream)) = input.split_first() else { return };
    let read = usize::from(cut % 64) + 1;
    let mut session = Session {
        framer: LineFramer::new(MAX_LINE),
        input: Vec::new(),
        mode: Mode::Command,
        helo: None,
        tx: None,
        bdat: None,
        quit: false,
    };
    for chunk in stream.chunks(read) {
        session.input.extend_from_slice(chunk);
        session.process();
        if session.quit {
            break;
        }
    }
});

impl Session {
    fn process(&mut self) {
        while !self.quit {
            let progressed = match self.mode {
                Mode::Command => self.next_command(),
                Mode::Data(..) => self.feed_data(),
                Mode::Chunk { .. } => self.feed_chunk(),
            };
            if !progressed {
                return;
            }
        }
    }

    fn next_command(&mut self) -> bool {
        let (parsed, used) = match self.framer.next(&self.input) {
            Some((Line::Complete(line), used)) => {
                assert!(line.len() <= MAX_LINE && line.ends_with(b"\n"));
                (Some(command::parse(line)), used)
            }
            Some((Line::TooLong, used)) => (None, used),
            None => {
                if self.framer.overflowing(&self.input) {
                    self.framer.discard();
                    self.input.clear();
                }
                return false;
            }
        };
        self.input.drain(..used);
        if let Some(Ok(command)) = parsed {
            self.dispatch(command);
        }
        true
    }

    fn dispatch(&mut self, command: Command) {
        match command {
            Command::Ehlo(name) | Command::Helo(name) => {
                self.helo = Some(name);
                self.tx = None;
                self.bdat = None;
            }
            Command::Mail(mail) => {
                if self.helo.is_none() || self.tx.is_some() {
                    return;
                }
                if let Ok(sender) = address::check_sender(&mail.sender, mail.smtputf8) {
                    if let Some(mailbox) = sender {
                        let param = if mail.smtputf8 { " SMTPUTF8" } else { "" };
                        let line = format!("MAIL FROM:<{}>{param}\r\n", mailbox.address());
                        let Ok(Command::Mail(again)) = command::parse(line.as_bytes()) else {
                            panic!("accepted sender {mailbox:?} does not parse back from {line:?}")
                        };
                        let back = address::check_sender(&again.sender, mail.smtputf8);
                        assert_eq!(back, Ok(Some(mailbox)), "{line:?}");
                    }
                    self.tx = Some((mail.smtputf8, Vec::new()));
                }
            }
            Command::Rcpt(raw) => {
                let Some((smtputf8, recipients)) = &mut self.tx else { return };
                if let Ok(mailbox) = address::check_recipient(&raw, *smtputf8, served) {
                    let line = format!("RCPT TO:<{}>\r\n", mailbox.address());
                    let Ok(Command::Rcpt(again)) = command::parse(line.as_bytes()) else {
                        panic!("accepted recipient {mailbox:?} does not parse back from {line:?}")
                    };
                    assert_eq!(address::check_recipient(&again, *smtputf8, served).as_ref(), Ok(&mailbox), "{line:?}");
                    recipients.push(mailbox);
                }
            }
            Command::Data if self.tx.as_ref().is_some_and(|(_, r)| !r.is_empty()) && self.bdat.is_none() => {
                self.mode = Mode::Data(Body::new(Framing::Data, MAX_SIZE), Vec::new());
            }
            Command::Bdat { size, last } => {
                if self.tx.as_ref().is_some_and(|(_, r)| !r.is_empty()) {
                    self.bdat.get_or_insert_with(|| (Body::new(Framing::Bdat, MAX_SIZE), Vec::new()));
                }
                self.mode = Mode::Chunk { remaining: size, last };
            }
            Command::Rset => {
                self.tx = None;
                self.bdat = None;
            }
            Command::Quit => self.quit = true,
            _ => {}
        }
    }

    fn feed_data(&mut self) -> bool {
        let Mode::Data(body, raw) = &mut self.mode else { return false };
        if self.input.is_empty() {
            return false;
        }
        let used = body.feed(&self.input);
        assert!(used == self.input.len() || (used < self.input.len() && body.is_done()), "DATA stopped short of its end");
        raw.extend_from_slice(&self.input[..used]);
        self.input.drain(..used);
        if !body.is_done() {
            return false;
        }
        let Mode::Data(body, raw) = std::mem::replace(&mut self.mode, Mode::Command) else { return false };
        assert!(raw.ends_with(b"\r\n.\r\n") || raw == b".\r\n", "DATA ended without CRLF.CRLF: {raw:?}");
        let (too_big, has_nul) = (body.too_big(), body.has_nul());
        let message = body.finish();
        check_body(&message, too_big);
        // The same bytes in one read give the same verdict on size and, when kept, the same body.
        let mut whole = Body::new(Framing::Data, MAX_SIZE);
        assert_eq!(whole.feed(&raw), raw.len());
        assert!(whole.is_done());
        assert_eq!((whole.too_big(), whole.has_nul()), (too_big, has_nul));
        if !too_big {
            assert_eq!(whole.finish(), message, "DATA body depends on how it was read");
        }
        if !too_big {
            // What the relay sends downstream reads back as the same message.
            let wire = encode_data(&message);
            let mut back = Body::new(Framing::Data, usize::MAX);
            assert_eq!(back.feed(&wire), wire.len(), "relayed DATA ended early: {wire:?}");
            assert!(back.is_done(), "relayed DATA did not end: {wire:?}");
            assert_eq!(back.finish(), message, "relayed DATA changed the message");
            if !has_nul {
                self.accepted();
            }
        }
        self.tx = None;
        true
    }

    fn feed_chunk(&mut self) -> bool {
        let Mode::Chunk { remaining, last } = &mut self.mode else { return false };
        let take = (*remaining).min(self.input.len());
        if let Some((body, raw)) = &mut self.bdat {
            assert_eq!(body.feed(&self.input[..take]), take, "a BDAT chunk is taken whole");
            raw.extend_from_slice(&self.input[..take]);
        }
        self.input.drain(..take);
        *remaining -= take;
        if *remaining > 0 {
            return false;
        }
        let last = *last;
        self.mode = Mode::Command;
        if let Some((body, _)) = &self.bdat
            && body.too_big()
        {
            self.tx = None;
            self.bdat = None;
            return true;
        }
        if last && let Some((body, raw)) = self.bdat.take() {
            let (too_big, has_nul) = (body.too_big(), body.has_nul());
            let message = body.finish();
            check_body(&message, too_big);
            let mut whole = Body::new(Framing::Bdat, MAX_SIZE);
            assert_eq!(whole.feed(&raw), raw.len());
            assert!(!whole.is_done());
            assert_eq!((whole.too_big(), whole.has_nul()), (too_big, has_nul));
            if !too_big {
                assert_eq!(whole.finish(), message, "BDAT body depends on how it was cut");
            }
            if !too_big && !has_nul {
                self.accepted();
            }
            self.tx = None;
        }
        true
    }

    /// The trace header moat would prepend to an accepted message.
    fn accepted(&self) {
        let helo = self.helo.as_deref().unwrap_or("");
        let rcpt = self.tx.as_ref().and_then(|(_, r)| r.first()).map(Mailbox::address);
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
        check_body(header.as_bytes(), false);
        for (i, line) in header.split_terminator("\r\n").enumerate() {
            assert!(!line.chars().any(|c| c.is_control() && c != '\t'), "control character in {header:?}");
            assert!(i == 0 || line.starts_with([' ', '\t']), "continuation line without folding in {header:?}");
            assert!(!line.trim().is_empty(), "empty line in {header:?}");
        }
    }
}

/// Line endings are CRLF only, and the size limit holds.
fn check_body(out: &[u8], too_big: bool) {
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF in output");
        }
        if b == b'\r' {
            assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR in output");
        }
    }
    assert!(too_big || out.len() <= MAX_SIZE + 2, "body of {} bytes", out.len());
}
