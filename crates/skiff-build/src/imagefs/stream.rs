//! The entries of an image's layers, in order, as one stream: each layer
//! decompressed (skiff-ext4's detection), read as tar, its entries
//! normalized and numbered across layers. Loading the tree and `extract`'s
//! second read number the same entries the same way, which is how
//! `extract` finds a file's bytes again.

use std::io::Read;

use super::{normalize, ImageFsError};

/// The type of a tar entry, after normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// One tar entry's header, normalized.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    /// Position over all layers' entries (from 1).
    pub ordinal: u64,
    /// 1-based layer.
    pub layer: u32,
    /// Normalized absolute path.
    pub path: String,
    pub kind: RawKind,
    /// Symlink target as written; hard link target normalized.
    pub link: Option<String>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub rdev: (u32, u32),
}

fn kind_of(t: tar::EntryType) -> Option<RawKind> {
    use tar::EntryType as T;
    Some(match t {
        T::Regular | T::Continuous | T::GNUSparse => RawKind::File,
        T::Directory => RawKind::Dir,
        T::Symlink => RawKind::Symlink,
        T::Link => RawKind::Hardlink,
        T::Char => RawKind::Char,
        T::Block => RawKind::Block,
        T::Fifo => RawKind::Fifo,
        // Global PAX headers and unknown types carry no file.
        _ => return None,
    })
}

/// One layer's (compressed) bytes. A `Threaded` one is decompressed on a
/// thread of its own while the caller reads tar entries: on two cores that
/// takes the tar and ELF work off gzip's critical path.
pub(crate) enum Layer<'a> {
    /// Decompressed on the calling thread.
    Here(Box<dyn Read + 'a>),
    /// Decompressed on a scoped thread.
    Threaded(Box<dyn Read + Send + 'a>),
}

/// Layers read on the calling thread.
pub(crate) fn here<'a>(layers: Vec<Box<dyn Read + 'a>>) -> Vec<Layer<'a>> {
    layers.into_iter().map(Layer::Here).collect()
}

/// Decompressed bytes per message from the decompressing thread.
const CHUNK: usize = 256 << 10;
/// Chunks decompressed ahead of the reader, at most.
const QUEUE: usize = 4;

enum Msg {
    /// A buffer and how much of it holds data.
    Data(Vec<u8>, usize),
    Fail(std::io::Error),
}

/// The reading end of a decompressing thread. Spent buffers go back to the
/// thread: fresh ones would cost a page fault per 4 KiB.
struct Piped {
    rx: std::sync::mpsc::Receiver<Msg>,
    back: std::sync::mpsc::SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
}

