//! End of data, after the filters: one verdict per recipient, then one SMTP answer for all.
//!
//! Guarantees:
//! - recipients are grouped by what they get (plain, tagged, held); each group is stored as
//!   its own spool record, and `250` is said only when every group is on disk (fsynced). If one
//!   group cannot be stored, the groups already stored are removed and the client gets a 4xx,
//!   so a retry neither loses nor duplicates mail;
//! - quarantined copies go to the quarantine's holding spool (durable, never delivered), with the
//!   verdict (category, score, symbols) in their envelope and the verdict headers in the copy; the
//!   quarantine moves them into the encrypted store (see `moat::quarantine`);
//! - forged copies of our own headers (X-Spam-*, Authentication-Results with our authserv-id)
//!   are removed from every copy; everything else the sender wrote is kept byte for byte.

use super::rcpt::symbol_names;
use super::{Session, Transaction};
use crate::filter::Phase;
use crate::filter::auth::strip_forged_results;
use crate::headers;
use crate::quarantine;
use crate::scoring::RecipientVerdict;
use crate::smtp::reply::{Reply, replies};
use crate::spool::{Envelope, Hold, Spool, SpoolError};
use crate::store::Category;
use crate::verdict::{self, Action, Evidence, MessageOutcome, Verdict};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Header fields we write and therefore never accept from the sender.
const OUR_FIELDS: &[&str] = &["X-Spam-Flag", "X-Spam-Score", "X-Spam-Status", "X-Spam-Level", "X-Virus-Scan"];

/// Autolearn lessons being recorded at once on this node (more are skipped).
static AUTOLEARN_SLOTS: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(4)));

/// Recipients who get the same copy.
struct Group {
    action: Action,
    /// For a quarantined group: the verdict the quarantine index records.
    hold: Option<Hold>,
    /// X-Spam-* fields (tag and quarantine), complete and CRLF-terminated.
    spam_fields: String,
    subject_prefix: String,
    recipients: Vec<String>,
}

/// A stored group, so it can be undone.
struct Stored {
    id: String,
    held: bool,
}

impl Session {
    /// Runs the DATA filters, decides for each recipient and stores what must be kept.
    /// Returns the reply and the queue id the log line reports.
    pub(super) async fn dispose(&mut self, tx: &Transaction, message: Vec<u8>) -> (Reply, String) {
        let message = Arc::new(message);
        let mut facts = self.facts_with(Some(tx));
        facts.message = Some(message.clone());
        facts.lists = self.connect_evidence.lists.clone();
        let scorer = self.scorer.clone();
        let data = scorer.run(Phase::Data, &facts).await;
        let (reports, rest) = self.split_reports(tx);
        if reports > 0 {
            let mut evidence = self.evidence_so_far(Some(tx), None);
            evidence.extend(&data);
            let learned = match self.take_report(tx, &message, &evidence).await {
                Ok(learned) => learned,
                Err(reply) => return (reply, "-".into()),
            };
            if rest.recipients.is_empty() {
                return (replies::report_received(learned), "-".into());
            }
        }
        let tx = &rest;
        let verdicts: Vec<RecipientVerdict> = tx
            .recipients
            .iter()
            .enumerate()
            .map(|(i, rcpt)| {
                let mut evidence = self.evidence_so_far(Some(tx), Some(i));
                evidence.extend(&data);
                scorer.verdict(&evidence, &facts, &rcpt.mailbox.address())
            })
            .collect();
        let actions: Vec<Action> = verdicts.iter().map(|v| v.verdict.action).collect();
        let outcome = verdict::combine(&actions);
        self.log_verdicts(&verdicts, &outcome);
        match outcome {
            MessageOutcome::Reject => {
                self.autolearn(&verdicts, &message);
                (rejection(&verdicts[0].verdict), "-".into())
            }
            MessageOutcome::Tempfail => (replies::filter_tempfail(), "-".into()),
            MessageOutcome::Accept(dispositions) => {
                let groups = group(&verdicts, &dispositions);
                let (reply, id) = self.store_groups(tx, &message, &data.headers, groups).await;
                if reply.is_positive() {
                    self.autolearn(&verdicts, &message);
                }
                (reply, id)
            }
        }
    }

