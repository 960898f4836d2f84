//! RCPT: the open-relay check and recipient validation (static list and/or cached callout).
//!
//! Guarantees: a recipient is accepted only if its domain is one we relay for (see
//! `smtp::address` for the tricks refused) and the domain's recipient check passes. The callout
//! cache is bounded in entries; negative answers are cached for a short time, temporary failures
//! not at all.

use super::{Session, Transaction};
use crate::config::{Config, Domain, RecipientCheck};
use crate::filter::{Facts, Phase};
use crate::relay::{self, ProbeAnswer};
use crate::smtp::address::{self, Mailbox, RcptProblem};
use crate::smtp::machine::Answer;
use crate::smtp::reply::{Reply, replies};
use crate::verdict::{Action, Evidence};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most callout answers kept; when full, expired entries go first, then everything.
const CACHE_ENTRIES: usize = 100_000;
/// How long a "no such user" answer is believed.
const NEGATIVE_TTL: Duration = Duration::from_secs(600);

/// The outcome of validating one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid,
    Unknown,
    /// The downstream could not answer now.
    Unverifiable,
}

/// Validates recipients per domain policy, caching callout answers.
#[derive(Default)]
pub struct RecipientVerifier {
    cache: Mutex<HashMap<String, (bool, Instant)>>,
}

impl RecipientVerifier {
    /// Whether `RCPT TO:<address>` would pass the open-relay check and the recipient check now
    /// (as in a session with SMTPUTF8): for moat's own emails to users, such as login links.
    pub async fn accepts(&self, config: &Config, address: &str) -> bool {
        let served = |d: &str| config.domain(d).is_some();
        let Ok(mailbox) = address::check_recipient(address, true, served) else { return false };
        let Some(domain) = config.domain(&mailbox.domain) else { return false };
        self.validate(config, domain, &mailbox).await == Validity::Valid
    }

    pub async fn validate(&self, config: &Config, domain: &Domain, mailbox: &Mailbox) -> Validity {
        let address = mailbox.address();
        let listed = || domain.recipients.iter().any(|r| r.eq_ignore_ascii_case(&address));
        match domain.recipient_check {
            RecipientCheck::Any => Validity::Valid,
            RecipientCheck::List => {
                if listed() {
                    Validity::Valid
                } else {
                    Validity::Unknown
                }
            }
            RecipientCheck::ListThenCallout if listed() => Validity::Valid,
            RecipientCheck::Callout | RecipientCheck::ListThenCallout => self.callout(config, domain, &address).await,
        }
    }

    async fn callout(&self, config: &Config, domain: &Domain, address: &str) -> Validity {
        let key = address.to_ascii_lowercase();
        if let Some(valid) = self.cached(&key) {
            return if valid { Validity::Valid } else { Validity::Unknown };
        }
        let route = config.route_for(&domain.name);
        let answer = relay::probe_recipient(route, config, address).await;
        let (valid, ttl) = match answer {
            Ok(ProbeAnswer::Accepted) => (true, domain.callout_cache.duration()),
            Ok(ProbeAnswer::Rejected { .. }) => (false, NEGATIVE_TTL.min(domain.callout_cache.duration())),
            Ok(ProbeAnswer::Temporary { .. }) | Err(_) => return Validity::Unverifiable,
        };
        self.remember(key, valid, ttl);
        if valid { Validity::Valid } else { Validity::Unknown }
    }

    fn cached(&self, key: &str) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(key).filter(|(_, expires)| *expires > Instant::now()).map(|(valid, _)| *valid)
    }

    fn remember(&self, key: String, valid: bool, ttl: Duration) {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            let now = Instant::now();
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (valid, Instant::now() + ttl));
    }
}

impl Session {
    /// RCPT, after the machine's checks (a transaction is open, under the recipient limit).
    pub(super) async fn rcpt(&mut self, raw: &str) {
        let sender = self.machine.transaction().map(|tx| tx.mail.sender.clone());
        let (answer, logged) = self.check_rcpt(raw).await;
        if let (Some(sender), Answer::Reply(reply), false) = (sender, &answer, logged)
            && !reply.is_positive()
        {
            self.log_rcpt_refused(&sender, raw, reply);
        }
        self.machine.answer_rcpt(answer);
    }

