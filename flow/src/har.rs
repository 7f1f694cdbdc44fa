//! HAR 1.2: export in the shape mitmproxy's `savehar` addon writes (`--set hardump=…`,
//! `save.har`), and import of `log.entries[*]` as HTTP flows (mitmproxy's `io/har.py`).
//!
//! Export skips flows that are not HTTP, as mitmproxy does. The creator is `flowtap`.

use bytes::Bytes;
use flowtap_proto::v1::Header;

mod export;
mod import;
mod json;
mod text;

pub use export::{entry, export, export_json};
pub use import::import;

/// A HAR document that cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum HarError {
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but an entry lacks a field mitmproxy requires.
    #[error("HAR entry {index}: {message}")]
    Entry {
        /// Index in `log.entries`.
        index: usize,
        /// What was missing or wrong.
        message: String,
    },
    /// No `log.entries` list.
    #[error("HAR document has no log.entries list")]
    NoEntries,
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: Bytes::from(name.to_owned()),
        value: Bytes::from(value.to_owned()),
    }
}

/// The first and the last second Python's `datetime` holds (years 1 and 9999).
const FIRST_SECOND: f64 = -62_135_596_800.0;
const LAST_SECOND: f64 = 253_402_300_799.0;

/// Seconds since the epoch → `2026-11-21T05:19:58.427031+00:00` (Python's `isoformat()`).
///
/// A timestamp that Python's `datetime` cannot hold (before year 1, after year 9999; where
/// mitmproxy's `savehar` fails) is written as the nearest second it can hold, NaN as the epoch.
pub fn isoformat_utc(timestamp: f64) -> String {
    let timestamp = if timestamp.is_nan() {
        0.0
    } else {
        timestamp.clamp(FIRST_SECOND, LAST_SECOND)
    };
    let mut secs = timestamp.floor() as i64;
    let mut micros = ((timestamp - secs as f64) * 1e6).round() as i64;
    if micros >= 1_000_000 {
        secs += 1;
        micros -= 1_000_000;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let time = format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if micros == 0 {
        format!("{y:04}-{m:02}-{d:02}T{time}+00:00")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{time}.{micros:06}+00:00")
    }
}

/// Parses an ISO 8601 timestamp with an optional fraction and a `Z` or `±hh:mm` offset.
///
/// None when it is not one, or its date is not one Python's `datetime` holds (year 1 to
/// 9999, month 1 to 12, day 1 to 31, hour below 24, minute and second below 60, offset
/// within a day): the result is always a finite number.
pub fn parse_iso8601(text: &str) -> Option<f64> {
    let text = text.trim();
    let (date, rest) = text.split_once(['T', ' '])?;
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !((1..=9999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)) {
        return None;
    }
    let offset_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, offset) = rest.split_at(offset_at);
    let mut hms = time.splitn(3, ':');
    let h: f64 = hms.next()?.parse().ok()?;
    let min: f64 = hms.next()?.parse().ok()?;
    let s: f64 = hms.next().unwrap_or("0").parse().ok()?;
    let offset_secs = match offset {
        "" | "Z" | "z" => 0.0,
        o => {
            let sign = if o.starts_with('-') { -1.0 } else { 1.0 };
            let o = &o[1..];
            let (oh, om) = o
                .split_once(':')
                .unwrap_or((o.get(..2)?, o.get(2..).unwrap_or("0")));
            let om = if om.is_empty() { "0" } else { om };
            sign * (oh.parse::<f64>().ok()? * 3600.0 + om.parse::<f64>().ok()? * 60.0)
        }
    };
    let in_range = (0.0..24.0).contains(&h)
        && (0.0..60.0).contains(&min)
        && (0.0..60.0).contains(&s)
        && offset_secs.abs() < 86_400.0;
    if !in_range {
        return None;
    }
    let days = days_from_civil(y, m, d) as f64;
    Some(days * 86_400.0 + h * 3600.0 + min * 60.0 + s - offset_secs)
}

