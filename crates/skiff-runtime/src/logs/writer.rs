//! Writing a container's log: output chunks to records, records to the file,
//! rotation.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{json, rotated_path, since, LogError, LogOptions, Stream};

/// A line longer than this is written in pieces of this size, without `'\n'`;
/// so is a partial line once this much of it is held (docker's 16 KiB buffer).
pub(super) const MAX_PIECE: usize = 16 * 1024;

/// Writes one container's output to its log.
///
/// Output comes in chunks of any size from either stream; each stream's partial
/// line is held until its `'\n'` arrives, until [`MAX_PIECE`] bytes of it are held
/// (that much goes out as a record without `'\n'`, cut back to a UTF-8 character
/// boundary when it would split a character), or until [`flush`](Self::flush). A
/// record's time is the time of the chunk that brought its last byte.
///
/// The records of a chunk go out in one `write(2)` (two around a rotation) as soon
/// as the chunk is taken; nothing is fsynced. One writer per log: nothing stops a
/// second one but it would interleave and rotate under the first.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// Bytes in the live file.
    size: u64,
    opts: LogOptions,
    /// Partial lines, by stream, and when their last byte came.
    pending: [Vec<u8>; 2],
    pending_at: [SystemTime; 2],
    /// The records of the chunk being written.
    out: Vec<u8>,
}

fn index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

