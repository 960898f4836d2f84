//! `[policy]` and the per-domain `policy` override: what a score means for a recipient.
//!
//! Resolution for one recipient: the domain's override for each key it sets, else the global
//! value. Forced actions merge: the domain's entries add to (and replace) the global ones.

use serde::Deserialize;
use std::collections::BTreeMap;

/// What happens to a message for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Deliver unchanged (but for our Received and Authentication-Results headers).
    Accept,
    /// Deliver with X-Spam-* headers (and optionally a subject prefix).
    Tag,
    /// Hold in the quarantine; the user can release it.
    Quarantine,
    /// Accept and drop silently. Only ever by explicit policy (e.g. a block list set to discard).
    Discard,
    /// 5xx at the end of DATA (or earlier where the evidence is known earlier).
    Reject,
    /// 4xx: the sender retries later.
    Tempfail,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Discard => "discard",
            Action::Reject => "reject",
            Action::Tempfail => "tempfail",
        }
    }
}

/// How a filter failure (DNS timeout, clamd down) is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stance {
    /// Carry on; the failure shows as a symbol (e.g. `CLAMAV_FAIL`).
    FailOpen,
    /// Answer 4xx so the sender retries.
    FailClosed,
}

/// Global scoring policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Score at which mail is delivered with X-Spam-* headers.
    pub tag_at: f64,
    /// Score at which mail is held in the quarantine instead of delivered.
    pub quarantine_at: f64,
    /// Score at which mail is refused (5xx).
    pub reject_at: f64,
    /// Put in front of the Subject of tagged mail, e.g. "[SPAM] ". Empty: subject untouched.
    pub subject_prefix: String,
    /// Symbols that decide the action whatever the score, e.g. `DNSBL_SPAMHAUS = "reject"`.
    /// Added to (and able to replace) the built-in ones: `CLAMAV_VIRUS` and `BLOCK_LIST` →
    /// reject, `ALLOW_LIST` → accept.
    pub forced: BTreeMap<String, Action>,
    /// Refuse at RCPT time when the evidence gathered by then (connection, HELO, sender,
    /// recipient) already reaches a reject, instead of reading the message first.
    pub early_reject: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            tag_at: 5.0,
            quarantine_at: 10.0,
            reject_at: 20.0,
            subject_prefix: String::new(),
            forced: BTreeMap::new(),
            early_reject: true,
        }
    }
}

/// A domain's own thresholds; every key optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    pub tag_at: Option<f64>,
    pub quarantine_at: Option<f64>,
    pub reject_at: Option<f64>,
    pub subject_prefix: Option<String>,
    #[serde(default)]
    pub forced: BTreeMap<String, Action>,
}

impl PolicyConfig {
    /// The thresholds (tag, quarantine, reject) for a recipient of a domain with `over` (if
    /// any): the domain's value for each it sets, else the global one. The whole policy is
    /// `verdict::Policy::resolve`.
    pub fn thresholds(&self, over: Option<&PolicyOverride>) -> (f64, f64, f64) {
        (
            over.and_then(|o| o.tag_at).unwrap_or(self.tag_at),
            over.and_then(|o| o.quarantine_at).unwrap_or(self.quarantine_at),
            over.and_then(|o| o.reject_at).unwrap_or(self.reject_at),
        )
    }

    /// The subject prefix for a recipient of a domain with `over`.
    pub fn subject_prefix<'a>(&'a self, over: Option<&'a PolicyOverride>) -> &'a str {
        over.and_then(|o| o.subject_prefix.as_deref()).unwrap_or(&self.subject_prefix)
    }
}

/// Thresholds must rise: tag ≤ quarantine ≤ reject. Returns the problem, if any.
pub fn check_thresholds(tag: f64, quarantine: f64, reject: f64) -> Option<String> {
    if !(tag.is_finite() && quarantine.is_finite() && reject.is_finite()) {
        return Some("thresholds must be numbers".into());
    }
    (tag > quarantine || quarantine > reject)
        .then(|| format!("thresholds must satisfy tag_at ({tag}) <= quarantine_at ({quarantine}) <= reject_at ({reject})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_thresholds_override_the_global_ones_key_by_key() {
        let over = PolicyOverride { quarantine_at: Some(6.0), ..Default::default() };
        assert_eq!(PolicyConfig::default().thresholds(Some(&over)), (5.0, 6.0, 20.0));
        assert_eq!(PolicyConfig::default().thresholds(None), (5.0, 10.0, 20.0));
    }

    #[test]
    fn thresholds_must_rise() {
        assert!(check_thresholds(5.0, 10.0, 20.0).is_none());
        assert!(check_thresholds(5.0, 10.0, 10.0).is_none());
        assert!(check_thresholds(11.0, 10.0, 20.0).is_some());
        assert!(check_thresholds(5.0, f64::NAN, 20.0).is_some());
    }
}
