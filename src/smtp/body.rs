//! Message body receiver for DATA and BDAT: sans-IO, streaming, bounded.
//!
//! Guarantees (the SMTP-smuggling defence lives here):
//! - DATA ends only at `CRLF . CRLF`. `LF . LF`, `CR . CR`, `LF . CRLF` and `CRLF . LF` are message
//!   content, never an end.
//! - Bare LF and bare CR are normalised to CRLF, so what we relay has one unambiguous line
//!   structure; a line that was a lone "." in the client's bare-LF framing reaches the downstream
//!   dot-stuffed, never as an end of data. Well-formed CRLF messages pass byte-for-byte.
//! - Dot-unstuffing applies to lines that start after a real CRLF (RFC 5321 §4.5.2).
//! - The stored body never exceeds `max_size`; past it the rest is read and dropped and
//!   [`Body::too_big`] is set, so the session can answer 552 after the end of data.
//! - The body always ends with CRLF once finished (a BDAT message without one gets it added).

/// Receiver state between input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line; `clean` = the previous line ended with a real CRLF.
    LineStart { clean: bool },
    /// Inside a line.
    InLine,
    /// Saw CR inside a line or on an empty line.
    Cr,
    /// DATA only: saw "." at the start of a clean line.
    Dot,
    /// DATA only: saw ".\r" at the start of a clean line.
    DotCr,
    /// DATA only: saw the terminator.
    Done,
}

/// DATA (dot-terminated, stuffed) or BDAT (counted chunks, raw).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Data,
    Bdat,
}

/// Accumulates one message body.
#[derive(Debug)]
pub struct Body {
    framing: Framing,
    state: State,
    max_size: usize,
    data: Vec<u8>,
    /// Bytes of content seen (stored or not), after normalisation.
    seen: usize,
    too_big: bool,
    has_nul: bool,
}

impl Body {
    pub fn new(framing: Framing, max_size: usize) -> Body {
        Body { framing, state: State::LineStart { clean: true }, max_size, data: Vec::new(), seen: 0, too_big: false, has_nul: false }
    }