    /// A refused recipient, for the log.
    pub(super) fn log_rcpt_refused(&self, sender: &str, recipient: &str, reply: &Reply) {
        tracing::info!(
            event = "rcpt_refused",
            client_ip = %self.peer,
            sender,
            recipient,
            reply = reply.summary(),
        );
    }

    /// The answer to `RCPT TO:<raw>`, and whether a refusal was already logged (with its verdict).
    async fn check_rcpt(&self, raw: &str) -> (Answer<(Mailbox, Evidence)>, bool) {
        let answer = |reply: Reply| (Answer::Reply(reply), false);
        let config = self.config.clone();
        let Some(Transaction { mail, recipients, .. }) = self.machine.transaction() else {
            return answer(replies::bad_sequence("Need MAIL before RCPT"));
        };
        // RFC 5321 §4.5.1: <postmaster> without a domain must be accepted.
        let postmaster;
        let raw = match (raw == "postmaster", config.domains.first()) {
            (true, Some(primary)) => {
                postmaster = format!("postmaster@{}", primary.name);
                postmaster.as_str()
            }
            _ => raw,
        };
        let served = |d: &str| config.domain(d).is_some();
        let mailbox = match address::check_recipient(raw, mail.smtputf8, served) {
            Ok(mailbox) => mailbox,
            Err(RcptProblem::Syntax) => return answer(replies::bad_recipient()),
            Err(RcptProblem::NotLocal) => return answer(replies::relay_denied()),
            Err(RcptProblem::NeedsSmtpUtf8) => return answer(replies::needs_smtputf8()),
        };
        let Some(domain) = config.domain(&mailbox.domain) else {
            return answer(replies::relay_denied());
        };
        match self.shared.verifier.validate(&config, domain, &mailbox).await {
            Validity::Valid => {}
            Validity::Unknown => return answer(replies::unknown_user(domain.unknown_user_code)),
            Validity::Unverifiable => return answer(replies::recipient_unverified()),
        }
        let address = mailbox.address();
        if recipients.iter().any(|r| r.mailbox.address().eq_ignore_ascii_case(&address)) {
            return answer(replies::recipient_ok());
        }
        let scorer = self.scorer.clone();
        let mut facts = self.facts();
        facts.rcpt = Some(address.clone());
        let evidence = scorer.run(Phase::Rcpt, &facts).await;
        if let Some(refusal) = self.early_verdict(&evidence, &facts, &address) {
            return (Answer::Reply(refusal), true);
        }
        let mut so_far = self.evidence_so_far(self.machine.transaction(), None);
        so_far.extend(&evidence);
        if let Some(wait) = self.greylisted(facts.sender.as_deref().unwrap_or(""), &address, &so_far).await {
            return (Answer::Reply(wait), true);
        }
        (Answer::Accept((mailbox, evidence)), false)
    }

    /// With `early_reject`, refuses a recipient whose verdict is already a reject (or a
    /// fail-closed tempfail) from what is known before the message.
    fn early_verdict(&self, rcpt_evidence: &Evidence, facts: &Facts, address: &str) -> Option<Reply> {
        if !self.config.policy.early_reject {
            return None;
        }
        let mut evidence = self.evidence_so_far(self.machine.transaction(), None);
        evidence.extend(rcpt_evidence);
        let decided = self.scorer.verdict(&evidence, facts, address);
        let reply = match decided.verdict.action {
            Action::Reject => replies::rejected_policy(&decided.verdict.reason),
            Action::Tempfail => replies::filter_tempfail(),
            _ => return None,
        };
        tracing::info!(
            event = "rcpt_refused",
            client_ip = %self.peer,
            sender = facts.sender.as_deref().unwrap_or(""),
            recipient = address,
            score = decided.verdict.score,
            symbols = symbol_names(&decided.verdict.symbols),
            reason = decided.verdict.reason,
        );
        Some(reply)
    }
}

/// "A,B,C" for logs: symbol names only (never details that could carry content).
pub(super) fn symbol_names(symbols: &[crate::verdict::Symbol]) -> String {
    symbols.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(",")
}
