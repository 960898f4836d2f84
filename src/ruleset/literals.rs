//! Required-literal extraction for the Aho-Corasick prefilter.
//!
//! For a pattern, finds a few small sets of byte strings such that every match of the pattern
//! contains at least one string of each set (compared ASCII case-insensitively): `free\s+money`
//! needs "free" and "money", `(?:lottery|jackpot) winner` needs one of "jackpot" and "lottery",
//! and " winner". Rules with such sets only run their regex on text where the prefilter saw a
//! literal of every set; rules without a usable set always run. Being a prefilter, the result
//! may be weaker than possible but never wrong: it is derived from regex-syntax's HIR of the
//! (superset) pattern. Bounded recursion.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Shortest literal worth prefiltering on.
pub const MIN_LEN: usize = 3;
/// Most alternatives in one literal set.
const MAX_ALTS: usize = 32;
/// Most literal sets one pattern is prefiltered on (the most selective ones).
pub const MAX_SETS: usize = 4;
const MAX_DEPTH: usize = 64;

/// What the evaluator needs to know of a (superset) pattern, from one parse.
pub struct Study {
    /// The literal sets, lower-cased, the most selective first, at most [`MAX_SETS`]: every
    /// match contains a literal of each set. Empty if no useful set exists.
    pub required: Vec<LiteralSet>,
    /// No look-around at the very start or end of the text (`\A`, `\z`, `^`/`$` outside
    /// multi-line mode): whatever the pattern matches in a text, it also matches in a longer
    /// text that contains it between newlines.
    pub edge_blind: bool,
    /// The bytes that can join segments into one text searched with the same answers (see
    /// `joined`).
    pub separators: super::joined::ByteSet,
}

/// Studies `pattern` (a Rust regex in the syntax produced by `perlre`).
pub fn study(pattern: &str) -> Study {
    use regex_syntax::hir::Look;
    let Some(hir) = parse(pattern) else {
        return Study { required: Vec::new(), edge_blind: false, separators: super::joined::ByteSet::EMPTY };
    };
    let looks = hir.properties().look_set();
    let required = required_sets(&hir);
    let separators = super::joined::separators(&hir);
    Study { required, edge_blind: !looks.contains(Look::Start) && !looks.contains(Look::End), separators }
}

/// Alternative byte strings, one of which occurs in every match.
pub type LiteralSet = Vec<Vec<u8>>;

/// The most selective literal set for `pattern`, lower-cased, or None if no useful set exists.
#[cfg(test)]
pub fn required(pattern: &str) -> Option<Vec<Vec<u8>>> {
    study(pattern).required.into_iter().next()
}

/// The useful literal sets `hir` needs, the most selective first, none implied by another,
/// at most [`MAX_SETS`].
fn required_sets(hir: &Hir) -> Vec<LiteralSet> {
    let mut sets = Vec::new();
    conjunction(hir, 0, &mut sets);
    sets.retain(|set| !set.is_empty() && set.iter().all(|l| l.len() >= MIN_LEN));
    for set in &mut sets {
        set.sort();
        set.dedup();
    }
    sets.sort_by_key(|set| std::cmp::Reverse(score(set)));
    let mut kept: Vec<LiteralSet> = Vec::new();
    for set in sets {
        if kept.len() < MAX_SETS && !kept.iter().any(|k| implies(k, &set)) {
            kept.push(set);
        }
    }
    kept
}

/// Whether a text with a literal of `a` always has one of `b`: each of `a`'s contains one of `b`'s.
fn implies(a: &LiteralSet, b: &LiteralSet) -> bool {
    a.iter().all(|x| b.iter().any(|y| memchr::memmem::find(x, y).is_some()))
}

/// Appends the literal sets every match of `hir` needs (all of them, useful or not): the
/// literal runs and the needed parts of a concatenation each need theirs.
fn conjunction(hir: &Hir, depth: usize, out: &mut Vec<LiteralSet>) {
    if depth > MAX_DEPTH {
        return;
    }
    match hir.kind() {
        HirKind::Capture(c) => conjunction(&c.sub, depth + 1, out),
        HirKind::Repetition(r) if r.min >= 1 => conjunction(&r.sub, depth + 1, out),
        HirKind::Concat(items) => {
            let mut run: Vec<u8> = Vec::new();
            for item in items {
                if let HirKind::Literal(l) = item.kind() {
                    run.extend(l.0.to_ascii_lowercase());
                } else if let Some(b) = single_byte(item) {
                    run.push(b);
                } else if !matches!(item.kind(), HirKind::Look(_)) {
                    // A look-around is zero-width: the bytes on either side are adjacent.
                    if !run.is_empty() {
                        out.push(vec![std::mem::take(&mut run)]);
                    }
                    conjunction(item, depth + 1, out);
                }
            }
            if !run.is_empty() {
                out.push(vec![run]);
            }
        }
        _ => out.extend(req(hir, depth)),
    }
}

