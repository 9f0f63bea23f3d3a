//! Extracting the ELF vmlinux from an x86 bzImage.
//!
//! `-M microvm` boots an ELF vmlinux through its PVH note; the bzImage that
//! distributions ship wraps that ELF, compressed, behind real-mode setup code.
//! The boot protocol header says where the compressed payload is
//! (`payload_offset`/`payload_length`, protocol 2.08+), and its first bytes
//! say how it is compressed. Decompressing here once at install time also
//! keeps TCG from emulating the kernel's own decompressor on every boot.

use std::io::Read;

/// LZ4 "legacy" frame magic (`lz4 -l`, what the kernel's Makefile uses).
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// Each legacy block decompresses to at most 8 MiB.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// A vmlinux bigger than this is not a kernel; stops a hostile payload from
/// exhausting memory.
const MAX_VMLINUX: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum BzImageError {
    #[error("not a bzImage (no \"HdrS\" boot header at 0x202) and not an ELF vmlinux")]
    NotBzImage,
    #[error(
        "bzImage boot protocol {0:#x} is older than 2.08 and does not say where its payload is"
    )]
    OldProtocol(u16),
    #[error("bzImage payload lies outside the file (truncated download?)")]
    Truncated,
    #[error("bzImage payload is compressed with {0}, which skiff cannot decompress; use a kernel built with CONFIG_KERNEL_LZ4, _GZIP or _ZSTD, or give an uncompressed vmlinux")]
    Unsupported(&'static str),
    #[error("bzImage payload is corrupt: {0}")]
    Corrupt(String),
}

/// Returns the vmlinux ELF inside `image` (a bzImage), or `image` itself when
/// it already is an ELF file.
pub fn extract_vmlinux(image: &[u8]) -> Result<Vec<u8>, BzImageError> {
    if image.starts_with(b"\x7fELF") {
        return Ok(image.to_vec());
    }
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Err(BzImageError::NotBzImage);
    }
    let version = match image.get(0x206..0x208) {
        Some(v) => u16::from_le_bytes([v[0], v[1]]),
        None => return Err(BzImageError::Truncated),
    };
    if version < 0x208 {
        return Err(BzImageError::OldProtocol(version));
    }
    let u32_at = |off: usize| -> Result<usize, BzImageError> {
        let b = image.get(off..off + 4).ok_or(BzImageError::Truncated)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    // setup_sects == 0 means 4, for historical reasons.
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248)?;
    let len = u32_at(0x24c)?;
    let payload = image
        .get(start..start.checked_add(len).ok_or(BzImageError::Truncated)?)
        .ok_or(BzImageError::Truncated)?;
    decompress(payload)
}

fn decompress(p: &[u8]) -> Result<Vec<u8>, BzImageError> {
    if p.len() >= 4 && u32::from_le_bytes([p[0], p[1], p[2], p[3]]) == LZ4_LEGACY_MAGIC {
        return lz4_legacy(p);
    }
    if p.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(p)
            .take(MAX_VMLINUX as u64)
            .read_to_end(&mut out)
            .map_err(|e| BzImageError::Corrupt(format!("gzip: {e}")))?;
        return Ok(out);
    }
    if p.starts_with(&ZSTD_MAGIC) {
        // The kernel appends the decompressed size after the frame: read one
        // frame only.
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(p)
            .map_err(|e| BzImageError::Corrupt(format!("zstd: {e}")))?
            .single_frame()
            .take(MAX_VMLINUX as u64)
            .read_to_end(&mut out)
            .map_err(|e| BzImageError::Corrupt(format!("zstd: {e}")))?;
        return Ok(out);
    }
    Err(BzImageError::Unsupported(match p {
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [0x5d, 0, 0, ..] => "lzma",
        [b'B', b'Z', b'h', ..] => "bzip2",
        [0x89, b'L', b'Z', b'O', ..] => "lzo",
        _ => "an unknown method",
    }))
}

