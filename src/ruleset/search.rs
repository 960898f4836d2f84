//! Regexes searched with caches shared by the rule threads, within one bound for the process.
//!
//! Why (issue 20): a `regex::bytes::Regex` keeps a hidden pool of search caches (lazy DFA,
//! PikeVM, backtracker), one per thread using it, for the life of the regex; nothing bounds
//! their sum, and with SpamAssassin's stock rules they grew with the traffic. A cache per rule
//! thread was bounded but still paid the working set (about 58 MB of lazy-DFA states with the
//! stock rules on real mail) once per thread. Here every compiled regex and set owns its caches,
//! one per *stripe*, each behind its own lock and held only for one search: the rule threads
//! share them (one stripe for every [`THREADS_PER_STRIPE`] rule threads), so the lazy DFAs' states are
//! built once for all threads instead of once per thread. Measured on 2 cores: the same
//! throughput, 66 MB less resident.
//!
//! Guarantees: after each evaluation, when the caches of all regexes hold more than [`BUDGET`]
//! bytes per stripe, caches are dropped (least recently used first, then largest) until they hold
//! three quarters of it; a dropped cache is rebuilt when next needed. Each cache stays within its
//! lazy-DFA capacity meanwhile. [`SearchCaches::memory_usage`] reports the bytes held. A lock
//! poisoned by a panic in a search gets a fresh cache, never the half-written one.
//!
//! Matching: each pattern is compiled once into a forward Thompson NFA, searched by a lazy DFA
//! (`regex_automata::hybrid`) with the PikeVM on the same NFA as the fallback when the lazy DFA
//! cannot be built or gives up (as `regex_automata::meta` does), with byte semantics,
//! leftmost-first for one regex and all matches for a set — the matches of
//! `regex::bytes::RegexBuilder` / `RegexSetBuilder`. Unlike `meta`, no reverse NFA or reverse
//! DFA is built: moat never asks where a match starts (a count of non-overlapping matches needs
//! only where each one ends), which saves their memory and the reverse searches.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use regex_automata::hybrid::dfa::{self as lazy, DFA};
use regex_automata::nfa::thompson::pikevm::{self, PikeVM};
use regex_automata::nfa::thompson::{self, NFA, WhichCaptures};
use regex_automata::util::iter::Searcher;
use regex_automata::util::prefilter::Prefilter;
use regex_automata::util::syntax;
use regex_automata::{Anchored, HalfMatch, Input, MatchError, MatchKind, PatternSet};
use regex_syntax::hir::Hir;

/// Cache bytes the regexes may keep between evaluations, per stripe. With the stock
/// SpamAssassin rules the caches would level off near 58 MB on real mail (bench/rules-soak);
/// trimmed to this they keep the hot part (44 MB, 15 MB less resident, no throughput lost that
/// paired runs could tell from noise), and far below it searching slows (24 MB halved the
/// throughput).
pub const BUDGET: usize = 48 * 1024 * 1024;
/// Rule threads that share one set of caches. Two threads on one stripe searched as fast as with
/// a stripe each (bench/rules-soak, 2 cores); more threads per stripe would wait for each other
/// on the literal-less sets every body line runs through.
pub const THREADS_PER_STRIPE: usize = 2;

/// A compiled pattern (or set): the lazy DFA when it could be built, the PikeVM, and their
/// caches, one per stripe.
struct Engine {
    dfa: Option<DFA>,
    vm: PikeVM,
    caches: Box<[Mutex<SlotCaches>]>,
    /// Bytes each stripe's cache held after its last search.
    bytes: Box<[AtomicUsize]>,
    /// The evaluation that last searched with this engine (see [`Scratch::epoch`]).
    last_used: AtomicU64,
}

/// One regex (`regex::bytes::Regex` semantics).
pub struct Re {
    engine: Arc<Engine>,
}

/// Several regexes searched in one pass (`regex::bytes::RegexSet` semantics).
pub struct Set {
    engine: Arc<Engine>,
}

