//! Searching all the segments of a message (body lines, rawbody chunks, URIs) in one pass.
//!
//! A pattern that cannot consume a byte `s` finds, in the segments joined by `s`, exactly the
//! matches it finds in the segments one by one: no match can span a separator, and every
//! zero-width assertion reads a separator as it reads a segment's edge, provided `s` is a non-word
//! byte where the pattern asks for word boundaries, and `\n` where it asks for multi-line `^`/`$`
//! (a pattern with `\A`, `\z`, or `^`/`$` outside multi-line mode has no such byte). So a set of
//! such patterns is searched once over the joined text instead of once per segment, with the same
//! answers; for a regex counted with leftmost-first, non-overlapping matches the count is the sum
//! of the segments' counts (its matches are the segments' matches, in order).
//!
//! [`separators`] tells which bytes can join for a pattern (`literals::study` gives them); [`Joins`] builds (once per message
//! and separator) the joined text of a group's segments.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

const MAX_DEPTH: usize = 64;

/// A set of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSet([u64; 4]);

impl ByteSet {
    pub const EMPTY: ByteSet = ByteSet([0; 4]);
    const ALL: ByteSet = ByteSet([u64::MAX; 4]);

    pub fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }

    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    fn insert_range(&mut self, from: u8, to: u8) {
        for b in from..=to {
            self.insert(b);
        }
    }

    fn without(self, other: ByteSet) -> ByteSet {
        ByteSet(std::array::from_fn(|i| self.0[i] & !other.0[i]))
    }

    pub fn and(self, other: ByteSet) -> ByteSet {
        ByteSet(std::array::from_fn(|i| self.0[i] & other.0[i]))
    }

    /// The first of [`PREFERRED`] in the set, else its lowest byte.
    pub fn preferred(&self) -> Option<u8> {
        PREFERRED.iter().copied().chain(0..=u8::MAX).find(|&b| self.contains(b))
    }
}

/// Separators in order of preference: the line end, then control bytes, which text rarely holds
/// and patterns rarely name (a separator inside a segment changes nothing either: the pattern
/// cannot consume it wherever it is).
const PREFERRED: [u8; 6] = [b'\n', 0, 1, 2, 3, 0x7f];

/// The bytes that can join segments for a pattern, from its HIR (parsed in ASCII mode, as every
/// translated pattern begins with `(?-u)`): ASCII bytes only, none when it reads the text's edges.
pub fn separators(hir: &Hir) -> ByteSet {
    let looks = hir.properties().look_set();
    if [Look::Start, Look::End, Look::StartCRLF, Look::EndCRLF].into_iter().any(|l| looks.contains(l)) {
        return ByteSet::EMPTY;
    }
    let mut consumed = ByteSet::EMPTY;
    if !consumable(hir, &mut consumed, 0) {
        return ByteSet::EMPTY;
    }
    let mut ok = ByteSet::ALL.without(consumed);
    let mut high = ByteSet::EMPTY;
    high.insert_range(0x80, 0xff);
    ok = ok.without(high);
    if looks.contains(Look::StartLF) || looks.contains(Look::EndLF) {
        ok = ok.and(only(b'\n'));
    }
    let line_looks = [Look::StartLF, Look::EndLF];
    if looks.iter().any(|l| !line_looks.contains(&l)) {
        // A word boundary of either kind: the separator must read as a non-word character.
        let mut word = ByteSet::EMPTY;
        word.insert_range(b'0', b'9');
        word.insert_range(b'A', b'Z');
        word.insert_range(b'a', b'z');
        word.insert(b'_');
        ok = ok.without(word);
    }
    ok
}

fn only(b: u8) -> ByteSet {
    let mut s = ByteSet::EMPTY;
    s.insert(b);
    s
}