/// LZ4 legacy frame: the magic, then blocks of `[u32 LE compressed size][block]`.
/// The kernel's build appends the decompressed size (4 bytes) after the last
/// block, so fewer than 4 bytes left, or a "block" that would run past the end,
/// ends the stream; the magic again starts a concatenated frame.
pub fn lz4_legacy(p: &[u8]) -> Result<Vec<u8>, BzImageError> {
    let mut pos = 4;
    let mut out: Vec<u8> = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    while let Some(b) = p.get(pos..pos + 4) {
        let size = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if size == LZ4_LEGACY_MAGIC {
            pos += 4;
            continue;
        }
        let size = size as usize;
        let Some(data) = p.get(pos + 4..pos + 4 + size) else {
            if out.is_empty() {
                return Err(BzImageError::Corrupt(
                    "lz4: first block runs past the end".into(),
                ));
            }
            break; // the appended size trailer
        };
        let n = lz4_flex::block::decompress_into(data, &mut block)
            .map_err(|e| BzImageError::Corrupt(format!("lz4 block at byte {pos}: {e}")))?;
        if out.len() + n > MAX_VMLINUX {
            return Err(BzImageError::Corrupt(
                "lz4: decompresses to more than 1 GiB".into(),
            ));
        }
        out.extend_from_slice(&block[..n]);
        pos += 4 + size;
    }
    if out.is_empty() {
        return Err(BzImageError::Corrupt("lz4: no blocks".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lz4_frame(data: &[u8], block: usize) -> Vec<u8> {
        let mut f = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(block) {
            let c = lz4_flex::block::compress(chunk);
            f.extend_from_slice(&(c.len() as u32).to_le_bytes());
            f.extend_from_slice(&c);
        }
        // The kernel's size_append trailer.
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        f
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x1234_5678u32;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 7 == 0 {
                    (x >> 24) as u8
                } else {
                    b"vmlinux text "[i % 13]
                }
            })
            .collect()
    }

    #[test]
    fn lz4_legacy_multi_block_with_trailer() {
        let data = sample(LZ4_LEGACY_BLOCK + 12345);
        let frame = lz4_frame(&data, LZ4_LEGACY_BLOCK);
        assert_eq!(lz4_legacy(&frame).unwrap(), data);
    }

    #[test]
    fn lz4_legacy_concatenated_frames() {
        let (a, b) = (sample(1000), sample(3000));
        let mut f = lz4_frame(&a, 512);
        f.truncate(f.len() - 4);
        f.extend_from_slice(&lz4_frame(&b, 512));
        assert_eq!(lz4_legacy(&f).unwrap(), [a, b].concat());
    }

    #[test]
    fn lz4_legacy_corrupt_blocks_are_errors() {
        let err = |f: &[u8]| lz4_legacy(f).unwrap_err().to_string();
        // A block that copies from before the start of the output.
        let mut f = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        f.extend_from_slice(&3u32.to_le_bytes());
        f.extend_from_slice(&[0x00, 0xff, 0xff]);
        f.extend_from_slice(&100u32.to_le_bytes());
        assert!(
            err(&f).starts_with("bzImage payload is corrupt: lz4 block at byte 4: "),
            "{}",
            err(&f)
        );
        // A first block longer than what follows.
        let mut f = lz4_frame(&sample(5000), 4096);
        let past_the_end = f.len() as u32;
        f[4..8].copy_from_slice(&past_the_end.to_le_bytes());
        assert_eq!(
            err(&f),
            "bzImage payload is corrupt: lz4: first block runs past the end"
        );
        // The magic and nothing else.
        assert_eq!(
            err(&LZ4_LEGACY_MAGIC.to_le_bytes()),
            "bzImage payload is corrupt: lz4: no blocks"
        );
    }

    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 2u8;
        let mut img = vec![0u8; (usize::from(setup_sects) + 1) * 512];
        img[0x1f1] = setup_sects;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        let payload_offset = 100u32;
        img[0x248..0x24c].copy_from_slice(&payload_offset.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.resize(img.len() + payload_offset as usize, 0xcc);
        img.extend_from_slice(payload);
        img.extend_from_slice(b"tail");
        img
    }

    #[test]
    fn extracts_each_supported_payload() {
        let elf = [b"\x7fELF".as_slice(), &sample(20000)].concat();
        let lz4 = lz4_frame(&elf, 4096);
        assert_eq!(extract_vmlinux(&bzimage(&lz4)).unwrap(), elf);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &elf).unwrap();
        let mut gz = gz.finish().unwrap();
        gz.extend_from_slice(&(elf.len() as u32).to_le_bytes());
        assert_eq!(extract_vmlinux(&bzimage(&gz)).unwrap(), elf);

        let mut zst = zstd::encode_all(&elf[..], 3).unwrap();
        zst.extend_from_slice(&(elf.len() as u32).to_le_bytes());
        assert_eq!(extract_vmlinux(&bzimage(&zst)).unwrap(), elf);

        // An ELF is returned as is.
        assert_eq!(extract_vmlinux(&elf).unwrap(), elf);
    }

    #[test]
    fn unsupported_and_broken_images_say_why() {
        let xz = bzimage(b"\xfd7zXZ\0rest");
        assert!(matches!(
            extract_vmlinux(&xz),
            Err(BzImageError::Unsupported("xz"))
        ));
        assert!(matches!(
            extract_vmlinux(b"hello"),
            Err(BzImageError::NotBzImage)
        ));
        let mut cut = bzimage(&lz4_frame(&sample(100), 64));
        cut.truncate(1700);
        assert!(matches!(
            extract_vmlinux(&cut),
            Err(BzImageError::Truncated)
        ));
    }
}
