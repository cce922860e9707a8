//! UTC instants with millisecond precision, as stored in the ledger.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

/// A UTC instant in whole milliseconds since the Unix epoch.
///
/// Serialised as RFC 3339 text (`2026-11-23T10:15:00.123Z`) so files and JSON output stay readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Builds a timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This instant moved by `days` whole days (negative moves back).
    pub const fn plus_days(self, days: i64) -> Self {
        Self(self.0.saturating_add(days.saturating_mul(DAY_MS)))
    }

    /// This instant moved by `ms` milliseconds.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// The UTC calendar date of this instant.
    pub fn date(self) -> time::Date {
        self.to_datetime().date()
    }

    fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Parses RFC 3339 text such as `2026-11-23T10:15:00Z`.
    pub fn parse_rfc3339(text: &str) -> Result<Self, time::error::Parse> {
        let dt = OffsetDateTime::parse(text, &Rfc3339)?;
        let ms = dt.unix_timestamp_nanos() / 1_000_000;
        Ok(Self(i64::try_from(ms).unwrap_or(i64::MAX)))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let ms = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Self(ms)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.to_datetime();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.millisecond()
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let t = Timestamp::from_millis(1_795_000_123_456);
        let text = t.to_string();
        assert_eq!(text, "2026-11-18T11:08:43.456Z");
        assert_eq!(Timestamp::parse_rfc3339(&text).ok(), Some(t));
    }

    #[test]
    fn day_arithmetic() {
        let t = Timestamp::from_millis(0);
        assert_eq!(t.plus_days(2).millis(), 2 * DAY_MS);
        assert_eq!(t.plus_days(-1).millis(), -DAY_MS);
    }
}