    /// With `[classifier] autolearn`, teaches the classifier a message the rules alone (without the
    /// classifier's own symbol) scored far enough from the thresholds, in the background: a few
    /// lessons at a time, and none when those are busy (it never delays or fails a message). A
    /// verdict forced by a list or a policy says nothing about the content and teaches nothing.
    fn autolearn(&self, verdicts: &[RecipientVerdict], message: &Arc<Vec<u8>>) {
        let config = &self.config.classifier;
        let Some(first) = verdicts.first().filter(|_| config.enabled && config.autolearn) else { return };
        if first.verdict.forced_by.is_some() {
            return;
        }
        let rules: f64 = first.verdict.symbols.iter().filter(|s| !s.name.starts_with("MOAT_CLASSIFIER_")).map(|s| s.score).sum();
        let label = if rules >= config.autolearn_spam_at {
            crate::classifier::Label::Spam
        } else if rules <= config.autolearn_ham_at {
            crate::classifier::Label::Ham
        } else {
            return;
        };
        let Ok(slot) = AUTOLEARN_SLOTS.clone().try_acquire_owned() else {
            metrics::counter!("moat_classifier_autolearn_skipped_total").increment(1);
            return;
        };
        let (learner, message) = (self.shared.quarantine.learner().clone(), message.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let teacher = crate::learning::Teacher { name: "autolearn".into(), via: "autolearn", daily_bound: 0 };
            if let Err(error) = learner.teach(message, label, &teacher).await {
                tracing::warn!(event = "not_taught", via = "autolearn", error = %error);
            }
        });
    }

    /// The transaction without its spam report recipients, and how many there were.
    fn split_reports(&self, tx: &Transaction) -> (usize, Transaction) {
        let config = &self.config;
        let mut rest = tx.clone();
        rest.recipients.retain(|r| !config.classifier.is_report_address(&r.mailbox.address(), &config.domains));
        (tx.recipients.len() - rest.recipients.len(), rest)
    }

    /// A report to the spam report address: each attached message is learned as spam, taught by
    /// the sender, if the sender is one of our users and authenticated (SPF or DMARC passed,
    /// or a `report_networks` client). Returns how many were learned; a store failure is a 451
    /// so the user's client sends the report again.
    async fn take_report(&self, tx: &Transaction, report: &[u8], evidence: &Evidence) -> Result<usize, Reply> {
        let config = &self.config.classifier;
        let sender = tx.mail.sender.as_str();
        let authenticated = evidence.has("SPF_PASS") || evidence.has("DMARC_PASS") || config.is_report_network(self.peer);
        if !authenticated {
            tracing::info!(event = "spam_report", client_ip = %self.peer, sender, outcome = "not learned", why = "sender not authenticated");
            return Ok(0);
        }
        let report = report.to_vec();
        let attached =
            tokio::task::spawn_blocking(move || crate::classifier::reports::attached_messages(&report)).await.unwrap_or_default();
        let teacher = crate::learning::Teacher { name: sender.to_string(), via: "report", daily_bound: config.user_lessons_per_day };
        let mut learned = 0;
        for message in attached {
            match self.shared.quarantine.learner().teach(Arc::new(message), crate::classifier::Label::Spam, &teacher).await {
                Ok(_) => learned += 1,
                Err(crate::learning::LearnError::DailyBound { .. }) => break,
                Err(error) => {
                    tracing::warn!(event = "spam_report", client_ip = %self.peer, sender, error = %error, outcome = "tempfail");
                    return Err(replies::local_error());
                }
            }
        }
        tracing::info!(event = "spam_report", client_ip = %self.peer, sender, learned, outcome = "learned");
        Ok(learned)
    }

    async fn store_groups(&mut self, tx: &Transaction, message: &[u8], filter_fields: &[String], groups: Vec<Group>) -> (Reply, String) {
        let without_results = strip_forged_results(message, self.scorer.authserv_id());
        let cleaned = headers::remove_fields(&without_results, |f| OUR_FIELDS.iter().any(|name| f.is(name)));
        let mut stored: Vec<Stored> = Vec::new();
        let mut holds: Vec<String> = Vec::new();
        for group in groups.iter().filter(|g| g.action != Action::Discard) {
            let id = Spool::new_id();
            if group.action == Action::Quarantine {
                self.shared.quarantine.begin_hold(&id);
                holds.push(id.clone());
            }
            match self.store_group(tx, id, &cleaned, filter_fields, group).await {
                Ok(done) => stored.push(done),
                Err(reply) => {
                    self.undo(&stored).await;
                    self.shared.quarantine.end_holds(holds.iter().map(String::as_str));
                    return (reply, "-".into());
                }
            }
        }
        for done in stored.iter().filter(|s| !s.held) {
            self.shared.queue.submit(done.id.clone());
        }
        if !holds.is_empty() {
            self.shared.quarantine.end_holds(holds.iter().map(String::as_str));
        }
        let id = stored.first().map_or_else(Spool::new_id, |s| s.id.clone());
        let ids = stored.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(",");
        (replies::queued(&id), if ids.is_empty() { "-".into() } else { ids })
    }

    async fn store_group(
        &self,
        tx: &Transaction,
        id: String,
        cleaned: &[u8],
        filter_fields: &[String],
        group: &Group,
    ) -> Result<Stored, Reply> {
        let envelope = Envelope {
            id: id.clone(),
            received_at: chrono::Utc::now().timestamp(),
            client_ip: self.peer,
            helo: self.machine.helo().unwrap_or_default().to_string(),
            sender: tx.mail.sender.clone(),
            recipients: group.recipients.clone(),
            smtputf8: tx.mail.smtputf8,
            body_8bit: tx.mail.body_8bit,
            tls: self.conn.tls_description(),
            hold: group.hold.clone(),
            staged: None,
        };
        let mut fields = vec![self.received(&envelope)];
        fields.extend(filter_fields.iter().cloned());
        if !group.spam_fields.is_empty() {
            fields.push(group.spam_fields.clone());
        }
        let body = if group.subject_prefix.is_empty() {
            std::borrow::Cow::Borrowed(cleaned)
        } else {
            std::borrow::Cow::Owned(prefix_subject(cleaned, &group.subject_prefix))
        };
        let copy = headers::prepend(&fields, &body);
        let held = group.action == Action::Quarantine;
        let spool = if held { self.shared.quarantine.holding().clone() } else { self.shared.spool.clone() };
        match tokio::task::spawn_blocking(move || spool.store(&envelope, &copy)).await {
            Ok(Ok(())) => Ok(Stored { id, held }),
            Ok(Err(error)) => {
                tracing::error!(event = "spool_error", id = %id, held, error = %error);
                Err(if matches!(error, SpoolError::DiskFull { .. }) { replies::storage_full() } else { replies::local_error() })
            }
            Err(_) => Err(replies::local_error()),
        }
    }

    /// Removes groups stored before a later group failed, so the client's retry is the only copy.
    async fn undo(&self, stored: &[Stored]) {
        for done in stored {
            let spool = if done.held { self.shared.quarantine.holding().clone() } else { self.shared.spool.clone() };
            let id = done.id.clone();
            let removed = tokio::task::spawn_blocking(move || spool.remove(&id)).await;
            if !matches!(removed, Ok(Ok(_))) {
                tracing::error!(event = "spool_undo_failed", id = %done.id);
            }
        }
    }

    fn log_verdicts(&self, verdicts: &[RecipientVerdict], outcome: &MessageOutcome) {
        for (i, v) in verdicts.iter().enumerate() {
            let action = match outcome {
                MessageOutcome::Accept(actions) => actions[i],
                MessageOutcome::Reject => Action::Reject,
                MessageOutcome::Tempfail => Action::Tempfail,
            };
            metrics::counter!("moat_verdicts_total", "action" => action.as_str()).increment(1);
            let virus = v.verdict.symbols.iter().any(|s| s.name == crate::filter::clamav::CLAMAV_VIRUS);
            crate::stats::STATS.record(action, virus, crate::store::unix_now());
            for symbol in &v.verdict.symbols {
                metrics::counter!("moat_symbols_total", "symbol" => symbol.name.clone()).increment(1);
            }
            tracing::info!(
                event = "verdict",
                client_ip = %self.peer,
                recipient = v.recipient,
                action = action.as_str(),
                wanted = v.verdict.action.as_str(),
                score = v.verdict.score,
                symbols = symbol_names(&v.verdict.symbols),
                reason = v.verdict.reason,
            );
        }
    }
}

