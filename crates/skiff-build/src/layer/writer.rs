//! [`LayerWriter`]: tar → compression → output, hashing both sides as the
//! bytes pass.

use std::io::{self, Read, Write};

use flate2::write::GzEncoder;
use flate2::GzBuilder;
use sha2::{Digest as _, Sha256};
use skiff_oci::Digest;

use super::tarread::TarReader;
use super::{Compression, EntryKind, EntryMeta, LayerDigests, LayerError};

/// gzip's fastest level by default: on a 172 MB tree of real files it
/// writes 2.5× faster than level 6 (Go's `gzip.DefaultCompression`, which
/// docker and BuildKit use) for a layer 28% larger (benches/build.sh);
/// `--compression-level 6` gives docker's size, zstd gives both.
pub const DEFAULT_GZIP_LEVEL: u32 = 1;
/// BuildKit's zstd default (`zstd.SpeedDefault`, libzstd level 3).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Copy buffer: large enough that hashing and compression run on big
/// chunks, small enough to keep per-layer memory trivial.
const COPY_BUF: usize = 256 << 10;
const BLOCK: u64 = 512;
/// ustar's `name` and `linkname` fields; longer ones go in PAX records.
const NAME_FIELD: usize = 100;

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compression stage. An uncompressed layer is hashed once: its digest
/// is its diff_id.
enum Encoder<W: Write> {
    Gzip(GzEncoder<Hashing<W>>),
    Zstd(zstd::stream::write::Encoder<'static, Hashing<W>>),
    Plain(W),
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}

/// One header as it goes into the tar: the path relative to the image root
/// (directories with a trailing `/`), the ustar type flag, the link target,
/// and the rest of the fields. Anything too long for ustar becomes a PAX
/// record.
pub(crate) struct Raw<'a> {
    pub path: &'a [u8],
    pub typeflag: u8,
    pub link: &'a [u8],
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub dev: (u32, u32),
    /// Extended attributes (name without the `SCHILY.xattr.` prefix).
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Why an entry's data could not be copied; the caller knows what was read.
pub(crate) enum DataError {
    Read(io::Error),
    /// The source ended before the size in the header.
    Short,
    Write(io::Error),
}

/// A layer being written: tar → compression → `out`, hashing the
/// uncompressed tar (diff_id) and the compressed bytes (digest) as it
/// streams. Entries are written in the order given; nothing is buffered
/// beyond one copy buffer and the compressor's window.
pub struct LayerWriter<W: Write> {
    tar: Hashing<Encoder<W>>,
    compression: Compression,
    epoch: Option<u64>,
    buf: Vec<u8>,
    entries: u64,
}

impl<W: Write> LayerWriter<W> {
    /// Starts a layer. `epoch` is `SOURCE_DATE_EPOCH`: when set, every mtime
    /// above it is clamped to it, and since the gzip header carries mtime 0
    /// and OS 255 and the levels are fixed, the same entries always give
    /// the same bytes.
    pub fn new(out: W, compression: Compression, epoch: Option<u64>) -> Result<Self, LayerError> {
        Self::with_level(out, compression, None, epoch)
    }

    /// [`LayerWriter::new`] at a compression level of the caller's (gzip
    /// 1–9, zstd 1–19); `None`: the defaults above.
    pub fn with_level(
        out: W,
        compression: Compression,
        level: Option<i32>,
        epoch: Option<u64>,
    ) -> Result<Self, LayerError> {
        let gzip_level = level.map_or(DEFAULT_GZIP_LEVEL, |l| l.clamp(1, 9) as u32);
        let zstd_level = level.map_or(DEFAULT_ZSTD_LEVEL, |l| l.clamp(1, 19));
        let enc = match compression {
            Compression::Gzip => Encoder::Gzip(
                GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(Hashing::new(out), flate2::Compression::new(gzip_level)),
            ),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(Hashing::new(out), zstd_level)
                    .map_err(LayerError::Write)?;
                // A frame checksum, as BuildKit's encoder writes one.
                e.include_checksum(true).map_err(LayerError::Write)?;
                Encoder::Zstd(e)
            }
            Compression::Uncompressed => Encoder::Plain(out),
        };
        Ok(LayerWriter {
            tar: Hashing::new(enc),
            compression,
            epoch,
            buf: vec![0; COPY_BUF],
            entries: 0,
        })
    }