impl LogWriter {
    /// Opens the log at `path`, appending to what is there (a restarted container
    /// continues its log). A last line left cut short by a crash is ended with a
    /// `'\n'` first, so that it stays one malformed line that readers skip.
    pub fn open(path: &Path, opts: LogOptions) -> Result<LogWriter, LogError> {
        opts.validate()?;
        let open_err = |source| LogError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = open_file(path).map_err(open_err)?;
        let mut size = file.metadata().map_err(open_err)?.len();
        if size > 0 {
            let mut last = [0u8];
            file.read_exact_at(&mut last, size - 1).map_err(open_err)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|source| LogError::Write {
                    path: path.to_owned(),
                    source,
                })?;
                size += 1;
            }
        }
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            size,
            opts,
            pending: [Vec::new(), Vec::new()],
            pending_at: [SystemTime::UNIX_EPOCH; 2],
            out: Vec::with_capacity(64 * 1024),
        })
    }

    /// Takes a chunk of the output of `stream`, read at `at`, and writes out the
    /// records it completes.
    pub fn write(&mut self, stream: Stream, data: &[u8], at: SystemTime) -> Result<(), LogError> {
        if data.is_empty() {
            return Ok(());
        }
        let time = format_time(at)?;
        let s = index(stream);
        let mut rest = data;
        while !rest.is_empty() {
            let held = self.pending[s].len();
            let room = MAX_PIECE - held;
            let window = &rest[..rest.len().min(room)];
            if let Some(i) = json::find_newline(window) {
                let (line, after) = rest.split_at(i + 1);
                if held == 0 {
                    self.emit(stream, line, &time)?;
                } else {
                    let mut p = std::mem::take(&mut self.pending[s]);
                    p.extend_from_slice(line);
                    let r = self.emit(stream, &p, &time);
                    p.clear();
                    self.pending[s] = p;
                    r?;
                }
                rest = after;
            } else if rest.len() >= room {
                let mut p = std::mem::take(&mut self.pending[s]);
                p.extend_from_slice(&rest[..room]);
                rest = &rest[room..];
                let cut = char_boundary(&p);
                let r = self.emit(stream, &p[..cut], &time);
                p.drain(..cut);
                self.pending[s] = p;
                self.pending_at[s] = at;
                r?;
            } else {
                self.pending[s].extend_from_slice(rest);
                self.pending_at[s] = at;
                rest = &[];
            }
        }
        self.write_out()
    }

    /// Writes out the partial lines held (as records without `'\n'`), in the order
    /// their last bytes came; for when the process has exited.
    pub fn flush(&mut self) -> Result<(), LogError> {
        let mut order = [0, 1];
        order.sort_by_key(|&s| self.pending_at[s]);
        for s in order {
            if self.pending[s].is_empty() {
                continue;
            }
            let stream = if s == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            let p = std::mem::take(&mut self.pending[s]);
            let r = format_time(self.pending_at[s]).and_then(|time| self.emit(stream, &p, &time));
            if let Err(e) = r {
                self.out.clear();
                return Err(e);
            }
        }
        self.write_out()
    }

    /// Encodes one record into `out`, rotating first when it would take the live
    /// file past `max_size` (a record larger than that goes alone into a file).
    fn emit(&mut self, stream: Stream, line: &[u8], time: &[u8]) -> Result<(), LogError> {
        let start = self.out.len();
        json::push_record(&mut self.out, stream, line, time);
        let Some(max) = self.opts.max_size else {
            return Ok(());
        };
        let before = self.size + start as u64;
        let len = (self.out.len() - start) as u64;
        if before > 0 && before + len > max {
            let r = self.write_bytes(start).and_then(|()| self.rotate());
            if r.is_err() {
                self.out.clear();
            }
            r?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), LogError> {
        let r = self.write_bytes(self.out.len());
        self.out.clear();
        r
    }

    /// Writes the first `n` bytes of `out` to the live file and drops them.
    fn write_bytes(&mut self, n: usize) -> Result<(), LogError> {
        if n == 0 {
            return Ok(());
        }
        let r = self.file.write_all(&self.out[..n]);
        self.out.drain(..n);
        match r {
            Ok(()) => {
                self.size += n as u64;
                Ok(())
            }
            Err(source) => {
                // Part of it may be there.
                if let Ok(m) = self.file.metadata() {
                    self.size = m.len();
                }
                Err(LogError::Write {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }

    /// `path.{max_files-2}` → `path.{max_files-1}` (the oldest dropped), …,
    /// `path.1` → `path.2`, `path` → `path.1`, and a new `path`; with `max_files` 1 the live file is
    /// truncated instead. Renames, so that a reader holding a file open reads it
    /// to its end.
    fn rotate(&mut self) -> Result<(), LogError> {
        let err = |source| LogError::Rotate {
            path: self.path.clone(),
            source,
        };
        if self.opts.max_files <= 1 {
            self.file.set_len(0).map_err(err)?;
            self.size = 0;
            return Ok(());
        }
        // Files a larger max-file left behind are older than all the others.
        let mut n = self.opts.max_files;
        loop {
            match fs::remove_file(rotated_path(&self.path, n)) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(err(e)),
            }
        }
        // Shift the run of rotated files from path.1 up by one, oldest first; the
        // one in the last place is overwritten (dropped).
        let last = self.opts.max_files - 1;
        let mut run = 0;
        while run < last && rotated_path(&self.path, run + 1).exists() {
            run += 1;
        }
        for i in (1..=run.min(last - 1)).rev() {
            fs::rename(rotated_path(&self.path, i), rotated_path(&self.path, i + 1))
                .map_err(err)?;
        }
        fs::rename(&self.path, rotated_path(&self.path, 1)).map_err(err)?;
        self.file = open_file(&self.path).map_err(err)?;
        self.size = 0;
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::debug!(path = %self.path.display(), error = %e, "flushing the log on drop");
        }
    }
}

fn format_time(at: SystemTime) -> Result<Vec<u8>, LogError> {
    let (secs, nanos) = since::to_unix(at);
    let mut time = Vec::with_capacity(32);
    if json::push_time(&mut time, secs, nanos) {
        Ok(time)
    } else {
        Err(LogError::TimeOutOfRange(at))
    }
}

/// Where to cut `p` so as not to split its last character: before an incomplete
/// UTF-8 sequence at its very end, else its length.
fn char_boundary(p: &[u8]) -> usize {
    let len = p.len();
    for back in 1..=3.min(len) {
        let b = p[len - back];
        if b & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let need = match b {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return len,
        };
        return if need > back { len - back } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::testutil::{at, lines, read_all, T0};
    use crate::logs::LogRecord;

    fn unbounded() -> LogOptions {
        LogOptions {
            max_size: None,
            max_files: 1,
        }
    }

    /// Writes `chunks` of stdout, flushes, and reads the records back.
    fn records_of(chunks: &[&[u8]]) -> Vec<LogRecord> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, unbounded()).unwrap();
        for (i, c) in chunks.iter().enumerate() {
            w.write(Stream::Stdout, c, at(T0, i as u32)).unwrap();
        }
        w.flush().unwrap();
        read_all(&path)
    }

    fn texts(chunks: &[&[u8]]) -> Vec<String> {
        lines(&records_of(chunks))
    }

    #[test]
    fn chunks_split_anywhere_give_the_same_records() {
        let data = "one\ntwo\r\n\nthré\u{e9}\r\r\n\u{1F600}x\nlast".as_bytes();
        let expected = ["one\n", "two\r\n", "\n", "thréé\r\r\n", "😀x\n", "last"];
        assert_eq!(texts(&[data]), expected);
        for i in 0..=data.len() {
            assert_eq!(texts(&[&data[..i], &data[i..]]), expected, "split at {i}");
            for j in i..=data.len() {
                assert_eq!(
                    texts(&[&data[..i], &data[i..j], &data[j..]]),
                    expected,
                    "{i} {j}"
                );
            }
        }
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(texts(&bytes), expected);
    }

    #[test]
    fn empty_chunks_write_nothing() {
        assert!(texts(&[]).is_empty());
        assert!(texts(&[b"", b""]).is_empty());
        assert_eq!(texts(&[b"", b"a", b"", b"b\n", b""]), ["ab\n"]);
    }

    #[test]
    fn a_record_gets_the_time_of_its_last_byte() {
        let recs = records_of(&[b"a", b"b\nc", b"d\n", b"e"]);
        let times: Vec<_> = recs.iter().map(|r| r.time).collect();
        assert_eq!(lines(&recs), ["ab\n", "cd\n", "e"]);
        assert_eq!(times, [at(T0, 1), at(T0, 2), at(T0, 3)]);
    }

    #[test]
    fn long_lines_go_out_in_16k_pieces() {
        let a = |n| "a".repeat(n);
        let mut long = a(40_000);
        long.push('\n');
        let expected = [a(MAX_PIECE), a(MAX_PIECE), a(40_000 - 2 * MAX_PIECE) + "\n"];
        assert_eq!(texts(&[long.as_bytes()]), expected);
        let pieces: Vec<&[u8]> = long.as_bytes().chunks(1000).collect();
        assert_eq!(texts(&pieces), expected);
        let pieces: Vec<&[u8]> = long.as_bytes().chunks(1).collect();
        assert_eq!(texts(&pieces), expected);
        // Exactly 16 KiB held without '\n' goes out; the '\n' then is a record.
        let exact = a(MAX_PIECE) + "\n";
        assert_eq!(texts(&[exact.as_bytes()]), [a(MAX_PIECE), "\n".into()]);
        let (x, y) = exact.as_bytes().split_at(MAX_PIECE);
        assert_eq!(texts(&[x, y]), [a(MAX_PIECE), "\n".into()]);
        // One byte less fits in one record.
        let fits = a(MAX_PIECE - 1) + "\n";
        assert_eq!(texts(&[fits.as_bytes()]), std::slice::from_ref(&fits));
        // A 16 KiB partial is written before any flush.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, unbounded()).unwrap();
        w.write(Stream::Stdout, a(MAX_PIECE + 5).as_bytes(), at(T0, 0))
            .unwrap();
        assert_eq!(lines(&read_all(&path)), [a(MAX_PIECE)]);
        w.flush().unwrap();
        assert_eq!(lines(&read_all(&path)), [a(MAX_PIECE), a(5)]);
    }

    #[test]
    fn pieces_do_not_split_characters() {
        let a = |n| "a".repeat(n);
        for (text, first) in [
            (a(MAX_PIECE - 1) + "é\n", MAX_PIECE - 1),
            (a(MAX_PIECE - 2) + "€€\n", MAX_PIECE - 2),
            (a(MAX_PIECE - 1) + "😀\n", MAX_PIECE - 1),
            (a(MAX_PIECE - 3) + "😀\n", MAX_PIECE - 3),
            (a(MAX_PIECE - 4) + "😀b\n", MAX_PIECE),
        ] {
            let got = texts(&[text.as_bytes()]);
            assert_eq!(got.concat(), text);
            assert_eq!(got[0].len(), first, "{:?}", &text[MAX_PIECE - 4..]);
            let pieces: Vec<&[u8]> = text.as_bytes().chunks(7).collect();
            assert_eq!(texts(&pieces), got);
        }
    }

    #[test]
    fn flush_writes_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, unbounded()).unwrap();
        w.write(Stream::Stdout, b"ab", at(T0, 1)).unwrap();
        w.write(Stream::Stderr, b"x\ny", at(T0, 2)).unwrap();
        w.write(Stream::Stdout, b"c", at(T0, 3)).unwrap();
        // Only whole lines so far; each stream holds its own partial line.
        assert_eq!(
            fs::read(&path)
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            1
        );
        let recs = read_all(&path);
        assert_eq!(
            (lines(&recs), recs[0].stream),
            (vec!["x\n".to_string()], Stream::Stderr)
        );
        w.write(Stream::Stdout, b"d\ne", at(T0, 4)).unwrap();
        w.flush().unwrap();
        let recs = read_all(&path);
        let got: Vec<_> = recs
            .iter()
            .map(|r| (r.stream, r.line.clone(), r.time))
            .collect();
        assert_eq!(
            got,
            [
                (Stream::Stderr, b"x\n".to_vec(), at(T0, 2)),
                (Stream::Stdout, b"abcd\n".to_vec(), at(T0, 4)),
                (Stream::Stderr, b"y".to_vec(), at(T0, 2)),
                (Stream::Stdout, b"e".to_vec(), at(T0, 4)),
            ]
        );
        let len = fs::metadata(&path).unwrap().len();
        w.flush().unwrap();
        drop(w);
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
        // Dropping flushes too.
        let mut w = LogWriter::open(&path, unbounded()).unwrap();
        w.write(Stream::Stdout, b"tail", at(T0, 5)).unwrap();
        drop(w);
        assert_eq!(lines(&read_all(&path)).last().unwrap(), "tail");
    }

    #[test]
    fn file_holds_docker_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, unbounded()).unwrap();
        w.write(
            Stream::Stdout,
            b"say \"hi\"\t\\ <&>\n\xff",
            at(T0, 123_456_789),
        )
        .unwrap();
        w.write(Stream::Stderr, "é\u{1b}[0m\n".as_bytes(), at(T0 + 1, 0))
            .unwrap();
        w.flush().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            concat!(
                r#"{"log":"say \"hi\"\u0009\\ \u003c\u0026\u003e\n","stream":"stdout","time":"2026-12-01T20:00:00.123456789Z"}"#,
                "\n",
                r#"{"log":"é\u001b[0m\n","stream":"stderr","time":"2026-12-01T20:00:01Z"}"#,
                "\n",
                r#"{"log":"\ufffd","stream":"stdout","time":"2026-12-01T20:00:00.123456789Z"}"#,
                "\n",
            )
        );
    }

    #[test]
    fn open_appends_and_ends_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, unbounded()).unwrap();
        w.write(Stream::Stdout, b"one\ntwo\n", at(T0, 0)).unwrap();
        drop(w);
        // A crash in the middle of a record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"log":"thr"#).unwrap();
        let mut w = LogWriter::open(&path, unbounded()).unwrap();
        w.write(Stream::Stdout, b"three\n", at(T0, 0)).unwrap();
        drop(w);
        assert_eq!(lines(&read_all(&path)), ["one\n", "two\n", "three\n"]);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 4);
    }

    #[test]
    fn open_rejects_zero_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        for opts in [
            LogOptions {
                max_size: Some(0),
                max_files: 3,
            },
            LogOptions {
                max_size: Some(1),
                max_files: 0,
            },
        ] {
            assert!(matches!(
                LogWriter::open(&path, opts),
                Err(LogError::InvalidOption { .. })
            ));
        }
        assert!(!path.exists());
    }

    /// The files of the log, oldest first.
    fn files(path: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut n = 1;
        while let Ok(b) = fs::read(rotated_path(path, n)) {
            out.push(b);
            n += 1;
        }
        out.reverse();
        out.push(fs::read(path).unwrap());
        out
    }

    /// At most `max_size`, or a single record; whole lines.
    fn check_size(f: &[u8], max_size: u64) {
        let records = f.iter().filter(|&&b| b == b'\n').count();
        assert!(
            f.len() as u64 <= max_size || records == 1,
            "{} bytes",
            f.len()
        );
        assert!(f.is_empty() || f.ends_with(b"\n"));
    }

    fn file_count(path: &Path) -> usize {
        fs::read_dir(path.parent().unwrap()).unwrap().count()
    }

    /// A deterministic mix of short, long and oversized chunks, on both streams.
    fn workload(mut each: impl FnMut(Stream, &[u8], SystemTime)) {
        let mut x: u32 = 12345;
        for i in 0..600u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = match x % 10 {
                0 => 1500 + (x >> 8) as usize % 1500, // larger than max_size
                1..=3 => (x >> 8) as usize % 300,
                _ => (x >> 8) as usize % 60,
            };
            let mut chunk: Vec<u8> = if len >= 1500 {
                vec![b'z'; len] // one record alone in a file
            } else {
                (0..len)
                    .map(|k| b"abcdefgh\n\"\x01"[(k + i as usize) % 11])
                    .collect()
            };
            chunk.push(b'\n');
            let stream = if x & 1 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            each(stream, &chunk, at(T0 + u64::from(i), 0));
        }
    }

    #[test]
    fn rotation_keeps_sizes_counts_and_order() {
        let max_size = 1000;
        for max_files in [1, 2, 3, 5, 1000] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ctr.log");
            let reference = dir.path().join("reference");
            let mut r = LogWriter::open(&reference, unbounded()).unwrap();
            let mut w = LogWriter::open(
                &path,
                LogOptions {
                    max_size: Some(max_size),
                    max_files,
                },
            )
            .unwrap();
            let mut rotations = 0;
            let mut last_live = fs::metadata(&path).unwrap().len();
            workload(|stream, data, t| {
                r.write(stream, data, t).unwrap();
                w.write(stream, data, t).unwrap();
                let live = fs::metadata(&path).unwrap().len();
                rotations += usize::from(live < last_live);
                last_live = live;
                assert!(
                    file_count(&path) <= max_files as usize + 1,
                    "{max_files} files"
                );
                // Only the live file changes; rotated ones are checked below.
                check_size(&fs::read(&path).unwrap(), max_size);
            });
            drop((r, w));
            let kept_files = files(&path);
            for f in &kept_files {
                check_size(f, max_size);
            }
            // No rotation leaves an empty file behind.
            assert!(kept_files[..kept_files.len() - 1]
                .iter()
                .all(|f| !f.is_empty()));
            assert!(rotations > 50, "{rotations}");
            let all = fs::read(&reference).unwrap();
            let kept = files(&path).concat();
            assert!(all.ends_with(&kept));
            let cut = all.len() - kept.len();
            assert!(cut == 0 || all[cut - 1] == b'\n');
            if max_files == 1000 {
                assert!(rotations < 999);
                assert_eq!(kept, all);
            } else {
                // All but the newest max_files files were dropped.
                assert!(kept.len() as u64 <= u64::from(max_files) * 3100);
            }
        }
    }

    #[test]
    fn an_oversized_record_goes_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(
            &path,
            LogOptions {
                max_size: Some(200),
                max_files: 9,
            },
        )
        .unwrap();
        let big = format!("{}\n", "b".repeat(300));
        // Into the empty live file, no rotation; after it, one.
        w.write(Stream::Stdout, big.as_bytes(), at(T0, 0)).unwrap();
        assert!(!rotated_path(&path, 1).exists());
        w.write(Stream::Stdout, b"x\n", at(T0, 0)).unwrap();
        w.write(Stream::Stdout, b"y\n", at(T0, 0)).unwrap();
        w.write(Stream::Stdout, big.as_bytes(), at(T0, 0)).unwrap();
        w.write(Stream::Stdout, big.as_bytes(), at(T0, 0)).unwrap();
        w.write(Stream::Stdout, b"z\n", at(T0, 0)).unwrap();
        let per_file: Vec<Vec<String>> = files(&path)
            .iter()
            .map(|f| {
                f.split_inclusive(|&b| b == b'\n')
                    .map(|l| String::from_utf8(json::decode(l).unwrap().line).unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(
            per_file,
            [
                vec![big.clone()],
                vec!["x\n".into(), "y\n".into()],
                vec![big.clone()],
                vec![big],
                vec!["z\n".into()]
            ]
        );
    }

    #[test]
    fn rotation_removes_files_a_larger_max_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        for n in 1..=6 {
            fs::write(rotated_path(&path, n), b"").unwrap();
        }
        let mut w = LogWriter::open(
            &path,
            LogOptions {
                max_size: Some(200),
                max_files: 3,
            },
        )
        .unwrap();
        for _ in 0..5 {
            w.write(Stream::Stdout, &[b'x'; 100], at(T0, 0)).unwrap();
            w.write(Stream::Stdout, b"\n", at(T0, 0)).unwrap();
        }
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["ctr.log", "ctr.log.1", "ctr.log.2"]);
    }

    #[test]
    #[ignore = "a throughput figure, not a check: cargo test --release -- --ignored --nocapture"]
    fn throughput() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = LogWriter::open(&path, LogOptions::default()).unwrap();
        let line = format!("{}\n", "0123456789".repeat(8)[..79].to_owned());
        let chunk = line.repeat(64 * 1024 / line.len());
        let total = 100_000_000;
        let start = std::time::Instant::now();
        let mut written = 0;
        while written < total {
            w.write(Stream::Stdout, chunk.as_bytes(), SystemTime::now())
                .unwrap();
            written += chunk.len();
        }
        w.flush().unwrap();
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "wrote {:.1} MB of 80-byte lines in {secs:.2} s: {:.0} MB/s",
            written as f64 / 1e6,
            written as f64 / 1e6 / secs
        );
    }
}