/// The 5xx for a refused message: a virus is called a virus (with its signature), a forced
/// policy action names its rule, anything else is spam by score.
fn rejection(verdict: &Verdict) -> Reply {
    let virus = verdict.symbols.iter().find(|s| s.name == crate::filter::clamav::CLAMAV_VIRUS);
    match (verdict.forced_by.as_deref(), virus) {
        (Some(crate::filter::clamav::CLAMAV_VIRUS), Some(symbol)) => {
            replies::rejected_virus(&crate::notices::signature_from_detail(symbol.detail.as_deref().unwrap_or("unknown")))
        }
        (Some(_), _) => replies::rejected_by_rule(&verdict.reason),
        (None, _) => replies::rejected_spam(&verdict.reason),
    }
}

/// Recipients with the same disposition and the same headers share one copy.
fn group(verdicts: &[RecipientVerdict], dispositions: &[Action]) -> Vec<Group> {
    type Key = (Action, String, String, Option<&'static str>);
    let mut groups: BTreeMap<Key, (Option<Hold>, Vec<String>)> = BTreeMap::new();
    for (v, action) in verdicts.iter().zip(dispositions) {
        let spam_fields = match action {
            Action::Tag | Action::Quarantine => spam_fields(&v.verdict, v.verdict.action),
            _ => String::new(),
        };
        let prefix = if *action == Action::Tag { v.subject_prefix.clone() } else { String::new() };
        let hold = (*action == Action::Quarantine).then(|| quarantine::hold_of(category(&v.verdict), &v.verdict));
        let key = (*action, spam_fields, prefix, hold.as_ref().map(|h| h.category.as_str()));
        groups.entry(key).or_insert_with(|| (hold, Vec::new())).1.push(v.recipient.clone());
    }
    groups
        .into_iter()
        .map(|((action, spam_fields, subject_prefix, _), (hold, recipients))| Group {
            action,
            hold,
            spam_fields,
            subject_prefix,
            recipients,
        })
        .collect()
}

/// Why a quarantined copy is held: a virus, a forced policy action (block list, attachment
/// rule, DMARC …), or its spam score.
fn category(verdict: &Verdict) -> Category {
    if verdict.symbols.iter().any(|s| s.name == "CLAMAV_VIRUS") {
        Category::Virus
    } else if verdict.forced_by.is_some() {
        Category::Policy
    } else {
        Category::Spam
    }
}

/// `X-Spam-Flag`, `X-Spam-Score` and `X-Spam-Status` (SpamAssassin's layout, folded).
pub fn spam_fields(verdict: &Verdict, wanted: Action) -> String {
    let spam = wanted != Action::Accept;
    let mut tests = String::new();
    let mut line = 0;
    for (i, symbol) in verdict.symbols.iter().enumerate() {
        let item = format!("{}={}", symbol.name, symbol.score);
        if i > 0 {
            tests.push(',');
            line += 1;
            if line + item.len() > 70 {
                tests.push_str("\r\n\t");
                line = 0;
            }
        }
        line += item.len();
        tests.push_str(&item);
    }
    let flag = if spam { "YES" } else { "NO" };
    let status = if spam { "Yes" } else { "No" };
    format!(
        "X-Spam-Flag: {flag}\r\nX-Spam-Score: {}\r\nX-Spam-Status: {status}, score={} action={}\r\n\ttests={}\r\n",
        verdict.score,
        verdict.score,
        wanted.as_str(),
        if tests.is_empty() { "none".to_string() } else { tests }
    )
}

/// The message with `prefix` put in front of its Subject (added when there is none; not
/// added twice).
pub fn prefix_subject(message: &[u8], prefix: &str) -> Vec<u8> {
    let fields = headers::fields(message);
    let Some(subject) = fields.iter().find(|f| f.is("Subject")) else {
        return headers::prepend(&[format!("Subject: {}\r\n", prefix.trim_end())], message);
    };
    let value_start = subject.end - subject.value.len() - line_ending_len(&message[..subject.end]);
    let text = &message[value_start..subject.end];
    let leading = text.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    if text[leading..].starts_with(prefix.as_bytes()) {
        return message.to_vec();
    }
    let mut out = Vec::with_capacity(message.len() + prefix.len() + 1);
    out.extend_from_slice(&message[..value_start]);
    out.push(b' ');
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(&text[leading..]);
    out.extend_from_slice(&message[subject.end..]);
    out
}

fn line_ending_len(upto: &[u8]) -> usize {
    if upto.ends_with(b"\r\n") {
        2
    } else if upto.ends_with(b"\n") {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Symbol;

    fn verdict(score: f64, names: &[&str], action: Action) -> Verdict {
        Verdict { action, score, symbols: names.iter().map(|n| Symbol::scored(*n, 1.5)).collect(), reason: String::new(), forced_by: None }
    }

    #[test]
    fn subject_prefix_is_added_once_and_the_rest_is_untouched() {
        let message = b"From: a@b.test\r\nSubject:  Cheap\r\n pills\r\n\r\nbody\r\n";
        let tagged = prefix_subject(message, "[SPAM] ");
        assert_eq!(tagged, b"From: a@b.test\r\nSubject: [SPAM] Cheap\r\n pills\r\n\r\nbody\r\n");
        assert_eq!(prefix_subject(&tagged, "[SPAM] "), tagged);
        assert_eq!(prefix_subject(b"From: a\r\n\r\nx", "[SPAM] "), b"Subject: [SPAM]\r\nFrom: a\r\n\r\nx");
    }

    #[test]
    fn spam_fields_list_every_symbol_with_its_score() {
        let fields = spam_fields(&verdict(7.5, &["SPF_FAIL", "DKIM_INVALID"], Action::Tag), Action::Tag);
        assert!(fields.starts_with("X-Spam-Flag: YES\r\nX-Spam-Score: 7.5\r\nX-Spam-Status: Yes, score=7.5 action=tag\r\n"));
        assert!(fields.contains("tests=SPF_FAIL=1.5,DKIM_INVALID=1.5\r\n"), "{fields}");
        let many: Vec<String> = (0..20).map(|i| format!("RULE_NUMBER_{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        let folded = spam_fields(&verdict(30.0, &names, Action::Quarantine), Action::Quarantine);
        assert!(folded.lines().all(|l| l.len() <= 78), "{folded}");
        assert_eq!(headers::fields(folded.as_bytes()).len(), 3);
    }

    #[test]
    fn recipients_with_the_same_outcome_share_a_copy() {
        let rv = |rcpt: &str, action: Action, prefix: &str| RecipientVerdict {
            recipient: rcpt.into(),
            verdict: verdict(6.0, &["X"], action),
            subject_prefix: prefix.into(),
        };
        let verdicts =
            [rv("a@x", Action::Tag, ""), rv("b@x", Action::Tag, ""), rv("c@y", Action::Tag, "[S] "), rv("d@z", Action::Quarantine, "")];
        let groups = group(&verdicts, &[Action::Tag, Action::Tag, Action::Tag, Action::Quarantine]);
        let shape: Vec<(Action, Vec<String>)> = groups.iter().map(|g| (g.action, g.recipients.clone())).collect();
        assert_eq!(
            shape,
            [
                (Action::Tag, vec!["a@x".to_string(), "b@x".to_string()]),
                (Action::Tag, vec!["c@y".to_string()]),
                (Action::Quarantine, vec!["d@z".to_string()])
            ]
        );
    }
}
