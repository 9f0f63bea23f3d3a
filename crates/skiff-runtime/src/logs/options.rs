//! `--log-opt` values of the json-file log.

use super::LogError;

/// How much of a container's log is kept.
///
/// Bounded by default: at most 3 files of 10 MiB each, the live file and two
/// rotated ones (docker's json-file keeps everything unless told otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Rotate before the live file would grow past this many bytes; `None`: never.
    pub max_size: Option<u64>,
    /// How many files to keep, the live one included; 1: the live file is
    /// truncated instead of rotated (docker's behaviour with `max-file=1`).
    pub max_files: u32,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_size: Some(10 << 20),
            max_files: 3,
        }
    }
}

const SIZE: &str = "expected a size above zero such as 10m (units b, k, m, g)";
const FILES: &str = "expected a number of files, at least 1";

impl LogOptions {
    /// Parses docker's `--log-opt` values: `max-size=10m` (binary units as docker:
    /// `b`, `k`, `m`, `g`, also `t`, `p`, with an optional `i`/`b` after, so
    /// `1k` = `1kb` = `1KiB` = 1024; decimals allowed, `1.5m`) and `max-file=3`.
    /// Options not given keep their [default](LogOptions::default); a later value
    /// replaces an earlier one.
    pub fn parse(opts: &[String]) -> Result<LogOptions, LogError> {
        let mut o = LogOptions::default();
        for opt in opts {
            let Some((key, value)) = opt.split_once('=') else {
                return Err(LogError::MalformedOption(opt.clone()));
            };
            let invalid = |key, reason| LogError::InvalidOption {
                key,
                value: value.to_owned(),
                reason,
            };
            match key {
                "max-size" => {
                    o.max_size = Some(parse_size(value).ok_or_else(|| invalid("max-size", SIZE))?)
                }
                "max-file" => {
                    o.max_files = match value.parse::<u32>() {
                        Ok(n) if n >= 1 && value.bytes().all(|b| b.is_ascii_digit()) => n,
                        _ => return Err(invalid("max-file", FILES)),
                    }
                }
                _ => return Err(LogError::UnknownOption(key.to_owned())),
            }
        }
        Ok(o)
    }

    /// Checks values set in code, as `parse` checks them.
    pub(super) fn validate(&self) -> Result<(), LogError> {
        if self.max_files == 0 {
            return Err(LogError::InvalidOption {
                key: "max-file",
                value: "0".into(),
                reason: FILES,
            });
        }
        if self.max_size == Some(0) {
            return Err(LogError::InvalidOption {
                key: "max-size",
                value: "0".into(),
                reason: SIZE,
            });
        }
        Ok(())
    }
}

/// docker's `units.RAMInBytes`: `^(\d+(\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$`, the
/// `i` only after a unit letter; the result rounded down, and above zero.
fn parse_size(s: &str) -> Option<u64> {
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (int, rest) = s.split_at(int_len);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            r.split_at(n)
        }
        None => ("", rest),
    };
    if int.is_empty() || int.len() > 20 {
        return None;
    }
    let unit = rest.strip_prefix(' ').unwrap_or(rest).to_ascii_lowercase();
    let (letter, suffix) = match unit.chars().next() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => (Some(c), &unit[1..]),
        _ => (None, &unit[..]),
    };
    let ok_suffix = match letter {
        Some(_) => matches!(suffix, "" | "b" | "i" | "ib"),
        None => matches!(suffix, "" | "b"),
    };
    if !ok_suffix {
        return None;
    }
    let shift = match letter {
        None => 0,
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        _ => 50,
    };
    let mult = 1u128 << shift;
    let mut bytes = int.parse::<u128>().ok()?.checked_mul(mult)?;
    let frac = &frac[..frac.len().min(20)];
    if !frac.is_empty() {
        bytes += frac.parse::<u128>().ok()? * mult / 10u128.pow(frac.len() as u32);
    }
    u64::try_from(bytes).ok().filter(|&b| b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> Result<LogOptions, LogError> {
        LogOptions::parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn sized(max_size: u64, max_files: u32) -> LogOptions {
        LogOptions {
            max_size: Some(max_size),
            max_files,
        }
    }

    #[test]
    fn good_options() {
        assert_eq!(parse(&[]).unwrap(), sized(10 << 20, 3));
        assert_eq!(LogOptions::default(), sized(10 * 1024 * 1024, 3));
        for (v, bytes) in [
            ("10m", 10 << 20),
            ("10M", 10 << 20),
            ("10mb", 10 << 20),
            ("10MiB", 10 << 20),
            ("10 m", 10 << 20),
            ("1k", 1024),
            ("1kb", 1024),
            ("1KB", 1024),
            ("1g", 1 << 30),
            ("2t", 2 << 40),
            ("1p", 1 << 50),
            ("512", 512),
            ("512b", 512),
            ("512B", 512),
            ("1.5m", 3 << 19),
            ("0.5k", 512),
            ("1.0009k", 1024),
        ] {
            assert_eq!(
                parse(&[&format!("max-size={v}")]).unwrap(),
                sized(bytes, 3),
                "{v}"
            );
        }
        assert_eq!(parse(&["max-file=1"]).unwrap(), sized(10 << 20, 1));
        assert_eq!(
            parse(&["max-file=5", "max-size=4k", "max-file=7"]).unwrap(),
            sized(4096, 7)
        );
    }

    #[test]
    fn bad_options() {
        for (opt, message) in [
            (
                "max-size",
                r#"log option "max-size" is not of the form key=value"#,
            ),
            (
                "compress=true",
                r#"unknown log option "compress" (the json-file log takes max-size and max-file)"#,
            ),
            (
                "Max-Size=1m",
                r#"unknown log option "Max-Size" (the json-file log takes max-size and max-file)"#,
            ),
            (
                "=1m",
                r#"unknown log option "" (the json-file log takes max-size and max-file)"#,
            ),
            (
                "max-size=",
                r#"invalid log option max-size="": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-size=10q",
                r#"invalid log option max-size="10q": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-size=0",
                r#"invalid log option max-size="0": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-size=0.0001k",
                r#"invalid log option max-size="0.0001k": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-size=-1",
                r#"invalid log option max-size="-1": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-size=1.m",
                r#"invalid log option max-size="1.m": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-size=.5m",
                r#"invalid log option max-size=".5m": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-size=10i",
                r#"invalid log option max-size="10i": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-size=10mbb",
                r#"invalid log option max-size="10mbb": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-size=10  m",
                r#"invalid log option max-size="10  m": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-size=16384p",
                r#"invalid log option max-size="16384p": expected a size above zero such as 10m (units b, k, m, g)"#,
            ),
            (
                "max-file=0",
                r#"invalid log option max-file="0": expected a number of files, at least 1"#,
            ),
            (
                "max-file=-1",
                r#"invalid log option max-file="-1": expected a number of files, at least 1"#,
            ),
            (
                "max-file=+3",
                r#"invalid log option max-file="+3": expected a number of files, at least 1"#,
            ),
            (
                "max-file=three",
                r#"invalid log option max-file="three": expected a number of files, at least 1"#,
            ),
            (
                "max-file=",
                r#"invalid log option max-file="": expected a number of files, at least 1"#,
            ),
            (
                "max-file=99999999999",
                r#"invalid log option max-file="99999999999": expected a number of files, at least 1"#,
            ),
        ] {
            let e = parse(&["max-file=2", opt]).unwrap_err();
            assert_eq!(e.to_string(), message, "{opt}");
        }
    }
}
