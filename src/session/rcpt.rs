//! RCPT: the open-relay check, recipient validation ([`crate::relay::RecipientVerifier`]) and
//! the RCPT-phase filters, early reject and greylisting.
//!
//! Guarantees: a recipient is accepted only if its domain is one we relay for (see
//! `smtp::address` for the tricks refused) and the domain's recipient check passes.

use super::{Session, Transaction};
use crate::filter::{Facts, Phase};
use crate::relay::Validity;
use crate::smtp::address::{self, RcptProblem};
use crate::smtp::reply::{Reply, replies};
use crate::verdict::{Action, Evidence};

impl Session {
    pub(super) async fn rcpt(&mut self, raw: &str) -> Reply {
        let sender = self.tx.as_ref().map(|tx| tx.mail.sender.clone());
        let (reply, logged) = self.check_rcpt(raw).await;
        if let (Some(sender), false) = (sender, logged || reply.is_positive()) {
            tracing::info!(
                event = "rcpt_refused",
                client_ip = %self.peer,
                sender,
                recipient = raw,
                reply = reply.summary(),
            );
        }
        reply
    }

    /// The reply to `RCPT TO:<raw>`, and whether a refusal was already logged (with its verdict).
    async fn check_rcpt(&mut self, raw: &str) -> (Reply, bool) {
        let config = self.config.clone();
        let Some(Transaction { mail, recipients, .. }) = &self.tx else {
            return (replies::bad_sequence("Need MAIL before RCPT"), false);
        };
        if recipients.len() >= config.limits.max_recipients {
            return (replies::too_many_recipients(), false);
        }
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
            Err(RcptProblem::Syntax) => return (replies::bad_recipient(), false),
            Err(RcptProblem::NotLocal) => return (replies::relay_denied(), false),
            Err(RcptProblem::NeedsSmtpUtf8) => return (replies::needs_smtputf8(), false),
        };
        let Some(domain) = config.domain(&mailbox.domain) else {
            return (replies::relay_denied(), false);
        };
        match self.shared.verifier.validate(&config, domain, &mailbox).await {
            Validity::Valid => {}
            Validity::Unknown => return (replies::unknown_user(domain.unknown_user_code), false),
            Validity::Unverifiable => return (replies::recipient_unverified(), false),
        }
        let address = mailbox.address();
        if recipients.iter().any(|r| r.address().eq_ignore_ascii_case(&address)) {
            return (replies::recipient_ok(), false);
        }
        let scorer = self.scorer.clone();
        let mut facts = self.facts();
        facts.rcpt = Some(address.clone());
        let evidence = scorer.run(Phase::Rcpt, &facts).await;
        if let Some(refusal) = self.early_verdict(&evidence, &facts, &address) {
            return (refusal, true);
        }
        let mut so_far = self.evidence_so_far(self.tx.as_ref(), None);
        so_far.extend(&evidence);
        if let Some(wait) = self.greylisted(facts.sender.as_deref().unwrap_or(""), &address, &so_far).await {
            return (wait, true);
        }
        if let Some(tx) = &mut self.tx {
            tx.recipients.push(mailbox);
            tx.rcpt_evidence.push(evidence);
        }
        (replies::recipient_ok(), false)
    }

    /// With `early_reject`, refuses a recipient whose verdict is already a reject (or a
    /// fail-closed tempfail) from what is known before the message.
    fn early_verdict(&self, rcpt_evidence: &Evidence, facts: &Facts, address: &str) -> Option<Reply> {
        if !self.config.policy.early_reject {
            return None;
        }
        let mut evidence = self.evidence_so_far(self.tx.as_ref(), None);
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
