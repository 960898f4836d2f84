//! Command-line framing: splits a client's byte stream into command lines, bounded in length.
//!
//! Guarantees: a line is at most `max` bytes including its terminator; a longer line is reported
//! once as [`Line::TooLong`] and its bytes are dropped up to the next LF, so memory stays bounded
//! whatever the client sends. A line ends at LF (a preceding CR is part of the terminator).

/// What the framer found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line including its LF (and CR if any).
    Complete(&'a [u8]),
    /// A line longer than the limit was discarded.
    TooLong,
}

/// Takes the next complete line from `buf`, returning it and how many bytes it used.
/// `skipping` carries "we are inside an overlong line" across reads.
#[derive(Debug)]
pub struct LineFramer {
    max: usize,
    skipping: bool,
}

impl LineFramer {
    pub fn new(max: usize) -> LineFramer {
        LineFramer { max, skipping: false }
    }

    /// Returns `(line, consumed)`, or `None` when `buf` holds no complete line yet. When `None`
    /// is returned and `buf` is already over the limit, the caller must call [`Self::discard`].
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> Option<(Line<'a>, usize)> {
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) if self.skipping => {
                self.skipping = false;
                Some((Line::TooLong, end + 1))
            }
            Some(end) if end + 1 > self.max => Some((Line::TooLong, end + 1)),
            Some(end) => Some((Line::Complete(&buf[..=end]), end + 1)),
            None => None,
        }
    }

    /// True when `buf` (holding no LF) is already too long to be a line: drop it and remember.
    pub fn overflowing(&self, buf: &[u8]) -> bool {
        self.skipping || buf.len() >= self.max
    }

    /// Marks the partial line in the buffer as dropped; the caller clears the buffer.
    pub fn discard(&mut self) {
        self.skipping = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pipelined_lines() {
        let mut f = LineFramer::new(100);
        let buf = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\nDA";
        let (line, n) = f.next(buf).unwrap();
        assert_eq!(line, Line::Complete(b"MAIL FROM:<a@b>\r\n"));
        let (line, m) = f.next(&buf[n..]).unwrap();
        assert_eq!(line, Line::Complete(b"RCPT TO:<c@d>\n"));
        assert!(f.next(&buf[n + m..]).is_none());
    }

    #[test]
    fn overlong_line_is_reported_once_and_skipped() {
        let mut f = LineFramer::new(10);
        let first = vec![b'x'; 20];
        assert!(f.next(&first).is_none());
        assert!(f.overflowing(&first));
        f.discard();
        let rest = b"yyyy\r\nNOOP\r\n";
        let (line, n) = f.next(rest).unwrap();
        assert_eq!(line, Line::TooLong);
        assert_eq!(f.next(&rest[n..]).unwrap().0, Line::Complete(b"NOOP\r\n"));
        let long = b"0123456789ABC\r\n";
        assert_eq!(f.next(long).unwrap(), (Line::TooLong, long.len()));
    }
}
