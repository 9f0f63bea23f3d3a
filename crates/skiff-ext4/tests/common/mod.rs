//! Support for skiff-ext4's integration tests.
//!
//! * [`LayerBuilder`]: writes layer tarballs in memory — GNU headers, GNU long
//!   names and link names, PAX records (sub-second mtimes, `SCHILY.xattr.*`,
//!   large ids), devices, whiteouts — byte by byte where a test needs hostile
//!   input, and records what it wrote for the reference extraction.
//! * [`build`] / [`build_ok`]: run `skiff_ext4::writer::build` into a sparse
//!   file; [`check_fsck`]: `e2fsck -fn` must be clean (the strict check of
//!   [`fsck`], shared with the unit tests, the fuzz body and the CLI tests).
//! * [`Mount`]: a loop mount (read-only or read-write) that unmounts on drop.
//! * [`Reference`]: applies layers with GNU tar into a directory, with OCI
//!   whiteouts and opaque directories done by hand, as the oracle.
//! * [`snapshot`] / [`compare`]: names, types, modes, owners, mtimes (ns),
//!   sizes, content hashes (hole-agnostic), symlink targets, hard-link
//!   identity, xattrs, device numbers.
//!
//! The tests need root (loop mounts, `mknod`, `chown`, `trusted.*` xattrs)
//! and e2fsprogs; a missing tool or privilege fails with a clear message.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};
use skiff_ext4::writer::{self, Options, Stats};
use tempfile::TempDir;

pub mod fsck;
pub use fsck::check_fsck;

/// Seconds used as the default mtime of generated entries.
pub const T0: i64 = 1_700_000_000;

pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("skiff-ext4-it-")
        .tempdir()
        .expect("create tempdir")
}

/// Deterministic pseudo-random bytes (xorshift64*): incompressible and with no
/// all-zero 4 KiB block, so they never turn into holes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

// ---------------------------------------------------------------------------
// Layer tarballs
// ---------------------------------------------------------------------------

/// Metadata of one generated entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct M {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    /// Written as a PAX `mtime` record with nine decimals when set.
    pub nanos: Option<u32>,
    /// Written as PAX `SCHILY.xattr.NAME` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Default for M {
    fn default() -> Self {
        M {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: T0,
            nanos: None,
            xattrs: Vec::new(),
        }
    }
}

