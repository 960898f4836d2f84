//! Running a compiled rule set over one message.
//!
//! Order: header rules (each distinct header value computed once) and `eval:` functions, then body, rawbody, uri and
//! full rules over their segments with the Aho-Corasick prefilter choosing candidate rules per
//! segment (rules without a literal: their sets, searched once over all the segments joined
//! where their patterns allow it (see `joined`), else each first searched once over all the
//! segments joined, then only where that found something), then metas in dependency order. Rules nobody needs (score 0 and no meta reads them)
//! are not run, nor text rules that only metas already settled by the header rules and eval
//! functions read (see `prune`). Work is bounded by the message view's limits and, for backtracking regexes, by
//! the backtrack limit. Never panics.

use super::RuleHit;
use super::compile::{Compiled, TextGroup};
use super::evalfn::EvalCx;
use super::joined::Joins;
use super::message::ParsedMessage;
use super::prefilter::Seen;
use super::search::Scratch;

impl Compiled {
    pub fn evaluate(&self, msg: &ParsedMessage) -> Vec<RuleHit> {
        let values = self.values(msg, &self.needed, true);
        values
            .iter()
            .enumerate()
            .filter(|(i, v)| hit(**v) && self.reportable[*i])
            .map(|(i, _)| RuleHit { name: self.names[i].clone(), score: self.scores[i], description: self.descriptions[i].clone() })
            .collect()
    }

    /// Every rule's value (0 = not hit), all rules run.
    pub fn evaluate_all(&self, msg: &ParsedMessage) -> Vec<(String, f64)> {
        let all = vec![true; self.names.len()];
        let values = self.values(msg, &all, false);
        values.iter().enumerate().filter(|(_, v)| hit(**v)).map(|(i, v)| (self.names[i].clone(), *v)).collect()
    }

    /// Every `needed` rule's value (NaN: unknown, see `filtereval`), text rules skipped where
    /// nothing reported depends on them when `prune` (see `prune`); the search caches are
    /// trimmed to their budget afterwards.
    fn values(&self, msg: &ParsedMessage, needed: &[bool], prune: bool) -> Vec<f64> {
        let mut scratch = self.caches.take();
        let values = self.values_with(msg, needed, prune, &mut scratch);
        self.caches.give_back(scratch);
        values
    }

    fn values_with(&self, msg: &ParsedMessage, needed: &[bool], prune: bool, scratch: &mut Scratch) -> Vec<f64> {
        let mut values = self.early_values(msg, needed, scratch);
        let pruned;
        let text_needed = if prune {
            pruned = self.still_needed(&values, needed);
            &pruned[..]
        } else {
            needed
        };
        let subject_skip = usize::from(msg.body_lines(false).len() != msg.body_lines(true).len());
        let body: Vec<&[u8]> = msg.body_lines(false).iter().map(|s| s.as_bytes()).collect();
        self.run_group(&self.body, &body, subject_skip, text_needed, &mut values, scratch);
        let raw: Vec<&[u8]> = msg.rawbody_chunks().iter().map(|s| s.as_bytes()).collect();
        self.run_group(&self.rawbody, &raw, 0, text_needed, &mut values, scratch);
        let uris: Vec<&[u8]> = msg.uris().iter().map(|s| s.as_bytes()).collect();
        self.run_group(&self.uri, &uris, 0, text_needed, &mut values, scratch);
        self.run_group(&self.full, &[msg.full()], 0, text_needed, &mut values, scratch);
        for ((id, expr), unknown_if) in self.metas.iter().zip(&self.meta_unknown_if) {
            if needed[*id] {
                let unknown = unknown_if.as_ref().is_some_and(|inputs| inputs.iter().any(|&r| values.get(r).is_some_and(|v| v.is_nan())));
                values[*id] = if unknown { f64::NAN } else { expr.eval(&|r| values.get(r).copied().unwrap_or(0.0)) };
            }
        }
        values
    }

    /// The values of the rules that run before the text rules: header rules and `eval:`
    /// functions (0 for the others).
    pub(super) fn early_values(&self, msg: &ParsedMessage, needed: &[bool], scratch: &mut Scratch) -> Vec<f64> {
        let mut values = vec![0.0f64; self.names.len()];
        self.eval_headers(msg, needed, &mut values, scratch);
        let cx = EvalCx::new(msg, &self.eval_config);
        for (id, function) in &self.evals {
            if needed[*id] && function.hit(&cx) {
                values[*id] = 1.0;
            }
        }
        for (id, function) in &self.filter_evals {
            if needed[*id] {
                values[*id] = function.answer(msg).map_or(f64::NAN, |hit| f64::from(u8::from(hit)));
            }
        }
        values
    }

