//! Reading a container's log: the rotated files oldest first, then the live one;
//! tail, time window, and following the live file across rotation.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{json, rotated_path, LogError, LogRecord};

const READ_CHUNK: usize = 64 * 1024;
/// The longest line kept. A record holds at most 16 KiB of output, at most six
/// bytes each once escaped; a longer line is not a record and is skipped.
const MAX_LINE: usize = 1 << 20;
const POLL_MIN: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(50);

/// What [`read`] delivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only the last this many records (of those in the time window).
    pub tail: Option<usize>,
    /// Only records at or after this time.
    pub since: Option<SystemTime>,
    /// Only records at or before this time.
    pub until: Option<SystemTime>,
    /// At the end, wait for more.
    pub follow: bool,
}

impl ReadOptions {
    fn wants(&self, t: SystemTime) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
}

/// Calls `out` for each record in order: those of the rotated files, oldest
/// first, then those of the live file. Lines that are not records (a line cut by
/// a crash, anything malformed) are skipped and reported at debug level.
///
/// `tail` counts records from the end across files, among those in the time
/// window (docker tails first and filters after; the two agree while times only
/// grow, except that `--until` with `--tail` here gives the last records before
/// `until`).
///
/// With `follow`, at the end of the data it waits for more (polling, 1 ms
/// backing off to 50 ms) and follows the log across rotation: at the end of the
/// file it holds, when `path` has become another file (dev and inode), it reads
/// the old file to its end, then the files rotated after it, then the new live
/// file, from their starts. It keeps up as long as it falls behind by at most
/// `max_files - 1` rotations; beyond that the files it did not get to are gone
/// and their records are lost (as with docker); it goes on with the oldest file
/// there is, and warns. With `max_files` 1 the live file is truncated: the reader
/// notices that it shrank and starts it over, and loses the records written
/// after the truncation if there were more bytes of them than it had read before.
///
/// Each time it is at the end it calls `still_running()`; once that is false it
/// reads what was written until then (across rotations too) and returns. An
/// `until` in the past ends following the same way.
pub fn read(
    path: &Path,
    opts: &ReadOptions,
    still_running: &mut dyn FnMut() -> bool,
    out: &mut dyn FnMut(LogRecord) -> io::Result<()>,
) -> Result<(), LogError> {
    let err = |source| LogError::Read {
        path: path.to_owned(),
        source,
    };
    let set = open_set(path).map_err(err)?;
    let (first, offset) = match opts.tail {
        Some(n) => tail_start(&set, n, opts).map_err(err)?,
        None => (0, 0),
    };
    let mut queue: VecDeque<Lines> = set.into_iter().skip(first).map(Lines::new).collect();
    if let Some(l) = queue.front_mut() {
        l.seek(offset).map_err(err)?;
    }
    let mut current = queue.pop_front();
    let mut stopping = false;
    let mut idle = POLL_MIN;
    loop {
        let mut progressed = false;
        if let Some(cur) = current.as_mut() {
            while let Some(r) = cur.next_line().map_err(err)? {
                progressed = true;
                deliver(&cur.buf[r], &cur.src.name, opts, out)?;
            }
        }
        if let Some(next) = queue.pop_front() {
            if let Some(done) = current.take() {
                done.finish();
            }
            current = Some(next);
            continue;
        }
        if !opts.follow {
            break;
        }
        if !stopping && (!still_running() || opts.until.is_some_and(|u| SystemTime::now() > u)) {
            // Read what was written until now, across rotations too, then stop.
            stopping = true;
        }
        // Rotated: the old file is read to its end at the top, then the newer ones.
        if advance(path, &mut current, &mut queue).map_err(err)? {
            idle = POLL_MIN;
            continue;
        }
        if stopping {
            break;
        }
        if progressed {
            idle = POLL_MIN;
        }
        std::thread::sleep(idle);
        idle = (idle * 2).min(POLL_MAX);
    }
    if let Some(cur) = current {
        cur.finish();
    }
    Ok(())
}

