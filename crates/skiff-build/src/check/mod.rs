//! `image check`: will each program of an image start, and if not, why.
//!
//! The image's layers are read once ([`ImageFs`] with ELF summaries and
//! `#!` lines, no file kept but the loader's configuration), then every ELF
//! program is checked the way the kernel and the dynamic loader would load
//! it: the architecture against the image's platform and this host, the
//! interpreter (`PT_INTERP`) present, each `DT_NEEDED` found along the
//! loader's search path (see [`search`]), the libraries' own needs followed,
//! and every symbol version required (`GLIBC_2.34`) defined by the library
//! that was found. The entrypoint (Entrypoint + Cmd, looked up in the
//! config's `PATH`) is checked first; a `#!` script counts, through its
//! interpreter. Libraries are checked for their own needs and reported when
//! something is wrong with them (or always, with `all_libraries`).

mod entry;
mod paths;
mod search;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::sync::Arc;

use serde::Serialize;
use skiff_elf::ElfInfo;
use skiff_oci::store::ImageRecord;
use skiff_oci::{Platform, Store};
use skiff_runtime::image_config::ImageProcess;

use crate::imagefs::{self, ImageFs, ImageFsError, LoadOptions, NodeKind, Sniff};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Only the entrypoint (and its interpreter or libraries), not every program.
    pub entrypoint_only: bool,
    /// Also list libraries that are fine (by default only failing ones are).
    pub all_libraries: bool,
}

/// Whether a file can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Everything it needs is in the image.
    Runs,
    /// Something is missing or wrong; `reason` says what.
    Fails,
}

/// What a checked file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// A program without an interpreter at a fixed address.
    Static,
    /// A position-independent program without an interpreter.
    StaticPie,
    /// A program loaded by an interpreter (`ld-linux`, `ld-musl`).
    Dynamic,
    /// A `#!` script.
    Script,
    /// A shared library.
    Library,
    /// Not something the kernel can execute (an unreadable ELF file, a
    /// directory, a file that is neither ELF nor a script).
    Other,
    /// Not in the image.
    Missing,
}

impl FileKind {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Static => "static",
            FileKind::StaticPie => "static-pie",
            FileKind::Dynamic => "dynamic",
            FileKind::Script => "script",
            FileKind::Library => "library",
            FileKind::Other => "other",
            FileKind::Missing => "missing",
        }
    }
}

/// The verdict on one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileVerdict {
    /// The file's path in the image (for a missing entrypoint, the command
    /// as written).
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Whether it can start.
    pub verdict: Verdict,
    /// Why not (one line); `None` when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether this is the image's entrypoint.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub entrypoint: bool,
}

/// The result of checking an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The image's platform from its config, e.g. `linux/amd64`.
    pub platform: String,
    /// This host's architecture, e.g. `amd64`.
    pub host_arch: String,
    /// The C libraries the image has, e.g. `glibc 2.36`, `musl`; empty for
    /// none (scratch, static programs only).
    pub libc: Vec<String>,
    /// The first word of Entrypoint + Cmd, as the config has it.
    pub entrypoint: Option<String>,
    /// Whether the entrypoint can start; `None` without an entrypoint.
    pub entrypoint_ok: Option<bool>,
    /// The verdicts: the entrypoint (and its interpreter) first, then by path.
    pub files: Vec<FileVerdict>,
}

impl Report {
    /// Whether any listed file fails.
    pub fn any_fails(&self) -> bool {
        self.files.iter().any(|f| f.verdict == Verdict::Fails)
    }
}

/// Why an image could not be checked (not: why a program would not run).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The config blob could not be read.
    #[error("reading the image config")]
    Store(#[from] skiff_oci::store::StoreError),
    /// The config is not a valid image config.
    #[error("the image config is not valid JSON")]
    Config(#[from] serde_json::Error),
    /// The layers could not be read.
    #[error("reading the image's files")]
    Fs(#[from] ImageFsError),
}

/// The parts of an image config that `check` uses.
#[derive(Debug, Clone)]
pub(crate) struct ImageConfig {
    /// Normalized (`amd64`, `arm64`), `None` when the config has none.
    pub arch: Option<String>,
    pub platform: String,
    pub process: ImageProcess,
}

impl ImageConfig {
    pub(crate) fn parse(bytes: &[u8]) -> Result<ImageConfig, CheckError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(default)]
            os: Option<String>,
            #[serde(default)]
            architecture: Option<String>,
            #[serde(default)]
            variant: Option<String>,
        }
        let doc: Doc = serde_json::from_slice(bytes)?;
        let process = ImageProcess::parse(bytes).unwrap_or_default();
        let os = doc.os.unwrap_or_else(|| "linux".into());
        let arch = doc.architecture.filter(|a| !a.is_empty());
        let spec = format!("{os}/{}", arch.as_deref().unwrap_or("unknown"));
        let parsed = Platform::parse(&spec).ok();
        let arch = arch.map(|a| parsed.as_ref().map_or(a, |p| p.architecture.clone()));
        let mut platform = parsed.map_or(spec, |p| format!("{}/{}", p.os, p.architecture));
        if let Some(v) = doc.variant.filter(|v| !v.is_empty()) {
            platform = format!("{platform}/{v}");
        }
        Ok(ImageConfig {
            arch,
            platform,
            process,
        })
    }
}

