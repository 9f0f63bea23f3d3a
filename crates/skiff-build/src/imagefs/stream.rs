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
    use skiff_ext4::layer::{EntryKind as K, TarReader};
    let layer_err = |source| ImageFsError::Layer { layer: n, source };
    // skiff-ext4's reader, the one the root filesystems are built with: the
    // same entries, extensions and Go-compatible ends (a layer may stop right
    // after its last entry's data, as umoci writes them).
    let mut tar = TarReader::new(stream);
    while let Some(entry) = tar.next_entry().map_err(layer_err)? {
        *ordinal += 1;
        let kind = match entry.kind {
            K::File => RawKind::File,
            K::Dir => RawKind::Dir,
            K::Symlink => RawKind::Symlink,
            K::Hardlink => RawKind::Hardlink,
            K::CharDev => RawKind::Char,
            K::BlockDev => RawKind::Block,
            K::Fifo => RawKind::Fifo,
            // Unknown types carry no file.
            K::Other(_) => continue,
        };
        let link = (matches!(kind, RawKind::Symlink | RawKind::Hardlink)).then(|| {
            let l = String::from_utf8_lossy(&entry.link).into_owned();
            if kind == RawKind::Hardlink {
                normalize(&l)
            } else {
                l
            }
        });
        let raw = RawEntry {
            ordinal: *ordinal,
            layer: n as u32,
            path: normalize(&String::from_utf8_lossy(&entry.path)),
            kind,
            link,
            mode: u32::from(entry.meta.mode) & 0o7777,
            uid: entry.meta.uid,
            gid: entry.meta.gid,
            mtime: entry.meta.mtime.secs,
            size: entry.size,
            rdev: (entry.dev_major, entry.dev_minor),
        };
        let mut data = tar.data(&entry);
        f(&raw, &mut data)?;
    }
    Ok(())
}