    fn eval_headers(&self, msg: &ParsedMessage, needed: &[bool], values: &mut [f64], scratch: &mut Scratch) {
        for (id, name) in &self.exists {
            if needed[*id] && msg.has_header(name) {
                values[*id] = 1.0;
            }
        }
        let (mut tried, mut seen) = (Vec::new(), Seen::default());
        for (key, group) in &self.headers {
            if !group.rules.iter().any(|r| needed[r.id]) {
                continue;
            }
            let value = msg.value_for(key);
            group.candidates(value.as_deref().unwrap_or("").as_bytes(), &mut seen, &mut tried);
            for (k, r) in group.rules.iter().enumerate().filter(|(_, r)| needed[r.id]) {
                // A rule's if-unset default was not prefiltered: it is always tried.
                let (text, prefiltered) = match (&value, &r.if_unset) {
                    (Some(v), _) => (v.as_str(), true),
                    (None, Some(d)) => (d.as_str(), false),
                    (None, None) => ("", true),
                };
                let n = if !prefiltered || tried[k] { r.matcher.count(scratch, text.as_bytes(), r.max) } else { 0 };
                let hit = if r.negate { u32::from(n == 0) } else { n };
                values[r.id] = f64::from(hit);
            }
        }
        for (key, rules) in &self.mime {
            if !rules.iter().any(|r| needed[r.id]) {
                continue;
            }
            let parts = msg.mime_values(key);
            for r in rules.iter().filter(|r| needed[r.id]) {
                let mut n = 0;
                for v in &parts {
                    if n >= r.max {
                        break;
                    }
                    n += r.matcher.count(scratch, v.as_bytes(), r.max - n);
                }
                let hit = if r.negate { u32::from(n == 0) } else { n };
                values[r.id] = f64::from(hit);
            }
        }
    }

    /// Runs one group over its segments. Segments before `skip_first` are invisible to
    /// `nosubject` rules.
    fn run_group(&self, g: &TextGroup, segments: &[&[u8]], skip_first: usize, needed: &[bool], values: &mut [f64], scratch: &mut Scratch) {
        if g.rules.is_empty() || segments.is_empty() {
            return;
        }
        let mut counts = vec![0u32; g.rules.len()];
        let live = {
            // One joined copy per separator for both uses, freed before the per-segment searches.
            let mut joins = Joins::new(segments);
            run_joined(g, &mut joins, skip_first, needed, &mut counts, scratch);
            live_sets(g, &mut joins, needed, scratch)
        };
        let mut seen = Seen::default();
        let mut cands: Vec<usize> = Vec::new();
        for (si, seg) in segments.iter().enumerate() {
            cands.clear();
            if let Some(prefilter) = &g.prefilter {
                prefilter.candidates(seg, &mut seen, |k| cands.push(k));
            }
            cands.extend_from_slice(&g.always);
            for a in g.always_sets.iter().zip(&live).filter_map(|(a, live)| live.then_some(a)) {
                // As in `run_joined`: the cheaper leftmost search rules out most segments.
                if !a.set.is_match(scratch, seg) {
                    continue;
                }
                a.set.matches(scratch, seg, |i| {
                    if let Some(&k) = a.rules.get(i) {
                        cands.push(k);
                    }
                });
            }
            for &k in &cands {
                let rule = &g.rules[k];
                if counts[k] >= rule.max || !needed[rule.id] || (rule.nosubject && si < skip_first) {
                    continue;
                }
                counts[k] += match &rule.matcher {
                    Some(matcher) => matcher.count(scratch, seg, rule.max - counts[k]),
                    // Decided by its set, which matched this segment: its one hit.
                    None => 1,
                };
            }
        }
        for (k, rule) in g.rules.iter().enumerate() {
            if counts[k] > 0 {
                values[rule.id] = f64::from(counts[k]);
            }
        }
    }
}

/// Whether a rule's value is a hit: not zero, and known.
fn hit(value: f64) -> bool {
    value != 0.0 && !value.is_nan()
}

/// Runs the group's [`super::compile::JoinedSet`]s, each once over the segments joined (from the first after
/// the subject for `nosubject` rules), and counts their rules' hits into `counts`.
fn run_joined(g: &TextGroup, joins: &mut Joins, skip_first: usize, needed: &[bool], counts: &mut [u32], scratch: &mut Scratch) {
    let mut matched: Vec<usize> = Vec::new();
    for j in &g.joined_sets {
        if !j.rules.iter().any(|&k| needed[g.rules[k].id]) {
            continue;
        }
        let Some(text) = joins.text(j.separator, if j.nosubject { skip_first } else { 0 }) else { continue };
        // Most sets match nothing in most messages: a leftmost search that stops at the first
        // match scans faster than the overlapping one that says which patterns match.
        if !j.set.is_match(scratch, text) {
            continue;
        }
        matched.clear();
        j.set.matches(scratch, text, |i| matched.extend(j.rules.get(i).copied()));
        for &k in &matched {
            let rule = &g.rules[k];
            if needed[rule.id] {
                counts[k] = match &rule.matcher {
                    Some(matcher) => matcher.count(scratch, text, rule.max),
                    None => 1,
                };
            }
        }
    }
}

/// Which of the group's always-sets are needed (a rule of theirs is) and can match in some
/// segment: a joinable set that matches
/// nothing in the segments joined by newlines matches in none of them (see
/// [`super::compile::AlwaysSet`]), so it is searched once per message instead of once per segment.
fn live_sets(g: &TextGroup, joins: &mut Joins, needed: &[bool], scratch: &mut Scratch) -> Vec<bool> {
    let wanted: Vec<bool> = g.always_sets.iter().map(|a| a.rules.iter().any(|&k| needed[g.rules[k].id])).collect();
    if joins.segments() < 2 || !g.always_sets.iter().any(|a| a.joinable) {
        return wanted;
    }
    let Some(joined) = joins.text(b'\n', 0) else { return wanted };
    g.always_sets.iter().zip(wanted).map(|(a, wanted)| wanted && (!a.joinable || a.set.is_match(scratch, joined))).collect()
}
