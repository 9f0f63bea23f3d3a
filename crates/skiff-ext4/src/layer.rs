//! Reading one OCI layer: decompression detection, progress counting, and a
//! streaming tar reader (ustar, GNU, PAX, v7; GNU long names, PAX records,
//! old-GNU and PAX sparse files).
//!
//! The reader is our own rather than the `tar` crate's `Archive::entries()`:
//! that crate splits PAX records at every `\n`, so a binary
//! `SCHILY.xattr.security.capability` value containing the byte 0x0a is
//! reported as malformed, and its PAX `size`/`uid`/`gid` lookup stops at the
//! first malformed record (the override is then silently ignored). It also
//! reads GNU long-name and PAX headers into memory without a bound, so a small
//! compressed layer can make it allocate gigabytes. This reader follows Go's
//! `archive/tar` (what docker, containerd and buildkit use to write and read
//! layers) in every place where tar readers disagree, bounds all metadata it
//! holds in memory, and never buffers file contents.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};

use crate::tree::LayerError;
use crate::types::{Meta, Timestamp};

/// Largest regular file ext4 can hold with 4 KiB blocks and extents:
/// 2^32 - 1 blocks.
pub const MAX_FILE_SIZE: u64 = ((1u64 << 32) - 1) * 4096;

const BLOCK: u64 = 512;
/// GNU long name / long link name data (`L`, `K`).
const MAX_LONG_NAME: u64 = 1 << 20;
/// The reason of a header whose checksum is wrong (for the first block of
/// an uncompressed layer: not tar at all).
pub(crate) const BAD_CHECKSUM: &str = "invalid tar header checksum";

/// One PAX extended header (`x`).
const MAX_PAX: u64 = 8 << 20;
/// Entries in one sparse map.
const MAX_SPARSE_ENTRIES: usize = 1 << 20;
/// Bytes of a PAX 1.0 sparse map at the start of an entry's data.
const MAX_SPARSE_MAP_BYTES: u64 = 16 << 20;
/// Progress is reported at least every this many input bytes.
const PROGRESS_STEP: u64 = 1 << 20;

/// How a layer blob is compressed, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Detects the compression from the first bytes of a layer (up to 512 of
/// them). A prefix that is a valid tar header is plain tar whatever its first
/// bytes spell. Unsupported compressions (bzip2, xz, lz4) are an error.
pub fn detect_compression(prefix: &[u8]) -> Result<Compression, LayerError> {
    if prefix.len() == BLOCK as usize && (is_zero_block(prefix) || checksum_ok(prefix)) {
        return Ok(Compression::None);
    }
    match prefix {
        [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Ok(Compression::Zstd),
        // A zstd skippable frame (magic 0x184D2A50..=0x184D2A5F) in front.
        [b, 0x2a, 0x4d, 0x18, ..] if b & 0xf0 == 0x50 => Ok(Compression::Zstd),
        [b'B', b'Z', b'h', b'1'..=b'9', ..] => Err(LayerError::UnsupportedCompression("bzip2")),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Err(LayerError::UnsupportedCompression("xz")),
        [0x04, 0x22, 0x4d, 0x18, ..] => Err(LayerError::UnsupportedCompression("lz4")),
        _ => Ok(Compression::None),
    }
}

/// Counts the bytes read from the (compressed) layer and reports the running
/// count to `progress` every [`PROGRESS_STEP`] bytes.
pub(crate) struct CountingReader<'a, R> {
    inner: R,
    count: &'a Cell<u64>,
    next_report: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<'a, R: Read> CountingReader<'a, R> {
    pub(crate) fn new(inner: R, count: &'a Cell<u64>, progress: &'a mut dyn FnMut(u64)) -> Self {
        CountingReader {
            inner,
            count,
            next_report: PROGRESS_STEP,
            progress,
        }
    }
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.count.get() + n as u64;
        self.count.set(total);
        if total >= self.next_report {
            (self.progress)(total);
            self.next_report = total + PROGRESS_STEP;
        }
        Ok(n)
    }
}

/// Wraps `input` in the right decompressor (after sniffing its first bytes)
/// and a buffer, so that the tar reader can read headers cheaply.
pub fn decompress<'a>(
    mut input: impl Read + 'a,
) -> Result<(Compression, Box<dyn Read + 'a>), LayerError> {
    let mut prefix = Vec::with_capacity(BLOCK as usize);
    (&mut input)
        .take(BLOCK)
        .read_to_end(&mut prefix)
        .map_err(LayerError::Io)?;
    let compression = detect_compression(&prefix)?;
    let raw = io::Cursor::new(prefix).chain(input);
    const BUF: usize = 128 * 1024;
    let stream: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(BufReader::with_capacity(BUF, raw)),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            BUF,
            flate2::read::MultiGzDecoder::new(raw),
        )),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(raw).map_err(LayerError::Io)?;
            Box::new(BufReader::with_capacity(BUF, decoder))
        }
    };
    Ok((compression, stream))
}

/// What a tar entry is, after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDev,
    BlockDev,
    Fifo,
    /// Any other type flag (the raw byte).
    Other(u8),
}

/// One tar entry, with every extension header applied.
#[derive(Debug, Clone)]
pub struct TarEntry {
    pub path: Vec<u8>,
    /// Hard link or symlink target (empty for other kinds).
    pub link: Vec<u8>,
    pub kind: EntryKind,
    pub meta: Meta,
    /// Logical size of a regular file (sparse: its real size); 0 otherwise.
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Data fragments `(offset, length)` of a sparse file, sorted; the
    /// bytes between them are zeros.
    sparse: Option<Vec<(u64, u64)>>,
}

/// A streaming tar reader. File contents are never buffered: read them with
/// [`TarReader::data`] before the next call to [`TarReader::next_entry`]
/// (which skips whatever was not read).
pub struct TarReader<R> {
    r: R,
    /// Bytes consumed from `r`.
    pos: u64,
    /// Unread data bytes of the current entry, and the padding after them.
    remaining: u64,
    pad: u64,
    done: bool,
}

#[derive(Default)]
struct Pax {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    /// GNU sparse 0.0 keeps its map in repeated `offset`/`numbytes` records.
    sparse_00: Vec<Vec<u8>>,
}

impl Pax {
    fn get(&self, key: &str) -> Option<&[u8]> {
        self.records
            .get(key.as_bytes())
            .map(|v| v.as_slice())
            .filter(|v| !v.is_empty())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

impl<R: Read> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader {
            r,
            pos: 0,
            remaining: 0,
            pad: 0,
            done: false,
        }
    }

