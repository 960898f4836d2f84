//! `moat scan`: runs one message through the configured filters exactly as a session would
//! (connect, HELO, MAIL, each RCPT, end of data) and explains the verdict for each recipient.
//!
//! Guarantees: the same [`Scorer`] and the same phase order as the server, so what `moat scan`
//! prints is what the server would do with that envelope; nothing is stored or delivered.

use crate::filter::classifier::Opinion;
use crate::filter::{Facts, Phase};
use crate::scoring::{RecipientVerdict, Scorer};
use crate::verdict::Evidence;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

/// The envelope to pretend the message arrived with.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub client_ip: IpAddr,
    pub helo: String,
    pub sender: String,
    pub recipients: Vec<String>,
}

/// What the scan found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Header fields the filters would add (e.g. Authentication-Results).
    pub added_headers: Vec<String>,
    /// The classifier's opinion (absent when it is off).
    pub classifier: Option<ClassifierReport>,
    pub recipients: Vec<RecipientReport>,
}

/// What the classifier made of the message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassifierReport {
    /// The spam probability; absent while the model has not learned enough.
    pub probability: Option<f64>,
    /// The symbol emitted (absent when cold, or at exactly 0.5).
    pub symbol: Option<String>,
    /// Messages learned so far, of each kind, when the model is still cold.
    pub learned_spam: Option<u64>,
    pub learned_ham: Option<u64>,
}

impl ClassifierReport {
    fn of(opinion: Opinion) -> ClassifierReport {
        match opinion {
            Opinion::Cold { spam, ham } => {
                ClassifierReport { probability: None, symbol: None, learned_spam: Some(spam), learned_ham: Some(ham) }
            }
            Opinion::Probability { p, symbol } => {
                ClassifierReport { probability: Some(p), symbol: symbol.map(str::to_string), learned_spam: None, learned_ham: None }
            }
        }
    }

    fn line(&self) -> String {
        match (self.probability, &self.symbol) {
            (Some(p), Some(symbol)) => format!("classifier: spam probability {p:.4} ({symbol})"),
            (Some(p), None) => format!("classifier: spam probability {p:.4} (no opinion, no symbol)"),
            (None, _) => format!(
                "classifier: not used yet (learned {} spam and {} ham; needs [classifier] min_learned of each)",
                self.learned_spam.unwrap_or(0),
                self.learned_ham.unwrap_or(0)
            ),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RecipientReport {
    pub recipient: String,
    pub action: crate::verdict::Action,
    pub score: f64,
    pub reason: String,
    pub symbols: Vec<crate::verdict::Symbol>,
}

/// Runs every phase for `message` with `envelope`.
pub async fn scan(scorer: &Scorer, envelope: &Envelope, message: Vec<u8>) -> Report {
    let mut facts = Facts {
        client_ip: Some(envelope.client_ip),
        helo: Some(envelope.helo.clone()),
        tls: false,
        sender: None,
        rcpt: None,
        recipients: Vec::new(),
        message: None,
        classifier_opinion: None,
        lists: Vec::new(),
        earlier: None,
    };
    let mut common = scorer.run(Phase::Connect, &facts).await;
    common.extend(&scorer.run(Phase::Helo, &facts).await);
    facts.sender = Some(envelope.sender.clone());
    common.extend(&scorer.run(Phase::Mail, &facts).await);
    let mut per_rcpt: Vec<Evidence> = Vec::new();
    for rcpt in &envelope.recipients {
        facts.rcpt = Some(rcpt.clone());
        per_rcpt.push(scorer.run(Phase::Rcpt, &facts).await);
        facts.recipients.push(rcpt.clone());
    }
    facts.rcpt = None;
    facts.classifier_opinion = scorer.classifier_opinion(&message);
    let classifier = facts.classifier_opinion.map(ClassifierReport::of);
    facts.message = Some(Arc::new(message));
    facts.lists = common.lists.clone();
    let data = scorer.run(Phase::Data, &facts).await;
    let recipients = envelope
        .recipients
        .iter()
        .zip(&per_rcpt)
        .map(|(rcpt, own)| {
            let mut evidence = common.clone();
            evidence.extend(own);
            evidence.extend(&data);
            report(scorer.verdict(&evidence, &facts, rcpt))
        })
        .collect();
    Report { added_headers: data.headers, classifier, recipients }
}

fn report(v: RecipientVerdict) -> RecipientReport {
    RecipientReport {
        recipient: v.recipient,
        action: v.verdict.action,
        score: v.verdict.score,
        reason: v.verdict.reason,
        symbols: v.verdict.symbols,
    }
}

/// The human-readable form, like `spamassassin -t`'s report.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for r in &report.recipients {
        let _ = writeln!(out, "{}: {} (score {}; {})", r.recipient, r.action.as_str(), r.score, r.reason);
        let _ = writeln!(out, "   pts  symbol                     description");
        let _ = writeln!(out, "------  -------------------------  ------------------------------------------");
        if r.symbols.is_empty() {
            let _ = writeln!(out, "        (no symbols)");
        }
        for s in &r.symbols {
            let _ = writeln!(out, "{:>6.1}  {:<25}  {}", s.score, s.name, s.detail.as_deref().unwrap_or(""));
        }
        out.push('\n');
    }
    if let Some(classifier) = &report.classifier {
        out.push_str(&classifier.line());
        out.push('\n');
    }
    for field in &report.added_headers {
        out.push_str(field.trim_end());
        out.push('\n');
    }
    out
}
