//! The guest kernel: installing one from Debian's `linux-image-cloud-amd64`
//! (or a .deb, or an unpacked tree) into skiff's kernel directory, and finding
//! the installed one.
//!
//! ```text
//! kernels_dir/
//!   current -> 6.1.0-56-cloud-amd64        symlink naming the release in use
//!   6.1.0-56-cloud-amd64/
//!     vmlinux                              ELF with the PVH note (-M microvm boots it)
//!     modules/*.ko                         what skiff-init loads, and their dependencies
//!     modules.order                        their file names, load order, one a line
//!     kernel.json                          {format, release, modules}
//! ```
//! A release directory is assembled in a temporary directory beside it and
//! swapped in by one rename, so readers see the old or the new one, whole.

mod bzimage;
pub mod elf;
pub mod modules;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

pub use bzimage::{extract_vmlinux, lz4_legacy, BzImageError};
pub use modules::{load_order, ModuleError, WANTED as WANTED_MODULES};

/// The Debian metapackage whose dependency is the current cloud kernel.
pub const APT_METAPACKAGE: &str = "linux-image-cloud-amd64";
const CURRENT: &str = "current";
const KERNEL_JSON: &str = "kernel.json";
const ORDER_FILE: &str = "modules.order";
const FORMAT: u32 = 1;

/// An installed kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInfo {
    /// `uname -r` of the kernel, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// The ELF vmlinux (with the PVH note).
    pub vmlinux: PathBuf,
    /// The directory holding the module files named in `modules`.
    pub modules_dir: PathBuf,
    /// Module file names (`virtio_ring.ko`), dependencies first.
    pub modules: Vec<String>,
}

/// Where [`install`] takes the kernel from.
#[derive(Debug, Clone)]
pub enum KernelSource {
    /// `apt-get download` the package that `linux-image-cloud-amd64` depends on.
    Apt,
    /// A `linux-image-*.deb` already downloaded.
    Deb(PathBuf),
    /// An unpacked tree: `boot/vmlinuz-<release>` and `lib/modules/<release>/`.
    Dir(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no guest kernel installed in {0}; run `skiff system kernel install`")]
    NotInstalled(PathBuf),
    #[error("kernel in {dir} is incomplete or damaged ({what}); run `skiff system kernel install` again")]
    Damaged { dir: PathBuf, what: String },
    #[error("{action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
    #[error("running {command}: {source}; install it (apt-get install {package}) or use a kernel directory instead")]
    Tool {
        command: String,
        package: &'static str,
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    ToolFailed { command: String, stderr: String },
    #[error("apt does not know {APT_METAPACKAGE}'s kernel package; run `apt-get update` (Debian main must be in the sources), or install from a .deb or a directory")]
    AptNoPackage,
    #[error("{0} has no boot/vmlinuz-<release> with a matching lib/modules/<release>; give the root of an unpacked linux-image package")]
    NoKernelInTree(PathBuf),
    #[error("{0} has several kernels ({1}); give a tree with exactly one")]
    SeveralKernels(PathBuf, String),
    #[error("{path}: {source}")]
    BzImage { path: PathBuf, source: BzImageError },
    #[error("{path} is not an x86-64 ELF vmlinux ({why}); -M microvm needs a PVH-capable x86-64 vmlinux")]
    NotX86Elf { path: PathBuf, why: String },
    #[error("{0} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); -M microvm needs a PVH-capable vmlinux (CONFIG_PVH=y)")]
    NoPvh(PathBuf),
    #[error(transparent)]
    Module(#[from] ModuleError),
}

type Result<T, E = KernelError> = std::result::Result<T, E>;

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> KernelError {
    let action = action.into();
    move |source| KernelError::Io { action, source }
}

#[derive(Serialize, Deserialize)]
struct KernelJson {
    format: u32,
    release: String,
    modules: Vec<String>,
}

/// The kernel that `kernels_dir/current` names.
pub fn find(kernels_dir: &Path) -> Result<KernelInfo> {
    let current = kernels_dir.join(CURRENT);
    let release = match std::fs::read_link(&current) {
        Ok(target) => target,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KernelError::NotInstalled(kernels_dir.into()))
        }
        Err(e) => return Err(io(format!("reading {}", current.display()))(e)),
    };
    load(&kernels_dir.join(release))
}

/// The kernel installed in `dir` (a release directory).
pub fn load(dir: &Path) -> Result<KernelInfo> {
    let json_path = dir.join(KERNEL_JSON);
    let text = match std::fs::read(&json_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KernelError::NotInstalled(dir.into()))
        }
        Err(e) => return Err(io(format!("reading {}", json_path.display()))(e)),
    };
    let damaged = |what: String| KernelError::Damaged {
        dir: dir.into(),
        what,
    };
    let json: KernelJson =
        serde_json::from_slice(&text).map_err(|e| damaged(format!("{KERNEL_JSON}: {e}")))?;
    if json.format != FORMAT {
        return Err(damaged(format!(
            "{KERNEL_JSON} format {} (want {FORMAT})",
            json.format
        )));
    }
    let info = KernelInfo {
        release: json.release,
        vmlinux: dir.join("vmlinux"),
        modules_dir: dir.join("modules"),
        modules: json.modules,
    };
    if !info.vmlinux.is_file() {
        return Err(damaged("vmlinux missing".into()));
    }
    if let Some(m) = info
        .modules
        .iter()
        .find(|m| !info.modules_dir.join(m).is_file())
    {
        return Err(damaged(format!("module {m} missing")));
    }
    Ok(info)
}

