//! Load-level tests.

use super::*;

#[test]
fn eval_rules_are_reported_as_skipped() {
    let (_, report) = RuleSet::load_texts(&[("a.cf", "body A eval:foo()\nbody B /b/\nmeta C A || B\n")]).expect("load");
    assert_eq!(report.skipped.len(), 1, "{report:?}");
}
