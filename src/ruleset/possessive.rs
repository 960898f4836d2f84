//! Auto-possessification of backtracking patterns (what PCRE does before it runs a pattern).
//!
//! A greedy repetition of one character class that is followed by something that must start
//! with a byte outside that class can only ever succeed with as many repetitions as it took: if
//! it gave one back, the next byte would be in the class, where what follows cannot start. So
//! it may as well be atomic (`(?>x{1,100})`), and then the backtracker never tries the shorter
//! counts. SpamAssassin's header rules with backreferences (`\nFrom:\s+([^\n\s>]+)>?\n+(?:[^\n]{1,100}\n+)*To:…\1`)
//! spent most of their time doing exactly that, line by line and byte by byte.
//!
//! Guarantees: the rewritten pattern matches exactly what the original matches, at the same
//! places, with the same captures. Anything this module does not fully understand (a construct
//! it cannot print back, a class it cannot read, a follower that may match nothing) is left as
//! it was; a pattern it cannot print back whole is returned unchanged.

use fancy_regex::{Assertion, Expr, LookAround};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

/// Deepest nesting looked into (patterns here are shallow; this bounds the recursion).
const MAX_DEPTH: usize = 64;

/// `pattern` (fancy-regex syntax, parsed as [`super::compile`] builds it: ASCII, no global
/// flags) with every repetition that cannot give anything back made atomic, or None when
/// nothing changed or the pattern is outside what this module rewrites.
///
/// Only repetitions that fancy-regex runs on its backtracking VM are touched: an atomic group
/// is itself a construct only the VM runs, so making a repetition atomic where fancy-regex
/// would have handed it to a finite automaton (the easy parts of a pattern) would slow it down.
/// Which parts those are follows fancy-regex's own split (see `Vm` below).
pub fn rewrite(pattern: &str) -> Option<String> {
    let tree = Expr::parse_tree_with_flags(pattern, 0).ok()?;
    let mut referenced = HashSet::new();
    let mut group = 0;
    referenced_groups(&tree.expr, &|g| tree.backrefs.contains(g), &mut group, &mut referenced, 0);
    let mut vm = Vm { referenced, changed: false };
    let expr = vm.visit(tree.expr, false, 0);
    if !vm.changed {
        return None;
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    print(&expr, &mut out, 0)?;
    Some(out)
}

/// The capture groups a backreference reads (by their node), numbered in order of their
/// opening parenthesis as fancy-regex numbers them.
fn referenced_groups(expr: &Expr, backrefs: &dyn Fn(usize) -> bool, next: &mut usize, out: &mut HashSet<*const Expr>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Expr::Group(inner) = expr {
        *next += 1;
        if backrefs(*next) {
            out.insert(Arc::as_ptr(inner));
        }
    }
    for child in expr.children_iter() {
        referenced_groups(child, backrefs, next, out, depth + 1);
    }
}

/// Walks a tree the way fancy-regex's compiler splits it between its VM and its delegated
/// automata, making atomic the repetitions the VM would backtrack into for nothing.
struct Vm {
    /// Capture groups a backreference reads (those make their group VM-only).
    referenced: HashSet<*const Expr>,
    changed: bool,
}

impl Vm {
    /// Whether only the VM can run `expr` (fancy-regex's "hard").
    fn hard(&self, expr: &Expr, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return true;
        }
        match expr {
            Expr::Backref { .. } | Expr::LookAround(..) | Expr::AtomicGroup(_) => true,
            Expr::Group(inner) if self.referenced.contains(&Arc::as_ptr(inner)) => true,
            Expr::Empty | Expr::Any { .. } | Expr::Literal { .. } | Expr::LiteralBytes { .. } | Expr::Delegate { .. } => false,
            Expr::Assertion(a) => !matches!(
                a,
                Assertion::StartText
                    | Assertion::EndText
                    | Assertion::StartLine { crlf: false }
                    | Assertion::EndLine { crlf: false }
                    | Assertion::WordBoundary
                    | Assertion::NotWordBoundary
            ),
            Expr::Concat(_) | Expr::Alt(_) | Expr::Group(_) | Expr::Repeat { .. } => expr.children_iter().any(|c| self.hard(c, depth + 1)),
            _ => true,
        }
    }

    /// `expr` with its VM-run repetitions made atomic where that changes nothing but speed;
    /// `hard` says whether the compiler visits it in VM mode.
    fn visit(&mut self, expr: Expr, hard: bool, depth: usize) -> Expr {
        if depth > MAX_DEPTH || (!hard && !self.hard(&expr, depth)) {
            return expr; // delegated whole to an automaton
        }
        let depth = depth + 1;
        match expr {
            Expr::Concat(items) => self.concat(items, hard, depth),
            Expr::Alt(alts) => Expr::Alt(alts.into_iter().map(|e| self.visit(e, hard, depth)).collect()),
            Expr::Group(e) => Expr::Group(Arc::new(self.visit(Arc::unwrap_or_clone(e), hard, depth))),
            Expr::LookAround(e, kind) => Expr::LookAround(Box::new(self.visit(*e, false, depth)), kind),
            Expr::AtomicGroup(e) => Expr::AtomicGroup(Box::new(self.visit(*e, false, depth))),
            Expr::Repeat { child, lo, hi, greedy } => Expr::Repeat { child: Box::new(self.visit(*child, true, depth)), lo, hi, greedy },
            other => other,
        }
    }

    /// A concatenation: fancy-regex delegates its leading run of fixed-size easy items and its
    /// trailing run of easy items (fixed-size ones only when visited in VM mode); the VM runs
    /// the items in between.
    fn concat(&mut self, items: Vec<Expr>, hard: bool, depth: usize) -> Expr {
        let easy: Vec<bool> = items.iter().map(|e| !self.hard(e, depth)).collect();
        let fixed: Vec<bool> = items.iter().map(|e| size(e, depth).is_some()).collect();
        let prefix_end = (0..items.len()).take_while(|&i| easy[i] && fixed[i]).count();
        let suffix_len = (prefix_end..items.len()).rev().take_while(|&i| easy[i] && (!hard || fixed[i])).count();
        let suffix_begin = items.len() - suffix_len;
        let followers = followers(&items, depth);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if i < prefix_end || i >= suffix_begin {
                out.push(item);
                continue;
            }
            let item = self.visit(item, true, depth);
            out.push(match &followers[i] {
                Some(First { bytes, nullable: false }) => make_atomic(item, bytes, &mut self.changed),
                _ => item,
            });
        }
        Expr::Concat(out)
    }
}