fn deliver(
    line: &[u8],
    name: &Path,
    opts: &ReadOptions,
    out: &mut dyn FnMut(LogRecord) -> io::Result<()>,
) -> Result<(), LogError> {
    match json::decode(line) {
        Ok(rec) if opts.wants(rec.time) => out(rec).map_err(LogError::Output),
        Ok(_) => Ok(()),
        Err(reason) => {
            tracing::debug!(file = %name.display(), %reason, "skipping a malformed log line");
            Ok(())
        }
    }
}

/// At the end of the last file known: has the log moved on? Queues the files
/// that came after `current` when `path` is another file now, and starts
/// `current` over when it was truncated. True when there is something new to
/// read.
fn advance(
    path: &Path,
    current: &mut Option<Lines>,
    queue: &mut VecDeque<Lines>,
) -> io::Result<bool> {
    let Some(now) = file_id(path)? else {
        // Not created yet, or between the rename and the new file of a rotation.
        return Ok(false);
    };
    if let Some(cur) = current.as_mut() {
        if cur.src.id == now {
            if cur.src.file.metadata()?.len() < cur.offset {
                tracing::debug!(file = %path.display(), "the log was truncated: reading it from its start");
                cur.seek(0)?;
                return Ok(true);
            }
            return Ok(false);
        }
    }
    let set = open_set(path)?;
    let newer: Vec<Source> = match current {
        None => set,
        Some(cur) => match set.iter().position(|s| s.id == cur.src.id) {
            Some(i) => set.into_iter().skip(i + 1).collect(),
            None => {
                tracing::warn!(
                    file = %path.display(),
                    "the log rotated more often than max-file allows while it was read: records were lost"
                );
                set
            }
        },
    };
    let any = !newer.is_empty();
    queue.extend(newer.into_iter().map(Lines::new));
    Ok(any)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(m: &fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

struct Source {
    file: File,
    id: FileId,
    /// The name it was opened by, for messages.
    name: PathBuf,
}

fn file_id(path: &Path) -> io::Result<Option<FileId>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(FileId::of(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_source(path: &Path) -> io::Result<Option<Source>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let id = FileId::of(&file.metadata()?);
    Ok(Some(Source {
        file,
        id,
        name: path.to_owned(),
    }))
}

/// The highest `n` of the files `path.n` there are; 0 when there are none.
fn highest_rotated(path: &Path) -> io::Result<u32> {
    let (Some(base), dir) = (path.file_name(), path.parent()) else {
        return Ok(0);
    };
    let dir = match dir {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut prefix = base.as_encoded_bytes().to_vec();
    prefix.push(b'.');
    let mut highest = 0;
    for entry in entries {
        let name = entry?.file_name();
        let Some(n) = name.as_encoded_bytes().strip_prefix(&prefix[..]) else {
            continue;
        };
        if n.first().is_some_and(|&d| d != b'0') && n.iter().all(u8::is_ascii_digit) {
            if let Some(n) = std::str::from_utf8(n).ok().and_then(|s| s.parse().ok()) {
                highest = highest.max(n);
            }
        }
    }
    Ok(highest)
}

/// Opens the files of the log, oldest first, the live one (when there is one)
/// last, as one consistent set even while the writer rotates.
///
/// The live file is opened first and `path` checked again at the end: when it
/// names another file by then, a rotation finished meanwhile and it starts over.
/// The rotated files are opened newest first, against the order in which a
/// rotation renames them (oldest first), so that a rotation under way is seen
/// at most twice in the same file (kept once) and never missed.
fn open_set(path: &Path) -> io::Result<Vec<Source>> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let live = open_source(path)?;
        let highest = highest_rotated(path)?;
        let mut rotated = Vec::new();
        // One past the highest: a rotation may be moving it up.
        for n in 1..=highest.saturating_add(1) {
            if let Some(s) = open_source(&rotated_path(path, n))? {
                rotated.push(s);
            }
        }
        let live_id = live.as_ref().map(|s| s.id);
        // A writer that never stops rotating would keep this from settling; after
        // a few tries the set is taken as it is.
        if file_id(path)? != live_id && attempts < 16 {
            continue;
        }
        let mut set: Vec<Source> = Vec::with_capacity(rotated.len() + 1);
        for s in rotated.into_iter().rev() {
            if Some(s.id) != live_id && !set.iter().any(|x| x.id == s.id) {
                set.push(s);
            }
        }
        set.extend(live);
        return Ok(set);
    }
}

/// Where reading starts for the last `n` records in the window: (index in `set`,
/// offset in that file).
fn tail_start(set: &[Source], n: usize, opts: &ReadOptions) -> io::Result<(usize, u64)> {
    let mut count = 0;
    for idx in (0..set.len()).rev() {
        let mut rev = RevLines::new(&set[idx].file)?;
        if n == 0 {
            return Ok((idx, rev.end));
        }
        while let Some((start, line)) = rev.next()? {
            if json::decode(&line).is_ok_and(|r| opts.wants(r.time)) {
                count += 1;
                if count == n {
                    return Ok((idx, start));
                }
            }
        }
    }
    Ok((0, 0))
}

/// A file's complete lines, forwards, read as they come.
struct Lines {
    src: Source,
    buf: Vec<u8>,
    /// Start of what is not yet consumed.
    head: usize,
    /// `buf[head..scanned]` holds no `'\n'`.
    scanned: usize,
    /// The file offset of the end of `buf`.
    offset: u64,
    /// Inside a line longer than `MAX_LINE`, discarding up to its `'\n'`.
    skipping: bool,
}

impl Lines {
    fn new(src: Source) -> Lines {
        Lines {
            src,
            buf: Vec::new(),
            head: 0,
            scanned: 0,
            offset: 0,
            skipping: false,
        }
    }

    fn seek(&mut self, offset: u64) -> io::Result<()> {
        self.src.file.seek(SeekFrom::Start(offset))?;
        self.buf.clear();
        (self.head, self.scanned, self.offset, self.skipping) = (0, 0, offset, false);
        Ok(())
    }

    /// The next complete line, `'\n'` included, as a range of `buf`; `None` at the
    /// end of the file for now (a partial last line stays held).
    fn next_line(&mut self) -> io::Result<Option<Range<usize>>> {
        loop {
            if let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + i + 1;
                let line = self.head..end;
                (self.head, self.scanned) = (end, end);
                if self.skipping {
                    self.skipping = false;
                    tracing::debug!(file = %self.src.name.display(), "skipping an over-long log line");
                    continue;
                }
                return Ok(Some(line));
            }
            self.scanned = self.buf.len();
            if self.skipping || self.buf.len() - self.head > MAX_LINE {
                self.skipping = true;
                self.buf.clear();
                (self.head, self.scanned) = (0, 0);
            } else if self.head > 0 {
                self.buf.drain(..self.head);
                self.scanned -= self.head;
                self.head = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + READ_CHUNK, 0);
            let n = loop {
                match self.src.file.read(&mut self.buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(old + n);
            self.offset += n as u64;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// Done with this file: what is left is a line cut short.
    fn finish(self) {
        if self.buf.len() > self.head || self.skipping {
            tracing::debug!(file = %self.src.name.display(), "skipping a cut-off last log line");
        }
    }
}

/// A file's complete lines, backwards from its end, with their offsets; a last
/// line without `'\n'` is left out.
struct RevLines<'a> {
    file: &'a File,
    /// `buf` is the file from here; it ends with the `'\n'` of the next line to
    /// give, except while `oversize`.
    pos: u64,
    buf: Vec<u8>,
    /// Just after the last complete line.
    end: u64,
    /// The next line is longer than `MAX_LINE`; `buf` holds only its start.
    oversize: bool,
}

impl<'a> RevLines<'a> {
    fn new(file: &'a File) -> io::Result<RevLines<'a>> {
        let len = file.metadata()?.len();
        let mut r = RevLines {
            file,
            pos: len,
            buf: Vec::new(),
            end: len,
            oversize: false,
        };
        loop {
            if let Some(i) = r.buf.iter().rposition(|&b| b == b'\n') {
                r.buf.truncate(i + 1);
                r.end = r.pos + i as u64 + 1;
                return Ok(r);
            }
            r.buf.clear();
            if r.pos == 0 {
                r.end = 0;
                return Ok(r);
            }
            r.read_block()?;
        }
    }

    fn read_block(&mut self) -> io::Result<()> {
        let n = self.pos.min(READ_CHUNK as u64);
        let mut block = vec![0u8; n as usize];
        self.file.read_exact_at(&mut block, self.pos - n)?;
        block.extend_from_slice(&self.buf);
        self.buf = block;
        self.pos -= n;
        Ok(())
    }

    /// The line before the last one given (an empty one for a line too long).
    fn next(&mut self) -> io::Result<Option<(u64, Vec<u8>)>> {
        loop {
            if self.buf.is_empty() && self.pos == 0 && !self.oversize {
                return Ok(None);
            }
            let search = if self.oversize {
                &self.buf[..]
            } else {
                &self.buf[..self.buf.len().saturating_sub(1)]
            };
            let found = search.iter().rposition(|&b| b == b'\n');
            if found.is_some() || self.pos == 0 {
                let at = found.map_or(0, |i| i + 1);
                let line = self.buf.split_off(at);
                let start = self.pos + at as u64;
                let line = if std::mem::take(&mut self.oversize) {
                    Vec::new()
                } else {
                    line
                };
                return Ok(Some((start, line)));
            }
            if self.buf.len() > MAX_LINE {
                self.oversize = true;
                self.buf.clear();
            }
            self.read_block()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::testutil::{at, lines, read_all, read_with, T0};
    use crate::logs::{LogOptions, LogWriter, Stream};
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};

    fn writer(path: &Path, max_size: u64, max_files: u32) -> LogWriter {
        LogWriter::open(
            path,
            LogOptions {
                max_size: Some(max_size),
                max_files,
            },
        )
        .unwrap()
    }

    /// Record `i`: its line and its time.
    fn line(i: usize) -> String {
        format!("record {i:06} {}\n", "x".repeat(i % 37))
    }

    fn write_record(w: &mut LogWriter, i: usize) {
        w.write(Stream::Stdout, line(i).as_bytes(), at(T0 + i as u64, 0))
            .unwrap();
    }

    fn expected(range: Range<usize>) -> Vec<String> {
        range.map(line).collect()
    }

    fn rotated_files(path: &Path) -> usize {
        (1..)
            .take_while(|&n| rotated_path(path, n).exists())
            .count()
    }

    #[test]
    fn reads_rotated_files_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = writer(&path, 1000, 4);
        for i in 0..60 {
            write_record(&mut w, i);
        }
        assert_eq!(rotated_files(&path), 3);
        let got = lines(&read_all(&path));
        // What is left is a run of the newest records, the oldest files dropped.
        let first = got[0][7..13].parse::<usize>().unwrap();
        assert!(first > 0);
        assert_eq!(got, expected(first..60));
        // A missing log is an empty one.
        assert!(read_all(&dir.path().join("none.log")).is_empty());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = writer(&path, 1 << 20, 2);
        write_record(&mut w, 0);
        drop(w);
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(
            b"garbage\n\n{\"log\":\"x\",\"stream\":\"stdin\",\"time\":\"2026-12-01T20:00:00Z\"}\n",
        )
        .unwrap();
        f.write_all(b"{\"log\":\"no time\",\"stream\":\"stdout\"}\n\xff\xfe\n")
            .unwrap();
        f.write_all(&vec![b'{'; MAX_LINE + READ_CHUNK + 7]).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let mut w = writer(&path, 1 << 20, 2);
        write_record(&mut w, 1);
        drop(w);
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"log":"cut"#).unwrap();
        // Not ended, so it is a cut line (and the writer did not end it).
        assert_eq!(lines(&read_all(&path)), expected(0..2));
        let tail = ReadOptions {
            tail: Some(2),
            ..Default::default()
        };
        assert_eq!(lines(&read_with(&path, &tail)), expected(0..2));
        let tail = ReadOptions {
            tail: Some(1),
            ..Default::default()
        };
        assert_eq!(lines(&read_with(&path, &tail)), expected(1..2));
    }

    #[test]
    fn tail_counts_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let total = 120;
        let mut w = writer(&path, 2000, 5);
        for i in 0..total {
            write_record(&mut w, i);
        }
        drop(w);
        assert_eq!(rotated_files(&path), 4);
        let all = lines(&read_all(&path));
        let live = lines(&read_all_of(&path));
        assert!(all.len() > live.len() + 60 && live.len() > 2 && all.len() < total);
        let first = total - all.len();
        for n in [
            0,
            1,
            2,
            live.len() - 1,
            live.len(),
            live.len() + 1,
            live.len() + 30,
            all.len() - 1,
            all.len(),
            all.len() + 5,
        ] {
            let got = lines(&read_with(
                &path,
                &ReadOptions {
                    tail: Some(n),
                    ..Default::default()
                },
            ));
            assert_eq!(
                got,
                expected(total.saturating_sub(n).max(first)..total),
                "tail {n}"
            );
        }
    }

    /// The records of the live file alone.
    fn read_all_of(path: &Path) -> Vec<LogRecord> {
        fs::read(path)
            .unwrap()
            .split_inclusive(|&b| b == b'\n')
            .map(|l| json::decode(l).unwrap())
            .collect()
    }

    #[test]
    fn since_and_until_filter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = writer(&path, 1500, 10);
        for i in 0..50 {
            write_record(&mut w, i);
        }
        drop(w);
        let t = |i: u64| Some(at(T0 + i, 0));
        let window = |since, until, tail| ReadOptions {
            since,
            until,
            tail,
            follow: false,
        };
        assert_eq!(
            lines(&read_with(&path, &window(t(10), None, None))),
            expected(10..50)
        );
        assert_eq!(
            lines(&read_with(&path, &window(None, t(10), None))),
            expected(0..11)
        );
        assert_eq!(
            lines(&read_with(&path, &window(t(10), t(20), None))),
            expected(10..21)
        );
        assert_eq!(
            lines(&read_with(
                &path,
                &window(Some(at(T0 + 10, 1)), Some(at(T0 + 20, 999)), None)
            )),
            expected(11..21)
        );
        assert!(read_with(&path, &window(t(30), t(20), None)).is_empty());
        assert!(read_with(&path, &window(t(60), None, None)).is_empty());
        // The tail is of the records in the window.
        assert_eq!(
            lines(&read_with(&path, &window(t(10), t(20), Some(3)))),
            expected(18..21)
        );
        assert_eq!(
            lines(&read_with(&path, &window(t(10), t(20), Some(30)))),
            expected(10..21)
        );
        assert_eq!(
            lines(&read_with(&path, &window(None, t(5), Some(2)))),
            expected(4..6)
        );
        // Following with an `until` in the past ends at the end of the log.
        let old = dir.path().join("old.log");
        let mut w = writer(&old, 1 << 20, 2);
        for i in 0..10 {
            w.write(Stream::Stdout, line(i).as_bytes(), at(1000 + i as u64, 0))
                .unwrap();
        }
        let mut got = Vec::new();
        let opts = ReadOptions {
            until: Some(at(1005, 0)),
            follow: true,
            ..Default::default()
        };
        read(&old, &opts, &mut || true, &mut |r| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(lines(&got), expected(0..6));
    }

    #[test]
    fn out_errors_stop_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = writer(&path, 1 << 20, 2);
        for i in 0..5 {
            write_record(&mut w, i);
        }
        let mut n = 0;
        let r = read(&path, &ReadOptions::default(), &mut || false, &mut |_| {
            n += 1;
            Err(io::ErrorKind::BrokenPipe.into())
        });
        assert!(matches!(r, Err(LogError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe));
        assert_eq!(n, 1);
    }

    /// Follows `path` while `still_running` (called at each end) writes.
    fn follow(
        path: &Path,
        tail: Option<usize>,
        mut still_running: impl FnMut() -> bool,
    ) -> Vec<String> {
        let mut got = Vec::new();
        let opts = ReadOptions {
            tail,
            follow: true,
            ..Default::default()
        };
        read(path, &opts, &mut still_running, &mut |r| {
            got.push(String::from_utf8(r.line).unwrap());
            Ok(())
        })
        .unwrap();
        got
    }

    /// Records are 75 to 111 bytes: a 4 KiB file holds 36 to 54 of them.
    const MAX_SIZE: u64 = 4096;

    #[test]
    fn follow_keeps_up_with_a_paced_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let n = 3000;
        // The writer stays at most this many records ahead of what the reader has
        // delivered: less than one 4 KiB file, well inside the two rotations
        // that max-file 3 allows.
        let ahead = 25;
        let (tx, rx) = mpsc::channel::<usize>();
        let done = Arc::new(AtomicBool::new(false));
        let w_path = path.clone();
        let w_done = done.clone();
        let mut w = writer(&path, MAX_SIZE, 3);
        let handle = std::thread::spawn(move || {
            let mut delivered = 0;
            for i in 0..n {
                while i >= delivered + ahead {
                    delivered = rx
                        .recv_timeout(Duration::from_secs(120))
                        .expect("the reader stopped delivering");
                }
                write_record(&mut w, i);
            }
            drop(w);
            w_done.store(true, Ordering::SeqCst);
            rotated_files(&w_path)
        });
        let mut got = Vec::new();
        let opts = ReadOptions {
            follow: true,
            ..Default::default()
        };
        read(
            &path,
            &opts,
            &mut || !done.load(Ordering::SeqCst),
            &mut |r| {
                got.push(String::from_utf8(r.line).unwrap());
                // The writer may have gone; then nobody listens.
                let _ = tx.send(got.len());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(handle.join().unwrap(), 2);
        assert_eq!(got.len(), n);
        assert!(
            got == expected(0..n),
            "records lost, repeated or out of order"
        );
    }

    #[test]
    fn follow_returns_once_not_running_with_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = writer(&path, MAX_SIZE, 3);
        for i in 0..10 {
            write_record(&mut w, i);
        }
        let mut calls = 0;
        let got = follow(&path, None, || {
            calls += 1;
            // The reader is at the end; the last records, two rotations' worth,
            // are written before the container is reported gone.
            for i in 10..90 {
                write_record(&mut w, i);
            }
            w.flush().unwrap();
            false
        });
        assert_eq!(calls, 1);
        assert_eq!(got, expected(0..90));
    }

    #[test]
    fn follow_across_rotations_between_polls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = writer(&path, MAX_SIZE, 3);
        let mut next = 0;
        let mut calls = 0;
        let got = follow(&path, None, || {
            calls += 1;
            if calls > 20 {
                return false;
            }
            // Exactly two rotations each time, the most max-file 3 allows.
            let rotated = std::fs::metadata(rotated_path(&path, 1))
                .ok()
                .map(|m| m.ino());
            let mut rotations = 0;
            let mut last = rotated;
            while rotations < 2 {
                write_record(&mut w, next);
                next += 1;
                let now = std::fs::metadata(rotated_path(&path, 1))
                    .ok()
                    .map(|m| m.ino());
                rotations += usize::from(now != last);
                last = now;
            }
            true
        });
        assert!(next >= 20 * 40);
        assert_eq!(got.len(), next);
        assert!(
            got == expected(0..next),
            "records lost, repeated or out of order"
        );
    }

    #[test]
    fn follow_beyond_the_rotation_window_loses_but_does_not_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = writer(&path, MAX_SIZE, 3);
        for i in 0..10 {
            write_record(&mut w, i);
        }
        let mut calls = 0;
        let got = follow(&path, None, || {
            calls += 1;
            if calls == 1 {
                // Five files' worth while the reader holds the first.
                for i in 10..300 {
                    write_record(&mut w, i);
                }
            }
            calls < 3
        });
        let numbers: Vec<usize> = got.iter().map(|l| l[7..13].parse().unwrap()).collect();
        assert!(
            numbers.windows(2).all(|p| p[0] < p[1]),
            "repeated or out of order"
        );
        assert!(numbers.len() < 300, "nothing lost?");
        // The held file to its end, and then the oldest file still there onwards.
        assert_eq!(numbers[..10], (0..10).collect::<Vec<_>>()[..]);
        let kept = lines(&read_all(&path));
        assert!(got.ends_with(&kept));
    }

    #[test]
    fn follow_a_truncated_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        // max-file 1: the live file is truncated when full.
        let mut w = writer(&path, MAX_SIZE, 1);
        for i in 0..40 {
            write_record(&mut w, i);
        }
        let size = fs::metadata(&path).unwrap().len();
        let mut calls = 0;
        let got = follow(&path, None, || {
            calls += 1;
            if calls == 1 {
                // Fill up to the truncation, then fewer bytes than were read.
                let mut i = 40;
                loop {
                    let before = fs::metadata(&path).unwrap().len();
                    write_record(&mut w, i);
                    i += 1;
                    if fs::metadata(&path).unwrap().len() < before {
                        break;
                    }
                }
                assert!(fs::metadata(&path).unwrap().len() < size);
                return true;
            }
            false
        });
        // Records between the reader's end and the truncation are lost (the
        // ones the truncation dropped); those after it are read.
        let numbers: Vec<usize> = got.iter().map(|l| l[7..13].parse().unwrap()).collect();
        assert_eq!(numbers[..40], (0..40).collect::<Vec<_>>()[..]);
        assert_eq!(lines(&read_all(&path)), got[40..]);
    }

    #[test]
    fn follow_waits_for_the_log_and_starts_from_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctr.log");
        let mut w = None;
        let mut calls = 0;
        let got = follow(&path, None, || {
            calls += 1;
            match calls {
                1 => {}
                2 => {
                    let mut lw = writer(&path, MAX_SIZE, 3);
                    for i in 0..100 {
                        write_record(&mut lw, i);
                    }
                    w = Some(lw);
                }
                _ => return false,
            }
            true
        });
        assert_eq!(got, expected(0..100));
        let mut w = w.unwrap();
        let mut calls = 0;
        let got = follow(&path, Some(3), || {
            calls += 1;
            if calls == 1 {
                write_record(&mut w, 100);
            }
            calls < 3
        });
        assert_eq!(got, expected(97..101));
        let got = follow(&path, Some(0), || false);
        assert!(got.is_empty());
    }

    #[test]
    fn rev_lines_give_offsets_and_skip_a_partial_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let long = "y".repeat(3 * READ_CHUNK);
        let text = format!("a\n\nbc\n{long}\nd\npartial");
        fs::write(&p, &text).unwrap();
        let f = File::open(&p).unwrap();
        let mut r = RevLines::new(&f).unwrap();
        assert_eq!(r.end as usize, text.len() - "partial".len());
        let mut got = Vec::new();
        while let Some((start, line)) = r.next().unwrap() {
            assert_eq!(&text.as_bytes()[start as usize..][..line.len()], &line[..]);
            got.push(String::from_utf8(line).unwrap());
        }
        assert_eq!(
            got,
            [
                "d\n".to_string(),
                format!("{long}\n"),
                "bc\n".into(),
                "\n".into(),
                "a\n".into()
            ]
        );
        fs::write(&p, "no newline").unwrap();
        let f = File::open(&p).unwrap();
        let mut r = RevLines::new(&f).unwrap();
        assert_eq!((r.end, r.next().unwrap()), (0, None));
    }
}
