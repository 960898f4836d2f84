//! Sans-IO pieces of the downstream SMTP client: framing replies, parsing them (with
//! smtp-proto), reading EHLO capabilities, and the byte-exact DATA encoding.
//!
//! Guarantees: every function here is pure and total (no panics on any input); a reply is
//! never larger than [`MAX_REPLY_BYTES`]; [`stuff_segment`] changes a message only by doubling
//! a '.' at the start of a line, so the receiving server's un-stuffing restores it exactly.

use crate::spool::DownstreamReply;
use smtp_proto::response::parser::ResponseReceiver;
use smtp_proto::{EXT_8BIT_MIME, EXT_CHUNKING, EXT_PIPELINING, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse};

/// Largest complete reply (all lines) we accept from a downstream server.
pub const MAX_REPLY_BYTES: usize = 16 * 1024;

/// A reply that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("reply longer than {MAX_REPLY_BYTES} bytes")]
    TooLong,
    #[error("malformed reply line")]
    Malformed,
}

/// If `buf` starts with a complete reply (every line CRLF- or LF-terminated, the last one
/// without '-' after the code), returns its length in bytes.
pub fn reply_end(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let mut pos = 0;
    while let Some(offset) = buf[pos..].iter().position(|&b| b == b'\n') {
        let line = &buf[pos..pos + offset + 1];
        pos += offset + 1;
        if pos > MAX_REPLY_BYTES {
            return Err(WireError::TooLong);
        }
        if line.len() < 4 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(WireError::Malformed);
        }
        if line[3] != b'-' {
            return Ok(Some(pos));
        }
    }
    if buf.len() > MAX_REPLY_BYTES { Err(WireError::TooLong) } else { Ok(None) }
}

/// Parses one complete reply (as delimited by [`reply_end`]).
pub fn parse_reply(raw: &[u8]) -> Result<DownstreamReply, WireError> {
    let mut receiver = ResponseReceiver::default();
    let response = receiver.parse(&mut raw.iter()).map_err(|_| WireError::Malformed)?;
    if !(200..600).contains(&response.code) && !(100..200).contains(&response.code) {
        return Err(WireError::Malformed);
    }
    let enhanced = (response.esc != [0, 0, 0]).then_some(response.esc);
    Ok(DownstreamReply { code: response.code, enhanced, text: response.message })
}

/// What a server announced in its EHLO reply (the parts the relay uses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub chunking: bool,
    /// SIZE was announced (with its limit, 0 = no limit given).
    pub size: Option<usize>,
}

/// Reads the capabilities from a complete 250 EHLO reply. A reply smtp-proto cannot parse
/// yields no extensions (the safe assumption: plain RFC 5321).
pub fn parse_ehlo(raw: &[u8]) -> Capabilities {
    let Ok(ehlo) = EhloResponse::parse(&mut raw.iter()) else {
        return Capabilities::default();
    };
    let has = |ext| ehlo.capabilities & ext != 0;
    Capabilities {
        pipelining: has(EXT_PIPELINING),
        starttls: has(EXT_START_TLS),
        eight_bit: has(EXT_8BIT_MIME),
        smtputf8: has(EXT_SMTP_UTF8),
        chunking: has(EXT_CHUNKING),
        size: has(EXT_SIZE).then_some(ehlo.size),
    }
}

/// Appends the DATA encoding of `segment` to `out`: a '.' is doubled at the start of every
/// line; nothing else changes. `at_line_start` carries the position across segments and must
/// start `true`. A line starts after any LF (so a bare-LF line beginning with '.' is stuffed
/// too: a downstream that ends lines at bare LF then cannot see a premature end of data).
pub fn stuff_segment(segment: &[u8], at_line_start: &mut bool, out: &mut Vec<u8>) {
    for piece in segment.split_inclusive(|&b| b == b'\n') {
        if *at_line_start && piece.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(piece);
        *at_line_start = piece.last() == Some(&b'\n');
    }
}

/// What follows the stuffed message: ".\r\n", preceded by a CRLF when the message does not
/// already end with one (an empty message gets just ".\r\n").
pub fn data_terminator(message: &[u8]) -> &'static [u8] {
    if message.is_empty() || message.ends_with(b"\r\n") { b".\r\n" } else { b"\r\n.\r\n" }
}

/// The whole DATA payload for `message` (what goes on the wire after the 354).
pub fn encode_data(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    stuff_segment(message, &mut at_line_start, &mut out);
    out.extend_from_slice(data_terminator(message));
    out
}

