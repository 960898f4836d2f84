//! Which text rules (body, rawbody, uri, full) still matter for a message once its header rules
//! and eval functions are known.
//!
//! SpamAssassin's metas guard most of their body rules with header facts:
//! `FILL_THIS_FORM_LONG` is `__FILL_THIS_FORM_LONG && !__VIA_ML && !__THREADED && …`, so in a
//! threaded message from a mailing list `__FILL_THIS_FORM_LONG` cannot change anything. Once
//! the rules that run before the text rules are known, every meta is evaluated over ranges (a
//! text rule not run yet is anywhere from 0 to its hit cap, a meta is whatever its expression
//! gives over its inputs' ranges, see [`Expr::range`]); a meta left with one possible value needs
//! none of its inputs. A text rule is run only when a reportable rule is the rule itself or a
//! meta still open reads it, through open metas only.
//!
//! Guarantees: every reported rule and every meta gets the value it would get with every text
//! rule run. A skipped rule keeps the value 0, which lies in the range its readers were evaluated
//! over, and a range holds every value its expression can take; so a settled meta gets its one
//! value and an open one reads only rules that ran or settled metas. The metas themselves are all
//! evaluated as before (they are cheap); only the text rules are skipped.

use super::compile::Compiled;
use super::meta::Range;

impl Compiled {
    /// Of the rules `needed`, the text rules that can still change a reported value, given the
    /// `values` of the rules that run before them. Other rules' entries are left as in `needed`.
    pub(super) fn still_needed(&self, values: &[f64], needed: &[bool]) -> Vec<bool> {
        let n = values.len();
        let mut ranges: Vec<Range> = (0..n)
            .map(|i| match self.text_caps.get(i).copied().flatten() {
                Some(cap) => Range::counts(0.0, f64::from(cap)),
                None if values[i].is_nan() => Range::ANY,
                None => Range::point(values[i]),
            })
            .collect();
        let mut unknown: Vec<bool> = values.iter().map(|v| v.is_nan()).collect();
        // A meta that will be unknown (NaN) or has one possible value reads nothing that matters.
        let mut settled = vec![false; n];
        for ((id, expr), unknown_if) in self.metas.iter().zip(&self.meta_unknown_if) {
            if unknown_if.as_ref().is_some_and(|inputs| inputs.iter().any(|&r| unknown[r])) {
                (unknown[*id], settled[*id], ranges[*id]) = (true, true, Range::ANY);
                continue;
            }
            let range = expr.range(&|r| ranges.get(r).copied().unwrap_or(Range::point(0.0)));
            (settled[*id], ranges[*id]) = (range.is_settled(), range);
        }
        let mut reached: Vec<bool> = (0..n).map(|i| needed[i] && self.reportable[i]).collect();
        // Metas are in dependency order: walking them backwards carries the need downwards.
        for (id, expr) in self.metas.iter().rev() {
            if reached[*id] && !settled[*id] {
                expr.each_dep(&mut |d| {
                    if let Some(flag) = reached.get_mut(d) {
                        *flag = needed[d];
                    }
                });
            }
        }
        (0..n).map(|i| if self.text_caps[i].is_some() { reached[i] } else { needed[i] }).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::ruleset::RuleSet;
    use crate::ruleset::message::ParsedMessage;

    fn rules(text: &str) -> RuleSet {
        RuleSet::load_texts(&[("t.cf", text)]).expect("loads").0
    }

    fn names(set: &RuleSet, needed: &[bool]) -> Vec<String> {
        let c = &set.inner;
        let mut out: Vec<String> = c.body.rules.iter().filter(|r| needed[r.id]).map(|r| c.names[r.id].clone()).collect();
        out.sort();
        out
    }

    const RULES: &str = "\
header __LIST    exists:List-Id
body   __FORM    /fill in the form/
body   __MONEY   /million dollars/
body   __OTHER   /unrelated/
body   SCORED    /scored text/
body   __DIGITS  /\\d\\d\\d\\d/
meta   DIGITS    __DIGITS && !__LIST
meta   FORM      __FORM && !__LIST
meta   MONEY2    (__MONEY + __FORM) > 1 || __LIST
score  DIGITS 0.5
score  FORM 2
score  MONEY2 1
score  SCORED 1
";

    fn needed_for(set: &RuleSet, raw: &str) -> (Vec<String>, Vec<String>) {
        let c = &set.inner;
        let msg = ParsedMessage::parse(raw.as_bytes());
        let mut scratch = c.caches.take();
        let values = c.early_values(&msg, &c.needed, &mut scratch);
        let now = c.still_needed(&values, &c.needed);
        (names(set, &c.needed), names(set, &now))
    }

    #[test]
    fn a_body_rule_only_settled_metas_read_is_not_run() {
        let set = rules(RULES);
        let (before, listed) = needed_for(&set, "List-Id: <l.example>\nSubject: x\n\nfill in the form\n");
        assert_eq!(before, ["SCORED", "__DIGITS", "__FORM", "__MONEY"], "__OTHER is needed by nothing");
        assert_eq!(listed, ["SCORED"], "a list message settles FORM (false) and MONEY2 (true)");
        let (_, direct) = needed_for(&set, "Subject: x\n\nfill in the form\n");
        assert_eq!(direct, ["SCORED", "__DIGITS", "__FORM", "__MONEY"], "without List-Id the metas are open");
        let body = &set.inner.body;
        let in_set = |rules: &[usize]| rules.iter().any(|&k| set.inner.names[body.rules[k].id] == "__DIGITS");
        assert!(body.joined_sets.iter().any(|j| in_set(&j.rules)), "a rule without literals, searched in a set");
    }

    /// The point of it all: the same hits with the rules skipped as with every rule run.
    #[test]
    fn skipping_changes_no_reported_hit() {
        let set = rules(RULES);
        for raw in [
            "List-Id: <l.example>\n\nfill in the form, million dollars, scored text 1234\n",
            "Subject: x\n\nfill in the form, million dollars\n",
            "Subject: x\n\nfill in the form, 12345\n",
            "Subject: x\n\nmillion dollars\n",
            "Subject: x\n\nnothing\n",
        ] {
            let msg = ParsedMessage::parse(raw.as_bytes());
            let mut hits: Vec<String> = set.evaluate(&msg).into_iter().map(|h| h.name).collect();
            hits.sort();
            let c = &set.inner;
            let all = c.evaluate_all(&msg);
            let mut expected: Vec<String> = all.into_iter().filter(|(name, _)| c.reportable[c.index[name]]).map(|(name, _)| name).collect();
            expected.sort();
            assert_eq!(hits, expected, "{raw:?}");
        }
    }
}