impl M {
    pub fn mode(mode: u32) -> M {
        M {
            mode,
            ..M::default()
        }
    }
    pub fn dir() -> M {
        M::mode(0o755)
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> M {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn time(mut self, secs: i64, nanos: Option<u32>) -> M {
        self.mtime = secs;
        self.nanos = nanos;
        self
    }
    pub fn xattr(mut self, name: &str, value: &[u8]) -> M {
        self.xattrs.push((name.to_string(), value.to_vec()));
        self
    }
}

/// What an entry of a generated layer was, for the reference extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDev,
    BlockDev,
    Fifo,
    /// `.wh.NAME`; the recorded path is NAME's.
    Whiteout,
    /// `.wh..wh..opq`; the recorded path is the directory's.
    Opaque,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// As written in the archive (cleaned by [`clean`] when used).
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits of a directory entry (for the reference: see
    /// [`Reference::apply_tar_file`]).
    pub mode: u32,
}

/// An uncompressed layer and what it holds.
#[derive(Debug, Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub entries: Vec<Recorded>,
}

impl Layer {
    pub fn gz(&self) -> Vec<u8> {
        gz(&self.tar)
    }
    pub fn zst(&self) -> Vec<u8> {
        zst(&self.tar)
    }
}

pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zst(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// One PAX record: `"<len> key=value\n"`, where `len` counts itself.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}

fn pad512(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

/// Writes layers entry by entry. Paths are bytes and are written as given
/// (no validation): a name over 100 bytes goes into a GNU long-name record
/// (or a PAX `path` record when `pax_paths` is set).
#[derive(Default)]
pub struct LayerBuilder {
    out: Vec<u8>,
    entries: Vec<Recorded>,
    /// Long names as PAX `path`/`linkpath` records instead of GNU `L`/`K`.
    pub pax_paths: bool,
}

impl LayerBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn file(&mut self, path: impl AsRef<[u8]>, data: &[u8], m: &M) -> &mut Self {
        self.entry(path.as_ref(), b'0', data, b"", m, (0, 0), Some(Kind::File))
    }

    /// A directory entry (written with a trailing `/`).
    pub fn dir(&mut self, path: impl AsRef<[u8]>, m: &M) -> &mut Self {
        let mut p = path.as_ref().to_vec();
        if !p.ends_with(b"/") {
            p.push(b'/');
        }
        self.entry(&p, b'5', b"", b"", m, (0, 0), Some(Kind::Dir))
    }

    pub fn symlink(
        &mut self,
        path: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
        m: &M,
    ) -> &mut Self {
        let m = M {
            mode: 0o777,
            ..m.clone()
        };
        self.entry(
            path.as_ref(),
            b'2',
            b"",
            target.as_ref(),
            &m,
            (0, 0),
            Some(Kind::Symlink),
        )
    }

    pub fn hardlink(&mut self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Self {
        self.entry(
            path.as_ref(),
            b'1',
            b"",
            target.as_ref(),
            &M::default(),
            (0, 0),
            Some(Kind::Hardlink),
        )
    }

    pub fn chardev(&mut self, path: impl AsRef<[u8]>, major: u32, minor: u32, m: &M) -> &mut Self {
        self.entry(
            path.as_ref(),
            b'3',
            b"",
            b"",
            m,
            (major, minor),
            Some(Kind::CharDev),
        )
    }

    pub fn blockdev(&mut self, path: impl AsRef<[u8]>, major: u32, minor: u32, m: &M) -> &mut Self {
        self.entry(
            path.as_ref(),
            b'4',
            b"",
            b"",
            m,
            (major, minor),
            Some(Kind::BlockDev),
        )
    }

    pub fn fifo(&mut self, path: impl AsRef<[u8]>, m: &M) -> &mut Self {
        self.entry(path.as_ref(), b'6', b"", b"", m, (0, 0), Some(Kind::Fifo))
    }

    /// `.wh.NAME` beside `path`.
    pub fn whiteout(&mut self, path: impl AsRef<[u8]>) -> &mut Self {
        let path = path.as_ref();
        let (dir, name) = split_parent(path);
        let mut wh = dir.to_vec();
        if !wh.is_empty() {
            wh.push(b'/');
        }
        wh.extend_from_slice(b".wh.");
        wh.extend_from_slice(name);
        self.entry(&wh, b'0', b"", b"", &M::mode(0o600), (0, 0), None);
        self.entries.push(Recorded {
            path: path.to_vec(),
            kind: Kind::Whiteout,
            mode: 0,
        });
        self
    }

    /// `.wh..wh..opq` inside `dir` (`""` for the root).
    pub fn opaque(&mut self, dir: impl AsRef<[u8]>) -> &mut Self {
        let dir = dir.as_ref();
        let mut p = dir.to_vec();
        if !p.is_empty() && !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(b".wh..wh..opq");
        self.entry(&p, b'0', b"", b"", &M::mode(0o600), (0, 0), None);
        self.entries.push(Recorded {
            path: dir.to_vec(),
            kind: Kind::Opaque,
            mode: 0,
        });
        self
    }

    /// Any entry, unrecorded (for hostile input that the reference never sees).
    pub fn raw(&mut self, path: &[u8], typeflag: u8, data: &[u8], link: &[u8], m: &M) -> &mut Self {
        self.entry(path, typeflag, data, link, m, (0, 0), None)
    }

    /// Appends bytes as they are (a hand-made header, garbage).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }

    /// A regular-file entry whose data comes from a reader (`size` bytes),
    /// for contents too large to hold twice.
    pub fn file_from(&mut self, path: &[u8], size: u64, data: &mut dyn Read, m: &M) -> &mut Self {
        self.header(path, b'0', size, b"", m, (0, 0));
        let got = io::copy(data, &mut self.out).unwrap();
        assert_eq!(got, size);
        pad512(&mut self.out);
        self.entries.push(Recorded {
            path: path.to_vec(),
            kind: Kind::File,
            mode: m.mode,
        });
        self
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        path: &[u8],
        typeflag: u8,
        data: &[u8],
        link: &[u8],
        m: &M,
        dev: (u32, u32),
        record: Option<Kind>,
    ) -> &mut Self {
        self.header(path, typeflag, data.len() as u64, link, m, dev);
        self.out.extend_from_slice(data);
        pad512(&mut self.out);
        if let Some(kind) = record {
            self.entries.push(Recorded {
                path: path.to_vec(),
                kind,
                mode: m.mode,
            });
        }
        self
    }

    fn header(
        &mut self,
        path: &[u8],
        typeflag: u8,
        size: u64,
        link: &[u8],
        m: &M,
        dev: (u32, u32),
    ) {
        let mut pax = Vec::new();
        if m.nanos.is_some() || m.mtime < 0 {
            let v = format!("{}.{:09}", m.mtime, m.nanos.unwrap_or(0));
            pax.extend(pax_record("mtime", v.as_bytes()));
        }
        for (k, v) in &m.xattrs {
            pax.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
        }
        const MAX_OCTAL: u64 = 0o7777777;
        if m.uid > MAX_OCTAL {
            pax.extend(pax_record("uid", m.uid.to_string().as_bytes()));
        }
        if m.gid > MAX_OCTAL {
            pax.extend(pax_record("gid", m.gid.to_string().as_bytes()));
        }
        if self.pax_paths && path.len() > 100 {
            pax.extend(pax_record("path", path));
        }
        if self.pax_paths && link.len() > 100 {
            pax.extend(pax_record("linkpath", link));
        }
        if !pax.is_empty() {
            let mut h = tar::Header::new_ustar();
            let (_, base) = split_parent(path);
            let mut name = b"PaxHeaders.0/".to_vec();
            name.extend_from_slice(&base[..base.len().min(80)]);
            h.as_old_mut().name[..name.len()].copy_from_slice(&name);
            h.set_mode(0o644);
            h.set_size(pax.len() as u64);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_mtime(0);
            h.set_cksum();
            self.out.extend_from_slice(h.as_bytes());
            self.out.extend_from_slice(&pax);
            pad512(&mut self.out);
        }
        if path.len() > 100 && !self.pax_paths {
            self.gnu_long(b'L', path);
        }
        if link.len() > 100 && !self.pax_paths {
            self.gnu_long(b'K', link);
        }
        let mut h = tar::Header::new_gnu();
        let n = path.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&path[..n]);
        let n = link.len().min(100);
        h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
        h.set_mode(m.mode);
        h.set_uid(m.uid.min(MAX_OCTAL));
        h.set_gid(m.gid.min(MAX_OCTAL));
        h.set_mtime(m.mtime.max(0) as u64);
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(typeflag));
        if matches!(typeflag, b'3' | b'4') {
            h.set_device_major(dev.0).unwrap();
            h.set_device_minor(dev.1).unwrap();
        }
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
    }

    fn gnu_long(&mut self, typeflag: u8, name: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_mode(0o644);
        h.set_size(name.len() as u64 + 1);
        h.set_entry_type(tar::EntryType::new(typeflag));
        h.set_mtime(0);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(name);
        self.out.push(0);
        pad512(&mut self.out);
    }

    /// The archive so far, without an end marker (for truncation tests).
    pub fn unfinished(&self) -> Vec<u8> {
        self.out.clone()
    }

    /// Ends the archive (two zero blocks).
    pub fn finish(&mut self) -> Layer {
        let mut tar = std::mem::take(&mut self.out);
        tar.resize(tar.len() + 1024, 0);
        Layer {
            tar,
            entries: std::mem::take(&mut self.entries),
        }
    }
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    let p = path.strip_suffix(b"/").unwrap_or(path);
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&p[..0], p),
    }
}

