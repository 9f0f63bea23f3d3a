//! Output helpers: one-line errors, human sizes and times, tables.

use std::fmt::Write as _;

/// `anyhow`'s chain on one line, without repeating a cause the outer message
/// already quotes.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string().replace('\n', " ");
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

/// `12.3MB` (decimal units, as docker prints).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
            + UNITS[u]
    }
}

/// `3 days ago` from an RFC 3339 timestamp.
pub fn human_ago(rfc3339: Option<&str>) -> String {
    let Some(t) = rfc3339.and_then(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    }) else {
        return "N/A".into();
    };
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds();
    let (n, unit) = match secs {
        s if s < 0 => return "in the future".into(),
        s if s < 60 => return "Less than a minute ago".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86400 => (s / 3600, "hour"),
        s if s < 86400 * 14 => (s / 86400, "day"),
        s if s < 86400 * 60 => (s / (86400 * 7), "week"),
        s if s < 86400 * 730 => (s / (86400 * 30), "month"),
        s => (s / (86400 * 365), "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A duration as docker words it (`Less than a second`, `About a minute`,
/// `3 hours`): its `ps` says `Up 3 hours`, `Exited (0) 5 seconds ago`.
pub fn human_duration(secs: i64) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 86400 * 2 => format!("{} hours", s / 3600),
        s if s < 86400 * 14 => plural(s / 86400, "day"),
        s if s < 86400 * 60 => plural(s / (86400 * 7), "week"),
        s if s < 86400 * 730 => plural(s / (86400 * 30), "month"),
        s => plural(s / (86400 * 365), "year"),
    }
}

/// Seconds since an RFC 3339 time (0 for none or a future one).
pub fn secs_since(rfc3339: Option<&str>) -> i64 {
    rfc3339
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0))
        .unwrap_or(0)
}

/// Left-aligned columns separated by three spaces, like docker's tables.
/// docker's way of removing several things: each name printed when it goes,
/// or said why in one line; a single failing name is the command's error.
/// Exits 1 after all were tried when any failed.
pub fn remove_each<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
    names: &[String],
    mut remove: impl FnMut(&str) -> Result<(), E>,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for name in names {
        match remove(name) {
            Ok(()) => println!("{name}"),
            Err(e) if names.len() == 1 => {
                return Err(anyhow::Error::new(e).context(format!("removing {what} {name}")))
            }
            Err(e) => {
                eprintln!(
                    "Error: removing {what} {name}: {}",
                    skiff_util::error::chain(&e)
                );
                failed += 1;
            }
        }
    }
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 == widths.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}   ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    #[test]
    fn durations_as_docker_words_them() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3700), "About an hour");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A     BB\nxxx   y\n");
    }
}
