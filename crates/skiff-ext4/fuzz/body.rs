//! The fuzz body, shared by the cargo-fuzz target (`fuzz_targets/tar_layer.rs`)
//! and the stable fallback (`tests/fuzz_fallback.rs`).
//!
//! Input: one flag byte, then the layer bytes.
//! * bits 0-1: 0 plain, 1 gzip-wrapped, 2 zstd-wrapped, 3 plain
//! * bit 2: fix up the checksums of the headers a tar reader would reach
//!   (so that mutations get past the checksum)
//! * bit 3: the next byte picks a 512-byte boundary where the rest is split
//!   into two layers; bits 4-5 then wrap the second one
//!
//! Builds into a sparse file; a panic is a crash, and so is a built image
//! that `e2fsck -fn` does not pass cleanly (the strict check of
//! `tests/common/fsck.rs`: exit 0 alone lets IGNORED problems through).

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use skiff_ext4::writer::{self, Options};

// The strict e2fsck check that every ext4 test uses.
#[path = "../tests/common/fsck.rs"]
mod fsck;

/// Recomputes the header checksums along the chain of headers, skipping
/// each entry's data as its size field says (header-only types have none).
pub fn fix_checksums(buf: &mut [u8]) {
    let mut off = 0usize;
    while off + 512 <= buf.len() {
        let h = &mut buf[off..off + 512];
        if h.iter().all(|&b| b == 0) {
            off += 512;
            continue;
        }
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let field = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(field.as_bytes());
        let size = std::str::from_utf8(&h[124..136])
            .ok()
            .and_then(|s| {
                u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok()
            })
            .unwrap_or(0);
        let data = if matches!(h[156], b'1'..=b'6') {
            0
        } else {
            size
        };
        let data = data.min(buf.len() as u64) as usize;
        off = off
            .saturating_add(512)
            .saturating_add(data.div_ceil(512) * 512);
    }
}

fn wrap(kind: u8, data: &[u8]) -> Vec<u8> {
    match kind & 3 {
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        2 => zstd::encode_all(data, 1).unwrap(),
        _ => data.to_vec(),
    }
}

/// The layers an input stands for.
pub fn layers(data: &[u8]) -> Vec<Vec<u8>> {
    let Some((&flags, rest)) = data.split_first() else {
        return Vec::new();
    };
    let (split, rest) = match rest.split_first() {
        Some((&at, rest)) if flags & 8 != 0 => (Some(at as usize * 512), rest),
        _ => (None, rest),
    };
    let mut body = rest.to_vec();
    if flags & 4 != 0 {
        fix_checksums(&mut body);
    }
    match split {
        Some(at) => {
            let (a, b) = body.split_at(at.min(body.len()));
            vec![wrap(flags, a), wrap(flags >> 4, b)]
        }
        None => vec![wrap(flags, &body)],
    }
}

fn image_path() -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    // One name per run: the stable tests run the body on several threads.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("skiff-ext4-fuzz-{}-{n}.img", std::process::id()))
}

/// What happened to one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Built,
    Refused,
}

pub fn run(data: &[u8]) -> Outcome {
    let layers = layers(data);
    let path = image_path();
    let mut f = std::fs::File::create(&path).expect("create the fuzz image");
    let opts = Options {
        headroom: Some(1 << 20),
        time: Some(1_700_000_000),
        uuid: Some([7; 16]),
        ..Options::default()
    };
    let readers: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    let result = writer::build(readers, &mut f, &opts, &mut |_| {});
    drop(f);
    let outcome = match result {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.is_empty() && !msg.contains('\n'),
                "error message: {msg:?}"
            );
            Outcome::Refused
        }
        Ok(_) => {
            if let Err(e) = fsck::fsck(&path) {
                let keep = path.with_extension("bad.img");
                let _ = std::fs::copy(&path, &keep);
                panic!("{e}\n(image kept at {})", keep.display());
            }
            Outcome::Built
        }
    };
    let _ = std::fs::remove_file(&path);
    outcome
}
