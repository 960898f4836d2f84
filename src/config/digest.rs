//! `[digest]` and `[[domain]] digest = { ... }`: when users get their quarantine digest.

use serde::Deserialize;

/// How often a user gets a digest (the domain's default, or the user's own choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frequency {
    /// At every tick of the schedule.
    Daily,
    /// At the first tick at least a week after the last digest.
    Weekly,
    Never,
}

/// `[digest]`: the provider's schedule. Digests list what arrived in the quarantine since the
/// user's last digest, with signed release links; they need a `[web]` section for the links.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Digest {
    /// A five-field cron expression (minute hour day-of-month month day-of-week), e.g. "0 8 * * *".
    pub schedule: String,
    /// The IANA time zone the schedule is read in, e.g. "Europe/Berlin".
    pub timezone: String,
    /// The frequency of users who made no choice.
    pub frequency: Frequency,
    /// Users may choose their own frequency (daily, weekly, never).
    pub user_choice: bool,
    /// Send nothing to a user with nothing new (the default); false sends an "all clear".
    pub only_when_new: bool,
    /// Most items listed in one digest (the newest are kept).
    pub max_items: u32,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            schedule: "0 8 * * *".into(),
            timezone: "UTC".into(),
            frequency: Frequency::Daily,
            user_choice: true,
            only_when_new: true,
            max_items: 200,
        }
    }
}

/// A domain's own digest settings; every key optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DigestOverride {
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub frequency: Option<Frequency>,
    pub user_choice: Option<bool>,
}

impl Digest {
    /// The settings for a domain with `over` (if any).
    pub fn resolve(&self, over: Option<&DigestOverride>) -> Digest {
        let Some(over) = over else { return self.clone() };
        Digest {
            schedule: over.schedule.clone().unwrap_or_else(|| self.schedule.clone()),
            timezone: over.timezone.clone().unwrap_or_else(|| self.timezone.clone()),
            frequency: over.frequency.unwrap_or(self.frequency),
            user_choice: over.user_choice.unwrap_or(self.user_choice),
            ..self.clone()
        }
    }
}