/// Compiles regexes and sets, and keeps a handle on each so their caches can be bounded.
pub struct Slots {
    stripes: usize,
    engines: Vec<Arc<Engine>>,
}

impl Default for Slots {
    /// One stripe per [`THREADS_PER_STRIPE`] rule threads.
    fn default() -> Slots {
        Slots::with_stripes(super::rule_threads().div_ceil(THREADS_PER_STRIPE))
    }
}

impl Slots {
    pub fn with_stripes(stripes: usize) -> Slots {
        Slots { stripes: stripes.max(1), engines: Vec::new() }
    }

    fn keep(&mut self, engine: Engine) -> Arc<Engine> {
        let engine = Arc::new(engine);
        self.engines.push(engine.clone());
        engine
    }

    /// Compiles one pattern; `nfa` bounds its compiled size, `dfa` its lazy-DFA cache (bytes).
    pub fn regex(&mut self, pattern: &str, nfa: usize, dfa: usize) -> Result<Re, String> {
        let engine = Engine::build(&[pattern], MatchKind::LeftmostFirst, nfa, dfa, self.stripes)?;
        Ok(Re { engine: self.keep(engine) })
    }

    /// Compiles patterns as one set.
    #[cfg(test)]
    pub fn set(&mut self, patterns: &[&str], nfa: usize, dfa: usize) -> Result<Set, String> {
        let hirs = syntax::parse_many_with(patterns, &syntax::Config::new().utf8(false)).map_err(|e| e.to_string())?;
        self.set_of(&hirs, nfa, dfa)
    }

    /// Compiles parsed patterns (`utf8(false)`) as one set.
    pub fn set_of(&mut self, hirs: &[Hir], nfa: usize, dfa: usize) -> Result<Set, String> {
        let engine = Engine::from_hirs(hirs, MatchKind::All, nfa, dfa, self.stripes)?;
        Ok(Set { engine: self.keep(engine) })
    }

    /// The caches of every regex and set compiled so far and still held by a rule, bounded
    /// together. A regex its rule dropped (its always-set answers for it) is left out, so it is
    /// freed with the `Slots`.
    pub fn caches(&self) -> SearchCaches {
        let held = self.engines.iter().filter(|e| Arc::strong_count(e) > 1).cloned().collect();
        SearchCaches { engines: held, stripes: self.stripes, epoch: AtomicU64::new(0) }
    }
}

impl Engine {
    fn build(patterns: &[&str], kind: MatchKind, nfa_limit: usize, dfa_capacity: usize, stripes: usize) -> Result<Engine, String> {
        let hirs = syntax::parse_many_with(patterns, &syntax::Config::new().utf8(false)).map_err(|e| e.to_string())?;
        Engine::from_hirs(&hirs, kind, nfa_limit, dfa_capacity, stripes)
    }

    fn from_hirs(hirs: &[Hir], kind: MatchKind, nfa_limit: usize, dfa_capacity: usize, stripes: usize) -> Result<Engine, String> {
        // A set is only asked which patterns match, a regex where its matches end.
        let captures = if kind == MatchKind::All { WhichCaptures::None } else { WhichCaptures::Implicit };
        let config = thompson::Config::new().nfa_size_limit(Some(nfa_limit)).utf8(false).which_captures(captures);
        let nfa = thompson::Compiler::new().configure(config).build_many_from_hir(hirs).map_err(|e| e.to_string())?;
        let prefilter = if kind == MatchKind::All { None } else { Prefilter::from_hirs_prefix(kind, hirs) };
        let vm = PikeVM::builder()
            .configure(PikeVM::config().match_kind(kind).prefilter(prefilter.clone()))
            .build_from_nfa(nfa.clone())
            .map_err(|e| e.to_string())?;
        Ok(Engine {
            dfa: lazy_dfa(nfa, kind, prefilter, dfa_capacity),
            vm,
            caches: (0..stripes).map(|_| Mutex::new(SlotCaches::default())).collect(),
            bytes: (0..stripes).map(|_| AtomicUsize::new(0)).collect(),
            last_used: AtomicU64::new(0),
        })
    }