/// Adds to `out` every byte `hir` can consume; false when too deep to tell.
fn consumable(hir: &Hir, out: &mut ByteSet, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(l) => {
            l.0.iter().for_each(|&b| out.insert(b));
            true
        }
        HirKind::Class(Class::Bytes(c)) => {
            c.ranges().iter().for_each(|r| out.insert_range(r.start(), r.end()));
            true
        }
        HirKind::Class(Class::Unicode(c)) => {
            for r in c.ranges() {
                let (start, end) = (u32::from(r.start()), u32::from(r.end()));
                if start < 0x80 {
                    out.insert_range(start as u8, end.min(0x7f) as u8);
                }
                if end >= 0x80 {
                    out.insert_range(0x80, 0xff);
                }
            }
            true
        }
        HirKind::Repetition(r) => r.max == Some(0) || consumable(&r.sub, out, depth + 1),
        HirKind::Capture(c) => consumable(&c.sub, out, depth + 1),
        HirKind::Concat(items) | HirKind::Alternation(items) => items.iter().all(|item| consumable(item, out, depth + 1)),
    }
}

/// A group's segments joined by one separator each, built when first asked for.
pub struct Joins<'s> {
    segments: &'s [&'s [u8]],
    /// Per separator used: the joined text and where each segment starts in it.
    built: Vec<(u8, Vec<u8>, Vec<usize>)>,
}

impl<'s> Joins<'s> {
    pub fn new(segments: &'s [&'s [u8]]) -> Joins<'s> {
        Joins { segments, built: Vec::new() }
    }

    /// How many segments there are.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// The segments from `first` on, joined by `separator`; None when there are none.
    pub fn text(&mut self, separator: u8, first: usize) -> Option<&[u8]> {
        match self.segments.len().checked_sub(first)? {
            0 => return None,
            1 => return self.segments.last().copied(),
            _ => {}
        }
        let at = match self.built.iter().position(|(s, _, _)| *s == separator) {
            Some(at) => at,
            None => {
                let mut text = Vec::with_capacity(self.segments.iter().map(|s| s.len() + 1).sum());
                let mut starts = Vec::with_capacity(self.segments.len());
                for (i, seg) in self.segments.iter().enumerate() {
                    if i > 0 {
                        text.push(separator);
                    }
                    starts.push(text.len());
                    text.extend_from_slice(seg);
                }
                self.built.push((separator, text, starts));
                self.built.len() - 1
            }
        };
        let (_, text, starts) = &self.built[at];
        Some(&text[starts[first]..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn separators_of(pattern: &str) -> ByteSet {
        super::super::literals::study(pattern).separators
    }

    #[test]
    fn separators_are_bytes_the_pattern_cannot_consume_nor_tell_from_an_edge() {
        let s = |p: &str| separators_of(p).preferred();
        assert_eq!(s(r"(?i-u)free\s+money"), Some(0), "\\s consumes the line end");
        assert_eq!(s(r"(?-u)free.{0,20}money"), Some(b'\n'), ". does not");
        assert_eq!(s(r"(?m-u)^Subject: x$"), Some(b'\n'));
        assert_eq!(s(r"(?m-u)^\s*x"), None, "multi-line anchors need the line end, which \\s consumes");
        assert_eq!(s(r"(?-u)\bx[^y]"), None, "[^y] leaves only y, a word byte");
        assert_eq!(s(r"(?-u)\bx[^>]"), Some(b'>'), "any byte when none of the preferred ones will do");
        assert_eq!(s(r"(?-u)^x"), None, "reads the text's start");
        assert_eq!(s(r"(?-u)x\z"), None);
        assert_eq!(s(r"a("), None, "does not parse");
        assert_eq!(s(r"(?u:\w)+é"), Some(b'\n'), "Unicode classes: their ASCII members and every high byte");
        assert!(!separators_of(r"(?-u)[^a]").contains(0xc3), "ASCII separators only");
    }

    #[test]
    fn joins_are_built_once_per_separator_and_start_at_any_segment() {
        let segments: [&[u8]; 3] = [b"subject", b"line one", b"line two"];
        let mut joins = Joins::new(&segments);
        assert_eq!(joins.text(b'\n', 0), Some(&b"subject\nline one\nline two"[..]));
        assert_eq!(joins.text(b'\n', 1), Some(&b"line one\nline two"[..]));
        assert_eq!(joins.text(0, 1), Some(&b"line one\0line two"[..]));
        assert_eq!(joins.text(0, 2), Some(&b"line two"[..]));
        assert_eq!(joins.text(0, 3), None);
        assert_eq!(joins.built.len(), 2);
        let one: [&[u8]; 1] = [b"only"];
        assert_eq!(Joins::new(&one).text(b'\n', 0), Some(&b"only"[..]), "one segment is not copied");
    }
}
