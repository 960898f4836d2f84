//! A smaller pattern with the same yes/no answer, for searches that only ask whether a pattern
//! matches somewhere in a text (the rule sets of `compile::AlwaysSet` and `compile::JoinedSet`).
//!
//! Whether `(?:your\s)?(?:full\s){0,3}address(?:\sline)?` matches somewhere in a text depends
//! only on `address`: any match contains a match of it, and a match of it is a match of the
//! whole (the optional parts empty). SpamAssassin's ReplaceTags rules are built that way, with
//! optional words and counted repeats around their core, and their lazy DFAs paid for every
//! optional word on every byte.
//!
//! Guarantees: the result `P'` matches some text (somewhere, look-arounds seeing the whole text)
//! exactly when `P` does, because (1) every match of `P'` is a match of `P` at the same place,
//! and (2) every match of `P` contains a match of `P'`. Only these steps are taken, each keeping
//! both: at the start or end of the pattern (through groups and alternations), an item that can
//! match the empty string and asserts nothing (no look-around) is dropped, and a repeat
//! `X{m,n}` with `m >= 1` becomes `X{m}`. Captures are dropped (a set has no use for them).
//! Bounded recursion; None when the pattern does not parse.

use regex_syntax::hir::{Hir, HirKind, Repetition};

const MAX_DEPTH: usize = 64;

/// The existence form of `pattern` (a Rust regex as `perlre` writes them, parsed as
/// `search` parses them), or None when it does not parse.
pub fn existence_form(pattern: &str) -> Option<Hir> {
    let hir = regex_syntax::ParserBuilder::new().utf8(false).build().parse(pattern).ok()?;
    Some(trim(hir, true, true, 0))
}

/// Whether `hir` can be left out at an end of the pattern: it can match the empty string
/// anywhere.
fn droppable(hir: &Hir) -> bool {
    hir.properties().minimum_len() == Some(0) && hir.properties().look_set().is_empty()
}

/// Trims `hir` at its start (`lead`) and its end (`trail`).
fn trim(hir: Hir, lead: bool, trail: bool, depth: usize) -> Hir {
    if depth > MAX_DEPTH || !(lead || trail) {
        return hir;
    }
    match hir.into_kind() {
        HirKind::Capture(c) => trim(*c.sub, lead, trail, depth + 1),
        HirKind::Alternation(alts) => Hir::alternation(alts.into_iter().map(|a| trim(a, lead, trail, depth + 1)).collect()),
        HirKind::Concat(items) => trim_concat(items, lead, trail, depth),
        HirKind::Repetition(r) if r.min >= 1 && r.max != Some(r.min) => {
            let copies = vec![(*r.sub).clone(); r.min as usize];
            trim_concat(copies, lead, trail, depth)
        }
        kind => rebuild(kind),
    }
}

fn trim_concat(mut items: Vec<Hir>, lead: bool, trail: bool, depth: usize) -> Hir {
    if lead {
        let keep_from = items.iter().position(|h| !droppable(h)).unwrap_or(items.len() - 1);
        items.drain(..keep_from.min(items.len().saturating_sub(1)));
    }
    if trail {
        while items.len() > 1 && items.last().is_some_and(droppable) {
            items.pop();
        }
    }
    match items.len() {
        0 => Hir::empty(),
        1 => trim(items.remove(0), lead, trail, depth + 1),
        n => {
            let last = items.pop().map(|h| trim(h, false, trail, depth + 1));
            let first = trim(items.remove(0), lead, false, depth + 1);
            let mut out = Vec::with_capacity(n);
            out.push(first);
            out.append(&mut items);
            out.extend(last);
            Hir::concat(out)
        }
    }
}

/// The node of `kind` again (what `trim` leaves alone).
fn rebuild(kind: HirKind) -> Hir {
    match kind {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(l) => Hir::literal(l.0),
        HirKind::Class(c) => Hir::class(c),
        HirKind::Look(l) => Hir::look(l),
        HirKind::Repetition(r) => Hir::repetition(Repetition { min: r.min, max: r.max, greedy: r.greedy, sub: r.sub }),
        HirKind::Capture(c) => Hir::capture(c),
        HirKind::Concat(items) => Hir::concat(items),
        HirKind::Alternation(alts) => Hir::alternation(alts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(p: &str) -> String {
        existence_form(p).expect("parses").to_string()
    }

    fn same(a: &str, b: &str) -> bool {
        let parse = |p: &str| regex_syntax::ParserBuilder::new().utf8(false).build().parse(p).expect("parses");
        parse(a) == parse(b)
    }

    #[test]
    fn optional_edges_go_and_repeats_shrink() {
        assert!(same(&form(r"(?-u)(?:your\s)?(?:full\s){0,3}address(?:\sline)?"), r"(?-u)address"));
        assert!(same(&form(r"(?-u)x{2,5}ab+"), r"(?-u)xxab"));
        assert!(same(&form(r"(?-u)(?:a(b)?|c+d*)"), r"(?-u)a|c"));
        assert!(same(&form(r"(?-u)mid(?:x?y{0,3})?dle"), r"(?-u)mid(?:x?y{0,3})?dle"), "the middle stays");
    }

    #[test]
    fn assertions_stay_and_keep_what_they_guard() {
        assert!(same(&form(r"(?m-u)^\s*(?:no\s)?name"), r"(?m-u)^\s*(?:no\s)?name"), "after ^ nothing is optional");
        assert!(same(&form(r"(?-u)(?:the\s)?\bname\b(?:s)?"), r"(?-u)\bname\b"));
        assert!(same(&form(r"(?-u)name\s*$"), r"(?-u)name\s*$"));
        assert!(same(&form(r"(?-u)a*"), r"(?-u)a*"), "a pattern that matches empty stays");
    }

    /// The defining property, checked against the regex crate on texts built from the patterns'
    /// own pieces.
    #[test]
    fn matches_somewhere_exactly_when_the_pattern_does() {
        let patterns = [
            r"(?i-u)(?:your\s)?(?:full\s){0,3}(?:address|name)(?:\sline)?:?\s{1,3}",
            r"(?-u)\b(?:a|b){1,3}c{2,4}\b",
            r"(?m-u)^x?(?:yz)+$",
            r"(?-u)(?:\d{1,3}\.){3}\d{1,3}",
            r"(?-u)(q)?r{0,2}s(t)?",
        ];
        let texts = [
            "",
            "address",
            "your full full address line:  ",
            "fulladdress",
            "NAME:\n",
            "ab cc",
            "abccccc",
            "bbbbcc",
            "xyzyz\nyz",
            "x\nyzq",
            "1.2.3.4",
            "1.2.3",
            "12.34.56.789.1",
            "s",
            "qrrrst",
            "rr",
            "a cc",
            "ccc",
        ];
        for p in patterns {
            let (a, b) = (regex::bytes::Regex::new(p).expect("compiles"), regex::bytes::Regex::new(&form(p)).expect("compiles"));
            for t in texts {
                assert_eq!(a.is_match(t.as_bytes()), b.is_match(t.as_bytes()), "{p} vs {} on {t:?}", form(p));
            }
        }
    }
}
