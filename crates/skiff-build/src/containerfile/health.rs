//! `HEALTHCHECK NONE` and `HEALTHCHECK [flags] CMD ...`, checked as
//! BuildKit's `parseHealthcheck` does.

use std::time::Duration;

use super::duration::parse_duration;
use super::flags::{parse_flags, FlagKind};
use super::words::{parse_json_array, shown, Json};
use super::{Command, Healthcheck};

/// The shortest non-zero interval docker accepts.
const MINIMUM: Duration = Duration::from_millis(1);

/// Parses HEALTHCHECK's flags and arguments.
pub(super) fn healthcheck(flags: &[String], args: &str) -> Result<Healthcheck, String> {
    if args.is_empty() {
        return Err("HEALTHCHECK requires at least one argument".into());
    }
    let (kind, rest) = match args.find(char::is_whitespace) {
        Some(end) => (&args[..end], args[end..].trim_start()),
        None => (args, ""),
    };
    if kind.eq_ignore_ascii_case("NONE") {
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        if !flags.is_empty() {
            return Err("HEALTHCHECK NONE takes no flags".into());
        }
        return Ok(Healthcheck::None);
    }
    if !kind.eq_ignore_ascii_case("CMD") {
        return Err(format!(
            "Unknown type {} in HEALTHCHECK (try CMD)",
            shown(&kind.to_uppercase())
        ));
    }
    let allowed = [
        ("interval", FlagKind::Text),
        ("timeout", FlagKind::Text),
        ("start-period", FlagKind::Text),
        ("start-interval", FlagKind::Text),
        ("retries", FlagKind::Text),
    ];
    let flags = parse_flags("HEALTHCHECK", flags, &allowed, &[])?;
    let missing = || "Missing command after HEALTHCHECK CMD".to_string();
    let test = match parse_json_array(rest)? {
        Json::Strings(words) if words.is_empty() => return Err(missing()),
        Json::Strings(words) => Command::Exec(words),
        Json::NotJson if rest.is_empty() => return Err(missing()),
        Json::NotJson => Command::Shell(rest.to_string()),
    };
    let duration = |name: &str| interval(name, flags.text(name));
    Ok(Healthcheck::Check {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries: flags.text("retries").map(|v| retries(&v)).transpose()?,
    })
}

/// A duration flag: absent or 0 is `None` (the default), as in docker;
/// anything else must be at least 1ms.
fn interval(name: &str, value: Option<String>) -> Result<Option<Duration>, String> {
    let Some(value) = value else { return Ok(None) };
    let d = parse_duration(&value).map_err(|e| format!("HEALTHCHECK --{name}: {e}"))?;
    if d.is_zero() {
        return Ok(None);
    }
    if d < MINIMUM {
        return Err(format!(
            "HEALTHCHECK --{name}: {} is shorter than the minimum of 1ms",
            shown(&value)
        ));
    }
    Ok(Some(d))
}

/// `--retries`: a non-negative 32-bit integer (Go's `ParseInt(v, 10, 32)`).
fn retries(value: &str) -> Result<u32, String> {
    let Ok(n) = value.parse::<i32>() else {
        return Err(format!(
            "HEALTHCHECK --retries: {} is not a number",
            shown(value)
        ));
    };
    u32::try_from(n).map_err(|_| format!("HEALTHCHECK --retries cannot be negative ({n})"))
}
