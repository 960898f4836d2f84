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
//! Matching: each pattern is compiled once into a forward Thompson NFA, searched by a lazy DFA
//! (`regex_automata::hybrid`) with the PikeVM on the same NFA as the fallback when the lazy DFA
//! cannot be built or gives up (as `regex_automata::meta` does), with byte semantics,
//! leftmost-first for one regex and all matches for a set — the matches of
//! `regex::bytes::RegexBuilder` / `RegexSetBuilder`. Unlike `meta`, no reverse NFA or reverse
//! DFA is built: moat never asks where a match starts (a count of non-overlapping matches needs
//! only where each one ends), which saves their memory and the reverse searches.

use std::sync::Mutex;

use regex_automata::hybrid::dfa::{self as lazy, DFA};
use regex_automata::nfa::thompson::pikevm::{self, PikeVM};
use regex_automata::nfa::thompson::{self, NFA, WhichCaptures};
use regex_automata::util::iter::Searcher;
use regex_automata::util::prefilter::Prefilter;
use regex_automata::util::syntax;
use regex_automata::{HalfMatch, Input, MatchError, MatchKind, PatternSet};

/// Cache bytes a scratch may keep between messages. With the stock SpamAssassin rules a
/// scratch levels off near 50 MB on real mail (bench/rules-soak), so this is a bound for
/// unusual mail, not a working limit: trimming below the working set costs speed (measured:
/// 24 MB halved the throughput).
pub const BUDGET: usize = 64 * 1024 * 1024;
/// Scratches a rule set keeps for reuse (more exist only while more evaluations run at once).
const KEEP: usize = 8;

/// A compiled pattern (or set): the lazy DFA when it could be built, and the PikeVM.
struct Engine {
    dfa: Option<DFA>,
    vm: PikeVM,
}

/// One regex (`regex::bytes::Regex` semantics).
pub struct Re {
    engine: Engine,
    slot: usize,
}

/// Several regexes searched in one pass (`regex::bytes::RegexSet` semantics).
pub struct Set {
    engine: Engine,
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
        let engine = Engine::build(&[pattern], MatchKind::LeftmostFirst, nfa, dfa)?;
        Ok(Re { engine, slot: self.next() })
    }

    /// Compiles patterns as one set.
    pub fn set(&mut self, patterns: &[&str], nfa: usize, dfa: usize) -> Result<Set, String> {
        let engine = Engine::build(patterns, MatchKind::All, nfa, dfa)?;
        Ok(Set { engine, slot: self.next() })
    }

    /// A pool of scratches with a slot for every regex and set compiled so far.
    pub fn pool(&self) -> ScratchPool {
        ScratchPool { slots: self.0, free: Mutex::new(Vec::new()) }
    }
}

impl Engine {
    fn build(patterns: &[&str], kind: MatchKind, nfa_limit: usize, dfa_capacity: usize) -> Result<Engine, String> {
        let syntax = syntax::Config::new().utf8(false);
        let hirs = syntax::parse_many_with(patterns, &syntax).map_err(|e| e.to_string())?;
        // A set is only asked which patterns match, a regex where its matches end.
        let captures = if kind == MatchKind::All { WhichCaptures::None } else { WhichCaptures::Implicit };
        let config = thompson::Config::new().nfa_size_limit(Some(nfa_limit)).utf8(false).which_captures(captures);
        let nfa = thompson::Compiler::new().configure(config).build_many_from_hir(&hirs).map_err(|e| e.to_string())?;
        let prefilter = if kind == MatchKind::All { None } else { Prefilter::from_hirs_prefix(kind, &hirs) };
        let vm = PikeVM::builder()
            .configure(PikeVM::config().match_kind(kind).prefilter(prefilter.clone()))
            .build_from_nfa(nfa.clone())
            .map_err(|e| e.to_string())?;
        Ok(Engine { dfa: lazy_dfa(nfa, kind, prefilter, dfa_capacity), vm })
    }

