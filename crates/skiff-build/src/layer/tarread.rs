//! A streaming tar reader for the two tars a build reads: a RUN step's
//! changes and an ADD archive.
//!
//! The block stream is read here, and the fields of each header are parsed
//! with the `tar` crate's `Header`. Its `Archive` is not used: it splits
//! PAX records at every `\n`, so a binary `SCHILY.xattr.security.capability`
//! value containing 0x0a is reported as malformed, and it reads extension
//! headers into memory without a bound. Here PAX records are parsed by their
//! length, as Go's `archive/tar` (docker's and BuildKit's reader) does, and
//! extension data is bounded.

use std::io::{self, Read};

use super::LayerError;

const BLOCK: u64 = 512;
/// Bound on a PAX header or GNU long name/link: far above any real one.
const MAX_EXTENSION: u64 = 8 << 20;

/// One entry, extension headers applied. Type flags are normalized: `'0'`
/// regular (also for `'\0'`, `'7'` and an old-style name ending in `/`,
/// which is `'5'`), `'1'` hard link, `'2'` symlink, `'3'`/`'4'` devices,
/// `'5'` directory, `'6'` FIFO.
#[derive(Debug)]
pub(crate) struct RawEntry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Bytes of data (0 for every type but regular files).
    pub size: u64,
    pub dev: (u32, u32),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Reads entries one after the other; an entry's data is read through
/// [`TarReader::data`] before the next call to [`TarReader::next`], which
/// skips whatever was left of it.
pub(crate) struct TarReader<R> {
    r: R,
    /// Data bytes of the current entry not yet read.
    left: u64,
    /// Padding after them.
    pad: u64,
}