/// Installs a kernel into `kernels_dir/<release>` and points `current` at it.
/// Installing a release that is already there replaces it.
pub fn install(kernels_dir: &Path, source: KernelSource) -> Result<KernelInfo> {
    std::fs::create_dir_all(kernels_dir)
        .map_err(io(format!("creating {}", kernels_dir.display())))?;
    // Downloads and unpacked packages live beside the result (same file
    // system, cleaned up on every path by TempDir's drop).
    let work = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(kernels_dir)
        .map_err(io(format!(
            "creating a temporary directory in {}",
            kernels_dir.display()
        )))?;
    let tree = match source {
        KernelSource::Dir(d) => d,
        KernelSource::Deb(deb) => unpack_deb(&deb, &work.path().join("tree"))?,
        KernelSource::Apt => {
            let deb = apt_download(work.path())?;
            unpack_deb(&deb, &work.path().join("tree"))?
        }
    };
    install_tree(kernels_dir, &tree)
}

/// The package `linux-image-cloud-amd64` depends on, e.g.
/// `linux-image-6.1.0-56-cloud-amd64`.
pub fn apt_package() -> Result<String> {
    let out = run(
        Command::new("apt-cache").args(["depends", "--important", APT_METAPACKAGE]),
        "apt",
    )?;
    parse_apt_depends(&out).ok_or(KernelError::AptNoPackage)
}

fn parse_apt_depends(out: &str) -> Option<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|p| p.trim().trim_start_matches('<').trim_end_matches('>'))
        .find(|p| p.starts_with("linux-image-") && *p != APT_METAPACKAGE)
        .map(str::to_owned)
}

fn apt_download(dir: &Path) -> Result<PathBuf> {
    let package = apt_package()?;
    run(
        Command::new("apt-get")
            .args(["download", "-q", &package])
            .current_dir(dir),
        "apt",
    )
    .map_err(|e| match e {
        // Stale package lists name a version the mirror no longer has.
        KernelError::ToolFailed { command, stderr } => KernelError::ToolFailed {
            command,
            stderr: format!(
                "{stderr} (if the package lists are stale, run `apt-get update` and retry)"
            ),
        },
        other => other,
    })?;
    let entries = std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))?;
    for e in entries {
        let e = e.map_err(io(format!("listing {}", dir.display())))?;
        let name = e.file_name();
        if name.to_string_lossy().starts_with(&package) && name.to_string_lossy().ends_with(".deb")
        {
            return Ok(e.path());
        }
    }
    Err(KernelError::ToolFailed {
        command: format!("apt-get download {package}"),
        stderr: "no .deb appeared".into(),
    })
}

fn unpack_deb(deb: &Path, into: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(into).map_err(io(format!("creating {}", into.display())))?;
    run(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(into),
        "dpkg",
    )?;
    Ok(into.to_path_buf())
}

