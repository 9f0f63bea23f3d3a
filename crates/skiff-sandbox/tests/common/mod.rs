//! Shared by the integration tests (of this crate, and skiff-init's VM smoke
//! test, which includes this file): one guest kernel per machine, installed
//! from Debian's package under target/tmp, guarded by a file lock so parallel
//! test binaries install it once; and skiff-init from scripts/build-init.sh.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};

use skiff_sandbox::kernel::{self, KernelInfo, KernelSource};

pub fn kernels_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("skiff-test-kernels")
}

/// Holds an exclusive lock on the shared kernel directory while alive.
pub struct KernelLock(#[allow(dead_code)] File);

pub fn lock_kernels() -> KernelLock {
    let dir = kernels_dir();
    std::fs::create_dir_all(&dir).expect("creating the test kernel dir");
    let f = File::create(dir.with_extension("lock")).expect("creating the kernel lock file");
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .expect("locking the kernel dir");
    KernelLock(f)
}

/// The shared test kernel, installed with apt on first use.
pub fn kernel() -> KernelInfo {
    let _lock = lock_kernels();
    match kernel::find(&kernels_dir()) {
        Ok(k) => k,
        Err(_) => kernel::install(&kernels_dir(), KernelSource::Apt)
            .expect("installing the guest kernel with apt (needs root and Debian's mirror)"),
    }
}

/// The real guest init: `SKIFF_INIT`, else target/skiff-init (built by
/// scripts/build-init.sh, which scripts/test.sh runs). Missing is a failure.
pub fn skiff_init() -> PathBuf {
    let p = match std::env::var_os("SKIFF_INIT") {
        Some(p) => PathBuf::from(p),
        // CARGO_TARGET_TMPDIR is <target dir>/tmp, wherever CARGO_TARGET_DIR puts it.
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("skiff-init"),
    };
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-init.sh first (this test needs the real guest init)",
        p.display()
    );
    p
}