/// How many bytes every match of `expr` is long, if that is fixed.
fn size(expr: &Expr, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    match expr {
        Expr::Empty | Expr::Assertion(_) | Expr::LookAround(..) => Some(0),
        Expr::Any { .. } | Expr::Delegate { .. } => Some(1),
        Expr::Literal { val, .. } => Some(val.len()),
        Expr::LiteralBytes { bytes } => Some(bytes.len()),
        Expr::Concat(items) => items.iter().map(|e| size(e, depth + 1)).sum(),
        Expr::Alt(alts) => {
            let sizes: Option<Vec<usize>> = alts.iter().map(|e| size(e, depth + 1)).collect();
            let sizes = sizes?;
            let first = *sizes.first()?;
            sizes.iter().all(|&s| s == first).then_some(first)
        }
        Expr::Group(e) => size(e, depth + 1),
        Expr::AtomicGroup(e) => size(e, depth + 1),
        Expr::Repeat { child, lo, hi, .. } if lo == hi => size(child, depth + 1).map(|s| s * lo),
        _ => None,
    }
}

/// `item` made atomic when it is a greedy repetition of one class disjoint from `follower`
/// (directly or as the whole of a capture group).
fn make_atomic(item: Expr, follower: &Bytes, changed: &mut bool) -> Expr {
    match item {
        Expr::Repeat { ref child, lo, hi, greedy: true } if lo != hi => match single_class(child) {
            Some(class) if class.disjoint(follower) => {
                *changed = true;
                Expr::AtomicGroup(Box::new(item))
            }
            _ => item,
        },
        Expr::Group(inner) if matches!(*inner, Expr::Repeat { .. }) => {
            Expr::Group(Arc::new(make_atomic(Arc::unwrap_or_clone(inner), follower, changed)))
        }
        other => other,
    }
}

