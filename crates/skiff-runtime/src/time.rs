//! Timestamps as skiff stores and prints them: RFC 3339 in UTC with Go's
//! RFC3339Nano fraction (trailing zeros trimmed), docker's format, the same
//! as the logs write (one formatter: `logs::json`).

use std::time::SystemTime;

use crate::logs::{json, since};

pub fn rfc3339(t: SystemTime) -> String {
    let (secs, nanos) = since::to_unix(t);
    let mut out = Vec::with_capacity(32);
    if !json::push_time(&mut out, secs, nanos) {
        return "0001-01-01T00:00:00Z".into();
    }
    String::from_utf8(out).unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let (secs, nanos) = since::parse_datetime(s, false).ok()?;
    since::from_unix(secs, nanos)
}

/// Hour and minute (UTC) of `t`.
pub fn hour_minute(t: SystemTime) -> (u32, u32) {
    let (secs, _) = since::to_unix(t);
    let sod = secs.rem_euclid(86_400) as u32;
    (sod / 3600, sod / 60 % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn round_trip_in_dockers_format() {
        let t = UNIX_EPOCH + Duration::new(1_764_619_200, 120_000_000);
        assert_eq!(rfc3339(t), "2025-12-01T20:00:00.12Z");
        assert_eq!(parse_rfc3339("2025-12-01T20:00:00.12Z"), Some(t));
        assert_eq!(hour_minute(t), (20, 0));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