    fn caches<'s>(&self, scratch: &'s mut Scratch, slot: usize) -> &'s mut SlotCaches {
        scratch.used[slot] = true;
        scratch.caches[slot].get_or_insert_with(SlotCaches::default)
    }

    /// Where the first match (leftmost-first) ends; needs the NFA's implicit captures.
    fn half(&self, caches: &mut SlotCaches, input: &Input<'_>) -> Option<HalfMatch> {
        if let Some(found) = self.dfa_search(caches, input) {
            return found;
        }
        let cache = caches.vm.get_or_insert_with(|| self.vm.create_cache());
        self.vm.find(cache, input.clone()).map(|m| HalfMatch::new(m.pattern(), m.end()))
    }

    fn is_match(&self, caches: &mut SlotCaches, text: &[u8]) -> bool {
        let input = Input::new(text).earliest(true);
        if let Some(found) = self.dfa_search(caches, &input) {
            return found.is_some();
        }
        let cache = caches.vm.get_or_insert_with(|| self.vm.create_cache());
        self.vm.is_match(cache, input)
    }

    /// The lazy DFA's answer, or None when there is no lazy DFA or it gave up.
    fn dfa_search(&self, caches: &mut SlotCaches, input: &Input<'_>) -> Option<Option<HalfMatch>> {
        let dfa = self.dfa.as_ref()?;
        let cache = caches.dfa.get_or_insert_with(|| dfa.create_cache());
        dfa.try_search_fwd(cache, input).ok()
    }
}

/// The lazy DFA over `nfa`, configured as `regex_automata::meta` configures its own (it gives
/// up on a search that keeps clearing its cache, and the PikeVM answers instead); None when its
/// cache could not hold even a few states.
fn lazy_dfa(nfa: NFA, kind: MatchKind, prefilter: Option<Prefilter>, capacity: usize) -> Option<DFA> {
    let config = lazy::Config::new()
        .match_kind(kind)
        .specialize_start_states(prefilter.is_some())
        .prefilter(prefilter)
        .unicode_word_boundary(true)
        .cache_capacity(capacity)
        .skip_cache_capacity_check(false)
        .minimum_cache_clear_count(Some(3))
        .minimum_bytes_per_state(Some(10));
    lazy::Builder::new().configure(config).build_from_nfa(nfa).ok()
}

impl Re {
    pub fn is_match(&self, scratch: &mut Scratch, text: &[u8]) -> bool {
        self.engine.is_match(self.engine.caches(scratch, self.slot), text)
    }

    /// Non-overlapping matches in `text`, at most `max` (`find_iter(text).take(max).count()`):
    /// each search starts where the previous match ended, and an empty match right there is
    /// skipped, so only the ends are needed.
    pub fn count(&self, scratch: &mut Scratch, text: &[u8], max: usize) -> usize {
        let caches = self.engine.caches(scratch, self.slot);
        let mut it = Searcher::new(Input::new(text));
        let mut n = 0;
        while n < max && it.advance_half(|input| Ok::<_, MatchError>(self.engine.half(caches, input))).is_some() {
            n += 1;
        }
        n
    }
}

impl Set {
    /// Whether any pattern matches somewhere in `text`.
    pub fn is_match(&self, scratch: &mut Scratch, text: &[u8]) -> bool {
        self.engine.is_match(self.engine.caches(scratch, self.slot), text)
    }

    /// Calls `each` with the index of every pattern that matches somewhere in `text`, ascending.
    pub fn matches(&self, scratch: &mut Scratch, text: &[u8], mut each: impl FnMut(usize)) {
        let engine = &self.engine;
        let caches = engine.caches(scratch, self.slot);
        let input = Input::new(text);
        let mut found = PatternSet::new(engine.vm.get_nfa().pattern_len());
        let by_dfa = engine.dfa.as_ref().is_some_and(|dfa| {
            let cache = caches.dfa.get_or_insert_with(|| dfa.create_cache());
            dfa.try_which_overlapping_matches(cache, &input, &mut found).is_ok()
        });
        if !by_dfa {
            found.clear();
            let cache = caches.vm.get_or_insert_with(|| engine.vm.create_cache());
            engine.vm.which_overlapping_matches(cache, &input, &mut found);
        }
        found.iter().for_each(|p| each(p.as_usize()));
    }
}

