//! The rule engine as a [`Filter`] of the DATA phase.
//!
//! Guarantees: the message is parsed and evaluated on tokio's blocking pool
//! (`spawn_blocking`), never on a runtime worker, so a slow message cannot stall other
//! sessions; every hit becomes `Symbol::scored(name, score)` with the rule's description as
//! `detail`; a missing message gives no symbols; a panic inside the engine (a bug) becomes a
//! fail-open `RULES_FAIL` failure instead of taking the session down. The rule set is fixed for
//! the filter's life: reload by building a new filter (and chain) around a new [`RuleSet`] —
//! messages in flight finish with the set they started with.

use std::sync::Arc;

use crate::filter::{Facts, Filter, FilterFuture, Findings};
use crate::verdict::{Failure, Stance, Symbol};

use crate::ruleset::{ParsedMessage, RuleSet};

/// Runs a [`RuleSet`] over each message.
#[derive(Debug, Clone)]
pub struct RulesFilter {
    rules: Arc<RuleSet>,
}

impl RulesFilter {
    pub fn new(rules: Arc<RuleSet>) -> RulesFilter {
        RulesFilter { rules }
    }

    /// The rule set this filter evaluates.
    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }
}

/// Parses and evaluates one message; the blocking part of [`RulesFilter::data`].
pub fn scan(rules: &RuleSet, raw: &[u8], sender: Option<&str>) -> Vec<Symbol> {
    let mut msg = ParsedMessage::parse(raw);
    if let Some(sender) = sender {
        msg = msg.with_envelope_from(sender);
    }
    rules
        .evaluate(&msg)
        .into_iter()
        .map(|hit| {
            let mut symbol = Symbol::scored(hit.name, hit.score);
            symbol.detail = hit.description;
            symbol
        })
        .collect()
}

impl Filter for RulesFilter {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn failure(&self) -> (&'static str, Stance) {
        ("RULES_FAIL", Stance::FailOpen)
    }

    fn data<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
        Box::pin(async move {
            let Some(message) = facts.message.clone() else {
                return Ok(Findings::default());
            };
            let rules = Arc::clone(&self.rules);
            let sender = facts.sender.clone();
            let symbols = tokio::task::spawn_blocking(move || scan(&rules, &message, sender.as_deref())).await.map_err(|e| Failure {
                symbol: "RULES_FAIL".to_string(),
                stance: Stance::FailOpen,
                detail: format!("rule evaluation failed: {e}"),
            })?;
            Ok(Findings { symbols, headers: Vec::new() })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> RulesFilter {
        let (rules, _) = RuleSet::load_texts(&[(
            "t.cf",
            "body LOTTO /lottery winner/i\nscore LOTTO 2.5\ndescribe LOTTO Lottery wording\n\
             header __FROM_X From =~ /x\\.test/\nheader ENV_BOUNCE EnvelopeFrom =~ /^bounce@/\nscore ENV_BOUNCE 0.3\n",
        )])
        .expect("load");
        RulesFilter::new(Arc::new(rules))
    }

    #[tokio::test]
    async fn data_phase_reports_hits_as_scored_symbols_with_descriptions() {
        let facts = Facts {
            sender: Some("bounce@x.test".into()),
            message: Some(Arc::new(b"From: a@x.test\r\nSubject: hi\r\n\r\nYou are a LOTTERY WINNER!\r\n".to_vec())),
            ..Facts::default()
        };
        let findings = filter().data(&facts).await.expect("findings");
        let lotto = findings.symbols.iter().find(|s| s.name == "LOTTO").expect("LOTTO");
        assert_eq!(lotto.score, 2.5);
        assert_eq!(lotto.detail.as_deref(), Some("Lottery wording"));
        assert!(findings.symbols.iter().any(|s| s.name == "ENV_BOUNCE" && s.score == 0.3), "{findings:?}");
        assert!(!findings.symbols.iter().any(|s| s.name.starts_with("__")));
    }

    #[tokio::test]
    async fn no_message_no_symbols() {
        let findings = filter().data(&Facts::default()).await.expect("findings");
        assert!(findings.symbols.is_empty());
    }
}
