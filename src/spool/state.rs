//! Per-message delivery state: `queue/<id>.state`.
//!
//! One entry per recipient: pending, delivered (with the downstream's reply) or failed (with
//! the reply, or our own 4.4.7 when the message expired). Plus the attempt count, the first
//! and the last attempt, and when the next attempt is due.
//!
//! Guarantees: the transitions here are pure functions of (state, outcomes, now, policy); a
//! recipient that is delivered or failed never goes back to pending; the retry delay starts at
//! `retry_initial`, doubles per attempt and never exceeds `retry_max`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A reply from the downstream server (or one moat made up, e.g. for an expired message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownstreamReply {
    pub code: u16,
    /// Enhanced status code (RFC 3463), when the server sent one.
    pub enhanced: Option<[u8; 3]>,
    /// Text after the code(s). Lines of a multi-line reply are joined with '\n'.
    pub text: String,
}

impl DownstreamReply {
    pub fn new(code: u16, enhanced: Option<[u8; 3]>, text: impl Into<String>) -> DownstreamReply {
        DownstreamReply { code, enhanced, text: text.into() }
    }

    /// The enhanced code as "x.y.z", or one derived from the basic code's class.
    pub fn status(&self) -> String {
        match self.enhanced {
            Some([a, b, c]) => format!("{a}.{b}.{c}"),
            None => format!("{}.0.0", (self.code / 100).clamp(2, 5)),
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

impl fmt::Display for DownstreamReply {
    /// One line: "550 5.1.1 text" with lines of multi-line replies joined by "; ".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some([a, b, c]) = self.enhanced {
            write!(f, " {a}.{b}.{c}")?;
        }
        let mut first = true;
        for line in self.text.lines() {
            f.write_str(if first { " " } else { "; " })?;
            first = false;
            for ch in line.chars() {
                let ch = if ch.is_control() { ' ' } else { ch };
                write!(f, "{ch}")?;
            }
        }
        Ok(())
    }
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Delivered,
    Failed,
}

/// One recipient's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    pub address: String,
    pub status: Status,
    /// The last reply concerning this recipient (final for delivered/failed).
    pub reply: Option<DownstreamReply>,
    /// "host:port" of the server that gave `reply`, when it came from a server.
    pub remote: Option<String>,
    /// Unix seconds when the status became final.
    pub finished_at: Option<i64>,
}

/// What one attempt did for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// 2xx: the downstream took responsibility.
    Delivered(DownstreamReply),
    /// 5xx: never going to work.
    Failed(DownstreamReply),
    /// 4xx, a connection error or a timeout: try again later.
    Deferred(DownstreamReply),
}

/// How retries are spaced and when the queue gives up (all in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: u64,
    pub max: u64,
    pub max_lifetime: u64,
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failed attempt (1-based): initial · 2^(attempts−1), capped.
    pub fn backoff(&self, attempts: u32) -> u64 {
        let exponent = attempts.saturating_sub(1).min(63);
        let factor = 1u64.checked_shl(exponent).unwrap_or(u64::MAX);
        self.initial.max(1).saturating_mul(factor).min(self.max.max(1))
    }
}

/// The state file of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    pub version: u32,
    pub attempts: u32,
    pub first_attempt: Option<i64>,
    pub last_attempt: Option<i64>,
    /// Unix seconds when the next attempt is due (0: now).
    pub next_attempt: i64,
    pub recipients: Vec<RecipientState>,
}

impl DeliveryState {
    /// The state of a message nobody has tried yet: every recipient pending, due now.
    pub fn new(recipients: &[String]) -> DeliveryState {
        DeliveryState {
            version: 1,
            attempts: 0,
            first_attempt: None,
            last_attempt: None,
            next_attempt: 0,
            recipients: recipients
                .iter()
                .map(|address| RecipientState {
                    address: address.clone(),
                    status: Status::Pending,
                    reply: None,
                    remote: None,
                    finished_at: None,
                })
                .collect(),
        }
    }

    /// Indexes of the recipients still pending.
    pub fn pending(&self) -> Vec<usize> {
        (0..self.recipients.len()).filter(|i| self.recipients[*i].status == Status::Pending).collect()
    }

    /// True when every recipient is delivered or failed.
    pub fn is_final(&self) -> bool {
        self.recipients.iter().all(|r| r.status != Status::Pending)
    }

    /// True when at least one recipient failed.
    pub fn any_failed(&self) -> bool {
        self.recipients.iter().any(|r| r.status == Status::Failed)
    }