    /// The underlying reader, positioned after what was read.
    pub fn into_inner(self) -> R {
        self.r
    }

    /// Reads as much of `buf` as the stream has; returns the count.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, LayerError> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::Io(e)),
            }
        }
        self.pos += got as u64;
        Ok(got)
    }

    fn skip(&mut self, mut n: u64, what: &dyn Fn() -> String) -> Result<(), LayerError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.fill(&mut buf[..want])?;
            if got == 0 {
                return Err(LayerError::Truncated(what()));
            }
            n -= got as u64;
        }
        Ok(())
    }

    /// Reads one 512-byte block: `None` at a clean end of the stream.
    fn read_block(&mut self) -> Result<Option<[u8; 512]>, LayerError> {
        let mut blk = [0u8; 512];
        let at = self.pos;
        match self.fill(&mut blk)? {
            0 => Ok(None),
            512 => Ok(Some(blk)),
            n => Err(LayerError::Truncated(format!(
                "the archive ends {n} bytes into the header at byte {at}"
            ))),
        }
    }

    /// Reads the data of an extension header (plus padding), at most `cap` bytes.
    fn read_ext_data(&mut self, size: u64, cap: u64, what: &str) -> Result<Vec<u8>, LayerError> {
        if size > cap {
            return Err(LayerError::Corrupt {
                offset: self.pos,
                reason: format!("{what} of {size} bytes (the limit is {cap})"),
            });
        }
        let mut data = vec![0u8; size as usize];
        if self.fill(&mut data)? != data.len() {
            return Err(LayerError::Truncated(format!(
                "the archive ends inside a {what}"
            )));
        }
        self.skip(padding(size), &|| {
            format!("the archive ends inside a {what}")
        })?;
        Ok(data)
    }

    /// The next entry, or `None` at the end-of-archive marker.
    pub fn next_entry(&mut self) -> Result<Option<TarEntry>, LayerError> {
        if self.done {
            return Ok(None);
        }
        let (data, pad) = (self.remaining, self.pad);
        self.remaining = 0;
        self.pad = 0;
        self.skip(data, &|| {
            "the archive ends inside the data of an entry".to_string()
        })?;
        // Like Go's reader (and so docker and containerd): the stream may end
        // right after the last entry's data, without padding or end marker.
        // umoci, for one, writes layers like that.
        let mut buf = [0u8; 512];
        let got = self.fill(&mut buf[..pad as usize])?;
        if got < pad as usize {
            self.done = true;
            return Ok(None);
        }

        let mut pax: Option<Pax> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pending_ext = false;
        loop {
            let at = self.pos;
            let Some(blk) = self.read_block()? else {
                if pending_ext {
                    return Err(LayerError::Truncated(
                        "the archive ends after an extension header, before its entry".into(),
                    ));
                }
                // A clean end between entries (or an empty layer) ends the
                // archive, as in Go; a stream cut inside a header or inside
                // data is still an error.
                let _ = at;
                self.done = true;
                return Ok(None);
            };
            if is_zero_block(&blk) {
                if pending_ext {
                    return Err(LayerError::Corrupt {
                        offset: at,
                        reason: "end-of-archive marker right after an extension header".into(),
                    });
                }
                // Like Go: a second block may be missing, but must not be data.
                if let Some(second) = self.read_block()? {
                    if !is_zero_block(&second) {
                        return Err(LayerError::Corrupt {
                            offset: at + BLOCK,
                            reason: "a lone zero block followed by data".into(),
                        });
                    }
                }
                self.done = true;
                return Ok(None);
            }
            if !checksum_ok(&blk) {
                return Err(LayerError::Corrupt {
                    offset: at,
                    reason: BAD_CHECKSUM.into(),
                });
            }
            let typeflag = blk[156];
            let hsize = parse_numeric(&blk[124..136])
                .filter(|s| *s >= 0)
                .ok_or_else(|| LayerError::Corrupt {
                    offset: at,
                    reason: "invalid size field".into(),
                })? as u64;
            match typeflag {
                b'x' => {
                    let data = self.read_ext_data(hsize, MAX_PAX, "PAX extended header")?;
                    // Like Go, a second `x` header replaces the first.
                    pax = Some(
                        parse_pax(&data)
                            .map_err(|reason| LayerError::Corrupt { offset: at, reason })?,
                    );
                    pending_ext = true;
                }
                b'g' => {
                    // Global PAX headers are ignored, as containerd does.
                    self.skip(hsize + padding(hsize), &|| {
                        "the archive ends inside a global PAX header".to_string()
                    })?;
                }
                b'L' => {
                    let data = self.read_ext_data(hsize, MAX_LONG_NAME, "GNU long name")?;
                    long_name = Some(parse_string(&data).to_vec());
                    pending_ext = true;
                }
                b'K' => {
                    let data = self.read_ext_data(hsize, MAX_LONG_NAME, "GNU long link name")?;
                    long_link = Some(parse_string(&data).to_vec());
                    pending_ext = true;
                }
                b'V' => {
                    // GNU volume label: not a file.
                    self.skip(hsize + padding(hsize), &|| {
                        "the archive ends inside a volume label".to_string()
                    })?;
                }
                _ => {
                    return self
                        .build_entry(at, &blk, hsize, pax, long_name, long_link)
                        .map(Some);
                }
            }
        }
    }

    fn build_entry(
        &mut self,
        at: u64,
        blk: &[u8; 512],
        hsize: u64,
        pax: Option<Pax>,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<TarEntry, LayerError> {
        let pax = pax.unwrap_or_default();
        let format = if &blk[257..263] == b"ustar\0" {
            if &blk[508..512] == b"tar\0" {
                Format::Star
            } else {
                Format::Ustar
            }
        } else if &blk[257..263] == b"ustar " && &blk[263..265] == b" \0" {
            Format::Gnu
        } else {
            Format::V7
        };
        let typeflag = blk[156];

        // Name: PAX `path`, else GNU long name, else the header (with the
        // ustar prefix).
        let path = if let Some(p) = pax.get("path") {
            p.to_vec()
        } else if let Some(p) = long_name {
            p
        } else {
            let name = parse_string(&blk[0..100]);
            let prefix = match format {
                Format::Ustar => parse_string(&blk[345..500]),
                Format::Star => parse_string(&blk[345..476]),
                Format::Gnu | Format::V7 => &[][..],
            };
            if prefix.is_empty() {
                name.to_vec()
            } else {
                [prefix, b"/", name].concat()
            }
        };
        let corrupt = |what: &str| LayerError::Entry {
            path: show_path(&path),
            reason: format!("invalid {what} in tar header at byte {at}"),
        };
        let link = if let Some(l) = pax.get("linkpath") {
            l.to_vec()
        } else if let Some(l) = long_link {
            l
        } else {
            parse_string(&blk[157..257]).to_vec()
        };

        let kind = match typeflag {
            b'0' | b'7' | b'S' => EntryKind::File,
            b'\0' if path.ends_with(b"/") => EntryKind::Dir,
            b'\0' => EntryKind::File,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDev,
            b'4' => EntryKind::BlockDev,
            b'5' => EntryKind::Dir,
            b'6' => EntryKind::Fifo,
            other => EntryKind::Other(other),
        };
        // Like Go: these types never have data, whatever the size field says.
        let header_only = matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');

        let mode = parse_numeric(&blk[100..108])
            .filter(|m| *m >= 0)
            .ok_or_else(|| corrupt("mode"))?;
        let uid = match pax.get("uid") {
            Some(v) => parse_decimal(v).ok_or_else(|| corrupt("PAX uid"))?,
            None => parse_numeric(&blk[108..116])
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| corrupt("uid"))?,
        };
        let gid = match pax.get("gid") {
            Some(v) => parse_decimal(v).ok_or_else(|| corrupt("PAX gid"))?,
            None => parse_numeric(&blk[116..124])
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| corrupt("gid"))?,
        };
        let uid = u32::try_from(uid).map_err(|_| corrupt("uid (not a 32-bit id)"))?;
        let gid = u32::try_from(gid).map_err(|_| corrupt("gid (not a 32-bit id)"))?;
        let mtime = match pax.get("mtime") {
            Some(v) => parse_pax_time(v).ok_or_else(|| corrupt("PAX mtime"))?,
            None => Timestamp {
                secs: parse_numeric(&blk[136..148]).ok_or_else(|| corrupt("mtime"))?,
                nanos: 0,
            },
        };
        let atime = match pax.get("atime") {
            Some(v) => parse_pax_time(v).ok_or_else(|| corrupt("PAX atime"))?,
            None => mtime,
        };
        let ctime = match pax.get("ctime") {
            Some(v) => parse_pax_time(v).ok_or_else(|| corrupt("PAX ctime"))?,
            None => mtime,
        };
        let (mut dev_major, mut dev_minor) = (0, 0);
        if matches!(kind, EntryKind::CharDev | EntryKind::BlockDev) && format != Format::V7 {
            let major = parse_numeric(&blk[329..337]).ok_or_else(|| corrupt("device major"))?;
            let minor = parse_numeric(&blk[337..345]).ok_or_else(|| corrupt("device minor"))?;
            dev_major = u32::try_from(major).map_err(|_| corrupt("device major"))?;
            dev_minor = u32::try_from(minor).map_err(|_| corrupt("device minor"))?;
        }
        let mut archive_size = match pax.get("size") {
            Some(v) => parse_decimal(v).ok_or_else(|| corrupt("PAX size"))?,
            None => hsize,
        };
        if header_only {
            archive_size = 0;
        }

        let meta = Meta {
            mode: (mode & 0o7777) as u16,
            uid,
            gid,
            mtime,
            atime,
            ctime,
            xattrs: pax_xattrs(&pax).map_err(|reason| LayerError::Entry {
                path: show_path(&path),
                reason,
            })?,
        };
        let mut entry = TarEntry {
            path,
            link,
            kind,
            meta,
            size: if kind == EntryKind::File {
                archive_size
            } else {
                0
            },
            dev_major,
            dev_minor,
            sparse: None,
        };
        self.remaining = archive_size;
        self.pad = padding(archive_size);

        if typeflag == b'S' {
            self.read_old_gnu_sparse(blk, format, &mut entry, archive_size)?;
        } else if kind == EntryKind::File {
            self.read_pax_sparse(&pax, &mut entry, archive_size)?;
        }
        Ok(entry)
    }

    /// Old GNU sparse files (type `S`): the map is in the header and in
    /// extension blocks that follow it (before the data).
    fn read_old_gnu_sparse(
        &mut self,
        blk: &[u8; 512],
        format: Format,
        entry: &mut TarEntry,
        archive_size: u64,
    ) -> Result<(), LayerError> {
        let bad = |reason: &str| LayerError::Entry {
            path: show_path(&entry.path),
            reason: format!("invalid GNU sparse header: {reason}"),
        };
        if format != Format::Gnu {
            return Err(bad("not in GNU format"));
        }
        let real_size = parse_numeric(&blk[483..495])
            .filter(|s| *s >= 0)
            .ok_or_else(|| bad("real size"))? as u64;
        let mut map = Vec::new();
        let mut block: Vec<u8> = blk[386..483].to_vec(); // 4 entries + isextended
        let mut entries = 4;
        loop {
            for i in 0..entries {
                let e = &block[i * 24..i * 24 + 24];
                if e[0] == 0 {
                    break;
                }
                let off = parse_numeric(&e[0..12]).ok_or_else(|| bad("offset"))?;
                let len = parse_numeric(&e[12..24]).ok_or_else(|| bad("length"))?;
                if map.len() >= MAX_SPARSE_ENTRIES {
                    return Err(bad("too many fragments"));
                }
                map.push((off, len));
            }
            if block[entries * 24] == 0 {
                break;
            }
            // The extension blocks are not counted in the size field.
            let Some(ext) = self.read_block()? else {
                return Err(LayerError::Truncated(format!(
                    "{}: the archive ends inside a GNU sparse map",
                    show_path(&entry.path)
                )));
            };
            block = ext.to_vec();
            entries = 21;
        }
        let frags = validate_sparse(&map, real_size, archive_size).map_err(|r| bad(&r))?;
        entry.size = real_size;
        entry.sparse = Some(frags);
        Ok(())
    }

    /// GNU sparse files in PAX format (versions 0.0, 0.1 and 1.0).
    fn read_pax_sparse(
        &mut self,
        pax: &Pax,
        entry: &mut TarEntry,
        archive_size: u64,
    ) -> Result<(), LayerError> {
        let major = pax.get("GNU.sparse.major");
        let minor = pax.get("GNU.sparse.minor");
        let v1 = match (major, minor) {
            (Some(b"0"), Some(b"0" | b"1")) => false,
            (Some(b"1"), Some(b"0")) => true,
            (Some(_), _) | (_, Some(_)) => return Ok(()), // unknown version: plain data
            (None, None) if pax.get("GNU.sparse.map").is_some() || !pax.sparse_00.is_empty() => {
                false
            }
            (None, None) => return Ok(()),
        };
        if let Some(name) = pax.get("GNU.sparse.name") {
            entry.path = name.to_vec();
        }
        let path = show_path(&entry.path);
        let bad = |reason: &str| LayerError::Entry {
            path: path.clone(),
            reason: format!("invalid PAX sparse map: {reason}"),
        };
        let real_size = pax
            .get("GNU.sparse.size")
            .or_else(|| pax.get("GNU.sparse.realsize"))
            .map(|v| parse_decimal(v).ok_or_else(|| bad("size")))
            .transpose()?
            .unwrap_or(archive_size);
        let mut numbers: Vec<i64> = Vec::new();
        let mut data_size = archive_size;
        if v1 {
            // The map is at the start of the data: decimal numbers, one per
            // line, padded to whole blocks.
            let mut text = Vec::new();
            let mut newlines = 0u64;
            let mut need = 1u64;
            let mut count: Option<u64> = None;
            loop {
                while newlines < need {
                    if self.remaining < BLOCK || text.len() as u64 >= MAX_SPARSE_MAP_BYTES {
                        return Err(bad("the map does not fit in the entry"));
                    }
                    let mut blk = [0u8; 512];
                    if self.fill(&mut blk)? != 512 {
                        return Err(LayerError::Truncated(format!(
                            "{path}: the archive ends inside a sparse map"
                        )));
                    }
                    self.remaining -= BLOCK;
                    data_size -= BLOCK;
                    newlines += blk.iter().filter(|&&c| c == b'\n').count() as u64;
                    text.extend_from_slice(&blk);
                }
                if count.is_some() {
                    break;
                }
                let first = text.split(|&c| c == b'\n').next().unwrap_or(&[]);
                let n = parse_decimal(first).ok_or_else(|| bad("entry count"))?;
                if n as usize > MAX_SPARSE_ENTRIES {
                    return Err(bad("too many fragments"));
                }
                count = Some(n);
                need = 1 + 2 * n;
            }
            let n = count.unwrap_or(0) as usize;
            for tok in text.split(|&c| c == b'\n').skip(1).take(2 * n) {
                numbers.push(parse_decimal(tok).ok_or_else(|| bad("number"))? as i64);
            }
        } else {
            let count = pax
                .get("GNU.sparse.numblocks")
                .map(|v| parse_decimal(v).ok_or_else(|| bad("numblocks")))
                .transpose()?;
            let tokens: Vec<&[u8]> = match pax.get("GNU.sparse.map") {
                Some(m) => m.split(|&c| c == b',').collect(),
                None => pax.sparse_00.iter().map(|v| v.as_slice()).collect(),
            };
            if let Some(count) = count {
                if count.checked_mul(2) != Some(tokens.len() as u64) {
                    return Err(bad("numblocks does not match the map"));
                }
            }
            if tokens.len() & 1 != 0 || tokens.len() / 2 > MAX_SPARSE_ENTRIES {
                return Err(bad("odd or oversized map"));
            }
            for tok in tokens {
                numbers.push(parse_decimal(tok).ok_or_else(|| bad("number"))? as i64);
            }
        }
        let map: Vec<(i64, i64)> = numbers.chunks(2).map(|c| (c[0], c[1])).collect();
        let frags = validate_sparse(&map, real_size, data_size).map_err(|r| bad(&r))?;
        self.pad = padding(archive_size);
        entry.size = real_size;
        entry.sparse = Some(frags);
        Ok(())
    }

    /// A reader of the current entry's logical content (holes of sparse
    /// files read as zeros): exactly `entry.size` bytes, or an error.
    pub fn data<'a>(&'a mut self, entry: &'a TarEntry) -> EntryReader<'a, R> {
        EntryReader {
            tr: self,
            frags: entry.sparse.as_deref(),
            size: entry.size,
            pos: 0,
            idx: 0,
            input_failed: false,
        }
    }
}

