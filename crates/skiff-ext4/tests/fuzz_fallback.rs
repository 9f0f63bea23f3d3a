//! The cargo-fuzz body (`fuzz/body.rs`) on stable: the seed corpus plus a
//! fixed-seed series of mutations of it (bit flips, interesting bytes in
//! header fields, type-flag changes, block duplication and removal,
//! truncation, splices), each with the header checksums fixed up or not.
//! Never a panic; every image that builds passes `e2fsck -fn`.
//!
//! `SKIFF_FUZZ_ITERS=N` (default 300) and `SKIFF_FUZZ_SEED=S` change the run.

#[path = "../fuzz/body.rs"]
mod body;

use std::fs;
use std::path::Path;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/tar_layer");
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(
        v.len() >= 4,
        "the seed corpus is missing: {}",
        dir.display()
    );
    v
}

/// Offsets of header fields in a tar header.
const FIELDS: [(usize, usize); 9] = [
    (0, 100),   // name
    (100, 8),   // mode
    (108, 8),   // uid
    (124, 12),  // size
    (136, 12),  // mtime
    (156, 1),   // typeflag
    (157, 100), // linkname
    (329, 16),  // devmajor, devminor
    (345, 155), // prefix / GNU sparse map
];

const INTERESTING: [&[u8]; 14] = [
    b"\0",
    b"\xff",
    b"0",
    b"7",
    b" ",
    b"/",
    b"..",
    b"../",
    b".wh.",
    b".wh..wh..opq",
    b"77777777777",
    b"\x80\0\0\0\0\0\0\0\0\0\0\x01",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"L",
];

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        if d.len() < 2 {
            d.extend_from_slice(&other[..other.len().min(1024)]);
        }
        let blocks = (d.len() - 1) / 512;
        match rng.below(10) {
            0 => {
                let i = 1 + rng.below(d.len() - 1);
                d[i] ^= 1 << rng.below(8);
            }
            1 | 2 => {
                // An interesting value in a header field of some block.
                let b = rng.below(blocks.max(1));
                let (off, len) = FIELDS[rng.below(FIELDS.len())];
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let at = 1 + b * 512 + off + rng.below(len.saturating_sub(v.len()).max(1));
                for (k, &byte) in v.iter().enumerate() {
                    if at + k < d.len() {
                        d[at + k] = byte;
                    }
                }
            }
            3 => {
                let b = rng.below(blocks.max(1));
                let at = 1 + b * 512 + 156;
                if at < d.len() {
                    d[at] = b"0123456xgLKSVDM\0Z"[rng.below(17)];
                }
            }
            4 => {
                // Duplicate a block.
                let b = rng.below(blocks.max(1));
                let s = 1 + b * 512;
                let e = (s + 512).min(d.len());
                let blk = d[s..e].to_vec();
                let at = 1 + rng.below(blocks + 1) * 512;
                let at = at.min(d.len());
                d.splice(at..at, blk);
            }
            5 => {
                // Remove a block.
                if blocks > 1 {
                    let s = 1 + rng.below(blocks) * 512;
                    let e = (s + 512).min(d.len());
                    d.drain(s..e);
                }
            }
            6 => {
                let n = 1 + rng.below(d.len() - 1);
                d.truncate(n);
            }
            7 => {
                // Splice in part of another input.
                let s = 1 + rng.below(other.len().saturating_sub(1).max(1));
                let e = (s + rng.below(4096)).min(other.len());
                let at = 1 + rng.below(d.len());
                let at = at.min(d.len());
                if s < e {
                    d.splice(at..at, other[s..e].iter().copied());
                }
            }
            8 => d[0] = rng.next() as u8,
            _ => {
                let i = 1 + rng.below(d.len() - 1);
                d[i] = rng.next() as u8;
            }
        }
    }
    d
}

#[test]
fn fuzz_body_over_seeds_and_mutations() {
    let seeds = seeds();
    let mut built = 0usize;
    for (name, data) in &seeds {
        assert_eq!(
            body::run(data),
            body::Outcome::Built,
            "seed {name} must build"
        );
        built += 1;
    }
    let iters: usize = std::env::var("SKIFF_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("SKIFF_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f5c1ff);
    let mut rng = Rng(seed.wrapping_mul(2).wrapping_add(1));
    let mut refused = 0usize;
    for i in 0..iters {
        let (_, a) = &seeds[rng.below(seeds.len())];
        let (_, b) = &seeds[rng.below(seeds.len())];
        let mut input = mutate(&mut rng, a, b);
        // Half of the time the checksums are fixed up, so that mutations
        // reach the entry logic instead of stopping at the first header.
        if rng.below(2) == 0 {
            input[0] |= 4;
        }
        let r = std::panic::catch_unwind(|| body::run(&input));
        match r {
            Ok(body::Outcome::Built) => built += 1,
            Ok(body::Outcome::Refused) => refused += 1,
            Err(_) => {
                let keep = std::env::temp_dir().join(format!("skiff-ext4-fuzz-crash-{i}.bin"));
                fs::write(&keep, &input).unwrap();
                panic!(
                    "iteration {i} (SKIFF_FUZZ_SEED={seed}) failed; input kept at {} \
                     (replay: cargo +nightly fuzz run tar_layer {})",
                    keep.display(),
                    keep.display()
                );
            }
        }
    }
    eprintln!("fuzz fallback: {iters} mutations, {built} built (incl. seeds), {refused} refused");
    assert!(
        built > seeds.len() + iters / 20,
        "too few mutations built: {built}"
    );
}

/// Inputs the fuzzer found (`fuzz/regressions/tar_layer`), each with its
/// outcome since the fix.
#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/tar_layer");
    // A 12-digit octal mtime in 2334: stored as is, e2fsck took it for a
    // mis-encoded pre-1970 time (exit 0, "IGNORED"-style); now clamped.
    let cases = [("mtime-2334-read-as-pre-1970", body::Outcome::Built)];
    let mut on_disk: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut named: Vec<String> = cases.iter().map(|(n, _)| n.to_string()).collect();
    named.sort();
    assert_eq!(on_disk, named, "every regression input has its case here");
    for (name, want) in cases {
        let data = fs::read(dir.join(name)).unwrap();
        assert_eq!(body::run(&data), want, "{name}");
    }
}