/// Where every match of a pattern starts, when the pattern tells.
#[derive(Debug, PartialEq)]
pub enum Start {
    /// Where these bytes occur (lower-cased; compare ASCII case-insensitively), at least
    /// [`MIN_LEN`] long. Zero-width assertions are skipped (they consume nothing), so a match
    /// starts where this prefix does.
    Prefix(Vec<u8>),
    /// At the start of a line: the pattern begins with a multi-line `^` (`(?m)^`), so a match
    /// starts at 0 or just after a `\n`.
    LineStart,
}

/// Where every match of `pattern` starts (a prefix first, else a line start), or None.
pub fn start(pattern: &str) -> Option<Start> {
    let hir = parse(pattern)?;
    let mut out = Vec::new();
    lead(&hir, &mut out, 0);
    if out.len() >= MIN_LEN {
        return Some(Start::Prefix(out));
    }
    leads_with_line_start(&hir, 0).then_some(Start::LineStart)
}

/// The pattern's HIR, parsed as moat's translated patterns are written; None if it does not parse.
fn parse(pattern: &str) -> Option<Hir> {
    regex_syntax::ParserBuilder::new().utf8(false).unicode(false).build().parse(pattern).ok()
}

#[cfg(test)]
fn prefix(pattern: &str) -> Option<Vec<u8>> {
    match start(pattern) {
        Some(Start::Prefix(bytes)) => Some(bytes),
        _ => None,
    }
}

/// Appends the bytes `hir` always starts with; true when all of `hir` was consumed that way (so
/// what follows it continues the prefix).
fn lead(hir: &Hir, out: &mut Vec<u8>, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match hir.kind() {
        HirKind::Literal(l) => {
            out.extend(l.0.to_ascii_lowercase());
            true
        }
        HirKind::Class(_) => single_byte(hir).map(|b| out.push(b)).is_some(),
        HirKind::Look(_) => true,
        HirKind::Capture(c) => lead(&c.sub, out, depth + 1),
        HirKind::Repetition(r) if r.min >= 1 => {
            lead(&r.sub, out, depth + 1);
            false
        }
        HirKind::Concat(items) => items.iter().all(|item| lead(item, out, depth + 1)),
        _ => false,
    }
}

#[cfg(test)]
fn starts_at_line_start(pattern: &str) -> bool {
    parse(pattern).is_some_and(|hir| leads_with_line_start(&hir, 0))
}

fn leads_with_line_start(hir: &Hir, depth: usize) -> bool {
    use regex_syntax::hir::Look;
    depth <= MAX_DEPTH
        && match hir.kind() {
            HirKind::Look(look) => *look == Look::StartLF,
            HirKind::Capture(c) => leads_with_line_start(&c.sub, depth + 1),
            HirKind::Concat(items) => items.first().is_some_and(|first| leads_with_line_start(first, depth + 1)),
            _ => false,
        }
}

/// Score of a set: the shortest literal in it (longer is more selective), fewer alts better.
fn score(set: &[Vec<u8>]) -> (usize, std::cmp::Reverse<usize>) {
    (set.iter().map(Vec::len).min().unwrap_or(0), std::cmp::Reverse(set.len()))
}

fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if score(&b) > score(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// A single byte this node always matches (ASCII case pairs count, lower-cased).
fn single_byte(hir: &Hir) -> Option<u8> {
    match hir.kind() {
        HirKind::Literal(l) if l.0.len() == 1 => Some(l.0[0].to_ascii_lowercase()),
        HirKind::Class(Class::Bytes(c)) => {
            let r = c.ranges();
            let bytes: Vec<u8> = r.iter().flat_map(|r| r.start()..=r.end()).take(3).collect();
            match bytes.as_slice() {
                [b] => Some(b.to_ascii_lowercase()),
                [a, b] if a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(b) => Some(a.to_ascii_lowercase()),
                _ => None,
            }
        }
        HirKind::Class(Class::Unicode(c)) => {
            let chars: Vec<char> = c.ranges().iter().flat_map(|r| r.start()..=r.end()).take(3).collect();
            match chars.as_slice() {
                [a] if a.is_ascii() => Some((*a as u8).to_ascii_lowercase()),
                [a, b] if a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(b) => Some((*a as u8).to_ascii_lowercase()),
                _ => None,
            }
        }
        _ => None,
    }
}

fn req(hir: &Hir, depth: usize) -> Option<Vec<Vec<u8>>> {
    if depth > MAX_DEPTH {
        return None;
    }
    match hir.kind() {
        HirKind::Literal(l) => Some(vec![l.0.to_ascii_lowercase()]),
        HirKind::Class(_) => single_byte(hir).map(|b| vec![vec![b]]),
        HirKind::Capture(c) => req(&c.sub, depth + 1),
        HirKind::Repetition(r) if r.min >= 1 => req(&r.sub, depth + 1),
        HirKind::Concat(items) => concat(items, depth),
        HirKind::Alternation(alts) => {
            let mut all = Vec::new();
            for a in alts {
                all.extend(req(a, depth + 1)?);
                if all.len() > MAX_ALTS {
                    return None;
                }
            }
            all.sort();
            all.dedup();
            Some(all)
        }
        _ => None,
    }
}

/// In a concatenation, adjacent single-byte items form runs; the best run or child set wins.
fn concat(items: &[Hir], depth: usize) -> Option<Vec<Vec<u8>>> {
    let mut best: Option<Vec<Vec<u8>>> = None;
    let mut run: Vec<u8> = Vec::new();
    for item in items {
        if let HirKind::Literal(l) = item.kind() {
            run.extend(l.0.to_ascii_lowercase());
            continue;
        }
        if let Some(b) = single_byte(item) {
            run.push(b);
            continue;
        }
        if matches!(item.kind(), HirKind::Look(_)) {
            // Zero-width: the bytes on either side are adjacent in the text.
            continue;
        }
        if !run.is_empty() {
            best = better(best, Some(vec![std::mem::take(&mut run)]));
        }
        best = better(best, req(item, depth + 1));
    }
    if !run.is_empty() {
        best = better(best, Some(vec![run]));
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_and_line_starts_are_told_apart() {
        assert!(study("a[bc]d").edge_blind && study("(?m)^x$").edge_blind && study(r"\bword\b").edge_blind);
        assert!(!study("^x").edge_blind && !study("x$").edge_blind && !study(r"\Ax").edge_blind && !study(r"x\z").edge_blind);
        assert!(!study("a(").edge_blind, "what does not parse is not joinable");
        assert!(starts_at_line_start("(?m)^X-[a-z]+"));
        assert!(starts_at_line_start("(?m)(^X)y"), "through a group");
        assert!(!starts_at_line_start("^X") && !starts_at_line_start("(?m)a^"));
    }

    fn r(p: &str) -> Option<Vec<String>> {
        required(p).map(|v| v.into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect())
    }

    #[test]
    fn extracts_literals() {
        assert_eq!(r("(?i-u)\\bviagra\\b"), Some(vec!["viagra".into()]));
        assert_eq!(r("(?-u)free\\s+money"), Some(vec!["money".into()]));
        assert_eq!(r("(?i-u)(?:lottery|jackpot) winner"), Some(vec![" winner".into()]));
        assert_eq!(r("(?-u)(?:lottery|jackpot)\\d"), Some(vec!["jackpot".into(), "lottery".into()]));
        assert_eq!(r("(?-u)ab+cd"), None); // runs "ab" and "cd" too short... "b" repeated
        assert_eq!(r("(?-u)\\d+"), None);
        assert_eq!(r("(?-u)(?:abc)?xyz"), Some(vec!["xyz".into()]));
        assert_eq!(r("(?-u)(?:abc|x)"), None);
    }

    fn sets(p: &str) -> Vec<Vec<String>> {
        study(p).required.into_iter().map(|set| set.into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect()).collect()
    }

    #[test]
    fn every_needed_set_is_found_the_most_selective_first() {
        assert_eq!(sets("(?-u)free\\s+money"), [vec!["money"], vec!["free"]]);
        assert_eq!(sets("(?i-u)(?:lottery|jackpot) winner"), [vec![" winner"], vec!["jackpot", "lottery"]]);
        assert_eq!(sets("(?-u)(?:abc)+x{2}(?:def|ghi)?jkl"), [vec!["abc"], vec!["jkl"]], "optional parts need nothing");
        assert_eq!(sets("(?-u)abcd\\s+(?:xabcdx|abcd)"), [vec!["abcd"]], "a set implied by another is left out");
        assert_eq!(sets("(?-u)aaa1 bbb2 ccc3 ddd4 eee5").len(), 1, "one run");
        assert_eq!(sets("(?-u)aaa1.bbb2.ccc3.ddd4.eee5").len(), MAX_SETS);
        assert!(sets("(?-u)ab.cd").is_empty(), "too short");
    }

    #[test]
    fn extracts_prefixes() {
        let p = |s: &str| prefix(s).map(|b| String::from_utf8_lossy(&b).into_owned());
        assert_eq!(p(r"(?ims-u)\nTo: (?:[^\n<]{0,80}<)?([^\n\s>,]+)"), Some("\nto: ".into()));
        assert_eq!(p(r"(?im-u)^(?:To):\s+<?x"), Some("to:".into()));
        assert_eq!(p(r"(?-u)\bab(?:cd)+e"), Some("abcd".into()));
        assert_eq!(p("(?-u)(?:abc|abd)x"), None);
        assert_eq!(p("(?-u)ab"), None, "shorter than MIN_LEN");
        assert_eq!(p("(?-u)x?abc"), None);
    }
}