/// Reads one entry's content; see [`TarReader::data`].
pub struct EntryReader<'a, R> {
    tr: &'a mut TarReader<R>,
    frags: Option<&'a [(u64, u64)]>,
    size: u64,
    /// Logical bytes handed out so far.
    pub(crate) pos: u64,
    idx: usize,
    /// The layer stream failed or ended early (as opposed to the consumer).
    pub(crate) input_failed: bool,
}

impl<R: Read> EntryReader<'_, R> {
    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.tr.remaining) as usize;
        if want == 0 {
            return Ok(0);
        }
        loop {
            match self.tr.r.read(&mut buf[..want]) {
                Ok(0) => {
                    self.input_failed = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the archive ends inside the file's data",
                    ));
                }
                Ok(n) => {
                    self.tr.pos += n as u64;
                    self.tr.remaining -= n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.input_failed = true;
                    return Err(e);
                }
            }
        }
    }
}

impl<R: Read> Read for EntryReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        let left = self.size - self.pos;
        let want = left.min(buf.len() as u64) as usize;
        let buf = &mut buf[..want];
        let n = match self.frags {
            None => self.read_raw(buf)?,
            Some(frags) => loop {
                let (off, len) = frags.get(self.idx).copied().unwrap_or((self.size, 0));
                if self.pos < off {
                    let n = (off - self.pos).min(buf.len() as u64) as usize;
                    buf[..n].fill(0);
                    break n;
                } else if self.pos < off + len {
                    let n = (off + len - self.pos).min(buf.len() as u64) as usize;
                    break self.read_raw(&mut buf[..n])?;
                } else {
                    self.idx += 1;
                }
            },
        };
        if n == 0 {
            // Cannot happen with a validated map; never loop forever.
            self.input_failed = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "entry data ended early",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Checks a sparse map like Go does: fragments in order, not overlapping,
/// inside the file, and their lengths add up to the data in the archive.
fn validate_sparse(
    map: &[(i64, i64)],
    real_size: u64,
    data_size: u64,
) -> Result<Vec<(u64, u64)>, String> {
    if real_size > MAX_FILE_SIZE {
        return Err(format!("real size {real_size} is over ext4's limit"));
    }
    let mut out = Vec::with_capacity(map.len());
    let mut end = 0u64;
    let mut total = 0u64;
    for &(off, len) in map {
        let (Ok(off), Ok(len)) = (u64::try_from(off), u64::try_from(len)) else {
            return Err("negative offset or length".into());
        };
        let frag_end = off.checked_add(len).ok_or("fragment overflows")?;
        if off < end || frag_end > real_size {
            return Err("fragments overlap, are out of order or lie past the end".into());
        }
        end = frag_end;
        total += len;
        if len > 0 {
            out.push((off, len));
        }
    }
    if total != data_size {
        return Err(format!(
            "the map holds {total} bytes but the archive has {data_size}"
        ));
    }
    Ok(out)
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn is_zero_block(b: &[u8]) -> bool {
    b.iter().all(|&c| c == 0)
}

/// The header checksum, accepting both the unsigned (POSIX) and the signed
/// (old Sun / some old GNU) sums, like Go.
fn checksum_ok(blk: &[u8]) -> bool {
    if blk.len() != BLOCK as usize {
        return false;
    }
    let Some(stored) = parse_octal(&blk[148..156]) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in blk.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += c as i64;
        signed += c as i8 as i64;
    }
    stored == unsigned || stored == signed
}

/// A NUL-terminated string field.
fn parse_string(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// An octal field, surrounded by spaces/NULs; empty means 0.
fn parse_octal(b: &[u8]) -> Option<i64> {
    let start = b
        .iter()
        .position(|&c| c != b' ' && c != 0)
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != 0)
        .map_or(start, |e| e + 1);
    let digits = parse_string(&b[start..end.max(start)]);
    let mut x: i64 = 0;
    for &c in digits {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        x = x.checked_mul(8)?.checked_add((c - b'0') as i64)?;
    }
    Some(x)
}

/// A numeric field: octal, or GNU base-256 (high bit set; signed).
fn parse_numeric(b: &[u8]) -> Option<i64> {
    if b.first().is_some_and(|c| c & 0x80 != 0) {
        let inv: u8 = if b[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 != 0 {
                return None;
            }
            x = (x << 8) | c as u64;
        }
        if x >> 63 != 0 {
            return None;
        }
        return Some(if inv == 0xff { !(x as i64) } else { x as i64 });
    }
    parse_octal(b)
}

/// A non-negative decimal number (PAX values, sparse maps).
fn parse_decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A PAX time: `[-]SECONDS[.FRACTION]`.
fn parse_pax_time(v: &[u8]) -> Option<Timestamp> {
    let (neg, v) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &[][..]),
    };
    let secs = i64::try_from(parse_decimal(int)?).ok()?;
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |c| (c - b'0') as u32);
    }
    if !neg {
        return Some(Timestamp { secs, nanos });
    }
    if nanos == 0 {
        Some(Timestamp {
            secs: -secs,
            nanos: 0,
        })
    } else {
        Some(Timestamp {
            secs: -secs - 1,
            nanos: 1_000_000_000 - nanos,
        })
    }
}