    /// Runs `search` with this engine's cache of the evaluation's stripe, locked for that long.
    fn with_caches<T>(&self, scratch: &Scratch, search: impl FnOnce(&Engine, &mut SlotCaches) -> T) -> T {
        let stripe = scratch.stripe % self.caches.len();
        let mut caches = lock(&self.caches[stripe]);
        let found = search(self, &mut caches);
        self.bytes[stripe].store(caches.memory_usage(), Ordering::Relaxed);
        self.last_used.fetch_max(scratch.epoch, Ordering::Relaxed);
        found
    }

    /// Drops the cache of `stripe`.
    fn drop_cache(&self, stripe: usize) {
        *lock(&self.caches[stripe]) = SlotCaches::default();
        self.bytes[stripe].store(0, Ordering::Relaxed);
    }

    /// Where the first match (leftmost-first) ends; needs the NFA's implicit captures.
    fn half(&self, caches: &mut SlotCaches, input: &Input<'_>) -> Option<HalfMatch> {
        if let Some(found) = self.dfa_search(caches, input) {
            return found;
        }
        let cache = caches.vm.get_or_insert_with(|| self.vm.create_cache());
        self.vm.find(cache, input.clone()).map(|m| HalfMatch::new(m.pattern(), m.end()))
    }

    fn is_match(&self, caches: &mut SlotCaches, input: Input<'_>) -> bool {
        let input = input.earliest(true);
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

/// Locks a cache; one poisoned by a panic mid-search is replaced by a fresh one.
fn lock(cache: &Mutex<SlotCaches>) -> MutexGuard<'_, SlotCaches> {
    match cache.lock() {
        Ok(guard) => guard,
        Err(poisoned) => {
            let mut guard = poisoned.into_inner();
            *guard = SlotCaches::default();
            cache.clear_poison();
            guard
        }
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
        self.engine.with_caches(scratch, |engine, caches| engine.is_match(caches, Input::new(text)))
    }

    /// Whether a match starts at `at` in `text` (assertions such as `\b` see the bytes before it).
    pub fn matches_at(&self, scratch: &mut Scratch, text: &[u8], at: usize) -> bool {
        let input = Input::new(text).range(at..).anchored(Anchored::Yes);
        self.engine.with_caches(scratch, |engine, caches| engine.is_match(caches, input))
    }

    /// Non-overlapping matches in `text`, at most `max` (`find_iter(text).take(max).count()`):
    /// each search starts where the previous match ended, and an empty match right there is
    /// skipped, so only the ends are needed.
    pub fn count(&self, scratch: &mut Scratch, text: &[u8], max: usize) -> usize {
        self.engine.with_caches(scratch, |engine, caches| {
            let mut it = Searcher::new(Input::new(text));
            let mut n = 0;
            while n < max && it.advance_half(|input| Ok::<_, MatchError>(engine.half(caches, input))).is_some() {
                n += 1;
            }
            n
        })
    }
}

impl Set {
    /// Whether any pattern matches somewhere in `text`.
    pub fn is_match(&self, scratch: &mut Scratch, text: &[u8]) -> bool {
        self.engine.with_caches(scratch, |engine, caches| engine.is_match(caches, Input::new(text)))
    }

