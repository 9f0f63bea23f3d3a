//! The container's writable layer: a qcow2 file whose backing file is the
//! image's read-only base ext4, so starting a container copies nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("qemu-img not found ({0}); install it: apt-get install qemu-utils")]
    Missing(std::io::Error),
    #[error("qemu-img create {path} failed: {stderr}")]
    Failed { path: PathBuf, stderr: String },
}

/// Creates `overlay` (qcow2) over `base` (raw ext4; an absolute path, as
/// qcow2 records it). The virtual size is the base's.
pub fn create(base: &Path, overlay: &Path) -> Result<(), OverlayError> {
    let qemu_img = std::env::var_os("SKIFF_QEMU_IMG").unwrap_or_else(|| "qemu-img".into());
    let out = Command::new(qemu_img)
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base)
        .arg(overlay)
        .output()
        .map_err(OverlayError::Missing)?;
    if !out.status.success() {
        return Err(OverlayError::Failed {
            path: overlay.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_points_at_base() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.ext4");
        std::fs::File::create(&base)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let ov = dir.path().join("overlay.qcow2");
        create(&base, &ov).unwrap();
        let info = Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&ov)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["format"], "qcow2");
        assert_eq!(v["virtual-size"], 64 << 20);
        assert_eq!(v["backing-filename"], base.to_str().unwrap());
        // Almost nothing allocated: the overlay shares the base.
        assert!(std::fs::metadata(&ov).unwrap().len() < 1 << 20);
        let err = create(
            &dir.path().join("missing.ext4"),
            &dir.path().join("x.qcow2"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("missing.ext4"), "{err}");
    }
}
