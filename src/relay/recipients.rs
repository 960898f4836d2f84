//! Recipient validation per domain policy: any address, a static list, or a callout to the
//! downstream (RCPT probe), with the callout answers cached.
//!
//! Guarantees: the callout cache is bounded in entries; negative answers are cached for a short
//! time, temporary failures not at all, so an unreachable downstream never turns into a guess.

use super::{ProbeAnswer, probe_recipient};
use crate::config::{Config, Domain, RecipientCheck};
use crate::smtp::address::{self, Mailbox};
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
        let answer = probe_recipient(route, config, address).await;
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