/// Files the loader configuration lives in: kept while loading.
fn loader_files(path: &str, size: u64) -> bool {
    size < (1 << 20)
        && (path.starts_with("/etc/ld.so.conf")
            || (path.starts_with("/etc/ld-musl-") && path.ends_with(".path")))
}

/// Checks an image in the store: one pass over its layers, then the checks.
pub fn check_image(
    store: &Store,
    record: &ImageRecord,
    opts: &CheckOptions,
) -> Result<Report, CheckError> {
    let config = store.read_small_blob(&record.config)?;
    check_stream(imagefs::layer_blobs(store, &record.digest)?, &config, opts)
}

/// [`check_image`] from layer streams (plain or compressed) and the bytes
/// of an image config.
pub fn check_layers(
    layers: Vec<Box<dyn Read + '_>>,
    config: &[u8],
    opts: &CheckOptions,
) -> Result<Report, CheckError> {
    check_stream(imagefs::here(layers), config, opts)
}

fn check_stream(
    layers: Vec<imagefs::Layer<'_>>,
    config: &[u8],
    opts: &CheckOptions,
) -> Result<Report, CheckError> {
    let config = ImageConfig::parse(config)?;
    let fs = ImageFs::load_with(
        layers,
        &LoadOptions {
            keep: &loader_files,
            sniff: true,
        },
    )?;
    Ok(check_fs(&fs, &config, opts))
}

/// What an ELF file is, for the report.
pub(crate) fn elf_kind(info: &ElfInfo) -> FileKind {
    use skiff_elf::Kind;
    match (info.kind, info.interpreter.is_some()) {
        (Kind::Exec, true) => FileKind::Dynamic,
        (Kind::Exec, false) => FileKind::Static,
        (Kind::Dyn, interp) if info.is_pie => {
            if interp {
                FileKind::Dynamic
            } else {
                FileKind::StaticPie
            }
        }
        (Kind::Dyn, _) => FileKind::Library,
        _ => FileKind::Other,
    }
}

/// Checks a loaded tree.
pub(crate) fn check_fs(fs: &ImageFs, config: &ImageConfig, opts: &CheckOptions) -> Report {
    let host = Platform::host().architecture;
    let mut checker = search::Checker::new(fs, config, &host);
    let mut files = Vec::new();
    let word = entry::command_word(&config.process);
    let mut entrypoint_ok = None;
    let mut listed = std::collections::HashSet::new();
    if let Some(word) = &word {
        let (verdicts, covered) = entry::check_entrypoint(&mut checker, word);
        entrypoint_ok = verdicts.first().map(|v| v.verdict == Verdict::Runs);
        listed.extend(covered);
        listed.extend(verdicts.iter().map(|v| v.path.clone()));
        files.extend(verdicts);
    }
    let head = files.len();
    if !opts.entrypoint_only {
        let elves: Vec<(String, Arc<ElfInfo>)> = fs
            .sniffed()
            .filter_map(|(p, _, s)| match s {
                Sniff::Elf(i) => Some((p.to_owned(), i.clone())),
                _ => None,
            })
            .collect();
        for (path, info) in &elves {
            if listed.contains(path) {
                continue;
            }
            let kind = elf_kind(info);
            let result = match kind {
                FileKind::Library => checker.check_library(path, info),
                FileKind::Other => continue,
                _ => checker.check_program(path, info),
            };
            if kind == FileKind::Library && result.is_ok() && !opts.all_libraries {
                continue;
            }
            files.push(verdict(path, kind, result, false));
        }
        for (path, _, s) in fs.sniffed() {
            if let Sniff::BadElf(why) = s {
                if !listed.contains(path) {
                    let reason = Err(format!("not a valid ELF file: {why}"));
                    files.push(verdict(path, FileKind::Other, reason, false));
                }
            }
        }
        files[head..].sort_by(|a, b| a.path.cmp(&b.path));
    }
    Report {
        platform: config.platform.clone(),
        host_arch: host,
        libc: checker.image_libc(),
        entrypoint: word,
        entrypoint_ok,
        files,
    }
}

pub(crate) fn verdict(
    path: &str,
    kind: FileKind,
    result: Result<(), String>,
    entrypoint: bool,
) -> FileVerdict {
    let (verdict, reason) = match result {
        Ok(()) => (Verdict::Runs, None),
        Err(r) => (Verdict::Fails, Some(r)),
    };
    FileVerdict {
        path: path.to_owned(),
        kind,
        verdict,
        reason,
        entrypoint,
    }
}

/// Whether the node at `path` (resolved) is a regular file with an execute bit.
pub(crate) fn executable(fs: &ImageFs, path: &str) -> Result<(), &'static str> {
    match fs.get(path) {
        None => Err("no such file or directory"),
        Some(n) if n.kind == NodeKind::Dir => Err("is a directory"),
        Some(n) if !matches!(n.kind, NodeKind::File | NodeKind::Hardlink(_)) => {
            Err("not a regular file")
        }
        Some(n) if n.mode & 0o111 == 0 => Err("permission denied"),
        Some(_) => Ok(()),
    }
}
