//! The data-block allocator and the sink that streams file contents into the
//! image as layers are read. Blocks of deleted files are reused for later files
//! that fit; all-zero blocks become holes.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::types::{DataSink, Extent, FileData, BLOCK_SIZE};

/// ext4's longest initialized extent.
pub const MAX_EXTENT_LEN: u32 = 32768;
const BS: usize = BLOCK_SIZE as usize;
/// Contiguous writes are gathered up to this size before they hit the output.
const WRITE_BUFFER: usize = 4 << 20;
/// Runs at least this long skip the gathering buffer.
const DIRECT_WRITE: usize = 256 << 10;
/// Input is read in chunks of this size (a multiple of the block size).
const READ_CHUNK: usize = 1 << 20;

/// Streams file data into `out`, starting at block `first_block`.
pub struct ImageSink<'w, W: Write + Seek> {
    out: &'w mut W,
    /// First never-used block.
    next: u32,
    /// Freed runs (start, len), reused for files that fit in one.
    free: Vec<(u32, u32)>,
    /// Pending contiguous write: bytes for blocks from `pending_start`.
    pending: Vec<u8>,
    pending_start: u32,
    read_buf: Vec<u8>,
    /// Bytes of file content written (holes included), for statistics.
    pub bytes_in: u64,
}

impl<'w, W: Write + Seek> ImageSink<'w, W> {
    pub fn new(out: &'w mut W, first_block: u32) -> Self {
        Self {
            out,
            next: first_block,
            free: Vec::new(),
            pending: Vec::with_capacity(WRITE_BUFFER),
            pending_start: 0,
            read_buf: vec![0; READ_CHUNK],
            bytes_in: 0,
        }
    }

    /// The first block after everything allocated so far.
    pub fn end(&self) -> u32 {
        self.next
    }

    /// Writes one block at `phys`, gathering contiguous blocks.
    fn put_block(&mut self, phys: u32, data: &[u8]) -> io::Result<()> {
        let contiguous = !self.pending.is_empty()
            && self.pending_start as u64 + (self.pending.len() / BS) as u64 == phys as u64;
        if !contiguous || self.pending.len() + BS > WRITE_BUFFER {
            self.flush()?;
            self.pending_start = phys;
        }
        self.pending.extend_from_slice(data);
        if data.len() < BS {
            self.pending.resize(self.pending.len() + BS - data.len(), 0);
        }
        Ok(())
    }

    /// Writes consecutive blocks from `phys`: large full-block runs go straight
    /// to the output (no copy), the rest through the gathering buffer.
    fn put_run(&mut self, phys: u32, data: &[u8]) -> io::Result<()> {
        let full = data.len() / BS * BS;
        if full >= DIRECT_WRITE {
            self.flush()?;
            self.out.seek(SeekFrom::Start(phys as u64 * BLOCK_SIZE))?;
            self.out.write_all(&data[..full])?;
            if full < data.len() {
                self.put_block(phys + (full / BS) as u32, &data[full..])?;
            }
            return Ok(());
        }
        for (k, block) in data.chunks(BS).enumerate() {
            self.put_block(phys + k as u32, block)?;
        }
        Ok(())
    }

    /// Writes out pending data.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.out
            .seek(SeekFrom::Start(self.pending_start as u64 * BLOCK_SIZE))?;
        self.out.write_all(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    /// Claims a region for a file of `blocks` blocks: a freed run that holds it
    /// whole, else the end. Returns (start, limit).
    fn region(&mut self, blocks: u64) -> io::Result<(u32, u64)> {
        if blocks > 0 {
            if let Some(i) = self.free.iter().position(|&(_, len)| len as u64 >= blocks) {
                let (start, len) = self.free.swap_remove(i);
                return Ok((start, start as u64 + len as u64));
            }
        }
        if self.next as u64 + blocks >= u32::MAX as u64 {
            return Err(io::Error::other("image would exceed 2^32 blocks (16 TiB)"));
        }
        Ok((self.next, u64::MAX))
    }
}

fn is_zero(b: &[u8]) -> bool {
    // OR-folding 64-byte chunks vectorizes; an early exit per chunk keeps
    // data blocks (the common case) cheap.
    b.chunks(64).all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0)
}

