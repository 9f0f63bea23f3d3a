//! The initramfs the guest boots from: skiff-init as /init plus the kernel
//! modules it loads, as an uncompressed newc cpio archive (the kernel unpacks
//! it faster than TCG could emulate a decompressor).
//!
//! Archives are cached by content: the name is a hash of everything in them,
//! so a new skiff-init or kernel gives a new file, and an unchanged one is
//! reused without being rewritten.

use skiff_util::atomic::AtomicFile;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::kernel::KernelInfo;

/// Bump when the archive's layout changes, so cached archives are rebuilt.
const FORMAT_VERSION: &[u8] = b"skiff-initramfs-2";

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("reading skiff-init at {path}: {source}; build it with scripts/build-init.sh")]
    Init {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading kernel module {path}: {source}; reinstall the kernel with `skiff system kernel install`")]
    Module {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing the initramfs in {dir}: {source}")]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// A file or directory to put in the archive.
enum Entry<'a> {
    Dir(&'a str),
    File {
        name: String,
        mode: u32,
        data: &'a [u8],
    },
    CharDev {
        name: &'a str,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Builds (or finds in `cache_dir`) the initramfs for `init` and `kernel`'s
/// modules; returns its path. Only [`BOOT_MODULES`] and their dependencies
/// go in: each module costs boot time (tens of ms under TCG).
pub fn build(
    cache_dir: &Path,
    init: &Path,
    kernel: &KernelInfo,
) -> Result<PathBuf, InitramfsError> {
    build_with(cache_dir, init, kernel, BOOT_MODULES)
}

/// What a container VM needs at boot: the virtio-mmio transport, its disk,
/// the control port, an entropy source, and the balloon that returns freed
/// memory to the host. Network, file sharing and vsock modules are added by
/// the callers that attach such devices. A module the kernel install lacks
/// is taken as built in.
pub const BOOT_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_console",
    "virtio_rng",
    "virtio_balloon",
];

/// [`build`] with the modules `wanted` (and their dependencies, from each
/// module's .modinfo) instead of [`BOOT_MODULES`]; they load in the kernel
/// install's order.
pub fn build_with(
    cache_dir: &Path,
    init: &Path,
    kernel: &KernelInfo,
    wanted: &[&str],
) -> Result<PathBuf, InitramfsError> {
    let init_data = std::fs::read(init).map_err(|source| InitramfsError::Init {
        path: init.into(),
        source,
    })?;
    let selected = select_modules(kernel, wanted)?;
    let mut modules = Vec::with_capacity(selected.len());
    for m in &selected {
        let path = kernel.modules_dir.join(m);
        let data =
            std::fs::read(&path).map_err(|source| InitramfsError::Module { path, source })?;
        modules.push((m.as_str(), data));
    }
    let order = order_file(&selected);

    let mut h = Sha256::new();
    h.update(FORMAT_VERSION);
    h.update((init_data.len() as u64).to_le_bytes());
    h.update(&init_data);
    for (name, data) in &modules {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
    }
    h.update(order.as_bytes());
    let path = cache_dir.join(format!("initramfs-{}.cpio", hex::encode(h.finalize())));
    if path.is_file() {
        return Ok(path);
    }

    let werr = |source| InitramfsError::Write {
        dir: cache_dir.into(),
        source,
    };
    std::fs::create_dir_all(cache_dir).map_err(werr)?;
    let mods_dir = skiff_proto::INITRAMFS_MODULES_DIR.trim_start_matches('/');
    let mut entries = vec![
        Entry::Dir("dev"),
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("mnt"),
        Entry::Dir("lib"),
        Entry::Dir("lib/modules"),
        Entry::Dir(mods_dir),
        // The kernel opens /dev/console for init's stdio before any devtmpfs
        // is mounted; without the node init runs with no console.
        Entry::CharDev {
            name: "dev/console",
            mode: 0o600,
            major: 5,
            minor: 1,
        },
        Entry::File {
            name: "init".into(),
            mode: 0o755,
            data: &init_data,
        },
    ];
    for (name, data) in &modules {
        entries.push(Entry::File {
            name: format!("{mods_dir}/{name}"),
            mode: 0o644,
            data,
        });
    }
    entries.push(Entry::File {
        name: skiff_proto::INITRAMFS_MODULES_ORDER
            .trim_start_matches('/')
            .into(),
        mode: 0o644,
        data: order.as_bytes(),
    });

    let mut tmp = AtomicFile::create(&path, 0o644).map_err(werr)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.file());
        write_newc(&mut w, &entries).map_err(werr)?;
        w.flush().map_err(werr)?;
    }
    set_readable(tmp.file()).map_err(werr)?;
    tmp.commit().map_err(werr)?;
    remove_stale(cache_dir, &path);
    Ok(path)
}

/// A new archive means a new skiff-init or kernel: archives of earlier ones
/// are removed once they are a minute old (a VM already booting keeps its
/// open file; a caller that just chose one has long spawned QEMU by then).
fn remove_stale(cache_dir: &Path, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p == keep || !name.starts_with("initramfs-") || !name.ends_with(".cpio") {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        if old {
            let _ = std::fs::remove_file(&p);
        }
    }
}

fn set_readable(f: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
}

/// One module file name per line, in load order.
/// The installed modules (file names, in load order) that `wanted` needs.
fn select_modules(kernel: &KernelInfo, wanted: &[&str]) -> Result<Vec<String>, InitramfsError> {
    use crate::kernel::modules::{normalize, read_depends};
    let stem = |file: &str| normalize(file.split(".ko").next().unwrap_or(file));
    let by_name: std::collections::BTreeMap<String, &String> =
        kernel.modules.iter().map(|f| (stem(f), f)).collect();
    let mut needed = std::collections::BTreeSet::new();
    let mut todo: Vec<String> = wanted.iter().map(|w| normalize(w)).collect();
    while let Some(name) = todo.pop() {
        // Not installed as a module: built in (or not in this kernel at all).
        let Some(file) = by_name.get(&name) else {
            continue;
        };
        if !needed.insert(name) {
            continue;
        }
        let path = kernel.modules_dir.join(file);
        let deps = read_depends(&path).map_err(|e| InitramfsError::Module {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        todo.extend(deps);
    }
    Ok(kernel
        .modules
        .iter()
        .filter(|f| needed.contains(&stem(f)))
        .cloned()
        .collect())
}

fn order_file(modules: &[String]) -> String {
    modules.iter().map(|m| format!("{m}\n")).collect()
}

fn write_newc<W: Write>(w: &mut W, entries: &[Entry<'_>]) -> std::io::Result<()> {
    for (ino, e) in (1u32..).zip(entries) {
        let (name, mode, data, rdev): (&str, u32, &[u8], (u32, u32)) = match e {
            Entry::Dir(n) => (n, S_IFDIR | 0o755, &[], (0, 0)),
            Entry::File { name, mode, data } => (name, S_IFREG | mode, data, (0, 0)),
            Entry::CharDev {
                name,
                mode,
                major,
                minor,
            } => (name, S_IFCHR | mode, &[], (*major, *minor)),
        };
        let nlink = if matches!(e, Entry::Dir(_)) { 2 } else { 1 };
        write_header(w, ino, mode, nlink, data.len(), rdev, name)?;
        w.write_all(data)?;
        pad4(w, data.len())?;
    }
    write_header(w, 0, 0, 1, 0, (0, 0), "TRAILER!!!")
}

fn write_header<W: Write>(
    w: &mut W,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: usize,
    rdev: (u32, u32),
    name: &str,
) -> std::io::Result<()> {
    let size = u32::try_from(size).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name} is over 4 GiB"),
        )
    })?;
    let namesize = name.len() + 1;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
    // rdevmajor, rdevminor, namesize, check. mtime 0: reproducible archives.
    write!(
        w,
        "070701{ino:08X}{mode:08X}{:08X}{:08X}{nlink:08X}{:08X}{size:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
        0, 0, 0, 0, 0, rdev.0, rdev.1, 0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w, 110 + namesize)
}

