//! Quarantine digests: on the provider's schedule, each user with something new in the
//! quarantine gets one email listing it, with signed release links (see [`build`]).
//!
//! **Exactly once per period per user**, across restarts, crashes, clock jumps and several
//! nodes: a run serves the latest schedule tick at or before now ([`schedule`]); the user's cursor
//! in the store says which tick their last digest served; the digest is staged, then the cursor
//! is moved from what this run read to the tick with a compare-and-set that records the staged
//! copy's id — only the winner's copy is delivered (`Quarantine::send_once`), and after a crash
//! the staged copy goes out only if its id is the one recorded. A digest covers the held items
//! created after the previous tick up to this one, so nothing is listed twice or skipped.
//!
//! Users who opted out, chose "never", or (by default) have nothing new get nothing. Digests go
//! through moat's own delivery spool to the user's mailbox at the downstream.

pub mod build;

use crate::config::Frequency;
use crate::config::schedule::{Schedule, is_due};
use crate::quarantine::{Quarantine, QuarantineError};
use crate::store::{self, Store};

/// Which digests a run sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// What the schedule says is due at this time.
    Scheduled { now: i64 },
    /// Now, whatever the schedule and frequency (opt-outs still hold), for every user or one.
    Now { now: i64, user: Option<String> },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// Spool ids of the digests written, to be submitted to the delivery queue.
    pub queue_ids: Vec<String>,
    /// Users whose digest another run (or node) sent first.
    pub lost_races: usize,
}

/// The users a run looks at: everyone with an item in the quarantine's retention window.
async fn candidates(store: &Store, run: &Run, now: i64, retention: i64) -> Result<Vec<String>, store::StoreError> {
    match run {
        Run::Now { user: Some(user), .. } => Ok(vec![user.to_ascii_lowercase()]),
        _ => store.recipients_with_held_since(now.saturating_sub(retention)).await,
    }
}

/// Sends the digests `run` calls for.
pub async fn run(quarantine: &Quarantine, run: &Run) -> Result<Sent, QuarantineError> {
    let config = quarantine.config();
    let Some(key) = quarantine.links() else {
        return Ok(Sent::default());
    };
    let store = quarantine.store();
    let now = match run {
        Run::Scheduled { now } | Run::Now { now, .. } => *now,
    };
    let retention = i64::try_from(config.store.retention.0).unwrap_or(i64::MAX);
    let mut sent = Sent::default();
    for address in candidates(store, run, now, retention).await? {
        let settings = config.digest_for_address(&address);
        let prefs = store.get_preferences(&address).await?;
        if prefs.opt_out {
            continue;
        }
        let tick = match run {
            Run::Now { now, .. } => *now,
            Run::Scheduled { now } => {
                let Some(tick) = Schedule::of(&settings).ok().and_then(|s| s.latest_tick(*now)) else { continue };
                tick
            }
        };
        let frequency = match (settings.user_choice, prefs.digest) {
            (true, Some(choice)) => frequency_of(choice),
            _ => settings.frequency,
        };
        let cursor = store.digest_cursor(&address).await?;
        let due = match run {
            Run::Scheduled { .. } => is_due(frequency, cursor, tick),
            Run::Now { .. } => cursor.is_none_or(|last| last < tick),
        };
        if !due {
            continue;
        }
        let since = cursor.map_or(0, |last| last.saturating_add(1));
        let mut items = store.held_since(&address, since, settings.max_items.saturating_add(1)).await?;
        items.retain(|item| item.created_at <= tick);
        items.truncate(settings.max_items as usize);
        if items.is_empty() && settings.only_when_new {
            // Nothing to say; the period is still served.
            store.advance_digest_cursor(&address, cursor, tick, None).await?;
            continue;
        }
        let locale = config.locale_for(&address, &prefs.language, &prefs.time_zone);
        let Some((envelope, message)) = build::digest(&config, key, &quarantine.reasons(), &address, &locale, &items, now) else {
            continue;
        };
        let gate = |ticket: String| {
            let address = address.clone();
            async move { store.advance_digest_cursor(&address, cursor, tick, Some(&ticket)).await }
        };
        match quarantine.send_once(envelope, message, gate).await? {
            Some(queue_id) => {
                metrics::counter!("moat_digests_sent_total").increment(1);
                tracing::info!(event = "digest_sent", user = %address, items = items.len(), tick, queue_id = %queue_id);
                sent.queue_ids.push(queue_id);
            }
            None => sent.lost_races += 1,
        }
    }
    Ok(sent)
}

fn frequency_of(choice: store::DigestFrequency) -> Frequency {
    match choice {
        store::DigestFrequency::Daily => Frequency::Daily,
        store::DigestFrequency::Weekly => Frequency::Weekly,
        store::DigestFrequency::Never => Frequency::Never,
    }
}

/// The digest `address` would get now, without sending it or moving the cursor.
pub async fn preview(quarantine: &Quarantine, address: &str, now: i64) -> Result<Option<Vec<u8>>, QuarantineError> {
    let config = quarantine.config();
    let Some(key) = quarantine.links() else { return Ok(None) };
    let store = quarantine.store();
    let settings = config.digest_for_address(address);
    let since = store.digest_cursor(address).await?.map_or(0, |last| last.saturating_add(1));
    let mut items = store.held_since(address, since, settings.max_items).await?;
    items.retain(|item| item.created_at <= now);
    let prefs = store.get_preferences(address).await?;
    let locale = config.locale_for(address, &prefs.language, &prefs.time_zone);
    Ok(build::digest(&config, key, &quarantine.reasons(), &address.to_ascii_lowercase(), &locale, &items, now).map(|(_, message)| message))
}
