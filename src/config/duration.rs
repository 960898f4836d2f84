//! Durations in config files: "30s", "5m", "2h", "5d" or a bare number of seconds.

use serde::{Deserialize, Deserializer, de};
use std::time::Duration;

/// A whole number of seconds, written in the config as "90s", "5m", "2h", "1d" or `90`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(pub u64);

impl Seconds {
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

/// Parses "90s", "5m", "2h", "1d" or "90".
pub fn parse_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let number: u64 = number.parse().ok()?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    number.checked_mul(factor)
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\", \"2h\", \"1d\" or a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v).map(Seconds).map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                parse_seconds(v)
                    .map(Seconds)
                    .ok_or_else(|| E::custom(format!("invalid duration {v:?}: use e.g. \"30s\", \"5m\", \"2h\", \"1d\"")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;

    #[test]
    fn units() {
        assert_eq!(parse_seconds("90"), Some(90));
        assert_eq!(parse_seconds("90s"), Some(90));
        assert_eq!(parse_seconds("5m"), Some(300));
        assert_eq!(parse_seconds("2h"), Some(7200));
        assert_eq!(parse_seconds("1d"), Some(86400));
        assert_eq!(parse_seconds("1w"), None);
        assert_eq!(parse_seconds("m"), None);
        assert_eq!(parse_seconds("-1s"), None);
    }
}