/// Components of an archive path: no empty, `.` or `..` (clamped at the root).
pub fn clean(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c.to_vec()),
        }
    }
    out
}

pub fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

// ---------------------------------------------------------------------------
// Building and checking images
// ---------------------------------------------------------------------------

/// An image written by [`build`], in its own temporary directory.
pub struct Image {
    pub dir: TempDir,
    pub path: PathBuf,
}

/// Small headroom, fixed time: cheap and deterministic.
pub fn opts() -> Options {
    Options {
        headroom: Some(32 << 20),
        time: Some(T0 as u32),
        ..Options::default()
    }
}

/// Writes `layers` into a fresh sparse file.
pub fn build(
    layers: &[Vec<u8>],
    opts: &Options,
) -> (TempDir, PathBuf, Result<Stats, writer::Error>) {
    let dir = tempdir();
    let path = dir.path().join("image.ext4");
    let mut f = fs::File::create(&path).unwrap();
    let readers: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        writer::build(readers, &mut f, opts, &mut |_| {})
    }));
    match r {
        Ok(r) => (dir, path, r),
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// [`build`] that must succeed and give an fsck-clean filesystem.
#[track_caller]
pub fn build_ok(layers: &[Vec<u8>], opts: &Options) -> Image {
    let (dir, path, r) = build(layers, opts);
    r.unwrap_or_else(|e| panic!("build failed: {e}"));
    check_fsck(&path);
    Image { dir, path }
}

/// `debugfs -R CMD IMAGE` (read-only); its stdout.
pub fn debugfs(img: &Path, cmd: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run debugfs (install e2fsprogs)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A field of `dumpe2fs -h` as a number.
pub fn dumpe2fs_field(img: &Path, field: &str) -> u64 {
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(img)
        .stderr(Stdio::null())
        .output()
        .expect("cannot run dumpe2fs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == field).then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("dumpe2fs -h has no numeric {field:?}:\n{text}"))
}

/// The filesystem's size in bytes, from the superblock as dumpe2fs reads it.
pub fn fs_bytes(img: &Path) -> u64 {
    dumpe2fs_field(img, "Block count") * dumpe2fs_field(img, "Block size")
}

/// `statvfs` of the image mounted read-only: the kernel's figures.
pub fn statvfs_of(img: &Path) -> rustix::fs::StatVfs {
    let m = Mount::ro(img);
    rustix::fs::statvfs(m.path()).unwrap_or_else(|e| panic!("statvfs {}: {e}", img.display()))
}

/// Runs a command; panics with its output unless it succeeds. Returns stdout.
#[track_caller]
pub fn run(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop mount of an image; unmounted (and its mount point removed) on drop.
pub struct Mount {
    dir: TempDir,
    mounted: bool,
}

impl Mount {
    #[track_caller]
    pub fn ro(img: &Path) -> Mount {
        Self::with_options(img, "loop,ro")
    }

    #[track_caller]
    pub fn rw(img: &Path) -> Mount {
        Self::with_options(img, "loop")
    }

    #[track_caller]
    fn with_options(img: &Path, options: &str) -> Mount {
        let dir = tempdir();
        let out = Command::new("mount")
            .args(["-t", "ext4", "-o", options])
            .arg(img)
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("cannot run mount");
        if !out.status.success() {
            let dmesg = Command::new("dmesg")
                .output()
                .map(|o| {
                    let s = String::from_utf8_lossy(&o.stdout).into_owned();
                    let lines: Vec<&str> = s.lines().collect();
                    lines[lines.len().saturating_sub(8)..].join("\n")
                })
                .unwrap_or_default();
            panic!(
                "mount -o {options} {} failed (the read-back tests need root and loop devices): {}\n\
                 kernel log:\n{dmesg}",
                img.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Mount { dir, mounted: true }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Unmounts now, panicking on failure (a busy or broken mount).
    #[track_caller]
    pub fn unmount(mut self) {
        self.mounted = false;
        run(Command::new("umount").arg(self.dir.path()));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let ok = Command::new("umount")
                .arg(self.dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(self.dir.path())
                    .status();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reference extraction
// ---------------------------------------------------------------------------

/// Layers applied by GNU tar into a directory, whiteouts and opaque
/// directories done by hand (OCI semantics: a layer's whiteouts delete what
/// lower layers wrote; then the layer's other entries are extracted).
///
/// Directory mtimes follow the layers, not the kernel: a directory that a
/// layer changes without an entry of its own keeps its mtime; one that tar
/// creates implicitly (no entry anywhere) is listed in `implicit` and its
/// mtime is not compared. Only for tame layers: the test generators never
/// put entries under symlinks or use `..`.
pub struct Reference {
    pub tmp: TempDir,
    pub root: PathBuf,
    /// A layer had an entry for the root itself (`./`).
    pub root_touched: bool,
    pub implicit: BTreeSet<Vec<u8>>,
}

impl Default for Reference {
    fn default() -> Self {
        Self::new()
    }
}

impl Reference {
    pub fn new() -> Reference {
        // GNU tar creates implicit parents with 0777 & ~umask; the writer with 0755.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let tmp = tempdir();
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        Reference {
            tmp,
            root,
            root_touched: false,
            implicit: BTreeSet::new(),
        }
    }

    pub fn of(layers: &[&Layer]) -> Reference {
        let mut r = Reference::new();
        for l in layers {
            r.apply(l);
        }
        r
    }

    pub fn apply(&mut self, layer: &Layer) {
        self.apply_layer(layer, true);
    }

    /// [`Reference::apply`] for a layer without whiteouts whose members may
    /// have `.wh.` in their path (`d/.wh..wh..opq/x` is a plain file): GNU
    /// tar extracts every member.
    pub fn apply_verbatim(&mut self, layer: &Layer) {
        assert!(
            !layer
                .entries
                .iter()
                .any(|e| matches!(e.kind, Kind::Whiteout | Kind::Opaque)),
            "apply_verbatim takes layers without whiteouts"
        );
        self.apply_layer(layer, false);
    }

    fn apply_layer(&mut self, layer: &Layer, whiteouts: bool) {
        let file = self.tmp.path().join("layer.tar");
        fs::write(&file, &layer.tar).unwrap();
        self.extract(&file, &layer.entries, whiteouts);
        fs::remove_file(&file).unwrap();
    }

    fn host_path(&self, comps: &[Vec<u8>]) -> PathBuf {
        let mut p = self.root.clone();
        for c in comps {
            p.push(std::ffi::OsStr::from_bytes(c));
        }
        p
    }

    /// The path exists and every directory on the way is a real directory
    /// (never follow a symlink on the host).
    fn lstat_inside(&self, comps: &[Vec<u8>]) -> Option<fs::Metadata> {
        let mut p = self.root.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(std::ffi::OsStr::from_bytes(c));
            let md = fs::symlink_metadata(&p).ok()?;
            if i + 1 < comps.len() && !md.is_dir() {
                return None;
            }
            if i + 1 == comps.len() {
                return Some(md);
            }
        }
        fs::symlink_metadata(&p).ok()
    }

    fn remove(&self, comps: &[Vec<u8>]) {
        if let Some(md) = self.lstat_inside(comps) {
            let p = self.host_path(comps);
            if md.is_dir() {
                fs::remove_dir_all(&p).unwrap();
            } else {
                fs::remove_file(&p).unwrap();
            }
        }
    }

    /// Applies a layer file (tar, or compressed: GNU tar detects it) whose
    /// entries are `entries` (whiteouts and the directories it has entries for
    /// matter; other kinds only for type changes).
    pub fn apply_tar_file(&mut self, file: &Path, entries: &[Recorded]) {
        self.extract(file, entries, true);
    }

    /// `whiteouts`: members named `.wh.*` are whiteouts (not extracted).
    fn extract(&mut self, file: &Path, entries: &[Recorded], whiteouts: bool) {
        for e in entries {
            assert!(
                !e.path.split(|&b| b == b'/').any(|c| c == b".."),
                "the reference takes tame layers only: {:?}",
                String::from_utf8_lossy(&e.path)
            );
        }
        let before = dir_mtimes(&self.root);
        // Directory entries of this layer: path → mode of the last one.
        let mut headers: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        // 1. Whiteouts delete what lower layers wrote.
        for e in entries {
            let comps = clean(&e.path);
            match e.kind {
                Kind::Whiteout if !comps.is_empty() => self.remove(&comps),
                Kind::Opaque
                    if comps.is_empty()
                        || self.lstat_inside(&comps).is_some_and(|m| m.is_dir()) =>
                {
                    let d = self.host_path(&comps);
                    for child in fs::read_dir(&d).unwrap() {
                        let child = child.unwrap();
                        if child.file_type().unwrap().is_dir() {
                            fs::remove_dir_all(child.path()).unwrap();
                        } else {
                            fs::remove_file(child.path()).unwrap();
                        }
                    }
                }
                _ => {}
            }
        }
        // 2. A directory replaced by a non-directory or the reverse: GNU tar
        //    would refuse or merge, the layer semantics replace.
        for e in entries {
            let comps = clean(&e.path);
            if comps.is_empty() {
                if e.kind == Kind::Dir {
                    self.root_touched = true;
                    headers.insert(Vec::new(), e.mode);
                }
                continue;
            }
            if matches!(e.kind, Kind::Whiteout | Kind::Opaque) {
                continue;
            }
            if e.kind == Kind::Dir {
                headers.insert(join(&comps), e.mode);
            }
            if let Some(md) = self.lstat_inside(&comps) {
                if md.is_dir() != (e.kind == Kind::Dir) {
                    self.remove(&comps);
                } else if md.is_dir() {
                    // A directory entry carries the directory's whole xattr
                    // set (what a layer differ saw); GNU tar (like containerd)
                    // would only add to the old set.
                    let p = self.host_path(&comps);
                    for name in xattrs_of(&p).into_keys() {
                        let cname = std::ffi::CString::new(name).unwrap();
                        rustix::fs::lremovexattr(&p, &cname).unwrap();
                    }
                }
            }
        }
        // Directories that lower layers made and this one keeps.
        let now = dir_mtimes(&self.root);
        let before: BTreeMap<Vec<u8>, (i64, i64)> = before
            .into_iter()
            .filter(|(k, _)| now.contains_key(k))
            .collect();
        // 3. Everything else, by GNU tar.
        run(Command::new("tar")
            .args([
                "-x",
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "--same-owner",
                "-p",
                "--delay-directory-restore",
            ])
            .args(whiteouts.then_some("--exclude=.wh.*"))
            .arg("-C")
            .arg(&self.root)
            .arg("-f")
            .arg(file));
        // 4. Directory metadata as the layers say, not as the kernel made it:
        //    a new directory in a setgid one inherits the setgid bit and
        //    the group, which GNU tar does not always undo; a directory
        //    that a layer changes without an entry of its own keeps its
        //    mtime. Implicit parents are 0755 root:root (the writer's
        //    convention; their mtime is not compared).
        for (rel, _) in dir_mtimes(&self.root) {
            let p = rel_to_path(&self.root, &rel);
            if let Some(&mode) = headers.get(&rel) {
                self.implicit.remove(&rel);
                fs::set_permissions(&p, fs::Permissions::from_mode(mode & 0o7777)).unwrap();
            } else if let Some(&(s, ns)) = before.get(&rel) {
                set_mtime(&self.root, &rel, s, ns);
            } else {
                std::os::unix::fs::lchown(&p, Some(0), Some(0)).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
                self.implicit.insert(rel);
            }
        }
    }
}

fn rel_to_path(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(rel))
    }
}

fn set_mtime(root: &Path, rel: &[u8], secs: i64, nanos: i64) {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD, UTIME_OMIT};
    let p = rel_to_path(root, rel);
    let ts = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: secs,
            tv_nsec: nanos as _,
        },
    };
    rustix::fs::utimensat(CWD, &p, &ts, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", p.display()));
}

/// Every directory under `root` (itself as `""`) with its mtime.
fn dir_mtimes(root: &Path) -> BTreeMap<Vec<u8>, (i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let p = rel_to_path(root, &rel);
        let md = fs::symlink_metadata(&p).unwrap();
        out.insert(rel.clone(), (md.mtime(), md.mtime_nsec()));
        for e in fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(child_rel(&rel, e.file_name().as_bytes()));
            }
        }
    }
    out
}

fn child_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut c = rel.to_vec();
    if !c.is_empty() {
        c.push(b'/');
    }
    c.extend_from_slice(name);
    c
}

// ---------------------------------------------------------------------------
// Snapshots and comparison
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `f d l c b p s`
    pub kind: char,
    /// Permission and special bits (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    /// Regular files and symlinks.
    pub size: u64,
    /// Regular files over [`DIGEST_OVER`] bytes: see [`content_digest`];
    /// smaller ones are compared byte by byte (faster in a debug build).
    pub digest: String,
    /// Where it is (not compared).
    pub path: PathBuf,
    pub target: Vec<u8>,
    pub rdev: (u32, u32),
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub nlink: u64,
    /// 512-byte blocks allocated (not compared: holes are per-filesystem).
    pub blocks: u64,
    pub ino: u64,
}

