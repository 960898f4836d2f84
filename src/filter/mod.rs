//! Filters and the chain that runs them, one method per SMTP phase.
//!
//! A filter implements only the phases it needs (every method has a default that finds
//! nothing). Filters never speak SMTP: they return named [`Symbol`]s or a typed [`Failure`],
//! and `verdict::decide` turns the evidence into an action.
//!
//! Guarantees of [`Chain::run`]: the filters of a phase run concurrently, each under the chain's
//! deadline, except that in the DATA phase a filter that reads the others' findings
//! ([`Filter::after_others`], the rules filter) runs once they have all finished, under a deadline
//! of its own, with their findings in [`Facts::earlier`]; a filter that times out or panics
//! becomes a [`Failure`] with the filter's stance and never takes the session down; results come
//! back in the chain's order, so verdicts are reproducible.

pub mod attachments;
pub mod clamav;
pub mod classifier;
pub mod dnsbl;
pub mod rdns;
pub mod rules;
pub mod uri;

use crate::verdict::{Evidence, Failure, ListLookup, Stance, Symbol};
use futures_util::FutureExt;
use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub mod auth;

/// The SMTP phases filters can look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Helo => "helo",
            Phase::Mail => "mail",
            Phase::Rcpt => "rcpt",
            Phase::Data => "data",
        }
    }
}

/// What is known about the session and message so far; each phase fills in more.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub client_ip: Option<IpAddr>,
    pub helo: Option<String>,
    pub tls: bool,
    /// Reverse path ("" for the null sender), from MAIL on.
    pub sender: Option<String>,
    /// The recipient being checked (RCPT phase only).
    pub rcpt: Option<String>,
    /// Accepted recipients, from DATA on.
    pub recipients: Vec<String>,
    /// The raw message (without our Received header), DATA phase only.
    pub message: Option<Arc<Vec<u8>>>,
    /// The classifier's opinion of `message`, when the caller formed it already (`moat scan`
    /// reports it): the classifier filter then uses it instead of tokenizing the message again.
    pub classifier_opinion: Option<classifier::Opinion>,
    /// What the DNS lists said in the session's earlier phases (the client's lookups at
    /// connect), for the rules that read lists (DATA phase).
    pub lists: Vec<ListLookup>,
    /// What the phase's other filters found, for a filter that runs after them (DATA phase).
    pub earlier: Option<Arc<Earlier>>,
}

/// The findings of the filters that answered before a [`Filter::after_others`] filter ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Earlier {
    /// Each filter that answered (no failure, no timeout), by name, with its symbols. A filter
    /// missing here did not run or failed.
    pub answered: Vec<(&'static str, Vec<Symbol>)>,
    /// What the DNS lists said, in the earlier phases ([`Facts::lists`]) and in this one.
    pub lists: Vec<ListLookup>,
}

impl Earlier {
    /// The symbols of the filter named `name`, if it answered.
    pub fn of(&self, name: &str) -> Option<&[Symbol]> {
        self.answered.iter().find(|(n, _)| *n == name).map(|(_, symbols)| symbols.as_slice())
    }
}

/// What one filter found: symbols, header fields to add to the message for every recipient
/// (e.g. `Authentication-Results`), each a complete field ending in CRLF, and what the DNS
/// lists it asked said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub symbols: Vec<Symbol>,
    pub headers: Vec<String>,
    pub lists: Vec<ListLookup>,
}

impl From<Vec<Symbol>> for Findings {
    fn from(symbols: Vec<Symbol>) -> Findings {
        Findings { symbols, ..Findings::default() }
    }
}

/// A filter's answer: evidence, or why it could not look.
pub type Outcome = Result<Findings, Failure>;
pub type FilterFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

fn nothing<'a>() -> FilterFuture<'a> {
    Box::pin(std::future::ready(Ok(Findings::default())))
}

