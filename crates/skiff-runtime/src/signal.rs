//! Signal names and numbers as users write them (`SIGTERM`, `TERM`, `15`).

/// Linux's signals by name, without the SIG prefix.
const SIGNALS: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

#[derive(Debug, thiserror::Error)]
#[error("invalid signal {0:?}: use a name (SIGTERM, TERM) or a number (15)")]
pub struct BadSignal(pub String);

/// `SIGTERM`, `term`, `15`, `SIGRTMIN+2`.
pub fn parse(s: &str) -> Result<i32, BadSignal> {
    let bad = || BadSignal(s.to_owned());
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = SIGNALS.iter().find(|(k, _)| *k == name) {
        return Ok(n);
    }
    // Real-time signals: RTMIN is 34 with glibc and musl.
    let rt = |base: i32, rest: &str, sign: i32| -> Result<i32, BadSignal> {
        let off = if rest.is_empty() {
            0
        } else {
            rest.parse::<i32>().map_err(|_| bad())?
        };
        let n = base + sign * off;
        if (34..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(34, rest.strip_prefix('+').unwrap_or(rest), 1);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return rt(64, rest.strip_prefix('-').unwrap_or(rest), -1);
    }
    Err(bad())
}

/// `SIGTERM` for 15; the number for one without a name.
pub fn name(n: i32) -> String {
    SIGNALS
        .iter()
        .find(|(_, v)| *v == n)
        .map(|(k, _)| format!("SIG{k}"))
        .unwrap_or_else(|| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("term").unwrap(), 15);
        assert_eq!(parse("HUP").unwrap(), 1);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("SIGRTMIN+3").unwrap(), 37);
        assert_eq!(parse("RTMAX").unwrap(), 64);
        assert_eq!(parse("SIGRTMAX-1").unwrap(), 63);
        for bad in ["", "0", "65", "SIGFOO", "RTMIN+40", "-1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(37), "37");
    }
}