/// A tree: relative path (`""` is the root) → node, and for each path the
/// sorted paths that share its inode.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: BTreeMap<Vec<u8>, Node>,
    pub links: BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
}

pub fn xattrs_of(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let n = rustix::fs::llistxattr_query(p).unwrap_or(0);
    if n == 0 {
        return out;
    }
    let mut list = vec![0u8; n];
    let n = rustix::fs::llistxattr(p, &mut list[..])
        .unwrap_or_else(|e| panic!("llistxattr {}: {e}", p.display()));
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).unwrap();
        let len = rustix::fs::lgetxattr_query(p, &cname)
            .unwrap_or_else(|e| panic!("lgetxattr {}: {e}", p.display()));
        let mut v = vec![0u8; len];
        let len = if len == 0 {
            0
        } else {
            rustix::fs::lgetxattr(p, &cname, &mut v[..]).unwrap()
        };
        v.truncate(len);
        out.insert(name.to_vec(), v);
    }
    out
}

/// A hash of a regular file's logical content that does not depend on where
/// its holes are: its size, then each non-zero 4 KiB block with its offset.
/// Only data regions (`SEEK_DATA`) are read, so a mostly-sparse 5 GiB file
/// costs little.
pub fn content_digest(p: &Path) -> String {
    let mut f = fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let size = f.metadata().unwrap().len();
    let mut h = Sha256::new();
    h.update(size.to_le_bytes());
    let mut buf = vec![0u8; 4096];
    let mut pos = 0u64;
    while pos < size {
        let data = match rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => panic!("SEEK_DATA {}: {e}", p.display()),
        };
        let hole = rustix::fs::seek(&f, rustix::fs::SeekFrom::Hole(data)).unwrap();
        let mut off = data / 4096 * 4096;
        let end = hole.min(size);
        f.seek(SeekFrom::Start(off)).unwrap();
        while off < end {
            let n = (size - off).min(4096) as usize;
            f.read_exact(&mut buf[..n]).unwrap();
            if buf[..n].iter().any(|&b| b != 0) {
                h.update(off.to_le_bytes());
                h.update(&buf[..n]);
            }
            off += n as u64;
        }
        pos = off.max(hole);
    }
    hex::encode(h.finalize())
}