/// Runs a command, returning stdout; a missing tool or a failure is an error
/// naming the command and quoting its stderr.
fn run(cmd: &mut Command, package: &'static str) -> Result<String> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| KernelError::Tool {
            command: shown.clone(),
            package,
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(KernelError::ToolFailed {
            command: shown,
            stderr: stderr.trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The release of the one kernel in an unpacked tree, its bzImage and its
/// modules directory (`lib/modules/<release>`, or `usr/lib/...` on merged-usr).
fn locate(tree: &Path) -> Result<(String, PathBuf, PathBuf)> {
    let boot = tree.join("boot");
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&boot) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(release) = name.strip_prefix("vmlinuz-") else {
                continue;
            };
            for lib in ["lib/modules", "usr/lib/modules"] {
                let mods = tree.join(lib).join(release);
                if mods.is_dir() {
                    found.push((release.to_owned(), e.path(), mods));
                    break;
                }
            }
        }
    }
    match found.len() {
        0 => Err(KernelError::NoKernelInTree(tree.into())),
        1 => Ok(found.remove(0)),
        _ => Err(KernelError::SeveralKernels(
            tree.into(),
            found
                .iter()
                .map(|f| f.0.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// Checks that `vmlinux` is an x86-64 ELF with the PVH entry note.
pub fn check_vmlinux(vmlinux: &[u8], path: &Path) -> Result<()> {
    let not = |why: String| KernelError::NotX86Elf {
        path: path.into(),
        why,
    };
    let header = skiff_elf::header(vmlinux).map_err(|e| not(e.to_string()))?;
    if header.class != skiff_elf::Class::Elf64 || header.endianness != skiff_elf::Endianness::Little
    {
        return Err(not("not a 64-bit little-endian ELF file".into()));
    }
    if header.machine != elf::EM_X86_64 {
        return Err(not(format!("machine {}", header.machine)));
    }
    if !elf::has_pvh_note(vmlinux).map_err(|e| not(e.to_string()))? {
        return Err(KernelError::NoPvh(path.into()));
    }
    Ok(())
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io(format!("creating {}", path.display())))?;
    f.write_all(data)
        .map_err(io(format!("writing {}", path.display())))?;
    f.sync_all()
        .map_err(io(format!("writing {}", path.display())))
}

fn install_tree(kernels_dir: &Path, tree: &Path) -> Result<KernelInfo> {
    let (release, vmlinuz, mods_root) = locate(tree)?;
    let image = std::fs::read(&vmlinuz).map_err(io(format!("reading {}", vmlinuz.display())))?;
    let vmlinux = extract_vmlinux(&image).map_err(|source| KernelError::BzImage {
        path: vmlinuz.clone(),
        source,
    })?;
    drop(image);
    check_vmlinux(&vmlinux, &vmlinuz)?;

    let index = modules::index(&mods_root)?;
    let order = modules::load_order(modules::WANTED, &|m| index.contains_key(m), |m| match index
        .get(m)
    {
        Some(p) => modules::read_depends(p),
        None => Ok(Vec::new()),
    })?;

    let stage = tempfile::Builder::new()
        .prefix(".install-")
        .tempdir_in(kernels_dir)
        .map_err(io(format!(
            "creating a temporary directory in {}",
            kernels_dir.display()
        )))?;
    let dir = stage.path();
    write_synced(&dir.join("vmlinux"), &vmlinux)?;
    let mod_dir = dir.join("modules");
    std::fs::create_dir(&mod_dir).map_err(io(format!("creating {}", mod_dir.display())))?;
    let mut files = Vec::with_capacity(order.len());
    for m in &order {
        let src = &index[m];
        let file = src
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{m}.ko"));
        let data = std::fs::read(src).map_err(io(format!("reading {}", src.display())))?;
        write_synced(&mod_dir.join(&file), &data)?;
        files.push(file);
    }
    let mut order_text = files.join("\n");
    order_text.push('\n');
    write_synced(&dir.join(ORDER_FILE), order_text.as_bytes())?;
    let json = KernelJson {
        format: FORMAT,
        release: release.clone(),
        modules: files,
    };
    let json =
        serde_json::to_vec_pretty(&json).map_err(|e| io("encoding kernel.json")(e.into()))?;
    write_synced(&dir.join(KERNEL_JSON), &json)?;
    // TempDir creates mode 0700; QEMU may run as another user later.
    set_mode(dir, 0o755)?;

    let target = kernels_dir.join(&release);
    swap_in(stage, &target)?;
    point_current(kernels_dir, &release)?;
    load(&target)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", path.display())))
}

/// Moves the staged directory to `target` in one step: a plain rename when
/// nothing is there, an atomic exchange (RENAME_EXCHANGE) when an older copy
/// is, after which the old copy sits in the temporary directory and goes with it.
fn swap_in(stage: tempfile::TempDir, target: &Path) -> Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let staged = stage.path();
    match renameat_with(CWD, staged, CWD, target, RenameFlags::NOREPLACE) {
        Ok(()) => {
            // Renamed away: nothing left for TempDir to remove.
            let _ = stage.keep();
            Ok(())
        }
        Err(rustix::io::Errno::EXIST) => {
            renameat_with(CWD, staged, CWD, target, RenameFlags::EXCHANGE)
                .map_err(|e| io(format!("replacing {}", target.display()))(e.into()))?;
            // `stage` now holds the previous release; dropping it removes it.
            drop(stage);
            Ok(())
        }
        Err(e) => Err(io(format!("moving the kernel into {}", target.display()))(
            e.into(),
        )),
    }
}

/// Replaces `kernels_dir/current` with a symlink to `release` atomically
/// (new link beside it, then rename over).
fn point_current(kernels_dir: &Path, release: &str) -> Result<()> {
    skiff_util::atomic::replace_symlink(Path::new(release), &kernels_dir.join(CURRENT))
        .map_err(io(format!("updating {}/current", kernels_dir.display())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn apt_depends_output() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            parse_apt_depends(out).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(parse_apt_depends("linux-image-cloud-amd64\n"), None);
    }

    #[test]
    fn missing_kernel_says_what_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let err = find(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("skiff system kernel install"),
            "{err}"
        );
    }

    #[test]
    fn vmlinux_without_pvh_is_refused() {
        let f = elf::tests::elf_with_notes(&[("Xen", 17, b"1234")]);
        let err = check_vmlinux(&f, Path::new("vmlinux")).unwrap_err();
        assert!(err.to_string().contains("PVH"), "{err}");
        let ok = elf::tests::elf_with_notes(&[("Xen", 18, b"1234")]);
        check_vmlinux(&ok, Path::new("vmlinux")).unwrap();
    }

    /// A fake tree (tiny ELF vmlinux, modules as ELF files with .modinfo)
    /// installs, re-installs over itself, and loads back.
    #[test]
    fn install_from_dir_twice() {
        let tree = tempfile::tempdir().unwrap();
        let rel = "9.9.9-test";
        std::fs::create_dir_all(tree.path().join("boot")).unwrap();
        std::fs::write(
            tree.path().join(format!("boot/vmlinuz-{rel}")),
            elf::tests::elf_with_notes(&[("Xen", 18, b"1234")]),
        )
        .unwrap();
        let mods = tree
            .path()
            .join(format!("lib/modules/{rel}/kernel/drivers"));
        std::fs::create_dir_all(&mods).unwrap();
        for (name, deps) in [
            ("virtio", ""),
            ("virtio_ring", "virtio"),
            ("virtio_mmio", "virtio,virtio_ring"),
        ] {
            std::fs::write(
                mods.join(format!("{name}.ko")),
                elf_with_modinfo(&format!("depends={deps}\0name={name}\0")),
            )
            .unwrap();
        }
        let kdir = tempfile::tempdir().unwrap();
        let a = install(kdir.path(), KernelSource::Dir(tree.path().into())).unwrap();
        assert_eq!(a.release, rel);
        assert_eq!(a.modules, ["virtio.ko", "virtio_ring.ko", "virtio_mmio.ko"]);
        let b = install(kdir.path(), KernelSource::Dir(tree.path().into())).unwrap();
        assert_eq!(a, b);
        assert_eq!(find(kdir.path()).unwrap(), a);
        let order = std::fs::read_to_string(kdir.path().join(rel).join(ORDER_FILE)).unwrap();
        assert_eq!(order, "virtio.ko\nvirtio_ring.ko\nvirtio_mmio.ko\n");
        // Nothing but the release and `current` is left behind.
        let mut names: Vec<String> = std::fs::read_dir(kdir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [rel, "current"]);
    }

    /// An ELF64 relocatable with a section header table: null, .modinfo, .shstrtab.
    pub(crate) fn elf_with_modinfo(modinfo: &str) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let mut f = elf::tests::elf_with_notes(&[]);
        let info_off = f.len();
        f.extend_from_slice(modinfo.as_bytes());
        let str_off = f.len();
        f.extend_from_slice(shstrtab);
        while f.len() & 7 != 0 {
            f.push(0);
        }
        let shoff = f.len();
        let mut sh = |name: u32, kind: u32, off: usize, size: usize| {
            let mut h = [0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&h);
        };
        sh(0, 0, 0, 0);
        sh(1, 1, info_off, modinfo.len());
        sh(10, 3, str_off, shstrtab.len());
        f[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes());
        f[60..62].copy_from_slice(&3u16.to_le_bytes());
        f[62..64].copy_from_slice(&2u16.to_le_bytes());
        f
    }
}
