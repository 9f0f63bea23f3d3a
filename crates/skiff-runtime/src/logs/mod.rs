//! Container logs: written by the monitor, read by `skiff logs`.
//!
//! The format is docker's json-file, one JSON object per line:
//!
//! ```text
//! {"log":"hello\n","stream":"stdout","time":"2026-12-01T20:00:00.123456789Z"}
//! ```
//!
//! `log` is one line of output with its `'\n'` (a line longer than 16 KiB, or a
//! partial line at exit, is written without it), escaped the way docker's encoder
//! escapes it; `time` is RFC 3339 in UTC with nanoseconds, trailing zeros trimmed
//! (Go's `RFC3339Nano`, as docker writes it).
//!
//! One log per container: the live file `path` and, after rotation, `path.1`
//! (newest) to `path.{max_files-1}` (oldest). [`LogWriter`] splits output into
//! records and rotates; [`read`] reads the files oldest first, tails, filters by
//! time and follows the live file across rotation.

pub(crate) mod json;
mod options;
mod reader;
pub(crate) mod since;
mod writer;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use options::LogOptions;
pub use reader::{read, ReadOptions};
pub use since::{parse_duration, parse_time};
pub use writer::LogWriter;

/// Which of the container's outputs a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The name in the log file: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub time: SystemTime,
    pub stream: Stream,
    /// The output, with its `'\n'` when it had one; invalid UTF-8 was replaced by
    /// U+FFFD when it was written.
    pub line: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log option {0:?} is not of the form key=value")]
    MalformedOption(String),
    #[error("unknown log option {0:?} (the json-file log takes max-size and max-file)")]
    UnknownOption(String),
    #[error("invalid log option {key}={value:?}: {reason}")]
    InvalidOption {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("invalid time {value:?}: {reason}")]
    InvalidTime { value: String, reason: &'static str },
    #[error("invalid duration {value:?}: {reason}")]
    InvalidDuration { value: String, reason: &'static str },
    #[error("the time {0:?} cannot be written in RFC 3339 (years 0 to 9999)")]
    TimeOutOfRange(SystemTime),
    #[error("opening the log file {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the log file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rotating the log file {}", path.display())]
    Rotate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the log file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The reader's `out` callback failed (a closed pipe, say).
    #[error("passing on log records")]
    Output(#[source] io::Error),
}

/// `path.n`: the `n`th rotated file, 1 the newest.
fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

#[cfg(test)]
mod testutil {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2026-12-01T20:00:00Z.
    pub const T0: u64 = 1_796_155_200;

    pub fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    /// Every record of the log at `path`, oldest first.
    pub fn read_all(path: &Path) -> Vec<LogRecord> {
        read_with(path, &ReadOptions::default())
    }

    pub fn read_with(path: &Path, opts: &ReadOptions) -> Vec<LogRecord> {
        let mut got = Vec::new();
        read(path, opts, &mut || false, &mut |r| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        got
    }

    /// The lines of the records, as text.
    pub fn lines(records: &[LogRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.line.clone()).unwrap())
            .collect()
    }
}