/// Files larger than this are compared by [`content_digest`].
pub const DIGEST_OVER: u64 = 256 << 20;

/// Byte-by-byte equality of two files of the same size.
pub fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

/// Everything under `root`, not following symlinks.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut s = Snapshot::default();
    let mut by_ino: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let p = rel_to_path(root, &rel);
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        let mut node = Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: (md.mtime(), md.mtime_nsec()),
            size: 0,
            digest: String::new(),
            target: Vec::new(),
            rdev: (0, 0),
            xattrs: xattrs_of(&p),
            nlink: md.nlink(),
            blocks: md.blocks(),
            ino: md.ino(),
            path: p.clone(),
        };
        match kind {
            'd' => {
                for e in fs::read_dir(&p).unwrap() {
                    let e = e.unwrap();
                    stack.push(child_rel(&rel, e.file_name().as_bytes()));
                }
            }
            'f' => {
                node.size = md.len();
                if node.size > DIGEST_OVER {
                    node.digest = content_digest(&p);
                }
            }
            'l' => {
                node.target = fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec();
                node.size = md.len();
            }
            'c' | 'b' => {
                node.rdev = (
                    rustix::fs::major(md.rdev() as _),
                    rustix::fs::minor(md.rdev() as _),
                );
            }
            _ => {}
        }
        if kind != 'd' {
            by_ino.entry(md.ino()).or_default().push(rel.clone());
        }
        s.nodes.insert(rel, node);
    }
    for (_, mut group) in by_ino {
        group.sort();
        for p in &group {
            s.links.insert(p.clone(), group.clone());
        }
    }
    s
}