/// The caches of one regex or set, each made when first needed (the PikeVM's only when the
/// lazy DFA could not answer).
#[derive(Default)]
struct SlotCaches {
    dfa: Option<lazy::Cache>,
    vm: Option<pikevm::Cache>,
}

impl SlotCaches {
    fn memory_usage(&self) -> usize {
        self.dfa.as_ref().map_or(0, lazy::Cache::memory_usage) + self.vm.as_ref().map_or(0, pikevm::Cache::memory_usage)
    }
}

/// One evaluation's search caches, by slot, each created on first use.
pub struct Scratch {
    caches: Vec<Option<SlotCaches>>,
    /// Whether each cache was used since the last [`Scratch::trim`].
    used: Vec<bool>,
}

impl Scratch {
    fn new(slots: usize) -> Scratch {
        Scratch { caches: (0..slots).map(|_| None).collect(), used: vec![false; slots] }
    }

    /// Heap bytes held by the caches.
    fn memory_usage(&self) -> usize {
        self.caches.iter().flatten().map(SlotCaches::memory_usage).sum()
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

    /// Counts and set matches as the regex crate finds them, through the lazy DFA and, with no
    /// room for a lazy DFA (capacity 0), through the PikeVM alone.
    #[test]
    fn counts_and_sets_agree_with_the_regex_crate_with_and_without_a_lazy_dfa() {
        let patterns = [r"(?-u)a*", r"(?i-u)\bfree\b", r"(?-u)x|", r"(?-u)\d{2,}"];
        let text = b"baaac FREE free! x1 23 456 freedom";
        for capacity in [1 << 20, 0] {
            let mut slots = Slots::default();
            let res: Vec<Re> = patterns.iter().map(|p| slots.regex(p, 1 << 20, capacity).expect("compiles")).collect();
            let set = slots.set(&patterns, 1 << 20, capacity).expect("compiles");
            let words = slots.set(&patterns[1..2], 1 << 20, capacity).expect("compiles");
            assert_eq!(res[0].engine.dfa.is_some(), capacity > 0, "a lazy DFA only when it has room");
            let pool = slots.pool();
            let mut scratch = pool.take();
            for (re, pattern) in res.iter().zip(patterns) {
                let expected = regex::bytes::Regex::new(pattern).expect("compiles");
                assert_eq!(re.count(&mut scratch, text, 100), expected.find_iter(text).count(), "{pattern}");
                assert_eq!(re.is_match(&mut scratch, b"zzz"), expected.is_match(b"zzz"), "{pattern}");
            }
            let mut found = Vec::new();
            set.matches(&mut scratch, b"FREE 7", |i| found.push(i));
            assert_eq!(found, regex::bytes::RegexSet::new(patterns).expect("compiles").matches(b"FREE 7").into_iter().collect::<Vec<_>>());
            assert!(set.is_match(&mut scratch, b""), "a*: the empty match counts");
            assert!(words.is_match(&mut scratch, b"it's FREE") && !words.is_match(&mut scratch, b"freedom 7"));
        }
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
            (scratch.caches[0].as_ref().map(SlotCaches::memory_usage), scratch.caches[1].as_ref().map(SlotCaches::memory_usage));
        let (big_bytes, small_bytes) = (big_bytes.expect("created"), small_bytes.expect("created"));
        scratch.trim(big_bytes + small_bytes);
        assert!(scratch.caches.iter().all(Option::is_some), "within budget: all kept");
        assert!(small.is_match(&mut scratch, b"q"));
        let small_bytes = scratch.caches[1].as_ref().map_or(small_bytes, SlotCaches::memory_usage);
        scratch.trim(small_bytes / 3 * 4 + 4);
        assert!(scratch.caches[1].is_some() && scratch.caches[0].is_none(), "the unused cache goes first");
        assert!(big.is_match(&mut scratch, &text) && small.is_match(&mut scratch, b"q"), "a dropped cache is rebuilt");
        scratch.trim(1);
        assert_eq!(scratch.memory_usage(), 0);
    }
}