    /// Entries written so far (PAX records not counted).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The `SOURCE_DATE_EPOCH` this layer clamps to.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Writes one entry. `path` is absolute in the image (`/app/bin/x`) and
    /// is stored as `app/bin/x` (directories as `app/bin/`); a file's
    /// content is read from `data`, exactly `size` bytes of it.
    pub fn append(&mut self, e: &EntryMeta, data: Option<&mut dyn Read>) -> Result<(), LayerError> {
        let bad = |reason| LayerError::BadAppend {
            path: e.path.clone(),
            reason,
        };
        let mut path = image_rel(e.path.as_bytes()).ok_or_else(|| bad("has a '..' component"))?;
        if path.is_empty() {
            return Err(bad("is the image root, which a layer does not hold"));
        }
        let (typeflag, link, size) = match &e.kind {
            EntryKind::File { size } => (b'0', Vec::new(), *size),
            EntryKind::Dir => {
                path.push(b'/');
                (b'5', Vec::new(), 0)
            }
            EntryKind::Symlink(t) => (b'2', t.as_bytes().to_vec(), 0),
            EntryKind::Hardlink(t) => match image_rel(t.as_bytes()) {
                Some(t) if !t.is_empty() => (b'1', t, 0),
                _ => return Err(bad("is a hard link to no path of the layer")),
            },
        };
        self.header(&Raw {
            path: &path,
            typeflag,
            link: &link,
            mode: e.mode,
            uid: e.uid.into(),
            gid: e.gid.into(),
            mtime: e.mtime,
            size,
            dev: (0, 0),
            xattrs: &[],
        })?;
        if typeflag == b'0' {
            let data = data.ok_or_else(|| bad("is a file but no data was given"))?;
            self.data(data, size).map_err(|err| match err {
                DataError::Read(source) => LayerError::Read {
                    path: e.path.clone().into(),
                    source,
                },
                DataError::Short => LayerError::Changed {
                    path: e.path.clone().into(),
                },
                DataError::Write(err) => LayerError::Write(err),
            })?;
        }
        Ok(())
    }

    /// Re-emits every entry of an uncompressed tar (a RUN step's changes,
    /// whiteouts included), clamping mtimes to the epoch. Absolute names
    /// are made relative; a name or hard-link target with a `..` component
    /// is refused; the root entry is dropped (the base image's stays); PAX
    /// xattrs are kept, names and times of owners are not. The rest of the
    /// stream after the end marker is read and discarded, so that a writer
    /// on the other end of a pipe is never left blocked. Returns how many
    /// entries were written.
    pub fn append_tar(&mut self, r: impl Read) -> Result<u64, LayerError> {
        let mut tr = TarReader::new(io::BufReader::with_capacity(COPY_BUF, r));
        let mut n = 0;
        while let Some(e) = tr.next()? {
            let bad = |reason| LayerError::BadEntry {
                path: String::from_utf8_lossy(&e.path).into_owned(),
                reason,
            };
            let mut path = image_rel(&e.path).ok_or_else(|| bad("has a '..' component"))?;
            if path.is_empty() {
                continue;
            }
            let link = match e.typeflag {
                b'1' => match image_rel(&e.link) {
                    Some(l) if !l.is_empty() => l,
                    Some(_) => return Err(bad("is a hard link to the root")),
                    None => return Err(bad("is a hard link to a path with a '..' component")),
                },
                b'2' => e.link.clone(),
                _ => Vec::new(),
            };
            if e.typeflag == b'5' {
                path.push(b'/');
            }
            let size = if e.typeflag == b'0' { e.size } else { 0 };
            self.header(&Raw {
                path: &path,
                typeflag: e.typeflag,
                link: &link,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                mtime: e.mtime,
                size,
                dev: e.dev,
                xattrs: &e.xattrs,
            })?;
            self.data(&mut tr.data(), size).map_err(|err| match err {
                DataError::Read(err) => LayerError::TarRead(err),
                DataError::Short => LayerError::TarRead(io::ErrorKind::UnexpectedEof.into()),
                DataError::Write(err) => LayerError::Write(err),
            })?;
            n += 1;
        }
        io::copy(&mut tr.into_inner(), &mut io::sink()).map_err(LayerError::TarRead)?;
        Ok(n)
    }