fn show(p: &[u8]) -> String {
    if p.is_empty() {
        "/".into()
    } else {
        format!("/{}", String::from_utf8_lossy(p))
    }
}

/// Compares an image's tree with the reference's; returns every difference.
/// `/lost+found` of the image is ignored unless the reference has one; the
/// root only when a layer had an entry for it; the mtimes of implicitly
/// created directories are not compared.
pub fn compare(image: &Snapshot, reference: &Reference, refsnap: &Snapshot) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut img_nodes = image.nodes.clone();
    if !refsnap.nodes.contains_key(&b"lost+found"[..]) {
        match img_nodes.remove(&b"lost+found"[..]) {
            Some(n) if n.kind == 'd' && n.mode == 0o700 => {}
            Some(n) => diffs.push(format!("/lost+found is not a 0700 directory: {n:?}")),
            None => diffs.push("/lost+found is missing".into()),
        }
    }
    let a: BTreeSet<&Vec<u8>> = img_nodes.keys().collect();
    let b: BTreeSet<&Vec<u8>> = refsnap.nodes.keys().collect();
    for p in a.difference(&b) {
        diffs.push(format!("{}: only in the image", show(p)));
    }
    for p in b.difference(&a) {
        diffs.push(format!("{}: missing from the image", show(p)));
    }
    for (p, r) in &refsnap.nodes {
        let Some(i) = img_nodes.get(p) else { continue };
        if p.is_empty() && !reference.root_touched {
            continue;
        }
        let mut d = |what: &str, img: String, refv: String| {
            if img != refv {
                diffs.push(format!(
                    "{}: {what}: image {img}, reference {refv}",
                    show(p)
                ));
            }
        };
        d("type", i.kind.to_string(), r.kind.to_string());
        if i.kind != r.kind {
            continue;
        }
        d("mode", format!("{:o}", i.mode), format!("{:o}", r.mode));
        d("uid", i.uid.to_string(), r.uid.to_string());
        d("gid", i.gid.to_string(), r.gid.to_string());
        if !(r.kind == 'd' && reference.implicit.contains(p)) {
            d("mtime", format!("{:?}", i.mtime), format!("{:?}", r.mtime));
        }
        d(
            "xattrs",
            format!("{:?}", show_xattrs(&i.xattrs)),
            format!("{:?}", show_xattrs(&r.xattrs)),
        );
        match r.kind {
            'f' => {
                d("size", i.size.to_string(), r.size.to_string());
                if i.size == r.size {
                    if r.size > DIGEST_OVER {
                        d("content", i.digest.clone(), r.digest.clone());
                    } else if !same_contents(&i.path, &r.path) {
                        d("content", "differs".into(), "(byte by byte)".into());
                    }
                }
            }
            'l' => d(
                "target",
                String::from_utf8_lossy(&i.target).into(),
                String::from_utf8_lossy(&r.target).into(),
            ),
            'c' | 'b' => d("rdev", format!("{:?}", i.rdev), format!("{:?}", r.rdev)),
            _ => {}
        }
        if !p.is_empty() {
            d("nlink", i.nlink.to_string(), r.nlink.to_string());
        }
        if r.kind != 'd' {
            let show_group = |g: Option<&Vec<Vec<u8>>>| {
                g.map(|g| g.iter().map(|p| show(p)).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default()
            };
            d(
                "hard links",
                show_group(image.links.get(p)),
                show_group(refsnap.links.get(p)),
            );
        }
    }
    diffs
}