fn pad4<W: Write>(w: &mut W, len: usize) -> std::io::Result<()> {
    let pad = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..pad])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn fake_kernel(dir: &Path) -> KernelInfo {
        let mods = dir.join("modules");
        std::fs::create_dir_all(&mods).unwrap();
        let ko = crate::kernel::tests::elf_with_modinfo;
        std::fs::write(mods.join("virtio.ko"), ko("name=virtio\0depends=\0")).unwrap();
        std::fs::write(
            mods.join("virtio-rng.ko"),
            ko("name=virtio_rng\0depends=virtio\0"),
        )
        .unwrap();
        // Installed but not wanted at boot: left out of the archive.
        std::fs::write(mods.join("overlay.ko"), ko("name=overlay\0depends=\0")).unwrap();
        KernelInfo {
            release: "9.9.9".into(),
            vmlinux: dir.join("vmlinux"),
            modules_dir: mods,
            modules: vec![
                "overlay.ko".into(),
                "virtio.ko".into(),
                "virtio-rng.ko".into(),
            ],
        }
    }

    #[test]
    fn cpio_reads_it_back() {
        let tmp = tempfile::tempdir().unwrap();
        let kernel = fake_kernel(tmp.path());
        let init = tmp.path().join("skiff-init");
        std::fs::write(&init, b"#!/bin/false\ninit bytes, odd length").unwrap();
        let cache = tmp.path().join("cache");
        let a = build(&cache, &init, &kernel).unwrap();
        let b = build(&cache, &init, &kernel).unwrap();
        assert_eq!(a, b, "cached by content");
        assert!(a
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("initramfs-"));

        let list = Command::new("cpio")
            .args(["-t", "-v", "--quiet", "-F"])
            .arg(&a)
            .output()
            .expect("cpio (apt-get install cpio)");
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        let list = String::from_utf8(list.stdout).unwrap();
        let lines: Vec<&str> = list.lines().collect();
        let names: Vec<&str> = lines
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "dev",
                "proc",
                "sys",
                "mnt",
                "lib",
                "lib/modules",
                "lib/modules/skiff",
                "dev/console",
                "init",
                "lib/modules/skiff/virtio.ko",
                "lib/modules/skiff/virtio-rng.ko",
                "lib/modules/skiff/order"
            ]
        );
        let line = |n: &str| {
            *lines
                .iter()
                .find(|l| l.ends_with(&format!(" {n}")))
                .unwrap()
        };
        assert!(line("dev").starts_with("drwxr-xr-x"), "{}", line("dev"));
        assert!(
            line("dev/console").starts_with("crw-------"),
            "{}",
            line("dev/console")
        );
        assert!(
            line("dev/console").contains(" 5,   1 ") || line("dev/console").contains(" 5, 1 "),
            "{}",
            line("dev/console")
        );
        assert!(line("init").starts_with("-rwxr-xr-x"), "{}", line("init"));

        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        // Extract everything but the device node (mknod needs privileges we
        // may lack).
        let st = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-F"])
            .arg(&a)
            .args(["init", "lib/modules/skiff/*"])
            .current_dir(&out)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            std::fs::read(out.join("init")).unwrap(),
            std::fs::read(&init).unwrap()
        );
        assert_eq!(
            std::fs::read(out.join("lib/modules/skiff/virtio.ko")).unwrap(),
            std::fs::read(tmp.path().join("modules/virtio.ko")).unwrap()
        );
        assert!(
            !out.join("lib/modules/skiff/overlay.ko").exists(),
            "a module not wanted at boot"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("lib/modules/skiff/order")).unwrap(),
            "virtio.ko\nvirtio-rng.ko\n"
        );

        // A changed init gives another archive; the old one goes once it is
        // a minute old.
        std::fs::write(&init, b"other").unwrap();
        let c = build(&cache, &init, &kernel).unwrap();
        assert_ne!(c, a);
        assert!(a.exists(), "a fresh archive is kept");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::write(&init, b"third").unwrap();
        let d = build(&cache, &init, &kernel).unwrap();
        assert!(!a.exists(), "a stale archive is removed");
        assert!(c.exists() && d.exists());
    }

    #[test]
    fn missing_init_says_how_to_build_it() {
        let tmp = tempfile::tempdir().unwrap();
        let err = build(
            tmp.path(),
            &tmp.path().join("nope"),
            &fake_kernel(tmp.path()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("scripts/build-init.sh"), "{err}");
    }
}