/// Parses PAX records: `LENGTH KEY=VALUE\n`, LENGTH counting the whole
/// record. Values are binary (they may hold newlines). Later records win.
fn parse_pax(mut data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    while !data.is_empty() {
        if is_zero_block(data) {
            break; // NUL padding after the last record
        }
        let bad = || "malformed PAX record".to_string();
        let space = data
            .iter()
            .take(21)
            .position(|&c| c == b' ')
            .ok_or_else(bad)?;
        let len = parse_decimal(&data[..space]).ok_or_else(bad)? as usize;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad());
        }
        let kv = &data[space + 1..len - 1];
        data = &data[len..];
        let eq = kv.iter().position(|&c| c == b'=').ok_or_else(bad)?;
        let (key, value) = (&kv[..eq], &kv[eq + 1..]);
        if key.contains(&0) {
            return Err("NUL in a PAX record key".into());
        }
        if (key == b"path" || key == b"linkpath") && value.contains(&0) {
            return Err("NUL in a PAX path".into());
        }
        if key == b"GNU.sparse.offset" || key == b"GNU.sparse.numbytes" {
            pax.sparse_00.push(value.to_vec());
        } else {
            pax.records.insert(key.to_vec(), value.to_vec());
        }
    }
    Ok(pax)
}

type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Extended attributes from `SCHILY.xattr.NAME=VALUE` (raw value) and
/// `LIBARCHIVE.xattr.URLENCODED-NAME=BASE64-VALUE`, sorted by name.
fn pax_xattrs(pax: &Pax) -> Result<Xattrs, String> {
    let mut out: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (key, value) in &pax.records {
        if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
            let name = url_decode(name).ok_or("malformed LIBARCHIVE.xattr name")?;
            let value = base64_decode(value).ok_or("malformed LIBARCHIVE.xattr value")?;
            if !name.is_empty() && !name.contains(&0) {
                out.entry(name).or_insert(value);
            }
        }
    }
    // SCHILY.xattr wins where both name the same attribute.
    for (key, value) in &pax.records {
        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            if !name.is_empty() {
                out.insert(name.to_vec(), value.clone());
            }
        }
    }
    Ok(out.into_iter().collect())
}

fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Standard base64, padding optional.
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let s = match s.iter().position(|&c| c == b'=') {
        Some(p) if s[p..].iter().all(|&c| c == b'=') && s.len() - p <= 2 => &s[..p],
        Some(_) => return None,
        None => s,
    };
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A path for error messages: lossy UTF-8, control characters escaped,
/// long paths shortened, so messages stay on one line.
pub(crate) fn show_path(p: &[u8]) -> String {
    const MAX: usize = 300;
    let s = String::from_utf8_lossy(p);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("\"\"");
    }
    out
}

/// Drains whatever follows the end-of-archive marker so that the
/// decompressor checks its trailer (gzip CRC, zstd checksum), as containerd does.
pub(crate) fn drain(r: &mut dyn Read) -> Result<(), LayerError> {
    io::copy(r, &mut io::sink())
        .map(|_| ())
        .map_err(LayerError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::{apply, content, MemSink, Tar};
    use crate::tree::Tree;
    use proptest::prelude::*;

    fn entries(tar: &[u8]) -> Result<Vec<(TarEntry, Vec<u8>)>, LayerError> {
        let mut tr = TarReader::new(tar);
        let mut out = Vec::new();
        while let Some(e) = tr.next_entry()? {
            let mut data = Vec::new();
            tr.data(&e).read_to_end(&mut data).map_err(LayerError::Io)?;
            out.push((e, data));
        }
        Ok(out)
    }

    fn octal(field: &mut [u8], v: u64) {
        let n = field.len() - 1;
        let s = format!("{v:0n$o}");
        field[..n].copy_from_slice(s.as_bytes());
        field[n] = 0;
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_octal(b"0000644\0"), Some(0o644));
        assert_eq!(parse_octal(b"  755 \0\0"), Some(0o755));
        assert_eq!(parse_octal(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_octal(b"12 34"), None);
        assert_eq!(parse_octal(b"89"), None);
        assert_eq!(parse_octal(b"77777777777777777777777"), None); // overflow
                                                                   // GNU base-256, positive and negative.
        assert_eq!(
            parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(parse_numeric(&[0xff; 12]), Some(-1));
        assert_eq!(
            parse_numeric(&[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe
            ]),
            Some(-2)
        );
        assert_eq!(
            parse_numeric(&[
                0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ]),
            None
        );
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b""), None);
    }

    #[test]
    fn pax_times() {
        let t = |s: &[u8]| parse_pax_time(s);
        assert_eq!(
            t(b"1700000000"),
            Some(Timestamp {
                secs: 1_700_000_000,
                nanos: 0
            })
        );
        assert_eq!(
            t(b"1.5"),
            Some(Timestamp {
                secs: 1,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            t(b"1.1234567899999"),
            Some(Timestamp {
                secs: 1,
                nanos: 123_456_789
            })
        );
        assert_eq!(
            t(b"-1.25"),
            Some(Timestamp {
                secs: -2,
                nanos: 750_000_000
            })
        );
        assert_eq!(
            t(b"-0.5"),
            Some(Timestamp {
                secs: -1,
                nanos: 500_000_000
            })
        );
        assert_eq!(t(b"-3"), Some(Timestamp { secs: -3, nanos: 0 }));
        assert_eq!(t(b"1."), Some(Timestamp { secs: 1, nanos: 0 }));
        for bad in [
            &b""[..],
            b".5",
            b"1.x",
            b"x",
            b"1e3",
            b"--1",
            b"99999999999999999999",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pax_records_hold_binary_values() {
        let mut data = Vec::new();
        let value = b"a\nb\n12 uid=5\n";
        let rec_len = 3 + b"SCHILY.xattr.user.x".len() + value.len();
        data.extend(format!("{} SCHILY.xattr.user.x=", rec_len + 2).bytes());
        data.extend(value);
        data.push(b'\n');
        data.extend(b"12 path=abc\n");
        data.extend(b"12 path=xyz\n"); // later wins
        data.extend([0u8; 10]); // NUL padding is tolerated
        let pax = parse_pax(&data).unwrap();
        assert_eq!(pax.get("SCHILY.xattr.user.x"), Some(&value[..]));
        assert_eq!(pax.get("path"), Some(&b"xyz"[..]));
        assert_eq!(pax.get("uid"), None, "no record smuggled inside a value");
        for bad in [
            &b"5 a=b\n"[..],
            b"9 a=b\n",
            b"x a=b\n",
            b"6 ab\n\n",
            b"7 a=b\nX",
            b"12 pa\0th=abc\n",
            b"10 path=\0\n",
        ] {
            assert!(parse_pax(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn compression_detection() {
        assert_eq!(
            detect_compression(&[0x1f, 0x8b, 8]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            detect_compression(&[0x50, 0x2a, 0x4d, 0x18]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(detect_compression(b"").unwrap(), Compression::None);
        assert_eq!(detect_compression(b"hello").unwrap(), Compression::None);
        assert!(detect_compression(b"BZh9").is_err());
        let tar = Tar::new().file("BZh9", b"").finish();
        assert_eq!(detect_compression(&tar[..512]).unwrap(), Compression::None);
    }

    #[test]
    fn decoders() {
        assert_eq!(base64_decode(b"aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"AAEC/w=="), Some(vec![0, 1, 2, 255]));
        assert_eq!(base64_decode(b""), Some(vec![]));
        assert_eq!(base64_decode(b"a"), None);
        assert_eq!(base64_decode(b"a=b="), None);
        assert_eq!(base64_decode(b"a!=="), None);
        assert_eq!(url_decode(b"user.a%20b%2Fc"), Some(b"user.a b/c".to_vec()));
        assert_eq!(url_decode(b"bad%2"), None);
        assert_eq!(url_decode(b"bad%zz"), None);
    }

    #[test]
    fn signed_checksums_and_v7_headers() {
        // A v7 header (no magic): type '\0', a trailing slash makes it a dir.
        let mut blk = [0u8; 512];
        blk[..4].copy_from_slice(b"dir/");
        octal(&mut blk[100..108], 0o755);
        octal(&mut blk[124..136], 0);
        octal(&mut blk[136..148], 99);
        let mut file = [0u8; 512];
        file[..8].copy_from_slice(b"dir/\xe9t\xe9\xff");
        octal(&mut file[100..108], 0o600);
        octal(&mut file[124..136], 2);
        // Signed checksum: bytes >= 0x80 counted negative (old Sun tar).
        for b in [&mut blk, &mut file] {
            let signed: i64 = b
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        c as i8 as i64
                    }
                })
                .sum();
            octal(&mut b[148..155], signed as u64);
        }
        let mut tar = blk.to_vec();
        tar.extend(file);
        tar.extend(b"hi");
        tar.resize(tar.len() + 510 + 1024, 0);
        let got = entries(&tar).unwrap();
        assert_eq!(got[0].0.kind, EntryKind::Dir);
        assert_eq!(got[0].0.meta.mtime.secs, 99);
        assert_eq!(got[1].0.kind, EntryKind::File);
        assert_eq!(got[1].0.path, b"dir/\xe9t\xe9\xff");
        assert_eq!(got[1].1, b"hi");
    }

    #[test]
    fn ustar_prefix_and_base256_fields() {
        let mut h = tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().unwrap();
            u.prefix[..10].copy_from_slice(b"some/place");
        }
        h.as_old_mut().name[..4].copy_from_slice(b"file");
        h.set_mode(0o644);
        h.set_size(0);
        h.set_uid(3_000_000); // base-256 in an 8-byte field
        h.set_mtime(1 << 40); // base-256
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut t = Tar::new();
        t.b.append(&h, &[][..]).unwrap();
        let got = entries(&t.finish()).unwrap();
        assert_eq!(got[0].0.path, b"some/place/file");
        assert_eq!(got[0].0.meta.uid, 3_000_000);
        assert_eq!(got[0].0.meta.mtime.secs, 1 << 40);
    }

    #[test]
    fn pax_size_overrides_the_header() {
        let tar = Tar::new()
            .add(
                b"f",
                tar::EntryType::Regular,
                b"twelve bytes",
                b"",
                &[("size", b"12")],
                |h| {
                    h.set_size(0);
                },
            )
            .file("g", b"after")
            .finish();
        let got = entries(&tar).unwrap();
        assert_eq!(got[0].1, b"twelve bytes");
        assert_eq!(got[1].1, b"after");
    }

    #[test]
    fn global_headers_and_volume_labels_are_skipped() {
        let mut t = Tar::new();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XGlobalHeader);
        h.set_size(16);
        h.set_cksum();
        t.b.append(&h, &b"16 mtime=12345\n\n"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::new(b'V'));
        h.as_old_mut().name[..5].copy_from_slice(b"label");
        h.set_size(0);
        h.set_cksum();
        t.b.append(&h, &[][..]).unwrap();
        t.file("f", b"x");
        let got = entries(&t.finish()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.path, b"f");
        assert_eq!(got[0].0.meta.mtime.secs, crate::tree::tests::MTIME as i64);
    }

    #[test]
    fn end_marker_rules() {
        let tar = Tar::new().file("f", b"x").finish();
        let end = 1024;
        // A lone zero block then data is an error, like Go.
        let mut bad = tar[..end + 512].to_vec();
        bad.extend([1u8; 512]);
        assert!(matches!(entries(&bad), Err(LayerError::Corrupt { .. })));
        // Without any marker, ending at an entry boundary: accepted, like Go
        // (umoci writes layers like that).
        assert_eq!(entries(&tar[..end]).unwrap().len(), 1);
        // Without padding after the last data, too.
        assert_eq!(entries(&tar[..512 + 1]).unwrap().len(), 1);
        // Ending inside the data is an error.
        assert!(entries(&tar[..512]).is_err());
        // Extension header at the very end.
        let pax = Tar::new()
            .add(
                b"f",
                tar::EntryType::Regular,
                b"",
                b"",
                &[("mtime", b"1")],
                |_| {},
            )
            .finish();
        assert!(entries(&pax[..1024]).is_err());
    }

    /// An old-GNU sparse file (type 'S') with an extension block, as GNU
    /// tar writes it with --sparse.
    #[test]
    fn old_gnu_sparse_files() {
        // GNU tar ends the map with a zero-length fragment at the real size.
        let real_size = 200_000u64;
        let frags: [(u64, u64); 7] = [
            (0, 512),
            (8192, 1024),
            (20480, 512),
            (30720, 512),
            (40960, 512),
            (100_000, 7),
            (real_size, 0),
        ];
        let data_len: u64 = frags.iter().map(|f| f.1).sum();
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..6].copy_from_slice(b"sparse");
        h.set_mode(0o644);
        h.set_size(data_len);
        h.set_entry_type(tar::EntryType::GNUSparse);
        {
            let gnu = h.as_gnu_mut().unwrap();
            for (i, (off, len)) in frags.iter().take(4).enumerate() {
                octal(&mut gnu.sparse[i].offset, *off);
                octal(&mut gnu.sparse[i].numbytes, *len);
            }
            octal(&mut gnu.realsize, real_size);
            gnu.isextended[0] = 1;
        }
        h.set_cksum();
        let mut ext = [0u8; 512];
        for (i, (off, len)) in frags.iter().skip(4).enumerate() {
            octal(&mut ext[i * 24..i * 24 + 12], *off);
            octal(&mut ext[i * 24 + 12..i * 24 + 24], *len);
        }
        let mut tar = h.as_bytes().to_vec();
        tar.extend(ext);
        let mut want = vec![0u8; real_size as usize];
        for (i, (off, len)) in frags.iter().enumerate() {
            let chunk: Vec<u8> = (0..*len)
                .map(|j| (i as u64 * 31 + j % 200 + 1) as u8)
                .collect();
            want[*off as usize..(*off + *len) as usize].copy_from_slice(&chunk);
            tar.extend(chunk);
        }
        tar.resize(tar.len().div_ceil(512) * 512, 0);
        let mut tail = Tar::new().file("after", b"a").finish();
        tar.append(&mut tail);

        // The tar crate agrees on the logical content.
        let mut a = tar::Archive::new(&tar[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let mut theirs = Vec::new();
        e.read_to_end(&mut theirs).unwrap();
        assert_eq!(theirs, want);

        let mut tree = Tree::new();
        let mut sink = MemSink::default();
        let stats = apply(&mut tree, &mut sink, &tar).unwrap();
        assert_eq!(stats.bytes, real_size + 1);
        assert_eq!(content(&tree, &sink, "sparse").unwrap(), want);
        assert_eq!(content(&tree, &sink, "after").unwrap(), b"a");

        // A map that does not add up is refused.
        let mut bad = tar.clone();
        bad[386 + 12..386 + 24].copy_from_slice(b"00000002000\0");
        let mut h = tar::Header::from_byte_slice(&bad[..512]).clone();
        h.set_cksum();
        bad[..512].copy_from_slice(h.as_bytes());
        assert!(apply(&mut Tree::new(), &mut MemSink::default(), &bad).is_err());
    }

    fn pax_sparse_want() -> Vec<u8> {
        let mut want = vec![0u8; 20_000];
        want[..5].copy_from_slice(b"hello");
        want[10_000..10_003].copy_from_slice(b"abc");
        want
    }

    #[test]
    fn pax_sparse_1_0() {
        let mut data = b"2\n0\n5\n10000\n3\n".to_vec();
        data.resize(512, 0);
        data.extend(b"helloabc");
        let tar = Tar::new()
            .add(
                b"./GNUSparseFile.0/f",
                tar::EntryType::Regular,
                &data,
                b"",
                &[
                    ("GNU.sparse.major", b"1"),
                    ("GNU.sparse.minor", b"0"),
                    ("GNU.sparse.name", b"real/name"),
                    ("GNU.sparse.realsize", b"20000"),
                ],
                |_| {},
            )
            .file("next", b"n")
            .finish();
        let (mut tree, mut sink) = (Tree::new(), MemSink::default());
        apply(&mut tree, &mut sink, &tar).unwrap();
        assert_eq!(
            content(&tree, &sink, "real/name").unwrap(),
            pax_sparse_want()
        );
        assert_eq!(content(&tree, &sink, "next").unwrap(), b"n");
        assert!(tree.lookup(b"GNUSparseFile.0").is_none());
    }

    #[test]
    fn pax_sparse_0_1_and_0_0() {
        let tar = Tar::new()
            .add(
                b"GNUSparseFile.1/f",
                tar::EntryType::Regular,
                b"helloabc",
                b"",
                &[
                    ("GNU.sparse.major", b"0"),
                    ("GNU.sparse.minor", b"1"),
                    ("GNU.sparse.name", b"v01"),
                    ("GNU.sparse.size", b"20000"),
                    ("GNU.sparse.numblocks", b"2"),
                    ("GNU.sparse.map", b"0,5,10000,3"),
                ],
                |_| {},
            )
            .add(
                b"v00",
                tar::EntryType::Regular,
                b"helloabc",
                b"",
                &[
                    ("GNU.sparse.size", b"20000"),
                    ("GNU.sparse.numblocks", b"2"),
                    ("GNU.sparse.offset", b"0"),
                    ("GNU.sparse.numbytes", b"5"),
                    ("GNU.sparse.offset", b"10000"),
                    ("GNU.sparse.numbytes", b"3"),
                ],
                |_| {},
            )
            .finish();
        let (mut tree, mut sink) = (Tree::new(), MemSink::default());
        apply(&mut tree, &mut sink, &tar).unwrap();
        assert_eq!(content(&tree, &sink, "v01").unwrap(), pax_sparse_want());
        assert_eq!(content(&tree, &sink, "v00").unwrap(), pax_sparse_want());
        // Overlapping fragments, or data that does not match the map.
        for map in [&b"0,5,3,3"[..], b"0,5,10000,4", b"0,5,19999,3", b"0,5"] {
            let tar = Tar::new()
                .add(
                    b"f",
                    tar::EntryType::Regular,
                    b"helloabc",
                    b"",
                    &[("GNU.sparse.size", b"20000"), ("GNU.sparse.map", map)],
                    |_| {},
                )
                .finish();
            let r = apply(&mut Tree::new(), &mut MemSink::default(), &tar);
            assert!(r.is_err(), "{map:?}");
        }
    }

    #[test]
    fn error_paths_are_one_line() {
        assert_eq!(show_path(b"a\nb"), "a\\nb");
        assert_eq!(show_path(b""), "\"\"");
        assert!(show_path(&[b'x'; 1000]).chars().count() < 310);
        let tar = Tar::new()
            .add(b"bad\nname", tar::EntryType::Regular, b"", b"", &[], |h| {
                h.set_size(1 << 40)
            })
            .finish();
        let err = apply(&mut Tree::new(), &mut MemSink::default(), &tar).unwrap_err();
        assert!(!err.to_string().contains('\n'), "{err}");
    }

    #[derive(Debug, Clone)]
    struct Gen {
        path: String,
        kind: u8,
        data: Vec<u8>,
        link: String,
        mode: u32,
        uid: u64,
        mtime: u64,
        gnu: bool,
    }

    fn gen_entry() -> impl Strategy<Value = Gen> {
        (
            "[a-z]{1,8}(/[a-zA-Z0-9_-][a-zA-Z0-9_.-]{0,39}){0,5}",
            prop::sample::select(vec![b'0', b'5', b'2', b'1']),
            prop::collection::vec(any::<u8>(), 0..2000),
            "[a-z/]{1,150}",
            0u32..0o7777,
            prop_oneof![0u64..70000, 2_000_000u64..u32::MAX as u64],
            prop_oneof![0u64..1 << 33, (1u64 << 33)..(1 << 40)],
            any::<bool>(),
        )
            .prop_map(|(path, kind, data, link, mode, uid, mtime, gnu)| Gen {
                path,
                kind,
                data,
                link,
                mode,
                uid,
                mtime,
                gnu,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// On archives the tar crate writes (GNU long names, base-256
        /// numbers, ustar and GNU headers), we read what it reads.
        #[test]
        fn agrees_with_the_tar_crate(gens in prop::collection::vec(gen_entry(), 1..8)) {
            let mut b = tar::Builder::new(Vec::new());
            for g in &gens {
                let mut h = if g.gnu { tar::Header::new_gnu() } else { tar::Header::new_ustar() };
                h.set_entry_type(tar::EntryType::new(g.kind));
                h.set_mode(g.mode);
                h.set_uid(g.uid);
                h.set_gid(g.uid / 2);
                h.set_mtime(g.mtime);
                match g.kind {
                    b'0' => {
                        h.set_size(g.data.len() as u64);
                        b.append_data(&mut h, &g.path, &g.data[..]).unwrap();
                    }
                    b'5' => {
                        h.set_size(0);
                        b.append_data(&mut h, &g.path, &[][..]).unwrap();
                    }
                    _ => {
                        h.set_size(0);
                        b.append_link(&mut h, &g.path, &g.link).unwrap();
                    }
                }
            }
            let tar = b.into_inner().unwrap();
            let ours = entries(&tar).unwrap();
            let mut a = tar::Archive::new(&tar[..]);
            let mut n = 0;
            for (e, (mine, data)) in a.entries().unwrap().zip(&ours) {
                let mut e = e.unwrap();
                n += 1;
                prop_assert_eq!(&mine.path, &e.path_bytes().into_owned());
                prop_assert_eq!(&mine.link, &e.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default());
                prop_assert_eq!(mine.meta.mode as u32, e.header().mode().unwrap() & 0o7777);
                prop_assert_eq!(mine.meta.uid as u64, e.header().uid().unwrap());
                prop_assert_eq!(mine.meta.gid as u64, e.header().gid().unwrap());
                prop_assert_eq!(mine.meta.mtime.secs as u64, e.header().mtime().unwrap());
                let mut theirs = Vec::new();
                e.read_to_end(&mut theirs).unwrap();
                prop_assert_eq!(data, &theirs);
            }
            prop_assert_eq!(n, ours.len());
            prop_assert_eq!(n, gens.len());
        }
    }
}
