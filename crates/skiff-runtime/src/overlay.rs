//! The container's writable layer: a qcow2 file whose backing file is the
//! image's read-only base ext4, so starting a container copies nothing.
//!
//! An empty overlay is four clusters of metadata, written here directly
//! rather than by spawning `qemu-img create` (a process per container start).
//! Layout (64 KiB clusters, qcow2 version 3, 16-bit refcounts):
//! cluster 0 header + extensions + backing file name, 1 refcount table,
//! 2 refcount block (clusters 0-3 in use), 3 the L1 table (all unallocated).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("base filesystem {path}: {source}")]
    Base {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the base filesystem's path is too long for qcow2 ({0} bytes, at most 1023)")]
    PathTooLong(usize),
    #[error("writing overlay {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
const HEADER_LEN: u32 = 104;
/// Header extension: the backing file's format.
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;

/// Creates `overlay` (qcow2) over `base` (raw ext4; recorded as an absolute
/// path, since QEMU resolves a relative one against the overlay's
/// directory). The virtual size is the base's. The file appears whole or not
/// at all.
pub fn create(base: &Path, overlay: &Path) -> Result<(), OverlayError> {
    let base_err = |source| OverlayError::Base {
        path: base.to_path_buf(),
        source,
    };
    let base = std::fs::canonicalize(base).map_err(base_err)?;
    let size = std::fs::metadata(&base).map_err(base_err)?.len();
    let image = qcow2_overlay(base.as_os_str().as_encoded_bytes(), size)?;
    skiff_util::atomic::write(overlay, &image, 0o644).map_err(|source| OverlayError::Write {
        path: overlay.to_path_buf(),
        source,
    })
}

/// The bytes of an empty qcow2 v3 image of `size` bytes backed by the raw
/// file `backing`.
fn qcow2_overlay(backing: &[u8], size: u64) -> Result<Vec<u8>, OverlayError> {
    if backing.len() > 1023 {
        return Err(OverlayError::PathTooLong(backing.len()));
    }
    // One L1 entry maps CLUSTER/8 L2 entries of CLUSTER bytes each.
    let per_l1 = CLUSTER * (CLUSTER / 8);
    let l1_size = size.div_ceil(per_l1);
    // One cluster of L1 (8192 entries) maps 4 TiB.
    let l1_size = u32::try_from(l1_size.min(CLUSTER / 8)).unwrap_or(u32::MAX);
    let (refcount_table, refcount_block, l1_table) = (CLUSTER, 2 * CLUSTER, 3 * CLUSTER);

    let mut img = vec![0u8; 4 * CLUSTER as usize];
    let mut h = Vec::with_capacity(512);
    h.extend_from_slice(b"QFI\xfb");
    h.extend_from_slice(&3u32.to_be_bytes()); // version
    let backing_offset_at = h.len();
    h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset, set below
    h.extend_from_slice(&(backing.len() as u32).to_be_bytes());
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
    h.extend_from_slice(&l1_size.to_be_bytes());
    h.extend_from_slice(&l1_table.to_be_bytes());
    h.extend_from_slice(&refcount_table.to_be_bytes());
    h.extend_from_slice(&1u32.to_be_bytes()); // refcount_table_clusters
    h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    h.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
    h.extend_from_slice(&4u32.to_be_bytes()); // refcount_order: 16-bit
    h.extend_from_slice(&HEADER_LEN.to_be_bytes());
    debug_assert_eq!(h.len(), HEADER_LEN as usize);
    // Extensions, each padded to 8 bytes: backing format, then the end mark.
    h.extend_from_slice(&EXT_BACKING_FORMAT.to_be_bytes());
    h.extend_from_slice(&3u32.to_be_bytes());
    h.extend_from_slice(b"raw\0\0\0\0\0");
    h.extend_from_slice(&[0u8; 8]);
    let backing_offset = h.len() as u64;
    h[backing_offset_at..backing_offset_at + 8].copy_from_slice(&backing_offset.to_be_bytes());
    h.extend_from_slice(backing);
    img[..h.len()].copy_from_slice(&h);

    // Refcount table → the one refcount block, which counts clusters 0-3.
    let rt = refcount_table as usize;
    img[rt..rt + 8].copy_from_slice(&refcount_block.to_be_bytes());
    let rb = refcount_block as usize;
    for c in 0..4 {
        img[rb + 2 * c..rb + 2 * c + 2].copy_from_slice(&1u16.to_be_bytes());
    }
    // The L1 table stays zero: nothing allocated, every read goes to the base.
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    fn qemu_img(args: &[&str], path: &Path) -> std::process::Output {
        Command::new("qemu-img")
            .args(args)
            .arg(path)
            .output()
            .expect("qemu-img (apt-get install qemu-utils)")
    }

    #[test]
    fn qemu_accepts_the_overlay_and_reads_the_base_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.ext4");
        // Recognizable content at a few offsets, sparse elsewhere.
        let mut f = std::fs::File::create(&base).unwrap();
        f.set_len(3 << 30).unwrap();
        use std::io::{Seek, SeekFrom};
        for off in [0u64, 4096 * 1000, (1 << 30) + 12345, (3 << 30) - 4096] {
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(format!("block at {off}").as_bytes()).unwrap();
        }
        drop(f);
        let ov = dir.path().join("overlay.qcow2");
        create(&base, &ov).unwrap();

        let check = qemu_img(&["check"], &ov);
        assert!(
            check.status.success(),
            "qemu-img check: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let info = qemu_img(&["info", "--output=json"], &ov);
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["format"], "qcow2");
        assert_eq!(v["virtual-size"], 3u64 << 30);
        assert_eq!(v["backing-filename"], base.to_str().unwrap());
        assert_eq!(v["backing-filename-format"], "raw");
        // qemu-img compare: 0 identical, 1 different, 2 error.
        let compare = || {
            Command::new("qemu-img")
                .args(["compare", "-f", "qcow2", "-F", "raw"])
                .arg(&ov)
                .arg(&base)
                .status()
                .unwrap()
                .code()
        };
        // Reading through the overlay gives the base, byte for byte.
        assert_eq!(compare(), Some(0));
        // Writes land in the overlay, not in the base.
        let w = Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", "write -P 0xab 65536 4096"])
            .arg(&ov)
            .output()
            .unwrap();
        assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
        let check = qemu_img(&["check"], &ov);
        assert!(check.status.success());
        assert_eq!(compare(), Some(1), "the write should make them differ");

        let err = create(
            &dir.path().join("missing.ext4"),
            &dir.path().join("x.qcow2"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("missing.ext4"), "{err}");
        assert!(!dir.path().join("x.qcow2").exists());
    }
}
