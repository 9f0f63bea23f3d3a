//! The one `e2fsck -fn` oracle for every ext4 test: skiff-ext4's integration
//! tests (through `common`), `dir.rs`'s unit tests, the fuzz body and
//! `skiff/tests/ext4_cli.rs` pull this file in with `#[path]` (std only).
//!
//! Exit 0 is not enough: with `-n`, e2fsck reports some problems (a bad
//! group descriptor checksum, for one) as "IGNORED" and still exits 0. So
//! stdout must be exactly the five pass headers and the summary line, and
//! stderr nothing but the version banner.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

/// The counts of e2fsck's summary line (`N/M files (...), B/C blocks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsckSummary {
    pub inodes_used: u64,
    pub inodes: u64,
    pub blocks_used: u64,
    pub blocks: u64,
}

const PASSES: [&str; 5] = [
    "Pass 1: Checking inodes, blocks, and sizes",
    "Pass 2: Checking directory structure",
    "Pass 3: Checking directory connectivity",
    "Pass 4: Checking reference counts",
    "Pass 5: Checking group summary information",
];

/// Runs `e2fsck -fn IMAGE`; `Err` with its whole output unless it is clean.
pub fn fsck(path: &Path) -> Result<FsckSummary, String> {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run e2fsck (install e2fsprogs): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    judge(out.status.code(), &stdout, &stderr).map_err(|why| {
        format!(
            "e2fsck -fn {} is not clean ({why}; exit {:?}):\n{stdout}{stderr}",
            path.display(),
            out.status.code()
        )
    })
}

/// [`fsck`] that panics on anything unclean.
#[track_caller]
pub fn check_fsck(path: &Path) -> FsckSummary {
    fsck(path).unwrap_or_else(|e| panic!("{e}"))
}

fn judge(code: Option<i32>, stdout: &str, stderr: &str) -> Result<FsckSummary, String> {
    if code != Some(0) {
        return Err("exit status".into());
    }
    let lines: Vec<&str> = stdout.lines().collect();
    let Some((summary, passes)) = lines.split_last() else {
        return Err("no output".into());
    };
    if passes != PASSES {
        return Err("unexpected lines besides the passes".into());
    }
    let summary = parse_summary(summary).ok_or("no summary line")?;
    let banner = |l: &str| l.starts_with("e2fsck ") && l.ends_with(')') && !l.contains(':');
    if !stderr.lines().all(banner) {
        return Err("unexpected stderr".into());
    }
    Ok(summary)
}

/// `NAME: 11/2048 files (0.0% non-contiguous), 1234/8192 blocks` (NAME is
/// the path or the volume label, and may hold anything).
fn parse_summary(line: &str) -> Option<FsckSummary> {
    let (_, rest) = line.rsplit_once(": ")?;
    let (files, rest) = rest.split_once(" files (")?;
    let (pct, blocks) = rest.split_once("% non-contiguous), ")?;
    pct.parse::<f64>().ok()?;
    let blocks = blocks.strip_suffix(" blocks")?;
    let ratio = |s: &str| -> Option<(u64, u64)> {
        let (a, b) = s.split_once('/')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let (inodes_used, inodes) = ratio(files)?;
    let (blocks_used, blocks) = ratio(blocks)?;
    Some(FsckSummary {
        inodes_used,
        inodes,
        blocks_used,
        blocks,
    })
}
