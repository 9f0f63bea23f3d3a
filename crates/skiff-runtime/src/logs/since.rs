//! Times: `--since`/`--until` values, RFC 3339 as records carry it, and the
//! calendar arithmetic behind both.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::LogError;

const NANOS: u128 = 1_000_000_000;

/// Parses a `--since`/`--until` value as docker takes it:
///
/// - a duration ago, in Go's syntax: `10m`, `1h30m`, `90s`, `1.5h`, `250ms`
///   (a negative one, `-10m`, is in the future);
/// - an RFC 3339 time, `2026-12-01T20:00:00Z`, `2026-12-01T20:00:00.5+01:00`, also
///   cut short after the hour or the minute (`2026-12-01T20`, `2026-12-01T20:00Z`)
///   or a date alone (`2026-12-01`);
/// - the same without a zone, taken as UTC (docker takes the local zone);
/// - Unix seconds, `1733083200` or `1733083200.5` (up to nine decimals).
///
/// `"0"` is Unix time 0, not a duration, as in docker.
pub fn parse_time(s: &str, now: SystemTime) -> Result<SystemTime, LogError> {
    let bad = |reason| LogError::InvalidTime {
        value: s.to_owned(),
        reason,
    };
    if s != "0" {
        if let Some((negative, nanos)) = parse_go_duration(s).map_err(bad)? {
            let d = Duration::new((nanos / NANOS) as u64, (nanos % NANOS) as u32);
            let t = if negative {
                now.checked_add(d)
            } else {
                now.checked_sub(d)
            };
            return t.ok_or_else(|| bad("the duration reaches beyond what a time can hold"));
        }
    }
    let (secs, nanos) = if s.contains(['-', 'T', ':']) {
        parse_datetime(s, true).map_err(bad)?
    } else {
        parse_unix(s).ok_or_else(|| {
            bad("expected a duration (10m, 1h30m), an RFC 3339 time or Unix seconds")
        })?
    };
    from_unix(secs, nanos).ok_or_else(|| bad("out of range"))
}

