//! The statistical classifier as a [`Filter`] of the DATA phase: it scores each message with
//! the model in force on this node and emits the symbol of its probability band
//! (`MOAT_CLASSIFIER_00` … `MOAT_CLASSIFIER_99`, scored in the rule files like any other).
//!
//! Guarantees: it abstains (no symbol) while no model is in force or the model has learned
//! fewer than `min_learned` messages of either kind, and when the probability is exactly 0.5
//! (no opinion); tokenizing runs on the blocking pool, bounded by the tokenizer's own limits;
//! a model replaced while a message is scored does not affect that message (the snapshot is
//! taken once).

use crate::classifier::{self, InForce};
use crate::filter::{Facts, Filter, FilterFuture, Findings};
use crate::verdict::{Stance, Symbol};

/// Scores messages with the model in force.
pub struct ClassifierFilter {
    in_force: InForce,
    min_learned: u64,
}

impl ClassifierFilter {
    pub fn new(in_force: InForce, min_learned: u64) -> ClassifierFilter {
        ClassifierFilter { in_force, min_learned }
    }
}

/// The classifier's opinion of one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Opinion {
    /// No model yet, or not enough learned: (spam, ham) learned so far.
    Cold { spam: u64, ham: u64 },
    /// The spam probability, and the symbol it emits (`None` at exactly 0.5).
    Probability { p: f64, symbol: Option<&'static str> },
}

/// What the model in force makes of `raw` (the blocking part of [`ClassifierFilter::data`];
/// `moat scan` shows it).
pub fn judge(in_force: &InForce, min_learned: u64, raw: &[u8]) -> Opinion {
    let Some(snapshot) = in_force.load_full() else { return Opinion::Cold { spam: 0, ham: 0 } };
    let model = &snapshot.model;
    if !model.is_ready(min_learned) {
        let (spam, ham) = model.learned();
        return Opinion::Cold { spam, ham };
    }
    let p = model.score(&model.tokenizer().features(raw));
    Opinion::Probability { p, symbol: classifier::band(p) }
}

impl Filter for ClassifierFilter {
    fn name(&self) -> &'static str {
        "classifier"
    }

    fn failure(&self) -> (&'static str, Stance) {
        ("CLASSIFIER_FAIL", Stance::FailOpen)
    }

    fn data<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
        Box::pin(async move {
            let Some(message) = facts.message.clone() else {
                return Ok(Findings::default());
            };
            let opinion = match facts.classifier_opinion {
                Some(formed) => formed,
                None => {
                    let (in_force, min) = (self.in_force.clone(), self.min_learned);
                    tokio::task::spawn_blocking(move || judge(&in_force, min, &message))
                        .await
                        .map_err(|e| self.failed(format!("classifier failed: {e}")))?
                }
            };
            let symbols = match opinion {
                Opinion::Probability { p, symbol: Some(name) } => {
                    let mut symbol = Symbol::new(name);
                    symbol.detail = Some(format!("spam probability {p:.4}"));
                    vec![symbol]
                }
                _ => Vec::new(),
            };
            Ok(symbols.into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::{Label, Model, Settings, Snapshot};
    use std::sync::Arc;

    fn trained(min: u64) -> InForce {
        let mut model = Model::with_seed(Settings { table_bits: 12, ..Settings::default() }, 7);
        let tokenizer = model.tokenizer();
        for i in 0..min {
            let spam = format!("Subject: cheap pills {i}\r\n\r\nBuy cheap pills viagra casino now winner\r\n");
            let ham = format!("Subject: minutes {i}\r\n\r\nThe meeting minutes for the project review are attached\r\n");
            model.learn(&tokenizer.features(spam.as_bytes()), Label::Spam);
            model.learn(&tokenizer.features(ham.as_bytes()), Label::Ham);
        }
        let in_force = classifier::nothing_in_force();
        in_force.store(Some(Arc::new(Snapshot { version: 1, model })));
        in_force
    }

    #[test]
    fn it_abstains_until_enough_of_each_kind_is_learned() {
        assert_eq!(judge(&classifier::nothing_in_force(), 1, b"Subject: x\r\n\r\nhi\r\n"), Opinion::Cold { spam: 0, ham: 0 });
        let in_force = trained(3);
        assert_eq!(judge(&in_force, 4, b"Subject: x\r\n\r\nhi\r\n"), Opinion::Cold { spam: 3, ham: 3 });
    }

    #[tokio::test]
    async fn a_ready_model_emits_the_band_of_its_probability() {
        let filter = ClassifierFilter::new(trained(20), 20);
        let spam = b"Subject: cheap pills\r\n\r\nBuy cheap pills viagra casino now\r\n".to_vec();
        let facts = Facts { message: Some(Arc::new(spam)), ..Facts::default() };
        let found = filter.data(&facts).await.unwrap();
        assert_eq!(found.symbols.len(), 1, "{found:?}");
        assert_eq!(found.symbols[0].name, "MOAT_CLASSIFIER_99");
        let ham = b"Subject: minutes\r\n\r\nThe meeting minutes for the review\r\n".to_vec();
        let facts = Facts { message: Some(Arc::new(ham)), ..Facts::default() };
        assert_eq!(filter.data(&facts).await.unwrap().symbols[0].name, "MOAT_CLASSIFIER_00");
    }
}