/// The PAX records that matter here.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<u64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn malformed(what: impl Into<String>) -> LayerError {
    LayerError::TarFormat(what.into())
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(r: R) -> Self {
        TarReader { r, left: 0, pad: 0 }
    }

    /// The underlying reader, positioned after what was read.
    pub(crate) fn into_inner(self) -> R {
        self.r
    }

    /// The rest of the current entry's data.
    pub(crate) fn data(&mut self) -> Data<'_, R> {
        Data { t: self }
    }

    /// The next entry, or `None` at the end of the archive (a zero block,
    /// or the end of the stream at a header boundary).
    pub(crate) fn next(&mut self) -> Result<Option<RawEntry>, LayerError> {
        self.skip(self.left + self.pad)?;
        self.left = 0;
        self.pad = 0;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Pax> = None;
        loop {
            let mut block = [0u8; BLOCK as usize];
            if !self.read_block(&mut block)? {
                if long_name.is_some() || long_link.is_some() || pax.is_some() {
                    return Err(malformed("an extension header describes no entry"));
                }
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            if !checksum_ok(&block) {
                return Err(malformed("invalid header checksum"));
            }
            let h = tar::Header::from_byte_slice(&block);
            let size = number(&block[124..136]).ok_or_else(|| malformed("invalid size field"))?;
            match block[156] {
                b'x' => pax = Some(parse_pax(&self.extension(size)?)?),
                b'g' => self.skip(padded(size))?,
                b'L' => long_name = Some(trim_nul(self.extension(size)?)),
                b'K' => long_link = Some(trim_nul(self.extension(size)?)),
                b'S' => return Err(malformed("GNU sparse files are not supported")),
                flag => {
                    let pax = pax.unwrap_or_default();
                    let path = pax
                        .path
                        .or(long_name)
                        .unwrap_or_else(|| h.path_bytes().into_owned());
                    let link = pax
                        .link
                        .or(long_link)
                        .or_else(|| h.link_name_bytes().map(|l| l.into_owned()))
                        .unwrap_or_default();
                    let typeflag = match flag {
                        b'0' | 0 | b'7' if path.ends_with(b"/") => b'5',
                        b'0' | 0 | b'7' => b'0',
                        b'1'..=b'6' => flag,
                        _ => {
                            return Err(malformed(format!(
                                "unsupported entry type {:?}",
                                flag as char
                            )))
                        }
                    };
                    let field = |range: std::ops::Range<usize>, what: &str| {
                        number(&block[range])
                            .ok_or_else(|| malformed(format!("invalid {what} field")))
                    };
                    // Type bits some writers leave in the mode are dropped.
                    let mode = (field(100..108, "mode")? & 0o7777) as u32;
                    let uid = match pax.uid {
                        Some(u) => u,
                        None => field(108..116, "uid")?,
                    };
                    let gid = match pax.gid {
                        Some(g) => g,
                        None => field(116..124, "gid")?,
                    };
                    let mtime = match pax.mtime {
                        Some(m) => m,
                        None => field(136..148, "mtime")?,
                    };
                    let dev = if matches!(typeflag, b'3' | b'4') {
                        let major = field(329..337, "devmajor")?;
                        let minor = field(337..345, "devminor")?;
                        (major as u32, minor as u32)
                    } else {
                        (0, 0)
                    };
                    let size = pax.size.unwrap_or(size);
                    // Go's rule: only regular files have data, whatever
                    // the size field of another type says.
                    let data = if typeflag == b'0' { size } else { 0 };
                    self.left = data;
                    self.pad = padded(data) - data;
                    return Ok(Some(RawEntry {
                        path,
                        link,
                        typeflag,
                        mode,
                        uid,
                        gid,
                        mtime,
                        size: data,
                        dev,
                        xattrs: pax.xattrs,
                    }));
                }
            }
        }
    }

    /// Reads one block; `false` at a clean end of the stream.
    fn read_block(&mut self, block: &mut [u8]) -> Result<bool, LayerError> {
        let mut got = 0;
        while got < block.len() {
            match self.r.read(&mut block[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(LayerError::TarRead(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LayerError::TarRead(e)),
            }
        }
        Ok(true)
    }

    /// The data of an extension header, bounded, with its padding skipped.
    fn extension(&mut self, size: u64) -> Result<Vec<u8>, LayerError> {
        if size > MAX_EXTENSION {
            return Err(malformed(format!("an extension header of {size} bytes")));
        }
        let mut data = Vec::with_capacity(size as usize);
        (&mut self.r)
            .take(size)
            .read_to_end(&mut data)
            .map_err(LayerError::TarRead)?;
        if data.len() as u64 != size {
            return Err(LayerError::TarRead(io::ErrorKind::UnexpectedEof.into()));
        }
        self.skip(padded(size) - size)?;
        Ok(data)
    }

    fn skip(&mut self, n: u64) -> Result<(), LayerError> {
        let copied =
            io::copy(&mut (&mut self.r).take(n), &mut io::sink()).map_err(LayerError::TarRead)?;
        if copied != n {
            return Err(LayerError::TarRead(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }
}

/// The data of the current entry.
pub(crate) struct Data<'a, R> {
    t: &'a mut TarReader<R>,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.t.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = self.t.left.min(buf.len() as u64) as usize;
        let n = self.t.r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.t.left -= n as u64;
        Ok(n)
    }
}

/// Whether a 512-byte block is a tar header by its checksum (the unsigned
/// sum, or the signed one some old writers used, with the checksum field
/// counted as spaces).
pub(crate) fn checksum_ok(block: &[u8]) -> bool {
    if block.len() != BLOCK as usize || block.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: Vec<u8> = field
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | 0))
        .collect();
    let Some(want) = std::str::from_utf8(&text)
        .ok()
        .and_then(|s| i64::from_str_radix(s, 8).ok())
    else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as i64;
        signed += b as i8 as i64;
    }
    want == unsigned || want == signed
}

/// A numeric header field as Go's `archive/tar` reads it: octal, padded
/// with spaces or NULs (all padding is 0), or GNU base-256 when the high bit
/// of the first byte is set (a negative value, only meaningful for times
/// before 1970, is 0).
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Some(0);
        }
        let mut v: u64 = (field[0] & 0x3f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// PAX records by their length prefix (values may hold any byte).
fn parse_pax(data: &[u8]) -> Result<Pax, LayerError> {
    let bad = || malformed("malformed PAX record");
    let mut pax = Pax::default();
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let rec = &rest[sp + 1..len - 1];
        rest = &rest[len..];
        let eq = rec.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&rec[..eq], &rec[eq + 1..]);
        let number = |v: &[u8]| -> Result<u64, LayerError> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)
        };
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.link = Some(value.to_vec()),
            b"size" => pax.size = Some(number(value)?),
            b"uid" => pax.uid = Some(number(value)?),
            b"gid" => pax.gid = Some(number(value)?),
            b"mtime" => {
                // Seconds with an optional fraction; before 1970 is 0.
                let secs = value.split(|&b| b == b'.').next().unwrap_or_default();
                pax.mtime = Some(if secs.starts_with(b"-") {
                    0
                } else {
                    number(secs)?
                });
            }
            k if k.starts_with(b"GNU.sparse.") => {
                return Err(malformed("GNU sparse files are not supported"))
            }
            k => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    pax.xattrs.push((name.to_vec(), value.to_vec()));
                }
                // Anything else (atime, ctime, uname, gname, comments) is
                // what a reproducible layer leaves out.
            }
        }
    }
    Ok(pax)
}
