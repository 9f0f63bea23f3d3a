//! One json-file line: encoding exactly as docker's `jsonlog` package does it, and
//! a strict decoder.

use std::borrow::Cow;

use serde::Deserialize;

use super::since;
use super::{LogRecord, Stream};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The ASCII bytes docker escapes: controls, `"` and `\`, and `<`, `>`, `&` (Go's
/// HTML-safe set).
const ESCAPED: [bool; 128] = {
    let mut t = [false; 128];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t
};

/// Appends one record, `'\n'` included. `time` is the formatted time (see
/// [`push_time`]).
pub(super) fn push_record(out: &mut Vec<u8>, stream: Stream, line: &[u8], time: &[u8]) {
    out.extend_from_slice(b"{\"log\":");
    push_string(out, line);
    out.extend_from_slice(b",\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(time);
    out.extend_from_slice(b"\"}\n");
}

/// Appends `s` as a JSON string the way docker's `ffjsonWriteJSONBytesAsString`
/// does: `\"`, `\\`, `\n`, `\r`, `\u00XX` for the other controls and for `<`, `>`,
/// `&`, `\u2028`/`\u2029`, and `\ufffd` for each byte that is not part of valid
/// UTF-8 (Go's `utf8.DecodeRune` takes one byte at a time).
pub(super) fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut rest = s;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                push_valid(out, valid.as_bytes());
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                push_valid(out, valid);
                let bad = e.error_len().unwrap_or(after.len());
                for _ in 0..bad {
                    out.extend_from_slice(b"\\ufffd");
                }
                rest = &after[bad..];
            }
        }
    }
    out.push(b'"');
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

fn word(s: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[..8]);
    u64::from_le_bytes(w)
}

/// Whether one of the eight bytes is `b` (the bit trick is exact for "any").
fn has_byte(w: u64, b: u8) -> bool {
    let x = w ^ (LO * u64::from(b));
    x.wrapping_sub(LO) & !x & HI != 0
}

/// Whether all eight bytes are ASCII that goes out as it is.
fn plain(w: u64) -> bool {
    let below_space = w.wrapping_sub(LO * 0x20) & !w & HI;
    w & HI == 0
        && below_space == 0
        && !has_byte(w, b'"')
        && !has_byte(w, b'\\')
        && !has_byte(w, b'<')
        && !has_byte(w, b'>')
        && !has_byte(w, b'&')
}

/// The index of the first `'\n'` in `s`, eight bytes at a time.
pub(super) fn find_newline(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= s.len() && !has_byte(word(&s[i..]), b'\n') {
        i += 8;
    }
    s[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
}

/// `s` is valid UTF-8.
fn push_valid(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        while i + 8 <= s.len() && plain(word(&s[i..])) {
            i += 8;
        }
        let Some(&b) = s.get(i) else {
            break;
        };
        if b < 0x80 {
            if !ESCAPED[b as usize] {
                i += 1;
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]),
            }
            i += 1;
            start = i;
        } else if b == 0xe2
            && s.get(i + 1) == Some(&0x80)
            && matches!(s.get(i + 2), Some(0xa8 | 0xa9))
        {
            // U+2028, U+2029: E2 80 A8 / E2 80 A9.
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(b"\\u202");
            out.push(HEX[(s[i + 2] & 0xf) as usize]);
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    out.extend_from_slice(&s[start..]);
}

