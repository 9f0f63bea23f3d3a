//! Loading the kernel modules shipped in the initramfs (virtio drivers of
//! Debian's cloud kernel), in the order the host wrote down.

use std::ffi::CStr;
use std::path::Path;

use skiff_proto::{INITRAMFS_MODULES_DIR, INITRAMFS_MODULES_ORDER};

/// MODULE_INIT_COMPRESSED_FILE: let the kernel decompress (.ko.xz etc.;
/// needs CONFIG_MODULE_DECOMPRESS).
const COMPRESSED: i32 = 4;

/// Loads every listed module; a missing order file means none are needed.
/// Failures are logged, not fatal: a missing driver shows up later as a
/// missing device, with this log line explaining it.
pub fn load_all() {
    let order = match std::fs::read_to_string(INITRAMFS_MODULES_ORDER) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            crate::error!("reading {INITRAMFS_MODULES_ORDER}: {e}");
            return;
        }
    };
    for name in order
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let path = Path::new(INITRAMFS_MODULES_DIR).join(name);
        match load(&path) {
            Ok(()) => crate::debug!("loaded {}", path.display()),
            Err(rustix::io::Errno::EXIST) => {}
            // finit_module's ENOENT is an unknown symbol, not a missing file.
            Err(rustix::io::Errno::NOENT) => crate::error!(
                "loading module {}: unknown symbol (a dependency missing or later in the order)",
                path.display()
            ),
            Err(e) => crate::error!("loading module {}: {e}", path.display()),
        }
    }
}

fn load(path: &Path) -> Result<(), rustix::io::Errno> {
    let file = std::fs::File::open(path)
        .map_err(|e| rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO))?;
    let compressed = [".xz", ".zst", ".gz"]
        .iter()
        .any(|ext| path.to_string_lossy().ends_with(ext));
    let no_params: &CStr = c"";
    rustix::system::finit_module(&file, no_params, if compressed { COMPRESSED } else { 0 })
}