impl<W: Write + Seek> DataSink for ImageSink<'_, W> {
    fn write_data(&mut self, r: &mut dyn Read, size: u64) -> io::Result<FileData> {
        let blocks = size.div_ceil(BLOCK_SIZE);
        let (start, limit) = self.region(blocks)?;
        let from_free = limit != u64::MAX;
        let mut pos = start as u64;
        let mut extents: Vec<Extent> = Vec::new();
        let mut logical: u64 = 0;
        let mut remaining = size;
        let mut buf = std::mem::take(&mut self.read_buf);
        let result = (|| -> io::Result<()> {
            while remaining > 0 {
                let want = (remaining.min(READ_CHUNK as u64)) as usize;
                r.read_exact(&mut buf[..want])?;
                remaining -= want as u64;
                let chunk = &buf[..want];
                let mut i = 0;
                while i < chunk.len() {
                    // A run of non-zero blocks goes to consecutive physical blocks.
                    let run_start = i;
                    while i < chunk.len() && !is_zero(&chunk[i..(i + BS).min(chunk.len())]) {
                        i += BS;
                    }
                    let run = &chunk[run_start..i.min(chunk.len())];
                    if run.is_empty() {
                        // A hole block.
                        i += BS;
                        logical += 1;
                        continue;
                    }
                    let nblocks = run.len().div_ceil(BS) as u64;
                    let phys = pos as u32;
                    pos += nblocks;
                    self.put_run(phys, run)?;
                    for k in 0..nblocks {
                        let (l, p) = (logical + k, phys as u64 + k);
                        match extents.last_mut() {
                            Some(e)
                                if e.logical as u64 + e.len as u64 == l
                                    && e.physical as u64 + e.len as u64 == p
                                    && e.len < MAX_EXTENT_LEN =>
                            {
                                e.len += 1
                            }
                            _ => extents.push(Extent {
                                logical: l as u32,
                                physical: p as u32,
                                len: 1,
                            }),
                        }
                    }
                    logical += nblocks;
                }
            }
            Ok(())
        })();
        self.read_buf = buf;
        if from_free {
            // Give back what the file did not use (holes, or a bigger run).
            if (pos) < limit {
                self.free.push((pos as u32, (limit - pos) as u32));
            }
        } else {
            self.next = pos as u32;
        }
        match result {
            Ok(()) => {
                self.bytes_in += size;
                Ok(FileData { size, extents })
            }
            Err(e) => {
                // A truncated entry: its blocks are not part of any file.
                for x in &extents {
                    self.free.push((x.physical, x.len));
                }
                Err(e)
            }
        }
    }

    fn free(&mut self, data: &FileData) {
        for e in &data.extents {
            self.free.push((e.physical, e.len));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn zero_blocks_are_holes_and_runs_merge() {
        let mut out = Cursor::new(Vec::new());
        let mut s = ImageSink::new(&mut out, 10);
        let mut data = vec![1u8; 3 * BS];
        data[BS..2 * BS].fill(0);
        data.extend_from_slice(&[2u8; 100]);
        let fd = s.write_data(&mut &data[..], data.len() as u64).unwrap();
        assert_eq!(
            fd.extents,
            vec![
                Extent {
                    logical: 0,
                    physical: 10,
                    len: 1
                },
                Extent {
                    logical: 2,
                    physical: 11,
                    len: 2
                }
            ]
        );
        s.flush().unwrap();
        let img = out.into_inner();
        assert_eq!(&img[11 * BS..11 * BS + 4], &[1, 1, 1, 1]);
        assert_eq!(&img[12 * BS..12 * BS + 100], &[2u8; 100][..]);
        assert!(img[12 * BS + 100..13 * BS].iter().all(|&b| b == 0));
    }

    #[test]
    fn freed_runs_are_reused_and_truncation_is_an_error() {
        let mut out = Cursor::new(Vec::new());
        let mut s = ImageSink::new(&mut out, 0);
        let a = s
            .write_data(&mut &[7u8; 4 * BS][..], 4 * BS as u64)
            .unwrap();
        s.free(&a);
        let b = s
            .write_data(&mut &[8u8; 2 * BS][..], 2 * BS as u64)
            .unwrap();
        assert_eq!(b.extents[0].physical, 0, "freed run reused");
        let c = s
            .write_data(&mut &[9u8; 3 * BS][..], 3 * BS as u64)
            .unwrap();
        assert_eq!(
            c.extents[0].physical, 4,
            "too big for the rest of the run: goes to the end"
        );
        assert!(s.write_data(&mut &[1u8; 10][..], 20).is_err());
        assert_eq!(s.end(), 7);
    }
}
