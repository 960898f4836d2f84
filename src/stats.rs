//! Live verdict counts for the admin console: this node's verdicts per minute over the last
//! 24 hours (accepted, tagged, quarantined, rejected, tempfailed, and viruses among them).
//! Prometheus keeps the long history; this is what the console charts without one.
//!
//! Guarantees: bounded memory ([`MINUTES`] buckets), never blocks the sessions for long (one
//! short mutex per recorded verdict), counts of a minute older than the window are dropped.

use crate::verdict::Action;
use std::sync::{LazyLock, Mutex};

/// Minutes kept.
pub const MINUTES: usize = 24 * 60;

/// The counts of one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub accepted: u64,
    pub tagged: u64,
    pub quarantined: u64,
    pub rejected: u64,
    pub tempfailed: u64,
    pub viruses: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.accepted += other.accepted;
        self.tagged += other.tagged;
        self.quarantined += other.quarantined;
        self.rejected += other.rejected;
        self.tempfailed += other.tempfailed;
        self.viruses += other.viruses;
    }

    pub fn total(&self) -> u64 {
        self.accepted + self.tagged + self.quarantined + self.rejected + self.tempfailed
    }
}

/// Minute buckets: `(minute since the epoch, counts)`, indexed by minute modulo [`MINUTES`].
pub struct Stats {
    buckets: Mutex<Vec<(i64, Counts)>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats { buckets: Mutex::new(vec![(i64::MIN, Counts::default()); MINUTES]) }
    }
}

impl Stats {
    /// Counts one recipient's verdict at `now` (Unix seconds).
    pub fn record(&self, action: Action, virus: bool, now: i64) {
        let minute = now.div_euclid(60);
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut buckets[minute.rem_euclid(MINUTES as i64) as usize];
        if slot.0 != minute {
            *slot = (minute, Counts::default());
        }
        let counts = &mut slot.1;
        match action {
            Action::Accept => counts.accepted += 1,
            Action::Tag => counts.tagged += 1,
            Action::Quarantine => counts.quarantined += 1,
            // Discarded mail is not delivered: it counts with the refused.
            Action::Reject | Action::Discard => counts.rejected += 1,
            Action::Tempfail => counts.tempfailed += 1,
        }
        if virus {
            counts.viruses += 1;
        }
    }

    /// The last `periods` periods of `minutes` each, aligned to the clock (whole hours for 60),
    /// oldest first, the last one holding `now` (and so still filling).
    pub fn series(&self, now: i64, minutes: i64, periods: usize) -> Vec<Counts> {
        let minutes = minutes.max(1);
        let current = now.div_euclid(60);
        let first = current.div_euclid(minutes) * minutes - minutes * (periods as i64 - 1);
        let mut series = vec![Counts::default(); periods];
        self.each_minute(first, current, |minute, counts| {
            if let Some(period) = series.get_mut(((minute - first) / minutes) as usize) {
                period.add(counts);
            }
        });
        series
    }

    /// The totals over the last `minutes` minutes up to `now`.
    pub fn totals(&self, now: i64, minutes: i64) -> Counts {
        let current = now.div_euclid(60);
        let mut total = Counts::default();
        self.each_minute(current - minutes.max(1) + 1, current, |_, counts| total.add(counts));
        total
    }

    /// Calls `f` with each kept minute from `first` to `last` (inclusive) that has counts.
    fn each_minute(&self, first: i64, last: i64, mut f: impl FnMut(i64, &Counts)) {
        let buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (minute, counts) in buckets.iter() {
            if *minute >= first && *minute <= last && last - *minute < MINUTES as i64 {
                f(*minute, counts);
            }
        }
    }
}

/// This process's counts.
pub static STATS: LazyLock<Stats> = LazyLock::new(Stats::default);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_period_and_age_out() {
        let stats = Stats::default();
        let t = 1_700_000_000 - 1_700_000_000 % 3600;
        stats.record(Action::Accept, false, t);
        stats.record(Action::Quarantine, true, t + 60);
        stats.record(Action::Reject, false, t + 3600);
        let hourly = stats.series(t + 3600, 60, 3);
        assert_eq!(hourly.len(), 3);
        assert_eq!((hourly[1].accepted, hourly[1].quarantined, hourly[1].viruses), (1, 1, 1));
        assert_eq!(hourly[2].rejected, 1);
        assert_eq!(stats.totals(t + 3600, 24 * 60).total(), 3);
        // A day later the old minutes are out of the window, and reused slots start afresh.
        assert_eq!(stats.totals(t + 86_400 + 3600, 24 * 60).total(), 0);
        stats.record(Action::Tag, false, t + 86_400);
        assert_eq!(stats.totals(t + 86_400, 60), Counts { tagged: 1, ..Counts::default() });
    }
}
