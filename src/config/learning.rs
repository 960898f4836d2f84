//! `[classifier]`: the statistical classifier that learns from the mail users release and report.
//! On by default; it abstains (emits no symbol) until it has learned `min_learned` messages of
//! each kind, so a new install behaves as it would without it.

use super::Seconds;
use serde::Deserialize;

/// The range of `table_bits` (the classifier's model takes its bounds from here).
pub const TABLE_BITS: std::ops::RangeInclusive<u8> = 10..=23;

/// `[classifier]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Classifier {
    pub enabled: bool,
    /// Messages of each kind the model must have learned before its symbols are emitted.
    pub min_learned: u64,
    /// log2 of the model's buckets (8 bytes each): 21 is 16 MiB; 10 ..= 23 (64 MiB).
    /// Applies when a model is first created; an existing model keeps its size.
    pub table_bits: u8,
    /// How often each node asks the store whether another node (or `moat learn`) changed the
    /// model, and folds in what users taught.
    pub sync: Seconds,
    /// Messages one user may teach per day (releases, reports, the Message Center's Spam and
    /// Not spam); beyond that the action still happens but teaches nothing. 0: no bound.
    pub user_lessons_per_day: u64,
    /// The local part of each relay domain's spam report address (e.g. "spam" makes
    /// spam@<domain>): users of our domains forward spam there as attachments and each attached
    /// message is learned as spam. Empty: no report address.
    pub report_local_part: String,
    /// A report is learned only when it comes from one of our domains' senders and is
    /// authenticated: SPF or DMARC passed for the sender, or it came from one of these client
    /// networks (e.g. the ISP's own outbound relays, when their SPF does not cover them).
    pub report_networks: Vec<String>,
    /// Learn from the rules' verdict too: a message scoring at least `autolearn_spam_at` without
    /// the classifier learns as spam, one at most `autolearn_ham_at` as ham. Off by default.
    pub autolearn: bool,
    pub autolearn_spam_at: f64,
    pub autolearn_ham_at: f64,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier {
            enabled: true,
            min_learned: 200,
            table_bits: 21,
            sync: Seconds(5),
            user_lessons_per_day: 100,
            report_local_part: String::new(),
            report_networks: Vec::new(),
            autolearn: false,
            autolearn_spam_at: 25.0,
            autolearn_ham_at: -2.0,
        }
    }
}

impl Classifier {
    /// Whether `ip` is in `report_networks`.
    pub fn is_report_network(&self, ip: std::net::IpAddr) -> bool {
        self.report_networks.iter().any(|n| matches!(crate::lists::Cidr::parse(n), Ok(Some(cidr)) if cidr.contains(ip)))
    }

    /// Whether `address` is a spam report address of one of `domains` (never while the
    /// classifier is off).
    pub fn is_report_address(&self, address: &str, domains: &[super::Domain]) -> bool {
        if !self.enabled || self.report_local_part.is_empty() {
            return false;
        }
        let Some((local, domain)) = address.rsplit_once('@') else { return false };
        local.eq_ignore_ascii_case(&self.report_local_part) && domains.iter().any(|d| d.name.eq_ignore_ascii_case(domain))
    }
}
