//! The literal prefilter: which of a group's rules can match a text, found in one case-blind
//! Aho-Corasick pass over the literals their patterns need (see `literals`).
//!
//! Guarantees: a rule is reported for a text, once, when a literal of each of its sets occurs
//! in the text (ASCII case-insensitively); a rule it does not report cannot match there. Rules
//! added without a literal set are never reported: the caller tries those everywhere.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::literals::{LiteralSet, MAX_SETS};

/// The automaton over the literals of a group's rules.
pub struct Prefilter {
    ac: AhoCorasick,
    /// Per literal of `ac`: the rules that need it, each with the bits of its sets that hold it.
    needed_by: Vec<Vec<(usize, u8)>>,
    /// Per rule: one bit per literal set (0: the rule has none).
    all_sets: Vec<u8>,
}

const _: () = assert!(MAX_SETS <= u8::BITS as usize, "a rule's sets are bits of a u8");

/// Rules' literal sets, gathered for one [`Prefilter`].
#[derive(Default)]
pub struct Builder {
    literals: Vec<Vec<u8>>,
    index: HashMap<Vec<u8>, usize>,
    needed_by: Vec<Vec<(usize, u8)>>,
    all_sets: Vec<u8>,
    /// The rules added with at least one set.
    rules: Vec<usize>,
}

impl Builder {
    /// Rule `rule` (an index into its group) can only match where a literal of each of `sets`
    /// occurs (the first [`MAX_SETS`] are used); a rule without a set is not added.
    pub fn add(&mut self, rule: usize, sets: &[LiteralSet]) {
        if sets.is_empty() {
            return;
        }
        self.rules.push(rule);
        if self.all_sets.len() <= rule {
            self.all_sets.resize(rule + 1, 0);
        }
        for (bit, set) in sets.iter().take(MAX_SETS).enumerate() {
            let bit = 1u8 << bit;
            self.all_sets[rule] |= bit;
            for literal in set {
                let p = *self.index.entry(literal.clone()).or_insert_with(|| {
                    self.literals.push(literal.clone());
                    self.needed_by.push(Vec::new());
                    self.literals.len() - 1
                });
                match self.needed_by[p].iter_mut().find(|(r, _)| *r == rule) {
                    Some((_, bits)) => *bits |= bit,
                    None => self.needed_by[p].push((rule, bit)),
                }
            }
        }
    }

    /// How many rules were added with a literal set.
    pub fn rules(&self) -> usize {
        self.rules.len()
    }

    /// The prefilter, None when no rule has a literal; or, when the automaton cannot be built,
    /// the rules added (to be tried everywhere: correct, slower).
    pub fn build(self) -> Result<Option<Prefilter>, Vec<usize>> {
        if self.literals.is_empty() {
            return Ok(None);
        }
        match AhoCorasickBuilder::new().ascii_case_insensitive(true).match_kind(MatchKind::Standard).build(&self.literals) {
            Ok(ac) => Ok(Some(Prefilter { ac, needed_by: self.needed_by, all_sets: self.all_sets })),
            Err(_) => Err(self.rules),
        }
    }
}

/// Which literal sets of each rule the current text has shown, kept from text to text so a
/// text costs nothing for the rules whose literals it lacks.
#[derive(Default)]
pub struct Seen {
    /// Per rule: the text its `sets` belong to.
    text: Vec<u32>,
    sets: Vec<u8>,
    current: u32,
}

impl Seen {
    /// Starts a text over `rules` rules.
    fn next_text(&mut self, rules: usize) {
        if self.text.len() < rules {
            self.text.resize(rules, 0);
            self.sets.resize(rules, 0);
        }
        self.current = self.current.wrapping_add(1);
        if self.current == 0 {
            self.text.fill(0);
            self.current = 1;
        }
    }
}

impl Prefilter {
    /// Calls `found` once with each rule a literal of each of whose sets occurs in `text`.
    pub fn candidates(&self, text: &[u8], seen: &mut Seen, mut found: impl FnMut(usize)) {
        seen.next_text(self.all_sets.len());
        for m in self.ac.find_overlapping_iter(text) {
            for &(rule, bits) in &self.needed_by[m.pattern().as_usize()] {
                if seen.text[rule] != seen.current {
                    seen.text[rule] = seen.current;
                    seen.sets[rule] = 0;
                }
                let before = seen.sets[rule];
                seen.sets[rule] |= bits;
                if before != seen.sets[rule] && seen.sets[rule] == self.all_sets[rule] {
                    found(rule);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(literals: &[&str]) -> LiteralSet {
        literals.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    fn found(p: &Prefilter, seen: &mut Seen, text: &str) -> Vec<usize> {
        let mut rules = Vec::new();
        p.candidates(text.as_bytes(), seen, |r| rules.push(r));
        rules.sort_unstable();
        rules
    }

    #[test]
    fn a_rule_is_found_once_when_each_of_its_sets_occurs() {
        let mut b = Builder::default();
        b.add(0, &[set(&["free"]), set(&["money"])]);
        b.add(2, &[set(&["jackpot", "lottery"])]);
        b.add(3, &[]);
        b.add(4, &[set(&["money"]), set(&["fast", "free"])]);
        assert_eq!(b.rules(), 3);
        let p = b.build().expect("builds").expect("has literals");
        let mut seen = Seen::default();
        assert_eq!(found(&p, &mut seen, "FREE money, free MONEY"), [0, 4], "once each, case-blind");
        assert_eq!(found(&p, &mut seen, "free stuff"), Vec::<usize>::new(), "money is missing");
        assert_eq!(found(&p, &mut seen, "money"), Vec::<usize>::new(), "what the last text showed is forgotten");
        assert_eq!(found(&p, &mut seen, "lottery money fast"), [2, 4]);
    }

    #[test]
    fn no_literal_no_prefilter() {
        let mut b = Builder::default();
        b.add(0, &[]);
        assert!(b.build().expect("builds").is_none());
    }
}
