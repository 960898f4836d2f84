//! Greylisting (at RCPT) and rate limits (at MAIL): answers that ask a sender to come back later.
//!
//! Guarantees: both are off unless configured; their state is in the store, so every node on one
//! PostgreSQL sees the same counters and triplets; when the store cannot answer, mail is let
//! through (logged) rather than deferred, because refusing all mail over a database outage
//! would be worse than missing a few deferrals. Clients on an allow list or a DNSWL skip
//! greylisting.

use super::Session;
use crate::smtp::reply::{Reply, replies};
use crate::store::{self, Greylist, Triplet};
use crate::verdict::Evidence;

impl Session {
    /// Counts this MAIL against the per-IP and per-sender limits; a reply when one is exceeded.
    pub(super) async fn rate_limited(&self, sender: &str) -> Option<Reply> {
        let limits = &self.config.rate_limits;
        if !limits.enabled() {
            return None;
        }
        let store = self.shared.quarantine.store();
        let now = store::unix_now();
        let window = limits.window.duration();
        let keys = [
            (limits.per_ip, format!("ip:{}", self.peer.to_canonical())),
            (limits.per_sender, format!("from:{}", sender.to_ascii_lowercase())),
        ];
        for (limit, key) in keys.into_iter().filter(|(limit, _)| *limit > 0) {
            match store.hit_rate(&key, window, now).await {
                Ok(hits) if hits > limit => {
                    tracing::info!(event = "rate_limited", client_ip = %self.peer, sender, key = %key, hits, limit);
                    return Some(replies::rate_limited());
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(event = "rate_limit_unavailable", error = %error, note = "mail let through"),
            }
        }
        None
    }

    /// Greylists (client network, sender, recipient) unless the evidence so far vouches for
    /// the client; a reply when the triplet must wait.
    pub(super) async fn greylisted(&self, sender: &str, recipient: &str, evidence: &Evidence) -> Option<Reply> {
        let greylist = &self.config.greylist;
        if !greylist.enabled || self.vouched_for(evidence, sender, recipient) {
            return None;
        }
        let triplet = Triplet::new(self.peer, sender, recipient);
        let store = self.shared.quarantine.store();
        match store.check_greylist(&triplet, greylist.delay.duration(), greylist.lifetime.duration(), store::unix_now()).await {
            Ok(Greylist::Pass) => None,
            Ok(Greylist::Defer { retry_in }) => {
                tracing::info!(event = "greylisted", client_ip = %self.peer, sender, recipient, retry_in);
                Some(replies::greylisted(retry_in))
            }
            Err(error) => {
                tracing::warn!(event = "greylist_unavailable", error = %error, note = "mail let through");
                None
            }
        }
    }

    /// An allow-list hit for this sender and recipient, or a DNSWL listing of the client.
    fn vouched_for(&self, evidence: &Evidence, sender: &str, recipient: &str) -> bool {
        let facts = self.facts();
        if self.scorer.allow_listed(sender, facts.client_ip, recipient) {
            return true;
        }
        let dnswl = &self.config.reputation.dnswl;
        evidence.symbols.iter().any(|s| dnswl.iter().any(|zone| zone.symbol == s.name || zone.codes.values().any(|name| *name == s.name)))
    }
}