/// Appends `secs.nanos` since the epoch as Go's `RFC3339Nano` in UTC:
/// `2026-12-01T20:00:00.12345Z` (trailing zeros of the fraction trimmed, no
/// fraction for a whole second). False, and nothing appended, outside years 0–9999.
pub(crate) fn push_time(out: &mut Vec<u8>, secs: i64, nanos: u32) -> bool {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = since::civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return false;
    }
    let digits = |out: &mut Vec<u8>, v: i64, n: u32| {
        for k in (0..n).rev() {
            out.push(b'0' + (v / 10i64.pow(k) % 10) as u8);
        }
    };
    digits(out, y, 4);
    out.push(b'-');
    digits(out, m.into(), 2);
    out.push(b'-');
    digits(out, d.into(), 2);
    out.push(b'T');
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, sod / 60 % 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    if nanos > 0 {
        let mut n = nanos;
        let mut width = 9;
        while n.is_multiple_of(10) {
            n /= 10;
            width -= 1;
        }
        out.push(b'.');
        digits(out, n.into(), width);
    }
    out.push(b'Z');
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw<'a> {
    /// Docker omits an empty `log`.
    #[serde(default, borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    /// Docker's `labels`/`env` options put them here; skiff writes none.
    #[serde(default, rename = "attrs")]
    _attrs: Option<serde::de::IgnoredAny>,
}