/// A set of bytes.
#[derive(Clone, Copy, Default)]
struct Bytes([u64; 4]);

impl Bytes {
    /// `byte`, and its other case when `casei`.
    fn of(byte: u8, casei: bool) -> Bytes {
        let mut b = Bytes::default();
        b.insert(byte);
        b.with_case(casei)
    }
    fn all(except_newline: bool) -> Bytes {
        let mut b = Bytes([u64::MAX; 4]);
        if except_newline {
            b.0[0] &= !(1 << b'\n');
        }
        b
    }
    fn insert(&mut self, byte: u8) {
        self.0[usize::from(byte >> 6)] |= 1 << (byte & 63);
    }
    fn union(&mut self, other: &Bytes) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }
    fn disjoint(&self, other: &Bytes) -> bool {
        self.0.iter().zip(other.0).all(|(a, b)| a & b == 0)
    }
    fn with_case(mut self, casei: bool) -> Bytes {
        if casei {
            for c in b'a'..=b'z' {
                let upper = c.to_ascii_uppercase();
                if self.contains(c) || self.contains(upper) {
                    self.insert(c);
                    self.insert(upper);
                }
            }
        }
        self
    }
    fn contains(&self, byte: u8) -> bool {
        self.0[usize::from(byte >> 6)] & (1 << (byte & 63)) != 0
    }
}

/// The bytes one match of a single-byte expression can consume, or None.
fn single_class(expr: &Expr) -> Option<Bytes> {
    match expr {
        Expr::Any { newline, crlf: false } => Some(Bytes::all(!newline)),
        Expr::Delegate { inner, casei } => class_bytes(inner, *casei),
        Expr::Literal { val, casei } if val.len() == 1 => Some(Bytes::of(val.as_bytes()[0], *casei)),
        Expr::LiteralBytes { bytes } if bytes.len() == 1 => Some(Bytes::of(bytes[0], false)),
        _ => None,
    }
}

/// The bytes a character class (as fancy-regex hands it to its delegate engine) matches.
fn class_bytes(class: &str, casei: bool) -> Option<Bytes> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::ParserBuilder::new().unicode(false).utf8(false).case_insensitive(casei).build().parse(class).ok()?;
    let mut b = Bytes::default();
    match hir.kind() {
        HirKind::Class(Class::Bytes(c)) => {
            for r in c.ranges() {
                for byte in r.start()..=r.end() {
                    b.insert(byte);
                }
            }
        }
        HirKind::Literal(l) if l.0.len() == 1 => b.insert(l.0[0]),
        _ => return None,
    }
    Some(b)
}

/// What the first byte consumed by an expression can be, and whether it can match empty.
struct First {
    bytes: Bytes,
    nullable: bool,
}

/// For each item of a sequence, what the rest of the sequence after it starts with (one pass
/// from the end: an item's follower is the next item's first bytes, joined with that item's own
/// follower when the next item can match empty).
fn followers(items: &[Expr], depth: usize) -> Vec<Option<First>> {
    let mut out: Vec<Option<First>> = Vec::with_capacity(items.len());
    let mut after = Some(First { bytes: Bytes::default(), nullable: true });
    for item in items.iter().rev() {
        out.push(after);
        after = match (first(item, depth + 1), &out[out.len() - 1]) {
            (Some(f), _) if !f.nullable => Some(f),
            (Some(mut f), Some(rest)) => {
                f.bytes.union(&rest.bytes);
                f.nullable = rest.nullable;
                Some(f)
            }
            _ => None,
        };
    }
    out.reverse();
    out
}

fn first_of_seq(items: &[Expr], depth: usize) -> Option<First> {
    let mut bytes = Bytes::default();
    for item in items {
        let f = first(item, depth + 1)?;
        bytes.union(&f.bytes);
        if !f.nullable {
            return Some(First { bytes, nullable: false });
        }
    }
    Some(First { bytes, nullable: true })
}