/// Parses a duration in Go's syntax, as docker takes `--health-interval` and
/// the like: `30s`, `1m30s`, `1.5h`, `250ms`, `0`. Negative ones are refused.
pub fn parse_duration(s: &str) -> Result<Duration, LogError> {
    let bad = |reason| LogError::InvalidDuration {
        value: s.to_owned(),
        reason,
    };
    match parse_go_duration(s).map_err(bad)? {
        Some((false, n)) | Some((true, n @ 0)) => {
            Ok(Duration::new((n / NANOS) as u64, (n % NANOS) as u32))
        }
        Some((true, _)) => Err(bad("a duration cannot be negative here")),
        None => Err(bad("expected a duration such as 30s, 1m30s or 1.5h")),
    }
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?unit)+`, units `ns`, `us`
/// (`µs`, `μs`), `ms`, `s`, `m`, `h`; also `0`. `Ok(None)`: not a duration at all.
/// The value is `(negative, nanoseconds)`.
fn parse_go_duration(s: &str) -> Result<Option<(bool, u128)>, &'static str> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Some((negative, 0)));
    }
    if rest.is_empty() {
        return Ok(None);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Ok(None);
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS,
            "m" => 60 * NANOS,
            "h" => 3600 * NANOS,
            _ => return Ok(None),
        };
        // Go's limit: the duration must fit an int64 of nanoseconds.
        let too_long = "the duration is too long";
        let whole: u128 = if int.is_empty() {
            0
        } else if int.len() > 20 {
            return Err(too_long);
        } else {
            int.parse().map_err(|_| too_long)?
        };
        let mut part = whole.checked_mul(scale).ok_or(too_long)?;
        // Digits beyond the 20th cannot change a value that has to fit in int64.
        let frac = &frac[..frac.len().min(20)];
        if !frac.is_empty() {
            let f: u128 = frac.parse().map_err(|_| too_long)?;
            part += f * scale / 10u128.pow(frac.len() as u32);
        }
        total = total.checked_add(part).ok_or(too_long)?;
        if total > i64::MAX as u128 {
            return Err(too_long);
        }
        rest = after;
    }
    Ok(Some((negative, total)))
}

/// `1733083200` or `1733083200.5`: seconds, then up to nine decimals.
fn parse_unix(s: &str) -> Option<(i64, u32)> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let nanos = match frac {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u32>().ok()? * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
    };
    Some((secs, nanos))
}

/// Parses an RFC 3339 time into Unix seconds and nanoseconds.
///
/// Strict (`lenient` false, as records are read): `YYYY-MM-DDThh:mm:ss[.f…]` and
/// `Z` or `±hh:mm`. Lenient (`--since`): the time may stop after the hour or the
/// minute or be left out, and the zone may be left out (UTC). More than nine
/// decimals are cut, as Go does.
pub(crate) fn parse_datetime(s: &str, lenient: bool) -> Result<(i64, u32), &'static str> {
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    const DATE: &str = "expected a date as YYYY-MM-DD";
    let year = c.number(4).ok_or(DATE)?;
    c.eat(b'-').then_some(()).ok_or(DATE)?;
    let month = c.number(2).ok_or(DATE)?;
    c.eat(b'-').then_some(()).ok_or(DATE)?;
    let day = c.number(2).ok_or(DATE)?;
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0u32);
    const TIME: &str = "expected a time as hh:mm:ss after the T";
    let mut full = false;
    if c.eat(b'T') {
        hour = c.number(2).ok_or(TIME)?;
        if c.eat(b':') {
            minute = c.number(2).ok_or(TIME)?;
            if c.eat(b':') {
                second = c.number(2).ok_or(TIME)?;
                full = true;
                if c.eat(b'.') {
                    let start = c.i;
                    while c.peek().is_some_and(|b| b.is_ascii_digit()) {
                        c.i += 1;
                    }
                    let digits = &c.s[start..c.i];
                    if digits.is_empty() {
                        return Err("expected digits after the decimal point");
                    }
                    for k in 0..9 {
                        let d = digits.get(k).map_or(0, |b| u32::from(b - b'0'));
                        nanos = nanos * 10 + d;
                    }
                }
            }
        }
    }
    if !full && !lenient {
        return Err("expected a date and a time as YYYY-MM-DDThh:mm:ss");
    }
    const ZONE: &str = "expected a zone as Z or ±hh:mm";
    let offset: i64 = match c.peek() {
        Some(b'Z' | b'z') => {
            c.i += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            c.i += 1;
            let h = c.number(2).ok_or(ZONE)?;
            c.eat(b':').then_some(()).ok_or(ZONE)?;
            let m = c.number(2).ok_or(ZONE)?;
            if h > 23 || m > 59 {
                return Err("zone offset out of range");
            }
            let o = h * 3600 + m * 60;
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        None if lenient => 0,
        None => return Err(ZONE),
        Some(_) => return Err(if full { ZONE } else { TIME }),
    };
    if c.i != c.s.len() {
        return Err("unexpected text after the time");
    }
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month as u32) {
        return Err("day out of range");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("time of day out of range");
    }
    let days = days_from_civil(year, month as u32, day as u32);
    Ok((
        days * 86_400 + hour * 3600 + minute * 60 + second - offset,
        nanos,
    ))
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    /// Exactly `n` digits.
    fn number(&mut self, n: usize) -> Option<i64> {
        let digits = self.s.get(self.i..self.i + n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(digits.iter().fold(0, |v, d| v * 10 + i64::from(d - b'0')))
    }
}

fn days_in_month(year: i64, month: u32) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01: (year, month, day).
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Seconds (floored) and nanoseconds since the epoch.
pub(crate) fn to_unix(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-s, 0),
                n => (-s - 1, 1_000_000_000 - n),
            }
        }
    }
}

pub(crate) fn from_unix(secs: i64, nanos: u32) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::new(secs.unsigned_abs(), 0))?
            .checked_add(Duration::new(0, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::testutil::{at, T0};

    fn p(s: &str) -> SystemTime {
        parse_time(s, at(T0, 0)).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn durations_ago() {
        assert_eq!(p("10m"), at(T0 - 600, 0));
        assert_eq!(p("1h30m"), at(T0 - 5400, 0));
        assert_eq!(p("90s"), at(T0 - 90, 0));
        assert_eq!(p("2h"), at(T0 - 7200, 0));
        assert_eq!(p("1.5h"), at(T0 - 5400, 0));
        assert_eq!(p(".5s"), at(T0 - 1, 500_000_000));
        assert_eq!(p("1m0.25s"), at(T0 - 61, 750_000_000));
        assert_eq!(p("250ms"), at(T0 - 1, 750_000_000));
        assert_eq!(p("1500us"), at(T0 - 1, 998_500_000));
        assert_eq!(p("1500\u{b5}s"), at(T0 - 1, 998_500_000));
        assert_eq!(p("1500\u{3bc}s"), at(T0 - 1, 998_500_000));
        assert_eq!(p("7ns"), at(T0 - 1, 999_999_993));
        assert_eq!(p("-10m"), at(T0 + 600, 0));
        assert_eq!(p("+10m"), at(T0 - 600, 0));
        assert_eq!(p("0s"), at(T0, 0));
    }

    #[test]
    fn absolute_times() {
        assert_eq!(p("2026-12-01T20:00:00Z"), at(T0, 0));
        assert_eq!(p("2026-12-01T20:00:00.123456789Z"), at(T0, 123_456_789));
        assert_eq!(p("2026-12-01T20:00:00.5Z"), at(T0, 500_000_000));
        assert_eq!(p("2026-12-01T20:00:00.1234567891Z"), at(T0, 123_456_789));
        assert_eq!(p("2026-12-01T21:30:00+01:30"), at(T0, 0));
        assert_eq!(p("2026-12-01T18:00:00.25-02:00"), at(T0, 250_000_000));
        assert_eq!(p("2026-12-01T20:00:00z"), at(T0, 0));
        // Without a zone: UTC.
        assert_eq!(p("2026-12-01T20:00:00"), at(T0, 0));
        assert_eq!(p("2026-12-01T20:00:00.5"), at(T0, 500_000_000));
        assert_eq!(p("2026-12-01T20:00"), at(T0, 0));
        assert_eq!(p("2026-12-01T20"), at(T0, 0));
        assert_eq!(p("2026-12-01T20:00Z"), at(T0, 0));
        assert_eq!(p("2026-12-01"), at(T0 - 20 * 3600, 0));
        assert_eq!(p("2026-12-02+04:00"), at(T0, 0));
        assert_eq!(p("2024-02-29T00:00:00Z"), at(1_709_164_800, 0));
        assert_eq!(
            p("1969-12-31T23:59:59.5Z"),
            UNIX_EPOCH - Duration::from_millis(500)
        );
    }

    #[test]
    fn unix_seconds() {
        assert_eq!(p("1733083200"), at(1_733_083_200, 0));
        assert_eq!(p("1733083200.5"), at(1_733_083_200, 500_000_000));
        assert_eq!(p("1733083200.000000001"), at(1_733_083_200, 1));
        assert_eq!(p("0"), UNIX_EPOCH);
        // 2024-12-01T20:00:00Z, the same instant.
        assert_eq!(p("1733083200"), p("2024-12-01T20:00:00Z"));
    }

    #[test]
    fn durations() {
        let d = |s| parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("+2us"), Duration::from_micros(2));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("-0s"), Duration::ZERO);
        for (s, message) in [
            (
                "",
                r#"invalid duration "": expected a duration such as 30s, 1m30s or 1.5h"#,
            ),
            (
                "30",
                r#"invalid duration "30": expected a duration such as 30s, 1m30s or 1.5h"#,
            ),
            (
                "5d",
                r#"invalid duration "5d": expected a duration such as 30s, 1m30s or 1.5h"#,
            ),
            (
                "1m30",
                r#"invalid duration "1m30": expected a duration such as 30s, 1m30s or 1.5h"#,
            ),
            (
                "-1s",
                r#"invalid duration "-1s": a duration cannot be negative here"#,
            ),
            (
                "3000000h",
                r#"invalid duration "3000000h": the duration is too long"#,
            ),
        ] {
            assert_eq!(parse_duration(s).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn bad_times() {
        let now = at(T0, 0);
        for (s, reason) in [
            (
                "",
                "expected a duration (10m, 1h30m), an RFC 3339 time or Unix seconds",
            ),
            (
                "yesterday",
                "expected a duration (10m, 1h30m), an RFC 3339 time or Unix seconds",
            ),
            ("10x", "expected a duration"),
            ("1733083200.", "expected a duration"),
            ("1733083200.1234567891", "expected a duration"),
            ("1.2.3", "expected a duration"),
            ("-5", "expected a date as YYYY-MM-DD"),
            ("2026-13-01T00:00:00Z", "month out of range"),
            ("2026-02-29", "day out of range"),
            ("2026-04-31", "day out of range"),
            ("2026-12-01T24:00:00Z", "time of day out of range"),
            ("2026-12-01T20:60", "time of day out of range"),
            ("2026-12-01T20:00:60Z", "time of day out of range"),
            (
                "2026-12-01T20:00:00.Z",
                "expected digits after the decimal point",
            ),
            ("2026-12-01T20:00:00+0100", "expected a zone as Z or ±hh:mm"),
            ("2026-12-01T20:00:00+24:00", "zone offset out of range"),
            ("2026-12-01T20:00:00Z ", "unexpected text after the time"),
            (
                "2026-12-01 20:00:00",
                "expected a time as hh:mm:ss after the T",
            ),
            ("2026-12-1", "expected a date as YYYY-MM-DD"),
            ("20:00", "expected a date as YYYY-MM-DD"),
            ("99999999999h", "the duration is too long"),
            ("3000000h", "the duration is too long"),
        ] {
            match parse_time(s, now) {
                Err(LogError::InvalidTime { value, reason: r }) => {
                    assert_eq!(value, s);
                    assert!(r.starts_with(reason), "{s:?}: {r}");
                }
                other => panic!("{s:?}: {other:?}"),
            }
        }
        let e = parse_time("2026-13-01", now).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid time \"2026-13-01\": month out of range"
        );
    }

    #[test]
    fn calendar_round_trips() {
        // Every day from 1600 to 2500, and the edges of the format's years.
        let (first, last) = (days_from_civil(1600, 1, 1), days_from_civil(2500, 12, 31));
        let mut expected = (1600, 1, 1);
        for z in first..=last {
            let got = civil_from_days(z);
            assert_eq!(got, expected, "day {z}");
            assert_eq!(days_from_civil(got.0, got.1, got.2), z);
            let (y, m, d) = expected;
            expected = if i64::from(d) < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        assert_eq!(
            civil_from_days(days_from_civil(9999, 12, 31)),
            (9999, 12, 31)
        );
        for t in [
            at(0, 0),
            at(T0, 7),
            UNIX_EPOCH - Duration::new(1, 1),
            UNIX_EPOCH - Duration::new(5, 0),
        ] {
            let (s, n) = to_unix(t);
            assert_eq!(from_unix(s, n), Some(t));
        }
        assert_eq!(to_unix(UNIX_EPOCH - Duration::new(1, 1)), (-2, 999_999_999));
    }
}
