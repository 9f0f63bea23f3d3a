//! Go's `time.ParseDuration`, which docker uses for HEALTHCHECK's flags:
//! `300ms`, `1.5h`, `1m30s`; units ns, us (µs, μs), ms, s, m, h.

use std::time::Duration;

/// Nanoseconds in each unit Go knows.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration string. A negative duration is an error (nothing
/// in a Containerfile may be negative), as is one beyond Go's limit of
/// about 292 years. `"0"` alone needs no unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {}", super::words::shown(text));
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let whole_len = digits(rest);
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(f) => f.split_at(digits(f)),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        if unit_len == 0 {
            return Err(format!(
                "missing unit in duration {}",
                super::words::shown(text)
            ));
        }
        let (unit, after) = after.split_at(unit_len);
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "unknown unit {} in duration {}",
                super::words::shown(unit),
                super::words::shown(text)
            ));
        };
        total = total
            .checked_add(component(whole, fraction, scale).ok_or_else(invalid)?)
            .ok_or_else(invalid)?;
        if total > i64::MAX as u128 {
            return Err(invalid());
        }
        rest = after;
    }
    if negative && total > 0 {
        return Err(format!(
            "duration {} is negative",
            super::words::shown(text)
        ));
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid())?;
    // The remainder of a division by 10^9 always fits.
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// `whole.fraction` of a unit of `scale` nanoseconds, truncated to a
/// nanosecond; `None` when it overflows.
fn component(whole: &str, fraction: &str, scale: u128) -> Option<u128> {
    let mut value: u128 = 0;
    for d in whole.bytes() {
        value = value.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
        if value > i64::MAX as u128 {
            return None;
        }
    }
    let mut nanos = value.checked_mul(scale)?;
    // Digits past the 20th cannot change a nanosecond count of this size.
    let fraction = &fraction[..fraction.len().min(20)];
    let mut numerator: u128 = 0;
    let mut denominator: u128 = 1;
    for d in fraction.bytes() {
        numerator = numerator * 10 + u128::from(d - b'0');
        denominator *= 10;
    }
    nanos = nanos.checked_add(numerator * scale / denominator)?;
    Some(nanos)
}
