//! `[policy]` and the per-domain `policy` override: what a score means for a recipient.
//!
//! Resolution for one recipient: the domain's override for each key it sets, else the global
//! value. Forced actions merge: the domain's entries add to (and replace) the global ones.

use crate::verdict::{Action, Policy};
use serde::Deserialize;
use std::collections::BTreeMap;

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
        let defaults = Policy::default();
        PolicyConfig {
            tag_at: defaults.tag_at,
            quarantine_at: defaults.quarantine_at,
            reject_at: defaults.reject_at,
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
    /// The verdict policy for a recipient of a domain with `over` (if any). Whether filtering
    /// is on for the recipient is the lists' business (`[[lists.domain]]`, `[[lists.user]]`).
    pub fn resolve(&self, over: Option<&PolicyOverride>) -> Policy {
        let over = over.cloned().unwrap_or_default();
        let mut forced = builtin_forced();
        forced.extend(self.forced.clone());
        forced.extend(over.forced);
        Policy {
            tag_at: over.tag_at.unwrap_or(self.tag_at),
            quarantine_at: over.quarantine_at.unwrap_or(self.quarantine_at),
            reject_at: over.reject_at.unwrap_or(self.reject_at),
            forced,
            filtering: true,
        }
    }

    /// The subject prefix for a recipient of a domain with `over`.
    pub fn subject_prefix<'a>(&'a self, over: Option<&'a PolicyOverride>) -> &'a str {
        over.and_then(|o| o.subject_prefix.as_deref()).unwrap_or(&self.subject_prefix)
    }
}

/// Forced actions that hold unless the configuration says otherwise.
fn builtin_forced() -> BTreeMap<String, Action> {
    [("ALLOW_LIST", Action::Accept), ("BLOCK_LIST", Action::Reject), ("CLAMAV_VIRUS", Action::Reject)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
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
    fn domain_override_wins_key_by_key_and_forced_actions_merge() {
        let global = PolicyConfig { forced: [("RCVD_IN_X".to_string(), Action::Reject)].into(), ..Default::default() };
        let over = PolicyOverride {
            quarantine_at: Some(6.0),
            forced: [("DMARC_POLICY_REJECT".to_string(), Action::Reject)].into(),
            ..Default::default()
        };
        let policy = global.resolve(Some(&over));
        assert_eq!((policy.tag_at, policy.quarantine_at, policy.reject_at), (5.0, 6.0, 20.0));
        assert_eq!(policy.forced.get("DMARC_POLICY_REJECT"), Some(&Action::Reject));
        assert_eq!(policy.forced.get("CLAMAV_VIRUS"), Some(&Action::Reject), "built-in entries stay");
        assert_eq!(policy.forced.get("RCVD_IN_X"), Some(&Action::Reject), "global entries stay");
    }

    #[test]
    fn thresholds_must_rise() {
        assert!(check_thresholds(5.0, 10.0, 20.0).is_none());
        assert!(check_thresholds(5.0, 10.0, 10.0).is_none());
        assert!(check_thresholds(11.0, 10.0, 20.0).is_some());
        assert!(check_thresholds(5.0, f64::NAN, 20.0).is_some());
    }
}