fn first(expr: &Expr, depth: usize) -> Option<First> {
    if depth > MAX_DEPTH {
        return None;
    }
    let one = |bytes: Bytes| Some(First { bytes, nullable: false });
    match expr {
        Expr::Empty | Expr::Assertion(_) | Expr::LookAround(..) => Some(First { bytes: Bytes::default(), nullable: true }),
        Expr::Literal { val, casei } => one(Bytes::of(*val.as_bytes().first()?, *casei)),
        Expr::LiteralBytes { bytes } => one(Bytes::of(*bytes.first()?, false)),
        Expr::Any { .. } | Expr::Delegate { .. } => one(single_class(expr)?),
        Expr::Concat(items) => first_of_seq(items, depth),
        Expr::Alt(alts) => {
            let mut all = First { bytes: Bytes::default(), nullable: false };
            for a in alts {
                let f = first(a, depth + 1)?;
                all.bytes.union(&f.bytes);
                all.nullable |= f.nullable;
            }
            Some(all)
        }
        Expr::Group(e) => first(e, depth + 1),
        Expr::AtomicGroup(e) => first(e, depth + 1),
        Expr::Repeat { child, lo, .. } => {
            let f = first(child, depth + 1)?;
            Some(First { bytes: f.bytes, nullable: f.nullable || *lo == 0 })
        }
        _ => None,
    }
}

/// Writes `expr` in fancy-regex syntax that parses back (with no global flags) to the same
/// tree; None for a construct it does not know.
fn print(expr: &Expr, out: &mut String, depth: usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    let depth = depth + 1;
    match expr {
        Expr::Empty => {}
        Expr::Any { newline: true, crlf: false } => out.push_str("(?s:.)"),
        Expr::Any { newline: false, crlf: false } => out.push_str("(?-s:.)"),
        Expr::Assertion(a) => out.push_str(match a {
            Assertion::StartText => r"\A",
            Assertion::EndText => r"\z",
            Assertion::StartLine { crlf: false } => "(?m:^)",
            Assertion::EndLine { crlf: false } => "(?m:$)",
            Assertion::WordBoundary => r"\b",
            Assertion::NotWordBoundary => r"\B",
            _ => return None,
        }),
        Expr::Literal { val, casei } => {
            if !val.is_ascii() {
                return None;
            }
            out.push_str(if *casei { "(?i:" } else { "(?-i:" });
            for b in val.bytes() {
                push_byte(out, b);
            }
            out.push(')');
        }
        Expr::LiteralBytes { bytes } => {
            for &b in bytes {
                write!(out, r"\x{b:02X}").ok()?;
            }
        }
        Expr::Delegate { inner, casei } => {
            out.push_str(if *casei { "(?i:" } else { "(?-i:" });
            out.push_str(inner);
            out.push(')');
        }
        Expr::Concat(items) => {
            out.push_str("(?:");
            for item in items {
                print(item, out, depth)?;
            }
            out.push(')');
        }
        Expr::Alt(alts) => {
            out.push_str("(?:");
            for (i, a) in alts.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                print(a, out, depth)?;
            }
            out.push(')');
        }
        Expr::Group(e) => wrapped("(", e, out, depth)?,
        Expr::LookAround(e, kind) => {
            let open = match kind {
                LookAround::LookAhead => "(?=",
                LookAround::LookAheadNeg => "(?!",
                LookAround::LookBehind => "(?<=",
                LookAround::LookBehindNeg => "(?<!",
            };
            wrapped(open, e, out, depth)?;
        }
        Expr::AtomicGroup(e) => wrapped("(?>", e, out, depth)?,
        Expr::Repeat { child, lo, hi, greedy } => {
            wrapped("(?:", child, out, depth)?;
            match (*lo, *hi) {
                (0, usize::MAX) => out.push('*'),
                (1, usize::MAX) => out.push('+'),
                (lo, usize::MAX) => write!(out, "{{{lo},}}").ok()?,
                (lo, hi) if lo == hi => write!(out, "{{{lo}}}").ok()?,
                (lo, hi) => write!(out, "{{{lo},{hi}}}").ok()?,
            }
            if !greedy {
                out.push('?');
            }
        }
        Expr::Backref { group, casei } => {
            out.push_str(if *casei { "(?i:" } else { "(?-i:" });
            write!(out, r"\{group}").ok()?;
            out.push(')');
        }
        _ => return None,
    }
    Some(())
}