/// One filter. Override the phases it cares about.
pub trait Filter: Send + Sync {
    /// Short name for logs, e.g. "dnsbl".
    fn name(&self) -> &'static str;
    /// The symbol and stance used when this filter times out or panics.
    fn failure(&self) -> (&'static str, Stance) {
        ("FILTER_FAIL", Stance::FailOpen)
    }
    /// A [`Failure`] with this filter's symbol and stance, saying what went wrong.
    fn failed(&self, detail: String) -> Failure {
        let (symbol, stance) = self.failure();
        Failure { symbol: symbol.to_string(), stance, detail }
    }
    fn connect<'a>(&'a self, _facts: &'a Facts) -> FilterFuture<'a> {
        nothing()
    }
    fn helo<'a>(&'a self, _facts: &'a Facts) -> FilterFuture<'a> {
        nothing()
    }
    fn mail<'a>(&'a self, _facts: &'a Facts) -> FilterFuture<'a> {
        nothing()
    }
    fn rcpt<'a>(&'a self, _facts: &'a Facts) -> FilterFuture<'a> {
        nothing()
    }
    fn data<'a>(&'a self, _facts: &'a Facts) -> FilterFuture<'a> {
        nothing()
    }
    /// Whether `data` reads what the phase's other filters found ([`Facts::earlier`]): the chain
    /// then calls it after them.
    fn after_others(&self) -> bool {
        false
    }
}

/// The configured filters, in order, with one deadline per filter call.
#[derive(Clone)]
pub struct Chain {
    filters: Vec<Arc<dyn Filter>>,
    deadline: Duration,
}

