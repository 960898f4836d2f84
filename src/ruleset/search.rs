//! Regexes searched with caller-owned caches, and a bounded store of those caches.
//!
//! Why (issue 20): a `regex::bytes::Regex` keeps a hidden pool of search caches (lazy DFA,
//! PikeVM, backtracker), one per thread using it, for the life of the regex; nothing bounds
//! their sum, and with SpamAssassin's stock rules they grew with the traffic. Here every compiled
//! regex and set has a slot, and its cache lives in a [`Scratch`], taken by one evaluation at a
//! time from the rule set's [`ScratchPool`] and given back after the message.
//!
//! Guarantees: between messages a scratch holds at most [`BUDGET`] bytes of caches (above it,
//! caches are dropped, the ones the message did not use first, largest first; a dropped cache
//! is rebuilt when next needed), and the pool keeps at most [`KEEP`] scratches, so searching
//! holds at most `KEEP × BUDGET` plus what the messages being evaluated add (each cache stays
//! within its lazy-DFA capacity). [`ScratchPool::memory_usage`] reports the bytes held.
//!
//! Matching is the `regex` crate's own engine (`regex_automata::meta`), configured as
//! `regex::bytes::RegexBuilder` / `RegexSetBuilder` configure it (byte semantics, leftmost-first
//! for one regex, all matches for a set), except that a single regex records no capture groups,
//! only where its match starts and ends (all moat reads): the same matches, smaller caches.

use std::sync::Mutex;

use regex_automata::meta::{self, Cache};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::iter::Searcher;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};

/// Cache bytes a scratch may keep between messages. With the stock SpamAssassin rules a
/// scratch levels off near 50 MB on real mail (bench/rules-soak), so this is a bound for
/// unusual mail, not a working limit: trimming below the working set costs speed (measured:
/// 24 MB halved the throughput).
pub const BUDGET: usize = 64 * 1024 * 1024;
/// Scratches a rule set keeps for reuse (more exist only while more evaluations run at once).
const KEEP: usize = 8;

/// One regex (`regex::bytes::Regex` semantics).
pub struct Re {
    re: meta::Regex,
    slot: usize,
}

/// Several regexes searched in one pass (`regex::bytes::RegexSet` semantics).
pub struct Set {
    re: meta::Regex,
    slot: usize,
}

/// Hands out cache slots while a rule set is compiled.
#[derive(Default)]
pub struct Slots(usize);

impl Slots {
    fn next(&mut self) -> usize {
        self.0 += 1;
        self.0 - 1
    }

    /// Compiles one pattern; `nfa` bounds its compiled size, `dfa` its lazy-DFA cache (bytes).
    pub fn regex(&mut self, pattern: &str, nfa: usize, dfa: usize) -> Result<Re, String> {
        let config = config(nfa, dfa).match_kind(MatchKind::LeftmostFirst).which_captures(WhichCaptures::Implicit);
        let re = meta::Builder::new().configure(config).syntax(syntax()).build(pattern).map_err(|e| e.to_string())?;
        Ok(Re { re, slot: self.next() })
    }

    /// Compiles patterns as one set.
    pub fn set(&mut self, patterns: &[&str], nfa: usize, dfa: usize) -> Result<Set, String> {
        let config = config(nfa, dfa).match_kind(MatchKind::All).which_captures(WhichCaptures::None);
        let re = meta::Builder::new().configure(config).syntax(syntax()).build_many(patterns).map_err(|e| e.to_string())?;
        Ok(Set { re, slot: self.next() })
    }

    /// A pool of scratches with a slot for every regex and set compiled so far.
    pub fn pool(&self) -> ScratchPool {
        ScratchPool { slots: self.0, free: Mutex::new(Vec::new()) }
    }
}

fn config(nfa: usize, dfa: usize) -> meta::Config {
    meta::Config::new().nfa_size_limit(Some(nfa)).hybrid_cache_capacity(dfa).utf8_empty(false)
}

fn syntax() -> syntax::Config {
    syntax::Config::new().utf8(false)
}

impl Re {
    pub fn is_match(&self, scratch: &mut Scratch, text: &[u8]) -> bool {
        self.re.is_match_with(scratch.cache(self.slot, &self.re), &Input::new(text))
    }

    /// Non-overlapping matches in `text`, at most `max` (`find_iter(text).take(max).count()`).
    pub fn count(&self, scratch: &mut Scratch, text: &[u8], max: usize) -> usize {
        let cache = scratch.cache(self.slot, &self.re);
        let mut it = Searcher::new(Input::new(text));
        let mut n = 0;
        while n < max && it.advance(|input| Ok(self.re.search_with(cache, input))).is_some() {
            n += 1;
        }
        n
    }
}

impl Set {
    /// Whether any pattern matches somewhere in `text`.
    pub fn is_match(&self, scratch: &mut Scratch, text: &[u8]) -> bool {
        self.re.is_match_with(scratch.cache(self.slot, &self.re), &Input::new(text))
    }

    /// Calls `each` with the index of every pattern that matches somewhere in `text`, ascending.
    pub fn matches(&self, scratch: &mut Scratch, text: &[u8], mut each: impl FnMut(usize)) {
        let mut found = PatternSet::new(self.re.pattern_len());
        self.re.which_overlapping_matches_with(scratch.cache(self.slot, &self.re), &Input::new(text), &mut found);
        found.iter().for_each(|p| each(p.as_usize()));
    }
}