/// `expr` printed between `open` and `)`.
fn wrapped(open: &str, expr: &Expr, out: &mut String, depth: usize) -> Option<()> {
    out.push_str(open);
    print(expr, out, depth)?;
    out.push(')');
    Some(())
}

fn push_byte(out: &mut String, b: u8) {
    if b.is_ascii_alphanumeric() || b == b' ' {
        out.push(char::from(b));
    } else {
        // Escaped as hex: never a metacharacter, whatever flags are in force.
        let _ = write!(out, r"\x{b:02X}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(p: &str) -> Expr {
        Expr::parse_tree_with_flags(p, 0).expect("parses").expr
    }

    /// Printing a tree and parsing it again gives the same tree.
    fn round_trips(p: &str) {
        let t = tree(p);
        let mut s = String::new();
        print(&t, &mut s, 0).expect("prints");
        assert_eq!(tree(&s), t, "{p} printed as {s}");
    }

    #[test]
    fn printing_round_trips() {
        for p in [
            r"(?ism)\nFrom:\s+(?:[^\n<]{0,80}<)?([^\n\s@>]+)@[^\n\s]+>?\n+(?:[^\n]{1,100}\n+)*To:\s+(?:[^\n]{0,80}<)?\1[@>,\s\n]",
            r"(?i)\byour?\s(?!can)(?:(?!you)\w{1,15}\s){0,10}(?:share|fee)\b",
            r"(?<![\-\d])[1-9](?!\d\d)\xE4\.+a{2}b{3,}c{2,5}?^$(?m)^x$",
            r"(?s)a.b(?-s).c(?>x+)y|z|",
        ] {
            round_trips(p);
        }
    }

    #[test]
    fn repetitions_followed_by_a_disjoint_byte_become_atomic() {
        let r = rewrite(r"([^\n\s>]+)>?\n+(?:[^\n]{1,100}\n+)*To:\1").expect("rewritten");
        assert_eq!(r.matches("(?>").count(), 4, "{r}");
        // A follower that may be empty, or overlaps the class, or a lazy repetition: unchanged.
        assert_eq!(rewrite(r"(\w+)[\d@]\1"), None);
        assert_eq!(rewrite(r"(a+)a\1"), None);
        assert_eq!(rewrite(r"(?i)(x+?)X\1"), None);
        assert_eq!(rewrite(r"(?i)(x+)X\1"), None, "case-insensitive follower overlaps");
        assert_eq!(rewrite(r"(\w+)$\1"), None);
        // Parts fancy-regex hands to an automaton are left to it.
        assert_eq!(rewrite(r"([^\n]+)\n[^\n]{1,100}\n"), None);
    }

    #[test]
    fn rewritten_patterns_match_the_same() {
        let cases = [
            (r"(?ism)\nFrom:\s+([^\n\s>]+)>?\n+(?:[^\n]{1,100}\n+)*To:\s+\1[>,\s\n]", "x\nFrom: a@b.c\nSubject: hi\nTo: a@b.c\n"),
            (r"(?ism)\nFrom:\s+([^\n\s>]+)>?\n+(?:[^\n]{1,100}\n+)*To:\s+\1[>,\s\n]", "x\nFrom: a@b.c\nSubject: hi\nTo: b@b.c\n"),
            (r"(?i)<a\s[^>]{0,20}href=([^>\s]+)>(?!\1)", "<a x href=http://x>"),
            (r"(\d+)-\1", "12-12 123-12"),
        ];
        for (p, text) in cases {
            let original = fancy_regex::Regex::new(p).expect("original");
            let rewritten = fancy_regex::Regex::new(&rewrite(p).expect("rewritten")).expect("compiles");
            let spans = |re: &fancy_regex::Regex| -> Vec<(usize, usize)> {
                re.find_iter(text).map(|m| m.expect("no error")).map(|m| (m.start(), m.end())).collect()
            };
            assert_eq!(spans(&original), spans(&rewritten), "{p}");
        }
    }
}
