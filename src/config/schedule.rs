//! When a digest is due: a cron schedule read in a time zone, and the user's frequency.
//!
//! Guarantees (pure functions of their inputs): the tick a run serves is the latest schedule
//! time at or before `now`, so a run late by hours (downtime, a clock jump forward) sends one
//! digest for the latest tick, covering everything since the last one, and a clock jump back
//! finds the cursor already at or past the tick and sends nothing.

use super::{Digest, Frequency};
use chrono::TimeZone;
use croner::Cron;
use std::str::FromStr;

/// A digest schedule: cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: chrono_tz::Tz,
}

/// A week less an hour, so a weekly digest stays on its weekday across daylight-saving changes.
const WEEK: i64 = 7 * 86400 - 3600;

impl Schedule {
    /// The schedule of these settings, or what is wrong with them.
    pub fn of(settings: &Digest) -> Result<Schedule, String> {
        if settings.schedule.split_whitespace().count() != 5 {
            return Err(format!("schedule {:?} must have five fields: minute hour day-of-month month day-of-week", settings.schedule));
        }
        let cron = Cron::from_str(&settings.schedule).map_err(|e| format!("schedule {:?}: {e}", settings.schedule))?;
        let zone = chrono_tz::Tz::from_str(&settings.timezone)
            .map_err(|_| format!("timezone {:?} is not an IANA time zone such as \"Europe/Berlin\"", settings.timezone))?;
        Ok(Schedule { cron, zone })
    }

    /// The latest tick at or before `now` (Unix seconds).
    pub fn latest_tick(&self, now: i64) -> Option<i64> {
        let now = self.zone.timestamp_opt(now, 0).single()?;
        self.cron.find_previous_occurrence(&now, true).ok().map(|t| t.timestamp())
    }
}

/// Whether a user with this frequency and last digest at `cursor` gets one for `tick`.
pub fn is_due(frequency: Frequency, cursor: Option<i64>, tick: i64) -> bool {
    match (frequency, cursor) {
        (Frequency::Never, _) => false,
        (_, None) => true,
        (Frequency::Daily, Some(last)) => last < tick,
        (Frequency::Weekly, Some(last)) => tick - last >= WEEK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, zone: &str) -> Schedule {
        Schedule::of(&Digest { schedule: cron.into(), timezone: zone.into(), ..Digest::default() }).expect("valid")
    }

    fn at(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    #[test]
    fn the_tick_is_the_latest_schedule_time_in_the_zone() {
        let berlin = schedule("0 8 * * *", "Europe/Berlin");
        // 08:00 in Berlin is 07:00 UTC in winter.
        assert_eq!(berlin.latest_tick(at("2026-11-23T07:30:00Z")), Some(at("2026-11-23T07:00:00Z")));
        assert_eq!(berlin.latest_tick(at("2026-11-23T06:59:59Z")), Some(at("2026-11-22T07:00:00Z")));
        assert_eq!(berlin.latest_tick(at("2026-11-23T07:00:00Z")), Some(at("2026-11-23T07:00:00Z")), "inclusive");
        // Summer time: 06:00 UTC.
        assert_eq!(berlin.latest_tick(at("2026-07-01T12:00:00Z")), Some(at("2026-07-01T06:00:00Z")));
    }

    #[test]
    fn a_late_run_serves_one_tick_and_a_clock_jump_back_serves_none() {
        let daily = schedule("0 8 * * *", "UTC");
        let cursor = Some(at("2026-11-20T08:00:00Z"));
        let three_days_late = daily.latest_tick(at("2026-11-23T09:00:00Z")).unwrap();
        assert!(is_due(Frequency::Daily, cursor, three_days_late));
        assert_eq!(three_days_late, at("2026-11-23T08:00:00Z"), "one digest, for the latest tick");
        let after = Some(three_days_late);
        let jumped_back = daily.latest_tick(at("2026-11-22T10:00:00Z")).unwrap();
        assert!(!is_due(Frequency::Daily, after, jumped_back));
        assert!(!is_due(Frequency::Daily, after, three_days_late), "the same tick is never served twice");
    }

    #[test]
    fn frequencies() {
        let day = 86400;
        assert!(is_due(Frequency::Weekly, None, 10 * day));
        assert!(!is_due(Frequency::Weekly, Some(10 * day), 16 * day));
        assert!(is_due(Frequency::Weekly, Some(10 * day), 17 * day));
        assert!(!is_due(Frequency::Never, None, day));
    }

    #[test]
    fn bad_schedules_and_zones_are_explained() {
        let bad = |cron: &str, zone: &str| {
            Schedule::of(&Digest { schedule: cron.into(), timezone: zone.into(), ..Digest::default() }).unwrap_err()
        };
        assert!(bad("0 8 * *", "UTC").contains("five fields"));
        assert!(bad("0 25 * * *", "UTC").contains("schedule"));
        assert!(bad("0 8 * * *", "Mars/Olympus").contains("IANA"));
    }
}
