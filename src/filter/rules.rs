//! The rule engine as a [`Filter`] of the DATA phase.
//!
//! Guarantees: the message is parsed and evaluated on the rule threads ([`RuleThreads`]: one per
//! core, long-lived), never on a runtime worker, so a slow message cannot stall other sessions;
//! at most one message per rule thread is evaluated at once and at most [`QUEUED_PER_THREAD`] per
//! thread wait (others wait asynchronously for a place, within the filter deadline). The rule
//! set keeps one set of search caches per evaluation running at once (bounded, see
//! `ruleset::search`), so one per rule thread: with tokio's blocking pool (as many threads as
//! messages in flight) the stock SpamAssassin rules once grew to 1.6 GB after 1,000 messages with
//! 8 in flight (bench/rules-soak); every hit becomes `Symbol::scored(name, score)` with the rule's description as
//! `detail`; a missing message gives no symbols; a panic inside the engine (a bug) becomes a
//! fail-open `RULES_FAIL` failure instead of taking the session down; every [`TRIM_EVERY`] jobs a
//! rule thread gives the heap's free pages back to the kernel. The rule set is fixed for
//! the filter's life: reload by building a new filter (and chain) around a new [`RuleSet`] —
//! messages in flight finish with the set they started with.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, LazyLock, Mutex, mpsc};

use crate::filter::{Earlier, Facts, Filter, FilterFuture, Findings};
use crate::verdict::{Stance, Symbol};

use crate::ruleset::{FilterFacts, ParsedMessage, RuleSet};

/// What the rules read of the other filters' findings: the auth filter's symbols, when it
/// answered, and what the DNS lists said.
fn filter_facts(earlier: Option<&Earlier>) -> FilterFacts {
    let symbols = |s: &[Symbol]| s.iter().map(|s| (s.name.clone(), s.detail.clone().unwrap_or_default())).collect();
    FilterFacts { auth: earlier.and_then(|e| e.of("auth")).map(symbols), lists: earlier.map(|e| e.lists.clone()).unwrap_or_default() }
}

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

/// Parses and evaluates one message; the blocking part of [`RulesFilter::data`]. `client` is
/// the connecting client's address: it is the newest handover of the Received trail the rules
/// read (a public client is untrusted, so is every relay the message records; a loopback
/// client, or none, leaves the trail to the message's own fields, as for a file — see
/// `ruleset::received`), the same in the server and in `moat scan`.
pub fn scan(rules: &RuleSet, raw: &[u8], sender: Option<&str>, client: Option<std::net::IpAddr>, found: FilterFacts) -> Vec<Symbol> {
    let mut msg = ParsedMessage::parse(raw).with_client(client).with_filter_facts(found);
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

/// Jobs a rule thread runs between two returns of the heap's free pages to the kernel: a long
/// message's freed buffers otherwise stay resident between long-lived allocations.
/// bench/serve-soak: 194–201 MB over 42,000 messages against 198–205 without, no throughput
/// lost that the runs could show (every 16 jobs: the same as 64).
const TRIM_EVERY: u64 = 64;

/// Messages waiting per rule thread beyond the one it is evaluating.
pub const QUEUED_PER_THREAD: usize = 4;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of long-lived threads that evaluate rules, one message each at a time.
pub struct RuleThreads {
    jobs: mpsc::Sender<Job>,
    /// Places for messages being evaluated or waiting: bounds the queue.
    places: Arc<tokio::sync::Semaphore>,
}

/// The rule evaluation failed: a bug in the engine (a panic), or the threads are gone.
#[derive(Debug, thiserror::Error)]
#[error("rule evaluation failed internally")]
pub struct EvaluationFailed;

impl RuleThreads {
    /// `threads` rule threads (at least one).
    pub fn new(threads: usize) -> RuleThreads {
        let threads = threads.max(1);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new().name(format!("moat-rules-{n}")).spawn(move || {
                for done in 1u64.. {
                    if done % TRIM_EVERY == 0 {
                        crate::allocator::release_freed_memory();
                    }
                    // The lock is held only while taking a job, never while running one.
                    let job = match receiver.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(error) = spawned {
                tracing::error!(event = "rule_threads", error = %error, note = "fewer rule threads than cores");
            }
        }
        let places = Arc::new(tokio::sync::Semaphore::new(threads * (1 + QUEUED_PER_THREAD)));
        RuleThreads { jobs, places }
    }

    /// Runs `work` on a rule thread once a place is free; a panic in it is an error.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, EvaluationFailed> {
        let _place = self.places.acquire().await.map_err(|_| EvaluationFailed)?;
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        });
        self.jobs.send(job).map_err(|_| EvaluationFailed)?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            _ => Err(EvaluationFailed),
        }
    }
}