    /// Feeds bytes; returns how many were used. For DATA, fewer than `input.len()` are used only
    /// when the terminator was found (the rest belongs to the next command).
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Done {
                return i;
            }
            if self.state == State::InLine {
                // Fast path: copy the run of ordinary bytes.
                let run = input[i..].iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(input.len() - i);
                if run > 0 {
                    self.emit(&input[i..i + run]);
                    i += run;
                    continue;
                }
            }
            self.step(input[i]);
            i += 1;
        }
        i
    }

    fn step(&mut self, byte: u8) {
        let dot_rules = self.framing == Framing::Data;
        self.state = match (self.state, byte) {
            (State::Done, _) => State::Done,
            (State::LineStart { clean: true }, b'.') if dot_rules => State::Dot,
            (State::LineStart { .. } | State::InLine, b'\r') => State::Cr,
            (State::LineStart { .. } | State::InLine, b'\n') => self.newline(false),
            (State::LineStart { .. } | State::InLine, b) => {
                self.emit(&[b]);
                State::InLine
            }
            (State::Cr, b'\n') => self.newline(true),
            (State::Cr, b) => {
                // A bare CR: it ends the line, then `b` starts the next one.
                self.state = self.newline(false);
                return self.step(b);
            }
            (State::Dot, b'\r') => State::DotCr,
            (State::Dot, b'\n') => {
                self.emit(b".");
                self.newline(false)
            }
            (State::Dot, b) => {
                // ".x" is the stuffed form of "x" (and ".." of ".").
                self.state = State::InLine;
                return self.step(b);
            }
            (State::DotCr, b'\n') => State::Done,
            (State::DotCr, b) => {
                self.emit(b".");
                self.state = self.newline(false);
                return self.step(b);
            }
        };
    }

    fn newline(&mut self, clean: bool) -> State {
        self.emit(b"\r\n");
        State::LineStart { clean }
    }

    fn emit(&mut self, bytes: &[u8]) {
        if bytes.contains(&0) {
            self.has_nul = true;
        }
        self.seen += bytes.len();
        if self.seen > self.max_size {
            self.too_big = true;
            return;
        }
        self.data.extend_from_slice(bytes);
    }

    /// DATA: the terminator has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Content bytes seen so far (including any dropped past the size limit).
    pub fn size(&self) -> usize {
        self.seen
    }

    pub fn too_big(&self) -> bool {
        self.too_big
    }

    pub fn has_nul(&self) -> bool {
        self.has_nul
    }

    /// Finishes the message: a trailing bare CR becomes CRLF and a missing final CRLF is added.
    pub fn finish(mut self) -> Vec<u8> {
        if self.state == State::Cr {
            self.newline(false);
        }
        if !self.data.is_empty() && !self.data.ends_with(b"\r\n") && !self.too_big {
            self.data.extend_from_slice(b"\r\n");
        }
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(input: &[u8]) -> (Vec<u8>, usize, bool) {
        let mut body = Body::new(Framing::Data, 1 << 20);
        let used = body.feed(input);
        let done = body.is_done();
        (body.finish(), used, done)
    }

    #[test]
    fn crlf_dot_crlf_ends_data_and_keeps_the_rest() {
        let (body, used, done) = data(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert!(done);
        assert_eq!(body, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(used, b"Subject: x\r\n\r\nhello\r\n.\r\n".len());
    }

    #[test]
    fn empty_message_and_stuffed_first_line() {
        assert_eq!(data(b".\r\n"), (Vec::new(), 3, true));
        let (body, _, done) = data(b"..x\r\n...\r\n.\r\n");
        assert!(done);
        assert_eq!(body, b".x\r\n..\r\n");
    }

    #[test]
    fn smuggling_terminators_are_content() {
        for evil in [&b"a\n.\nMAIL FROM:<x@y>\r\n"[..], b"a\r.\rMAIL", b"a\n.\r\nMAIL", b"a\r\n.\nMAIL", b"a\r\n.\rMAIL"] {
            let mut input = evil.to_vec();
            input.extend_from_slice(b"\r\n.\r\n");
            let (body, used, done) = data(&input);
            assert!(done, "{evil:?}");
            assert_eq!(used, input.len(), "the fake terminator must not end DATA: {evil:?}");
            assert!(body.windows(4).any(|w| w == b"MAIL"), "{evil:?}");
            assert!(!body.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || body[i - 1] != b'\r')), "no bare LF left: {body:?}");
            assert!(!body.iter().enumerate().any(|(i, &b)| b == b'\r' && body.get(i + 1) != Some(&b'\n')), "no bare CR left: {body:?}");
        }
    }

    #[test]
    fn byte_at_a_time_equals_all_at_once() {
        let input = b"A: b\r\n\r\n..dot\r\nbare\nlf\rcr\r\n.\r\n";
        let (whole, _, _) = data(input);
        let mut body = Body::new(Framing::Data, 1 << 20);
        for b in input {
            body.feed(std::slice::from_ref(b));
        }
        assert!(body.is_done());
        assert_eq!(body.finish(), whole);
    }

    #[test]
    fn size_limit_drops_but_keeps_reading_to_the_end() {
        let mut body = Body::new(Framing::Data, 10);
        let input = b"0123456789abcdef\r\n.\r\nNOOP\r\n";
        let used = body.feed(input);
        assert!(body.is_done() && body.too_big());
        assert_eq!(used, input.len() - 6);
    }

    #[test]
    fn bdat_is_raw_but_normalised() {
        let mut body = Body::new(Framing::Bdat, 100);
        assert_eq!(body.feed(b".x\r\n.\r\nbare\n"), 12);
        assert_eq!(body.feed(b"end\r"), 4);
        assert!(!body.is_done());
        assert_eq!(body.finish(), b".x\r\n.\r\nbare\r\nend\r\n");
    }

    #[test]
    fn nul_is_flagged() {
        let mut body = Body::new(Framing::Data, 100);
        body.feed(b"a\0b\r\n.\r\n");
        assert!(body.has_nul());
    }
}