/// Parses one line (its `'\n'`, if any, included) strictly; the error is why not.
pub(super) fn decode(line: &[u8]) -> Result<LogRecord, String> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let raw: Raw = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let stream = match &*raw.stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        other => return Err(format!("unknown stream {other:?}")),
    };
    let (secs, nanos) = since::parse_datetime(&raw.time, false)
        .map_err(|reason| format!("time {:?}: {reason}", raw.time))?;
    let time =
        since::from_unix(secs, nanos).ok_or_else(|| format!("time {:?} out of range", raw.time))?;
    Ok(LogRecord {
        time,
        stream,
        line: raw.log.into_owned().into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::testutil::{at, T0};

    fn record(stream: Stream, line: &[u8], secs: u64, nanos: u32) -> String {
        let mut time = Vec::new();
        assert!(push_time(&mut time, secs as i64, nanos));
        let mut out = Vec::new();
        push_record(&mut out, stream, line, &time);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn record_matches_docker_line() {
        assert_eq!(
            record(Stream::Stdout, b"hello\n", T0, 123_456_789),
            "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2026-12-01T20:00:00.123456789Z\"}\n"
        );
        // Quotes, backslashes, controls (tab included: docker writes \u0009), Go's
        // HTML escapes, DEL and '/' as they are, non-ASCII as UTF-8, U+2028/2029.
        let line =
            "say \"hi\" \\ back\tslash </b> & \u{1}\u{1f}\u{7f} é 日本 😀 \u{2028}\u{2029}\r\n";
        assert_eq!(
            record(Stream::Stderr, line.as_bytes(), T0 + 61, 120_000_000),
            r#"{"log":"say \"hi\" \\ back\u0009slash \u003c/b\u003e \u0026 \u0001\u001f"#
                .to_owned()
                + "\u{7f} é 日本 😀 "
                + r#"\u2028\u2029\r\n","stream":"stderr","time":"2026-12-01T20:01:01.12Z"}"#
                + "\n"
        );
    }

    /// Byte by byte, as docker's loop goes (valid UTF-8 only).
    fn reference(s: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for c in s.chars() {
            match c {
                '"' => out.extend(b"\\\""),
                '\\' => out.extend(b"\\\\"),
                '\n' => out.extend(b"\\n"),
                '\r' => out.extend(b"\\r"),
                '<' | '>' | '&' | '\u{0}'..='\u{1f}' | '\u{2028}' | '\u{2029}' => {
                    out.extend(format!("\\u{:04x}", c as u32).bytes())
                }
                _ => out.extend(c.to_string().bytes()),
            }
        }
        out.push(b'"');
        out
    }

    #[test]
    fn escapes_at_every_position() {
        for special in [
            "\"", "\\", "\n", "\r", "\t", "\u{0}", "\u{1f}", "<", ">", "&", "é", "\u{2028}", "😀",
            " ", "\u{7f}",
        ] {
            for before in 0..20 {
                for after in [0, 1, 7, 8, 9, 17] {
                    let s = format!("{}{special}{}", "a".repeat(before), "b".repeat(after));
                    let mut out = Vec::new();
                    push_string(&mut out, s.as_bytes());
                    assert_eq!(out, reference(&s), "{s:?}");
                    let nl = s.find('\n');
                    assert_eq!(find_newline(s.as_bytes()), nl, "{s:?}");
                }
            }
        }
    }

    #[test]
    fn invalid_utf8_is_one_replacement_per_byte() {
        // A lone continuation byte, a cut 3-byte sequence (2 bytes), an overlong
        // encoding (2 bytes), a surrogate (3 bytes), and a cut sequence at the end.
        let out = record(
            Stream::Stdout,
            b"a\x80b\xe2\x82c\xc0\xafd\xed\xa0\x80e\xf0\x9f",
            T0,
            0,
        );
        assert_eq!(
            out,
            r#"{"log":"a\ufffdb\ufffd\ufffdc\ufffd\ufffdd\ufffd\ufffd\ufffde\ufffd\ufffd","stream":"stdout","time":"2026-12-01T20:00:00Z"}"#
                .to_owned()
                + "\n"
        );
        let rec = decode(out.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(rec.line).unwrap(),
            "a\u{fffd}b\u{fffd}\u{fffd}c\u{fffd}\u{fffd}d\u{fffd}\u{fffd}\u{fffd}e\u{fffd}\u{fffd}"
        );
    }

    #[test]
    fn time_formats_like_rfc3339nano() {
        let fmt = |secs: i64, nanos: u32| {
            let mut v = Vec::new();
            push_time(&mut v, secs, nanos).then(|| String::from_utf8(v).unwrap())
        };
        assert_eq!(fmt(0, 0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(fmt(0, 1).unwrap(), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(fmt(-1, 500_000_000).unwrap(), "1969-12-31T23:59:59.5Z");
        assert_eq!(fmt(951_782_400, 0).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(
            fmt(253_402_300_799, 999_999_999).unwrap(),
            "9999-12-31T23:59:59.999999999Z"
        );
        assert_eq!(fmt(253_402_300_800, 0), None);
        assert_eq!(fmt(-62_167_219_200, 0).unwrap(), "0000-01-01T00:00:00Z");
        assert_eq!(fmt(-62_167_219_201, 0), None);
    }

    #[test]
    fn decode_round_trips_and_is_strict() {
        let line = record(Stream::Stderr, "x \"y\" \u{1}\n".as_bytes(), T0, 5);
        let rec = decode(line.as_bytes()).unwrap();
        assert_eq!(rec.stream, Stream::Stderr);
        assert_eq!(rec.line, "x \"y\" \u{1}\n".as_bytes());
        assert_eq!(rec.time, at(T0, 5));
        // Docker's attrs are accepted; a missing log is an empty one.
        let rec =
            decode(br#"{"stream":"stdout","attrs":{"a":"b"},"time":"2026-12-01T21:00:00+01:00"}"#)
                .unwrap();
        assert_eq!((rec.line.len(), rec.time), (0, at(T0, 0)));
        for bad in [
            &br#"{"log":"x","stream":"stdout"}"#[..],
            br#"{"log":"x","stream":"stdin","time":"2026-12-01T20:00:00Z"}"#,
            br#"{"log":"x","stream":"stdout","time":"2026-12-01 20:00:00Z"}"#,
            br#"{"log":"x","stream":"stdout","time":"2026-12-01T20:00:00"}"#,
            br#"{"log":"x","stream":"stdout","time":"2026-12-01T20:00:00Z","extra":1}"#,
            br#"{"log":"x","stream":"stdout","time":"2026-12-01T20:00:00Z"} trailing"#,
            br#"{"log":"x","log":"y","stream":"stdout","time":"2026-12-01T20:00:00Z"}"#,
            br#"{"log":"x","stream":"stdout","time":"2026-12-01T20:0"#,
            b"",
            b"\xff",
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
