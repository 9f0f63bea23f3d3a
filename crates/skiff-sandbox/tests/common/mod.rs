//! Shared by the integration tests: one guest kernel per machine, installed
//! from Debian's package under target/tmp, guarded by a file lock so parallel
//! test binaries install it once.
#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;

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