// Howard Hinnant's civil-calendar algorithms.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(isoformat_utc(1795238398.0), "2026-11-21T05:19:58+00:00");
        assert_eq!(
            isoformat_utc(1795238398.427031),
            "2026-11-21T05:19:58.427031+00:00"
        );
        let parsed = parse_iso8601("2026-11-21T05:19:58.427031+00:00").unwrap();
        assert!((parsed - 1795238398.427031).abs() < 1e-6);
        assert_eq!(
            parse_iso8601("2026-11-21T07:19:58+02:00"),
            Some(1795238398.0)
        );
        assert_eq!(parse_iso8601("2026-11-21T05:19:58Z"), Some(1795238398.0));
    }

    /// Found by the `har_import` fuzz target: an hour of `033334444444444444333E5` imports as
    /// a timestamp near 1e28 s, and exporting it overflowed (a panic in debug builds, a
    /// wrong date in release builds).
    #[test]
    fn timestamps_out_of_datetimes_range_are_clamped() {
        assert_eq!(isoformat_utc(1e28), "9999-12-31T23:59:59+00:00");
        assert_eq!(isoformat_utc(f64::INFINITY), "9999-12-31T23:59:59+00:00");
        assert_eq!(isoformat_utc(-1e300), "0001-01-01T00:00:00+00:00");
        assert_eq!(isoformat_utc(f64::NAN), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            isoformat_utc(LAST_SECOND + 0.9999999),
            "9999-12-31T23:59:59+00:00"
        );
        assert_eq!(
            parse_iso8601(&isoformat_utc(1e28)),
            Some(LAST_SECOND),
            "what is written reads back"
        );
    }

    /// Found by the `har_import` fuzz target: an hour of `1e308` imported as an infinite
    /// timestamp, whose export has `"time": NaN`, which is no JSON to import. Hours, minutes,
    /// seconds and offsets out of `datetime`'s range are no time.
    #[test]
    fn times_out_of_datetimes_range_do_not_parse() {
        assert_eq!(
            parse_iso8601("3215-11-21T033334444444444444333E5:20:07Z"),
            None
        );
        assert_eq!(parse_iso8601("2026-11-21T1e308:00:00Z"), None);
        assert_eq!(parse_iso8601("2026-11-21T24:00:00Z"), None);
        assert_eq!(parse_iso8601("2026-11-21T00:60:00Z"), None);
        assert_eq!(parse_iso8601("2026-11-21T00:00:60Z"), None);
        assert_eq!(parse_iso8601("2026-11-21T-1:00:00Z"), None);
        assert_eq!(parse_iso8601("2026-11-21Tnan:00:00Z"), None);
        assert_eq!(parse_iso8601("2026-11-21T00:00:00+1e308:00"), None);
        assert_eq!(parse_iso8601("2026-11-21T00:00:00+24:00"), None);
        let latest = parse_iso8601("2026-11-21T23:59:59.999999-23:59").unwrap();
        assert!((latest - (1_795_305_599.999_999 + 86_340.0)).abs() < 1e-5);
    }

    /// A year, month or day out of `datetime`'s range is no date (it overflowed `i64` in
    /// the day count before).
    #[test]
    fn dates_out_of_datetimes_range_do_not_parse() {
        assert_eq!(parse_iso8601("99999999999999999-01-01T00:00:00Z"), None);
        assert_eq!(parse_iso8601("0-01-01T00:00:00Z"), None);
        assert_eq!(parse_iso8601("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_iso8601("2026-01-9223372036854775807T00:00:00Z"), None);
        assert_eq!(
            parse_iso8601("0001-01-01T00:00:00Z"),
            Some(FIRST_SECOND),
            "year 1 is datetime.min"
        );
        assert_eq!(parse_iso8601("9999-12-31T23:59:59Z"), Some(LAST_SECOND));
    }
}
