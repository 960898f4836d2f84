//! RCPT: the open-relay check, recipient validation ([`crate::relay::RecipientVerifier`]) and
//! the RCPT-phase filters, early reject and greylisting.
//!
//! Guarantees: a recipient is accepted only if its domain is one we relay for (see
//! `smtp::address` for the tricks refused) and the domain's recipient check passes.

use super::{Session, Transaction};
use crate::filter::{Facts, Phase};
use crate::relay::Validity;
use crate::smtp::address::{self, Mailbox, RcptProblem};
use crate::smtp::machine::Answer;
use crate::smtp::reply::{Reply, replies};
use crate::verdict::{Action, Evidence};

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
        if config.classifier.is_report_address(&mailbox.address(), &config.domains) {
            // The report address is ours, not the downstream's: no recipient check, no filters
            // (its attachments are spam by design); only our own users may use it.
            let from_ours = mail.sender.rsplit_once('@').is_some_and(|(_, d)| config.domain(d).is_some());
            return if from_ours { (Answer::Accept((mailbox, Evidence::default())), false) } else { answer(replies::report_not_ours()) };
        }
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