    /// Records one attempt. `outcomes` pairs a recipient index with what happened to it and the
    /// server that said so; indexes out of range or of final recipients are ignored. Then
    /// expires the message if it is older than the lifetime, or schedules the next attempt.
    pub fn record_attempt(
        &mut self,
        outcomes: &[(usize, DeliveryOutcome, Option<String>)],
        received_at: i64,
        now: i64,
        policy: &RetryPolicy,
    ) {
        self.attempts = self.attempts.saturating_add(1);
        self.first_attempt.get_or_insert(now);
        self.last_attempt = Some(now);
        for (index, outcome, remote) in outcomes {
            let Some(rcpt) = self.recipients.get_mut(*index) else { continue };
            if rcpt.status != Status::Pending {
                continue;
            }
            let (status, reply) = match outcome {
                DeliveryOutcome::Delivered(reply) => (Status::Delivered, reply),
                DeliveryOutcome::Failed(reply) => (Status::Failed, reply),
                DeliveryOutcome::Deferred(reply) => (Status::Pending, reply),
            };
            rcpt.status = status;
            rcpt.reply = Some(reply.clone());
            rcpt.remote = remote.clone();
            if status != Status::Pending {
                rcpt.finished_at = Some(now);
            }
        }
        if self.is_final() {
            return;
        }
        if self.expire_if_old(received_at, now, policy) {
            return;
        }
        let wait = policy.backoff(self.attempts);
        self.next_attempt = now.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
    }

    /// Fails every pending recipient with 4.4.7 if the message is older than the lifetime.
    /// The last reply seen is kept in the text so the sender learns why.
    pub fn expire_if_old(&mut self, received_at: i64, now: i64, policy: &RetryPolicy) -> bool {
        let lifetime = i64::try_from(policy.max_lifetime).unwrap_or(i64::MAX);
        if now.saturating_sub(received_at) < lifetime {
            return false;
        }
        for rcpt in self.recipients.iter_mut().filter(|r| r.status == Status::Pending) {
            let last = rcpt.reply.as_ref().map(|r| format!(" (last reply: {r})")).unwrap_or_default();
            rcpt.status = Status::Failed;
            rcpt.reply =
                Some(DownstreamReply::new(451, Some([4, 4, 7]), format!("delivery time expired: message was queued too long{last}")));
            rcpt.finished_at = Some(now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy { initial: 60, max: 3600, max_lifetime: 86400 };

    fn state() -> DeliveryState {
        DeliveryState::new(&["a@x.test".into(), "b@x.test".into()])
    }

    fn reply(code: u16) -> DownstreamReply {
        DownstreamReply::new(code, Some([(code / 100) as u8, 0, 0]), "text")
    }

    #[test]
    fn backoff_doubles_from_initial_and_caps_at_max() {
        let delays: Vec<u64> = (1..=9).map(|n| POLICY.backoff(n)).collect();
        assert_eq!(delays, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(POLICY.backoff(0), 60);
        assert_eq!(POLICY.backoff(u32::MAX), 3600);
    }

    #[test]
    fn mixed_outcomes_keep_replies_and_schedule_a_retry() {
        let mut s = state();
        s.record_attempt(
            &[
                (0, DeliveryOutcome::Delivered(reply(250)), Some("mx:25".into())),
                (1, DeliveryOutcome::Deferred(reply(451)), Some("mx:25".into())),
            ],
            1000,
            1000,
            &POLICY,
        );
        assert_eq!(s.recipients[0].status, Status::Delivered);
        assert_eq!(s.recipients[0].reply, Some(reply(250)));
        assert_eq!(s.recipients[1].status, Status::Pending);
        assert_eq!(s.pending(), vec![1]);
        assert_eq!(s.next_attempt, 1060);
        assert_eq!(s.first_attempt, Some(1000));

        s.record_attempt(&[(1, DeliveryOutcome::Deferred(reply(451)), None)], 1000, 1060, &POLICY);
        assert_eq!(s.next_attempt, 1060 + 120);
        assert_eq!(s.attempts, 2);
        assert_eq!(s.first_attempt, Some(1000));
    }

    #[test]
    fn final_recipients_never_change_again() {
        let mut s = state();
        s.record_attempt(&[(0, DeliveryOutcome::Failed(reply(550)), None)], 0, 10, &POLICY);
        s.record_attempt(
            &[(0, DeliveryOutcome::Delivered(reply(250)), None), (9, DeliveryOutcome::Delivered(reply(250)), None)],
            0,
            20,
            &POLICY,
        );
        assert_eq!(s.recipients[0].status, Status::Failed);
        assert_eq!(s.recipients[0].reply, Some(reply(550)));
        assert!(s.any_failed());
        assert!(!s.is_final());
    }

    #[test]
    fn expired_messages_fail_with_4_4_7_and_keep_the_last_reply() {
        let mut s = state();
        s.record_attempt(
            &[
                (0, DeliveryOutcome::Delivered(reply(250)), None),
                (1, DeliveryOutcome::Deferred(DownstreamReply::new(421, None, "busy")), None),
            ],
            0,
            86400,
            &POLICY,
        );
        assert!(s.is_final());
        assert_eq!(s.recipients[0].status, Status::Delivered);
        let failed = s.recipients[1].reply.clone().unwrap();
        assert_eq!(failed.status(), "4.4.7");
        assert!(failed.text.contains("421 busy"), "{failed:?}");
    }

    #[test]
    fn reply_display_is_one_line() {
        let r = DownstreamReply::new(550, Some([5, 1, 1]), "no such user\nreally\r");
        assert_eq!(r.to_string(), "550 5.1.1 no such user; really ");
        assert_eq!(DownstreamReply::new(421, None, "x").status(), "4.0.0");
    }
}