    /// Ends the tar (two zero blocks), flushes the compressor and returns
    /// the output with the layer's digests.
    pub fn finish(mut self) -> Result<(W, LayerDigests), LayerError> {
        self.tar
            .write_all(&[0u8; 2 * BLOCK as usize])
            .map_err(LayerError::Write)?;
        let Hashing {
            inner,
            hasher,
            count,
        } = self.tar;
        let diff_id = Digest::from_hasher(hasher);
        let (mut out, digest, size) = match inner {
            Encoder::Gzip(e) => {
                let h = e.finish().map_err(LayerError::Write)?;
                (h.inner, Digest::from_hasher(h.hasher), h.count)
            }
            Encoder::Zstd(e) => {
                let h = e.finish().map_err(LayerError::Write)?;
                (h.inner, Digest::from_hasher(h.hasher), h.count)
            }
            Encoder::Plain(w) => (w, diff_id.clone(), count),
        };
        out.flush().map_err(LayerError::Write)?;
        Ok((
            out,
            LayerDigests {
                diff_id,
                digest,
                size,
                media_type: self.compression.media_type(),
            },
        ))
    }

    /// Writes a header (and the PAX header in front of it when needed).
    pub(crate) fn header(&mut self, r: &Raw<'_>) -> Result<(), LayerError> {
        let mtime = match self.epoch {
            Some(e) if r.mtime > e => e,
            _ => r.mtime,
        };
        let mut pax = Vec::new();
        if r.path.len() > NAME_FIELD {
            pax_record(&mut pax, b"path", r.path);
        }
        if r.link.len() > NAME_FIELD {
            pax_record(&mut pax, b"linkpath", r.link);
        }
        for (k, v) in r.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax_record(&mut pax, &key, v);
        }
        if !pax.is_empty() {
            // Fixed fields: the PAX header must not carry the time either.
            let mut h = tar::Header::new_ustar();
            set_field(&mut h.as_old_mut().name, b"././@PaxHeader");
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(pax.len() as u64);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_cksum();
            self.put(h.as_bytes())?;
            self.put(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let mut h = tar::Header::new_ustar();
        set_field(&mut h.as_old_mut().name, r.path);
        set_field(&mut h.as_old_mut().linkname, r.link);
        h.set_mode(r.mode & 0o7777);
        h.set_uid(r.uid);
        h.set_gid(r.gid);
        h.set_mtime(mtime);
        h.set_size(r.size);
        h.set_entry_type(tar::EntryType::new(r.typeflag));
        if matches!(r.typeflag, b'3' | b'4') {
            h.set_device_major(r.dev.0).map_err(LayerError::Write)?;
            h.set_device_minor(r.dev.1).map_err(LayerError::Write)?;
        }
        h.set_cksum();
        self.put(h.as_bytes())?;
        self.entries += 1;
        Ok(())
    }

    /// Copies exactly `size` bytes of an entry's data and pads the block.
    pub(crate) fn data(&mut self, r: &mut dyn Read, size: u64) -> Result<(), DataError> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match r.read(&mut self.buf[..want]) {
                Ok(0) => return Err(DataError::Short),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(DataError::Read(e)),
            };
            self.tar
                .write_all(&self.buf[..n])
                .map_err(DataError::Write)?;
            left -= n as u64;
        }
        self.pad(size).map_err(|e| match e {
            LayerError::Write(e) => DataError::Write(e),
            _ => DataError::Short,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), LayerError> {
        self.tar.write_all(bytes).map_err(LayerError::Write)
    }

    fn pad(&mut self, len: u64) -> Result<(), LayerError> {
        let rem = (len % BLOCK) as usize;
        if rem != 0 {
            self.put(&[0u8; BLOCK as usize][..BLOCK as usize - rem])?;
        }
        Ok(())
    }
}

/// A path as stored in the layer: relative to the image root, `.` and
/// empty components dropped. `None` when it has a `..` component.
pub(crate) fn image_rel(path: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(path.len());
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Some(out)
}

/// Fills a NUL-padded header field with as much of `value` as fits (a long
/// value also has its PAX record).
fn set_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    field[n..].fill(0);
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `len` counts itself.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}
