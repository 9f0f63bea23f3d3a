//! A disk that fills mid-pull: the pull fails with one clean line, the store
//! stays consistent, and once there is room the next pull completes.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Self {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(ok.success(), "mounting a tmpfs needs root");
        Self(dir)
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.0)
            .status()
            .expect("mount");
        assert!(ok.success());
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn disk_full_during_pull_is_a_clean_error_and_recoverable() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_fixture("big", "test/big", "latest");
    let reference = format!("{}/test/big:latest", reg.host());

    let dir = tempdir();
    let root = dir.path().join("store");
    std::fs::create_dir(&root).unwrap();
    // Room for the small layers but not the 8 MiB one.
    let fs = Tmpfs::mount(&root, "3m");

    let (status, _out, err) = skiff(&root, &["image", "pull", &reference]);
    assert!(!status.success(), "pull into a full disk succeeded:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line:\n{err}");
    assert!(
        lines[0].starts_with("Error: ") && lines[0].contains(&reference),
        "{err}"
    );
    assert!(lines[0].contains("No space left on device"), "{err}");
    assert_store_consistent(&root);
    let (status, out, err) = skiff(&root, &["image", "ls", "--format", "json"]);
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), "[]", "a failed pull named an image");

    fs.resize("64m");
    let (status, out, err) = skiff(&root, &["image", "pull", "-q", &reference]);
    assert!(status.success(), "pull after freeing space failed:\n{err}");
    assert_image_complete(&root, out.trim());
    assert_store_consistent(&root);
}
