//! Where things live under the store root (ARCHITECTURE.md, "Where things are stored").

use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Paths {
    root: PathBuf,
    kernels: PathBuf,
}

impl Paths {
    /// `SKIFF_KERNEL_DIR` points the kernel directory elsewhere (tests share
    /// one installed kernel between many store roots).
    pub fn new(root: &Path) -> Self {
        let kernels = std::env::var_os("SKIFF_KERNEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("kernel"));
        Self {
            root: root.to_path_buf(),
            kernels,
        }
    }
    /// The store of a container's directory (`<root>/containers/<id>`).
    pub fn of_container_dir(dir: &Path) -> Self {
        Self::new(
            dir.parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("/")),
        )
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn kernels(&self) -> &Path {
        &self.kernels
    }
    /// Initramfs images and the accelerator probe result.
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.root.join("rootfs")
    }
    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }
}