/// One evaluation's search caches, by slot, each created on first use.
pub struct Scratch {
    caches: Vec<Option<Cache>>,
    /// Whether each cache was used since the last [`Scratch::trim`].
    used: Vec<bool>,
}

impl Scratch {
    fn new(slots: usize) -> Scratch {
        Scratch { caches: (0..slots).map(|_| None).collect(), used: vec![false; slots] }
    }

    fn cache(&mut self, slot: usize, re: &meta::Regex) -> &mut Cache {
        self.used[slot] = true;
        self.caches[slot].get_or_insert_with(|| re.create_cache())
    }

    /// Heap bytes held by the caches.
    fn memory_usage(&self) -> usize {
        self.caches.iter().flatten().map(Cache::memory_usage).sum()
    }

    /// Keeps the caches within `budget` bytes: above it, drops caches until they hold at most
    /// three quarters of it (so the next messages do not trim again at once), those this
    /// message did not use first, largest first.
    fn trim(&mut self, budget: usize) {
        let mut held: Vec<(bool, usize, usize)> = (self.caches.iter().enumerate())
            .filter_map(|(slot, cache)| cache.as_ref().map(|c| (self.used[slot], c.memory_usage(), slot)))
            .collect();
        let mut total: usize = held.iter().map(|(_, bytes, _)| bytes).sum();
        if total > budget {
            held.sort_unstable_by_key(|&(used, bytes, _)| (used, std::cmp::Reverse(bytes)));
            for (_, bytes, slot) in held {
                if total <= budget / 4 * 3 {
                    break;
                }
                self.caches[slot] = None;
                total -= bytes;
            }
        }
        self.used.iter_mut().for_each(|u| *u = false);
    }
}

/// The scratches of one rule set: one is taken per evaluation and given back trimmed.
pub struct ScratchPool {
    slots: usize,
    free: Mutex<Vec<Scratch>>,
}

impl ScratchPool {
    pub fn take(&self) -> Scratch {
        let reused = self.free.lock().ok().and_then(|mut free| free.pop());
        reused.unwrap_or_else(|| Scratch::new(self.slots))
    }

    pub fn give_back(&self, mut scratch: Scratch) {
        scratch.trim(BUDGET);
        if let Ok(mut free) = self.free.lock()
            && free.len() < KEEP
        {
            free.push(scratch);
        }
    }

    /// Cache bytes held by the scratches waiting for reuse.
    pub fn memory_usage(&self) -> usize {
        self.free.lock().map(|free| free.iter().map(Scratch::memory_usage).sum()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_matches_as_the_regex_crate() {
        let mut slots = Slots::default();
        let re = slots.regex(r"(?i-u)(a)(b)?c", 1 << 20, 1 << 20).expect("compiles");
        let set = slots.set(&[r"(?-u)x\d", r"(?-u)^y", r"(?-u)\xE4"], 1 << 20, 1 << 20).expect("compiles");
        let pool = slots.pool();
        let mut scratch = pool.take();
        let text = b"ac xABC abcx9 \xE4";
        assert!(re.is_match(&mut scratch, text));
        assert_eq!(
            re.count(&mut scratch, text, 10),
            regex::bytes::Regex::new(r"(?i-u)(a)(b)?c").expect("compiles").find_iter(text).count()
        );
        assert_eq!(re.count(&mut scratch, text, 2), 2, "at most max");
        let mut found = Vec::new();
        set.matches(&mut scratch, text, |i| found.push(i));
        assert_eq!(found, [0, 2]);
        pool.give_back(scratch);
        assert_eq!(pool.free.lock().map(|free| free.len()).unwrap_or(0), 1, "kept for the next message");
    }

    #[test]
    fn trim_drops_unused_then_largest_caches_down_to_the_budget() {
        let mut slots = Slots::default();
        let big = slots.regex(r"(?-u)[a-z]{1,30}[0-9]{1,30}", 1 << 22, 1 << 22).expect("compiles");
        let small = slots.regex(r"(?-u)q", 1 << 20, 1 << 20).expect("compiles");
        let pool = slots.pool();
        let mut scratch = pool.take();
        let text: Vec<u8> = (0..20_000u32).map(|i| b"ab0cd91xyz7"[(i * 7 % 11) as usize]).collect();
        assert!(big.is_match(&mut scratch, &text) && small.count(&mut scratch, &text, 5) == 0);
        let (big_bytes, small_bytes) =
            (scratch.caches[0].as_ref().map(Cache::memory_usage), scratch.caches[1].as_ref().map(Cache::memory_usage));
        let (big_bytes, small_bytes) = (big_bytes.expect("created"), small_bytes.expect("created"));
        scratch.trim(big_bytes + small_bytes);
        assert!(scratch.caches.iter().all(Option::is_some), "within budget: all kept");
        assert!(small.is_match(&mut scratch, b"q"));
        let small_bytes = scratch.caches[1].as_ref().map_or(small_bytes, Cache::memory_usage);
        scratch.trim(small_bytes / 3 * 4 + 4);
        assert!(scratch.caches[1].is_some() && scratch.caches[0].is_none(), "the unused cache goes first");
        assert!(big.is_match(&mut scratch, &text) && small.is_match(&mut scratch, b"q"), "a dropped cache is rebuilt");
        scratch.trim(1);
        assert_eq!(scratch.memory_usage(), 0);
    }
}