    /// Calls `each` with the index of every pattern that matches somewhere in `text`, ascending.
    pub fn matches(&self, scratch: &mut Scratch, text: &[u8], mut each: impl FnMut(usize)) {
        let found = self.engine.with_caches(scratch, |engine, caches| {
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
            found
        });
        found.iter().for_each(|p| each(p.as_usize()));
    }
}

/// The caches of one regex or set in one stripe, each made when first needed (the PikeVM's
/// only when the lazy DFA could not answer).
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

/// One evaluation's claim on the caches: which stripe it searches with (its thread's) and
/// its place in the order of evaluations (for least-recently-used trimming).
pub struct Scratch {
    stripe: usize,
    epoch: u64,
}

thread_local! {
    /// This thread's stripe number, assigned on its first evaluation.
    static STRIPE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Stripe numbers handed to threads, in turn.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

/// The caches of one rule set's regexes and sets, bounded together after each evaluation.
pub struct SearchCaches {
    engines: Vec<Arc<Engine>>,
    stripes: usize,
    /// Evaluations begun.
    epoch: AtomicU64,
}

impl SearchCaches {
    /// Begins an evaluation on this thread.
    pub fn take(&self) -> Scratch {
        let stripe = STRIPE.with(|s| {
            s.get().unwrap_or_else(|| {
                let n = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
                s.set(Some(n));
                n
            })
        });
        Scratch { stripe: stripe % self.stripes, epoch: self.epoch.fetch_add(1, Ordering::Relaxed) + 1 }
    }

    /// Ends an evaluation: trims the caches when they hold more than the budget.
    pub fn give_back(&self, scratch: Scratch) {
        let _ = scratch;
        self.trim(BUDGET * self.stripes);
    }

    /// Keeps the caches within `budget` bytes: above it, drops caches until they hold at most
    /// three quarters of it, least recently used first, the largest first among equals.
    fn trim(&self, budget: usize) {
        let mut total = self.memory_usage();
        if total <= budget {
            return;
        }
        let mut held: Vec<(u64, std::cmp::Reverse<usize>, usize, usize)> = Vec::new();
        for (e, engine) in self.engines.iter().enumerate() {
            let used = engine.last_used.load(Ordering::Relaxed);
            for (stripe, bytes) in engine.bytes.iter().enumerate() {
                let bytes = bytes.load(Ordering::Relaxed);
                if bytes > 0 {
                    held.push((used, std::cmp::Reverse(bytes), e, stripe));
                }
            }
        }
        held.sort_unstable();
        for (_, std::cmp::Reverse(bytes), e, stripe) in held {
            if total <= budget / 4 * 3 {
                break;
            }
            self.engines[e].drop_cache(stripe);
            total = total.saturating_sub(bytes);
        }
    }

    /// Heap bytes held by the caches (as of each one's last search).
    pub fn memory_usage(&self) -> usize {
        self.engines.iter().flat_map(|e| e.bytes.iter()).map(|b| b.load(Ordering::Relaxed)).sum()
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
        let caches = slots.caches();
        let mut scratch = caches.take();
        let text = b"ac xABC abcx9 \xE4";
        assert!(re.is_match(&mut scratch, text));
        assert_eq!(
            re.count(&mut scratch, text, 10),
            regex::bytes::Regex::new(r"(?i-u)(a)(b)?c").expect("compiles").find_iter(text).count()
        );
        assert_eq!(re.count(&mut scratch, text, 2), 2, "at most max");
        assert!(re.matches_at(&mut scratch, text, 0) && re.matches_at(&mut scratch, text, 4) && !re.matches_at(&mut scratch, text, 3));
        let word = slots.regex(r"(?-u)\bfoo", 1 << 20, 1 << 20).expect("compiles");
        assert!(word.matches_at(&mut scratch, b"a foo", 2) && !word.matches_at(&mut scratch, b"afoo", 1), "\\b sees the byte before");
        let mut found = Vec::new();
        set.matches(&mut scratch, text, |i| found.push(i));
        assert_eq!(found, [0, 2]);
        caches.give_back(scratch);
        assert!(caches.memory_usage() > 0, "kept for the next message");
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
            let caches = slots.caches();
            let mut scratch = caches.take();
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

    fn bytes(re: &Re) -> usize {
        re.engine.bytes.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    #[test]
    fn trim_drops_the_least_recently_used_then_the_largest_caches_down_to_the_budget() {
        let mut slots = Slots::with_stripes(1);
        let big = slots.regex(r"(?-u)[a-z]{1,30}[0-9]{1,30}", 1 << 22, 1 << 22).expect("compiles");
        let small = slots.regex(r"(?-u)q", 1 << 20, 1 << 20).expect("compiles");
        let caches = slots.caches();
        let mut scratch = caches.take();
        let text: Vec<u8> = (0..20_000u32).map(|i| b"ab0cd91xyz7"[(i * 7 % 11) as usize]).collect();
        assert!(big.is_match(&mut scratch, &text) && small.count(&mut scratch, &text, 5) == 0);
        let (big_bytes, small_bytes) = (bytes(&big), bytes(&small));
        assert!(big_bytes > small_bytes && small_bytes > 0);
        caches.trim(big_bytes + small_bytes);
        assert_eq!((bytes(&big), bytes(&small)), (big_bytes, small_bytes), "within budget: all kept");
        let mut next = caches.take();
        assert!(small.is_match(&mut next, b"q"));
        caches.trim(bytes(&small) / 3 * 4 + 4);
        assert!(bytes(&small) > 0 && bytes(&big) == 0, "the cache the last evaluation did not use goes first");
        assert!(big.is_match(&mut next, &text) && small.is_match(&mut next, b"q"), "a dropped cache is rebuilt");
        caches.trim(1);
        assert_eq!(caches.memory_usage(), 0);
    }

    /// A regex no rule holds any more is not kept by the caches: it is freed once the `Slots`
    /// that compiled it is.
    #[test]
    fn a_dropped_regex_is_not_kept_by_the_caches() {
        let mut slots = Slots::default();
        let kept = slots.regex(r"(?-u)kept", 1 << 20, 1 << 20).expect("compiles");
        let dropped = slots.regex(r"(?-u)dropped", 1 << 20, 1 << 20).expect("compiles");
        let weak = Arc::downgrade(&dropped.engine);
        drop(dropped);
        let caches = slots.caches();
        drop(slots);
        assert!(weak.upgrade().is_none(), "freed");
        assert_eq!(caches.engines.len(), 1);
        let mut scratch = caches.take();
        assert!(kept.is_match(&mut scratch, b"is kept"));
    }

    /// Two threads on one stripe build one cache between them; on two stripes, one each.
    #[test]
    fn rule_threads_share_the_caches_of_their_stripe() {
        for stripes in [1, 2] {
            let mut slots = Slots::with_stripes(stripes);
            let re = slots.regex(r"(?-u)[a-z]{1,30}[0-9]{1,30}", 1 << 22, 1 << 22).expect("compiles");
            let caches = slots.caches();
            let text: Vec<u8> = (0..20_000u32).map(|i| b"ab0cd91xyz7"[(i * 7 % 11) as usize]).collect();
            let search = || {
                let mut scratch = caches.take();
                assert!(re.is_match(&mut scratch, &text));
                let stripe = scratch.stripe;
                caches.give_back(scratch);
                stripe
            };
            let first = std::thread::scope(|s| s.spawn(search).join()).expect("searches");
            let one = caches.memory_usage();
            // Fresh threads take the next stripe numbers in turn (other tests' threads take some
            // too): one of a few lands on the other stripe when there are two.
            let other = (0..64).map(|_| std::thread::scope(|s| s.spawn(search).join()).expect("searches")).find(|&s| s != first);
            assert_eq!(other.is_some(), stripes == 2);
            let held = re.engine.bytes.iter().filter(|b| b.load(Ordering::Relaxed) > 0).count();
            assert_eq!(held, stripes, "caches built with {stripes} stripe(s)");
            assert_eq!(caches.memory_usage() == one, stripes == 1);
        }
    }

    #[test]
    fn a_cache_poisoned_by_a_panic_is_replaced_by_a_fresh_one() {
        let mut slots = Slots::with_stripes(1);
        let re = slots.regex(r"(?-u)a+b", 1 << 20, 1 << 20).expect("compiles");
        let caches = slots.caches();
        let mut scratch = caches.take();
        assert!(re.is_match(&mut scratch, b"xaab"));
        let engine = re.engine.clone();
        let poisoned = std::thread::spawn(move || {
            let _guard = engine.caches[0].lock();
            panic!("a search panicked");
        })
        .join();
        assert!(poisoned.is_err() && re.engine.caches[0].is_poisoned());
        assert!(re.is_match(&mut scratch, b"xaab") && !re.is_match(&mut scratch, b"xaa"), "searching goes on");
        assert!(!re.engine.caches[0].is_poisoned());
    }
}