impl Read for Piped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.len {
            match self.rx.recv() {
                Ok(Msg::Data(d, len)) => {
                    let spent = std::mem::replace(&mut self.cur, d);
                    (self.len, self.pos) = (len, 0);
                    if spent.len() == CHUNK {
                        let _ = self.back.try_send(spent);
                    }
                }
                Ok(Msg::Fail(e)) => return Err(e),
                // The thread is done: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Calls `f` with each entry of each layer and its unread data.
pub(crate) fn for_each_entry(
    layers: Vec<Layer<'_>>,
    f: &mut dyn FnMut(&RawEntry, &mut dyn Read) -> Result<(), ImageFsError>,
) -> Result<(), ImageFsError> {
    let mut ordinal = 0u64;
    for (i, layer) in layers.into_iter().enumerate() {
        let n = i + 1;
        let layer_err = |source| ImageFsError::Layer { layer: n, source };
        match layer {
            Layer::Here(r) => {
                let (_, stream) = skiff_ext4::layer::decompress(r).map_err(layer_err)?;
                entries(n, stream, &mut ordinal, f)?;
            }
            Layer::Threaded(r) => std::thread::scope(|s| {
                let (start_tx, start_rx) = std::sync::mpsc::sync_channel(1);
                let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(QUEUE);
                let (back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE + 2);
                s.spawn(move || {
                    let mut stream = match skiff_ext4::layer::decompress(r) {
                        Ok((_, s)) => s,
                        Err(e) => return drop(start_tx.send(Err(e))),
                    };
                    let _ = start_tx.send(Ok(()));
                    loop {
                        let mut chunk = spare.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
                        let mut len = 0;
                        while len < CHUNK {
                            match stream.read(&mut chunk[len..]) {
                                Ok(0) => break,
                                Ok(k) => len += k,
                                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                                Err(e) => return drop(tx.send(Msg::Fail(e))),
                            }
                        }
                        // A closed channel: the reader stopped (an error); so do we.
                        if len == 0 || tx.send(Msg::Data(chunk, len)).is_err() {
                            return;
                        }
                    }
                });
                match start_rx.recv() {
                    Ok(Err(e)) => return Err(layer_err(e)),
                    Ok(Ok(())) => {}
                    Err(_) => {
                        let e = std::io::Error::other("the decompressing thread stopped");
                        return Err(ImageFsError::Read {
                            layer: n,
                            source: e,
                        });
                    }
                }
                let piped = Piped {
                    rx,
                    back,
                    cur: Vec::new(),
                    len: 0,
                    pos: 0,
                };
                entries(n, piped, &mut ordinal, f)
            })?,
        }
    }
    Ok(())
}

fn entries(
    n: usize,
    stream: impl Read,
    ordinal: &mut u64,
    f: &mut dyn FnMut(&RawEntry, &mut dyn Read) -> Result<(), ImageFsError>,
) -> Result<(), ImageFsError> {
    let read = |source: std::io::Error| ImageFsError::Read { layer: n, source };
    let mut archive = tar::Archive::new(EndPadded::new(stream));
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        *ordinal += 1;
        let h = entry.header();
        let Some(kind) = kind_of(h.entry_type()) else {
            continue;
        };
        // An empty or unparsable field reads as 0, as Go's archive/tar
        // (docker's reader) has it; only a value too large is refused.
        let num = |v: std::io::Result<u64>| -> Result<u32, ImageFsError> {
            u32::try_from(v.unwrap_or(0)).map_err(|_| {
                read(std::io::Error::other(
                    "uid or gid out of range in tar header",
                ))
            })
        };
        let raw = RawEntry {
            ordinal: *ordinal,
            layer: n as u32,
            path: normalize(&String::from_utf8_lossy(&entry.path_bytes())),
            kind,
            link: entry.link_name_bytes().map(|l| {
                let l = String::from_utf8_lossy(&l).into_owned();
                if kind == RawKind::Hardlink {
                    normalize(&l)
                } else {
                    l
                }
            }),
            mode: h.mode().unwrap_or(0) & 0o7777,
            uid: num(h.uid())?,
            gid: num(h.gid())?,
            mtime: h
                .mtime()
                .ok()
                .and_then(|t| i64::try_from(t).ok())
                .unwrap_or(0),
            size: entry.size(),
            rdev: (
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            ),
        };
        f(&raw, &mut entry)?;
    }
    Ok(())
}

/// A layer stream that may end right after its last entry's data, with no
/// padding or end-of-archive marker (umoci writes such layers; Go's reader,
/// and so docker's and skiff-ext4's, accept them): at its end, zeros up to
/// the next block and two zero blocks, which the `tar` crate needs to end
/// cleanly. The blobs were verified against their digests already: this
/// reads what the registry has, no more.
struct EndPadded<R> {
    inner: R,
    pos: u64,
    /// Zeros still to give after the inner stream ended.
    zeros: Option<u64>,
}

impl<R: Read> EndPadded<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            pos: 0,
            zeros: None,
        }
    }
}

impl<R: Read> Read for EndPadded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = match self.zeros {
            Some(ref mut left) => left,
            None => {
                let n = self.inner.read(buf)?;
                if n > 0 || buf.is_empty() {
                    self.pos += n as u64;
                    return Ok(n);
                }
                self.zeros.insert((512 - self.pos % 512) % 512 + 1024)
            }
        };
        let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        *left -= n as u64;
        Ok(n)
    }
}