fn show_xattrs(x: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<(String, String)> {
    x.iter()
        .map(|(k, v)| {
            let v = if v.len() > 64 {
                format!(
                    "{} bytes sha256 {}",
                    v.len(),
                    &hex::encode(Sha256::digest(v))[..16]
                )
            } else {
                hex::encode(v)
            };
            (String::from_utf8_lossy(k).into_owned(), v)
        })
        .collect()
}

/// Mounts `img` read-only and compares its tree with the reference's.
pub fn matches_reference(img: &Path, reference: &Reference) -> Result<(), String> {
    let m = Mount::ro(img);
    let image = snapshot(m.path());
    let refsnap = snapshot(&reference.root);
    let diffs = compare(&image, reference, &refsnap);
    drop(m);
    if diffs.is_empty() {
        return Ok(());
    }
    let n = diffs.len();
    let shown: Vec<String> = diffs.into_iter().take(60).collect();
    Err(format!(
        "{} differs from the reference extraction ({n} differences):\n{}",
        img.display(),
        shown.join("\n")
    ))
}

#[track_caller]
pub fn assert_matches_reference(img: &Path, reference: &Reference) {
    if let Err(e) = matches_reference(img, reference) {
        panic!("{e}");
    }
}

/// `tar -tv` of each layer, for failure messages.
pub fn describe_layers(layers: &[&Layer]) -> String {
    let mut out = String::new();
    for (i, l) in layers.iter().enumerate() {
        let mut child = Command::new("tar")
            .args(["-tv", "--numeric-owner", "--full-time", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tar");
        let mut stdin = child.stdin.take().unwrap();
        let data = l.tar.clone();
        let w = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let o = child.wait_with_output().unwrap();
        let _ = w.join();
        out += &format!("--- layer {i} ---\n{}", String::from_utf8_lossy(&o.stdout));
    }
    out
}

/// Builds `layers` (each compressed as `wrap` says), checks fsck, and compares
/// with the reference extraction. Returns the image for further checks.
#[track_caller]
pub fn roundtrip(layers: &[(&Layer, Wrap)], opts: &Options) -> Image {
    let bytes: Vec<Vec<u8>> = layers.iter().map(|(l, w)| w.apply(l)).collect();
    let img = build_ok(&bytes, opts);
    let plain: Vec<&Layer> = layers.iter().map(|(l, _)| *l).collect();
    let reference = Reference::of(&plain);
    if let Err(e) = matches_reference(&img.path, &reference) {
        // SKIFF_TEST_DUMP=DIR keeps the failing layers and image for a look.
        if let Some(dir) = std::env::var_os("SKIFF_TEST_DUMP") {
            let dir = Path::new(&dir);
            let _ = fs::remove_dir_all(dir);
            fs::create_dir_all(dir).unwrap();
            for (i, l) in plain.iter().enumerate() {
                fs::write(dir.join(format!("layer{i}.tar")), &l.tar).unwrap();
            }
            fs::copy(&img.path, dir.join("image.ext4")).unwrap();
        }
        panic!("{e}\nlayers:\n{}", describe_layers(&plain));
    }
    img
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrap {
    Plain,
    Gzip,
    Zstd,
}

impl Wrap {
    pub fn apply(self, l: &Layer) -> Vec<u8> {
        match self {
            Wrap::Plain => l.tar.clone(),
            Wrap::Gzip => l.gz(),
            Wrap::Zstd => l.zst(),
        }
    }
}