/// This process's rule threads, one per core.
pub static RULE_THREADS: LazyLock<RuleThreads> = LazyLock::new(|| RuleThreads::new(crate::ruleset::rule_threads()));

impl Filter for RulesFilter {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn failure(&self) -> (&'static str, Stance) {
        ("RULES_FAIL", Stance::FailOpen)
    }

    /// After the other filters: the stock rules' SPF and DKIM `eval:` functions read the auth
    /// filter's answer (`ruleset::FilterFacts`).
    fn after_others(&self) -> bool {
        true
    }

    fn data<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
        Box::pin(async move {
            let Some(message) = facts.message.clone() else {
                return Ok(Findings::default());
            };
            let rules = Arc::clone(&self.rules);
            let sender = facts.sender.clone();
            let client = facts.client_ip;
            let found = filter_facts(facts.earlier.as_deref());
            let symbols = RULE_THREADS
                .run(move || scan(&rules, &message, sender.as_deref(), client, found))
                .await
                .map_err(|e| self.failed(e.to_string()))?;
            Ok(symbols.into())
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
    async fn rule_threads_survive_a_panic_and_bound_the_messages_at_once() {
        let threads = RuleThreads::new(2);
        assert_eq!(threads.run(|| 6 * 7).await.unwrap(), 42);
        assert!(threads.run(|| -> u8 { panic!("a bug in the engine") }).await.is_err());
        assert_eq!(threads.run(|| "still running").await.unwrap(), "still running", "the panicking thread lives on");
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runs = (0..12).map(|_| {
            let (busy, most) = (busy.clone(), most.clone());
            threads.run(move || {
                let now = busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            })
        });
        assert!(futures_util::future::join_all(runs).await.iter().all(Result::is_ok));
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2, "never more at once than there are rule threads");
    }

    /// A spammer's own trail of private addresses earns ALL_TRUSTED only when nobody but the
    /// message vouches for it: a public client is the newest, untrusted relay.
    #[test]
    fn a_public_client_makes_the_message_trail_untrusted() {
        let (rules, _) = RuleSet::load_texts(&[(
            "t.cf",
            "header ALL_TRUSTED eval:check_all_trusted()\nscore ALL_TRUSTED -1.0\n\
             header NO_RELAYS eval:check_no_relays()\nscore NO_RELAYS -0.001\n",
        )])
        .expect("load");
        let forged = b"Received: from pc (pc.lan [10.1.2.3]) by gw.lan (Postfix) with ESMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
                       From: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let names = |client: Option<&str>| -> Vec<String> {
            scan(&rules, forged, None, client.map(|c| c.parse().expect("ip")), FilterFacts::default()).into_iter().map(|s| s.name).collect()
        };
        assert_eq!(names(None), ["ALL_TRUSTED"], "a file: the trail alone");
        assert_eq!(names(Some("127.0.0.1")), ["ALL_TRUSTED"], "a loopback client: the trail alone");
        assert_eq!(names(Some("10.9.9.9")), ["ALL_TRUSTED"], "a private client is trusted");
        assert!(names(Some("203.0.113.7")).is_empty(), "a public client is not");
        let bare = b"From: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let bare_names = |client: &str| -> Vec<String> {
            scan(&rules, bare, None, Some(client.parse().expect("ip")), FilterFacts::default()).into_iter().map(|s| s.name).collect()
        };
        assert_eq!(bare_names("127.0.0.1"), ["NO_RELAYS"]);
        assert_eq!(bare_names("10.9.9.9"), ["ALL_TRUSTED"], "the private client is the one trusted relay");
        assert!(bare_names("203.0.113.7").is_empty(), "the public client is the one untrusted relay");
    }

    #[tokio::test]
    async fn no_message_no_symbols() {
        let findings = filter().data(&Facts::default()).await.expect("findings");
        assert!(findings.symbols.is_empty());
    }
}