/// Formats an address as an SMTP path `<addr>`, refusing anything that could break the
/// command line (controls, angle brackets).
pub fn smtp_path(address: &str) -> Option<String> {
    let bad = |c: char| c.is_control() || c == '<' || c == '>';
    (!address.contains(bad) && address.len() <= 1024).then(|| format!("<{address}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_doubles_leading_dots_only() {
        assert_eq!(encode_data(b".hidden\r\nnot.here\r\n..two\r\n"), b"..hidden\r\nnot.here\r\n...two\r\n.\r\n");
    }

    #[test]
    fn an_embedded_end_of_data_sequence_is_stuffed() {
        let body = b"Subject: x\r\n\r\nbefore\r\n.\r\nafter\r\n";
        let wire = encode_data(body);
        assert_eq!(wire, b"Subject: x\r\n\r\nbefore\r\n..\r\nafter\r\n.\r\n");
        // Only the final terminator is CRLF.CRLF.
        let ends: Vec<_> = wire.windows(5).enumerate().filter(|(_, w)| w == b"\r\n.\r\n").collect();
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[0].0, wire.len() - 5);
    }

    #[test]
    fn a_body_without_final_crlf_gets_one() {
        assert_eq!(encode_data(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(encode_data(b"x\r\n.dot"), b"x\r\n..dot\r\n.\r\n");
        assert_eq!(encode_data(b""), b".\r\n");
        assert_eq!(encode_data(b"."), b"..\r\n.\r\n");
    }

    #[test]
    fn bare_lf_and_bare_cr_are_sent_unchanged_except_leading_dots() {
        assert_eq!(encode_data(b"a\n.b\rc.\r\n"), b"a\n..b\rc.\r\n.\r\n");
    }

    #[test]
    fn stuffing_is_the_same_whatever_the_segmentation() {
        let body = b".a\r\n.\r\n..\r\nx.\r\n.\r\n\r\n.";
        let whole = encode_data(body);
        for split in 0..body.len() {
            let mut out = Vec::new();
            let mut start = true;
            stuff_segment(&body[..split], &mut start, &mut out);
            stuff_segment(&body[split..], &mut start, &mut out);
            out.extend_from_slice(data_terminator(body));
            assert_eq!(out, whole, "split at {split}");
        }
    }

    #[test]
    fn replies_are_framed_and_parsed_with_enhanced_codes() {
        let buf = b"250-first\r\n250 2.1.5 Ok\r\n550 next";
        let end = reply_end(buf).unwrap().unwrap();
        assert_eq!(end, 25);
        let reply = parse_reply(&buf[..end]).unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.text, "first\nOk");
        assert_eq!(reply_end(&buf[end..]).unwrap(), None);
        let reply = parse_reply(b"550 5.1.1 <x@y>: no such user\r\n").unwrap();
        assert_eq!((reply.code, reply.enhanced, reply.text.as_str()), (550, Some([5, 1, 1]), "<x@y>: no such user"));
        assert_eq!(parse_reply(b"421 busy\r\n").unwrap().enhanced, None);
    }

    #[test]
    fn bad_and_huge_replies_are_errors() {
        assert_eq!(reply_end(b"hello\r\n"), Err(WireError::Malformed));
        let long = vec![b'2'; MAX_REPLY_BYTES + 1];
        assert_eq!(reply_end(&long), Err(WireError::TooLong));
        let mut many = Vec::new();
        while many.len() <= MAX_REPLY_BYTES {
            many.extend_from_slice(b"250-more\r\n");
        }
        assert_eq!(reply_end(&many), Err(WireError::TooLong));
    }

    #[test]
    fn ehlo_capabilities_from_smtp_sink() {
        let raw = b"250-smtp-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-STARTTLS\r\n250-SIZE 1000\r\n250 \r\n";
        let caps = parse_ehlo(raw);
        assert!(caps.pipelining && caps.eight_bit && caps.starttls);
        assert_eq!(caps.size, Some(1000));
        assert!(!parse_ehlo(b"250 plain\r\n").pipelining);
    }

    #[test]
    fn paths_refuse_command_injection() {
        assert_eq!(smtp_path("a@b").as_deref(), Some("<a@b>"));
        assert_eq!(smtp_path("").as_deref(), Some("<>"));
        assert_eq!(smtp_path("a@b>\r\nRCPT TO:<c@d"), None);
    }
}