impl Chain {
    pub fn new(filters: Vec<Arc<dyn Filter>>, deadline: Duration) -> Chain {
        Chain { filters, deadline }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Runs every filter's `phase` method and gathers the evidence.
    pub async fn run(&self, phase: Phase, facts: &Facts) -> Evidence {
        let late = |filter: &Arc<dyn Filter>| phase == Phase::Data && filter.after_others();
        let first = self.filters.iter().filter(|f| !late(f)).map(|filter| self.call(filter.as_ref(), phase, facts));
        let mut first = futures_util::future::join_all(first).await.into_iter();
        let mut outcomes: Vec<Option<Outcome>> = self.filters.iter().map(|f| if late(f) { None } else { first.next() }).collect();
        if outcomes.iter().any(Option::is_none) {
            let answered: Vec<(&'static str, &Findings)> = self
                .filters
                .iter()
                .zip(&outcomes)
                .filter_map(|(filter, outcome)| match outcome {
                    Some(Ok(findings)) => Some((filter.name(), findings)),
                    _ => None,
                })
                .collect();
            let lists = facts.lists.iter().chain(answered.iter().flat_map(|(_, f)| &f.lists)).cloned().collect();
            let answered = answered.into_iter().map(|(name, findings)| (name, findings.symbols.clone())).collect();
            let later = Facts { earlier: Some(Arc::new(Earlier { answered, lists })), ..facts.clone() };
            let calls = self.filters.iter().filter(|f| late(f)).map(|filter| self.call(filter.as_ref(), phase, &later));
            let mut done = futures_util::future::join_all(calls).await.into_iter();
            for slot in outcomes.iter_mut().filter(|o| o.is_none()) {
                *slot = done.next();
            }
        }
        let mut evidence = Evidence::default();
        for outcome in outcomes.into_iter().flatten() {
            match outcome {
                Ok(findings) => {
                    evidence.symbols.extend(findings.symbols);
                    evidence.headers.extend(findings.headers);
                    evidence.lists.extend(findings.lists);
                }
                Err(failure) => evidence.failures.push(failure),
            }
        }
        evidence
    }

    async fn call(&self, filter: &dyn Filter, phase: Phase, facts: &Facts) -> Outcome {
        let future = match phase {
            Phase::Connect => filter.connect(facts),
            Phase::Helo => filter.helo(facts),
            Phase::Mail => filter.mail(facts),
            Phase::Rcpt => filter.rcpt(facts),
            Phase::Data => filter.data(facts),
        };
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.deadline, AssertUnwindSafe(future).catch_unwind()).await;
        metrics::histogram!("moat_filter_seconds", "filter" => filter.name(), "phase" => phase.as_str())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_panic)) => {
                tracing::error!(event = "filter_panic", filter = filter.name(), phase = ?phase);
                Err(filter.failed(format!("{} failed internally", filter.name())))
            }
            Err(_) => {
                tracing::warn!(event = "filter_timeout", filter = filter.name(), phase = ?phase);
                Err(filter.failed(format!("{} timed out", filter.name())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Helo;
    impl Filter for Helo {
        fn name(&self) -> &'static str {
            "helo"
        }
        fn helo<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
            Box::pin(async move {
                let bad = facts.helo.as_deref().is_some_and(|h| !h.contains('.'));
                Ok(if bad { vec![Symbol::new("HELO_NO_DOT")] } else { vec![] }.into())
            })
        }
    }

    struct Slow;
    impl Filter for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn failure(&self) -> (&'static str, Stance) {
            ("SLOW_FAIL", Stance::FailClosed)
        }
        fn data<'a>(&'a self, _facts: &'a Facts) -> FilterFuture<'a> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Findings::default())
            })
        }
    }

    struct Panics;
    impl Filter for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        fn data<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
            Box::pin(async move {
                let recipients = &facts.recipients;
                Ok(vec![Symbol::new(recipients[7].clone())].into())
            })
        }
    }

    fn chain() -> Chain {
        Chain::new(vec![Arc::new(Helo), Arc::new(Slow), Arc::new(Panics)], Duration::from_millis(50))
    }

    #[tokio::test]
    async fn phases_reach_only_the_filters_that_implement_them() {
        let facts = Facts { helo: Some("localhost".into()), ..Facts::default() };
        let evidence = chain().run(Phase::Helo, &facts).await;
        assert!(evidence.has("HELO_NO_DOT"));
        assert!(evidence.failures.is_empty());
    }

    #[tokio::test]
    async fn timeouts_and_panics_become_failures_with_the_filters_stance() {
        let evidence = chain().run(Phase::Data, &Facts::default()).await;
        assert_eq!(evidence.failures.len(), 2, "{evidence:?}");
        assert_eq!(evidence.failures[0].symbol, "SLOW_FAIL");
        assert_eq!(evidence.failures[0].stance, Stance::FailClosed);
        assert_eq!(evidence.failures[1].symbol, "FILTER_FAIL");
        assert_eq!(evidence.failures[1].stance, Stance::FailOpen);
    }

    /// Finds `SPF_PASS` in the DATA phase.
    struct Auth;
    impl Filter for Auth {
        fn name(&self) -> &'static str {
            "auth"
        }
        fn data<'a>(&'a self, _facts: &'a Facts) -> FilterFuture<'a> {
            Box::pin(async { Ok(vec![Symbol::new("SPF_PASS")].into()) })
        }
    }

    /// Says what it saw of the others: which answered, and the auth filter's symbols.
    struct Reader;
    impl Filter for Reader {
        fn name(&self) -> &'static str {
            "reader"
        }
        fn after_others(&self) -> bool {
            true
        }
        fn data<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
            Box::pin(async move {
                let earlier = facts.earlier.as_deref().cloned().unwrap_or_default();
                let answered: Vec<&str> = earlier.answered.iter().map(|(name, _)| *name).collect();
                let auth: Vec<String> = earlier.of("auth").unwrap_or_default().iter().map(|s| s.name.clone()).collect();
                Ok(vec![Symbol::new(format!("SAW {} / {}", answered.join(","), auth.join(",")))].into())
            })
        }
    }

    #[tokio::test]
    async fn a_filter_after_the_others_sees_what_the_answering_ones_found_and_keeps_its_place() {
        let chain = Chain::new(vec![Arc::new(Reader), Arc::new(Auth), Arc::new(Slow), Arc::new(Helo)], Duration::from_millis(50));
        let evidence = chain.run(Phase::Data, &Facts::default()).await;
        let names: Vec<&str> = evidence.symbols.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["SAW auth,helo / SPF_PASS", "SPF_PASS"], "the slow filter timed out: not among those that answered");
        assert_eq!(evidence.failures.len(), 1);
        let Evidence { symbols, .. } = chain.run(Phase::Helo, &Facts { helo: Some("localhost".into()), ..Facts::default() }).await;
        assert_eq!(symbols.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["HELO_NO_DOT"], "only the DATA phase waits");
    }
}
