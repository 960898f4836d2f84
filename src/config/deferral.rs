//! `[greylist]` and `[rate_limits]`: telling a sender to come back later. Both keep their state
//! in the store (shared by every node on one PostgreSQL) and are off by default.

use super::Seconds;
use serde::Deserialize;

/// `[greylist]`: a first message from an unknown (client network, sender, recipient) triplet
/// gets `451 4.7.1`; a retry after `delay` passes, and the triplet is then known for `lifetime`.
/// Clients on an allow list and DNSWL-listed clients skip it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Greylist {
    pub enabled: bool,
    /// How long a sender must wait before its retry passes.
    pub delay: Seconds,
    /// How long a triplet is remembered after it was last seen.
    pub lifetime: Seconds,
}

impl Default for Greylist {
    fn default() -> Self {
        Greylist { enabled: false, delay: Seconds(300), lifetime: Seconds(36 * 86400) }
    }
}

/// `[rate_limits]`: messages (MAIL commands) allowed per `window` from one client IP and from
/// one envelope sender; beyond that, `450 4.7.1` until the window ends. 0 means no limit.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub per_ip: u64,
    pub per_sender: u64,
    pub window: Seconds,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { per_ip: 0, per_sender: 0, window: Seconds(3600) }
    }
}

impl RateLimits {
    pub fn enabled(&self) -> bool {
        self.per_ip > 0 || self.per_sender > 0
    }
}
