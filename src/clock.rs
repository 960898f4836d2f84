//! Time and blocking work, written once: the Unix clock, the date formats moat shows people, and
//! running file or database work on tokio's blocking pool.
//!
//! Guarantees: [`blocking`] never lets a panic in the work take down the caller; it becomes the
//! caller's error type through `From<TaskFailed>`.

/// Seconds since the Unix epoch (UTC).
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A time to the minute with its zone, as lists and pages show it: `2026-12-04 06:30 UTC`.
pub fn minute_utc(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0).map_or_else(|| at.to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// A time to the minute in the IANA zone `zone` with the zone's abbreviation, as a user's lists
/// and pages show it: `2026-12-04 07:30 CET`. An unknown zone (the configuration check refuses
/// them) shows UTC.
pub fn minute_in(at: i64, zone: &str) -> String {
    let Ok(tz) = zone.parse::<chrono_tz::Tz>() else { return minute_utc(at) };
    chrono::DateTime::from_timestamp(at, 0).map_or_else(|| at.to_string(), |t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string())
}

/// The IANA time zone named `name` (any letter case), by its canonical name: `asia/tokyo` gives
/// `Asia/Tokyo`; `None` for a name the tz database does not know.
pub fn time_zone(name: &str) -> Option<&'static str> {
    let name = name.trim();
    if let Ok(zone) = name.parse::<chrono_tz::Tz>() {
        return Some(zone.name());
    }
    chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name()).find(|known| known.eq_ignore_ascii_case(name))
}

/// The zones a user is offered, in order: the tz database's `Area/Location` names and `UTC`.
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("UTC")
        .chain(chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name()).filter(|name| name.contains('/') && !name.starts_with("Etc/")))
}

/// A time with its weekday, as a sentence in an email shows it: `Fri, 04 Dec 2026 06:30 UTC`.
pub fn day_minute_utc(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0).map_or_else(|| at.to_string(), |t| t.format("%a, %d %b %Y %H:%M UTC").to_string())
}

/// [`day_minute_utc`] in the IANA zone `zone`, with the zone's abbreviation: `Fri, 04 Dec 2026
/// 07:30 CET`. An unknown zone shows UTC.
pub fn day_minute_in(at: i64, zone: &str) -> String {
    let Ok(tz) = zone.parse::<chrono_tz::Tz>() else { return day_minute_utc(at) };
    chrono::DateTime::from_timestamp(at, 0)
        .map_or_else(|| at.to_string(), |t| t.with_timezone(&tz).format("%a, %d %b %Y %H:%M %Z").to_string())
}

/// Work on the blocking pool that panicked or was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailed(pub String);

/// Runs `work` on tokio's blocking pool (file and database work that must not stall the async
/// workers); a panic in it becomes `E::from(TaskFailed)`.
pub async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<TaskFailed> + Send + 'static,
{
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(E::from(TaskFailed(e.to_string()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_in_the_users_zone_with_its_name() {
        let at = 1_796_367_000; // 2026-12-04 06:50 UTC
        assert_eq!(minute_utc(at), "2026-12-04 06:50 UTC");
        assert_eq!(minute_in(at, "Europe/Berlin"), "2026-12-04 07:50 CET");
        assert_eq!(minute_in(at, "America/New_York"), "2026-12-04 01:50 EST");
        assert_eq!(minute_in(at, "UTC"), "2026-12-04 06:50 UTC");
        assert_eq!(minute_in(at, "Not/AZone"), "2026-12-04 06:50 UTC");
    }

    #[test]
    fn a_users_zone_is_an_iana_name_in_any_case_kept_canonical() {
        assert_eq!(time_zone("Asia/Tokyo"), Some("Asia/Tokyo"));
        assert_eq!(time_zone(" asia/TOKYO "), Some("Asia/Tokyo"));
        assert_eq!(time_zone("utc"), Some("UTC"));
        for bad in ["", "Mars/Olympus", "Asia/", "JST", "<b>"] {
            assert_eq!(time_zone(bad), None, "{bad:?}");
        }
        let names: Vec<&str> = time_zone_names().collect();
        assert!(names.contains(&"Europe/Berlin") && names.contains(&"Asia/Tokyo") && names[0] == "UTC");
        assert!(names.iter().all(|name| time_zone(name) == Some(*name)), "every offered zone is accepted");
        assert_eq!(minute_in(1_796_367_000, "Asia/Tokyo"), "2026-12-04 15:50 JST");
    }

    #[test]
    fn dates_carry_their_zone() {
        assert_eq!(minute_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(day_minute_utc(86400 * 3), "Sun, 04 Jan 1970 00:00 UTC");
        assert_eq!(day_minute_in(1_796_367_000, "Asia/Tokyo"), "Fri, 04 Dec 2026 15:50 JST");
        assert_eq!(day_minute_in(86400 * 3, "Not/AZone"), "Sun, 04 Jan 1970 00:00 UTC");
    }

    #[tokio::test]
    async fn a_panic_in_blocking_work_is_an_error() {
        let result: Result<(), String> = blocking(|| panic!("boom")).await;
        assert!(result.is_err());
    }

    impl From<TaskFailed> for String {
        fn from(failed: TaskFailed) -> String {
            failed.0
        }
    }
}
