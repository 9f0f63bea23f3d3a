//! The loader's configuration and the tables about platforms that the
//! search uses: ld.so.conf and its includes, default directories, multiarch
//! triplets, which architectures run where, version names.

use skiff_elf::{Class, ElfInfo};

use crate::imagefs::{join, normalize, parent, ImageFs};

/// Nested `include`s of ld.so.conf followed.
const MAX_INCLUDE_DEPTH: u32 = 8;

/// Which loader's rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Glibc,
    Musl,
}

/// `p` made absolute against the directory `cwd`, normalized.
pub(crate) fn absolute(cwd: &str, p: &str) -> String {
    if p.starts_with('/') {
        normalize(p)
    } else {
        normalize(&join(cwd, p))
    }
}

pub(crate) fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The family a program's interpreter (or a library's needs) says.
pub(crate) fn family_of(info: &ElfInfo) -> Option<Family> {
    if let Some(i) = &info.interpreter {
        return Some(if basename(i).starts_with("ld-musl-") {
            Family::Musl
        } else {
            Family::Glibc
        });
    }
    info.needed.iter().find_map(|n| {
        if n == "libc.so.6" {
            Some(Family::Glibc)
        } else if n.starts_with("libc.musl-") || n == "libc.so" {
            Some(Family::Musl)
        } else {
            None
        }
    })
}

/// The Debian multiarch triplet and musl's name of an architecture.
pub(crate) fn triplet(arch: Option<&str>) -> Option<(&'static str, &'static str)> {
    Some(match arch? {
        "amd64" => ("x86_64-linux-gnu", "x86_64"),
        "arm64" => ("aarch64-linux-gnu", "aarch64"),
        "arm" => ("arm-linux-gnueabihf", "armhf"),
        "386" => ("i386-linux-gnu", "i386"),
        "ppc64le" => ("powerpc64le-linux-gnu", "powerpc64le"),
        "s390x" => ("s390x-linux-gnu", "s390x"),
        "riscv64" => ("riscv64-linux-gnu", "riscv64"),
        "mips64le" => ("mips64el-linux-gnuabi64", "mips64el"),
        _ => return None,
    })
}

/// Whether a program of `file` architecture runs where `want` does: the
/// same, or the 32-bit sibling a 64-bit kernel also runs.
pub(crate) fn compatible(file: Option<&str>, want: &str) -> bool {
    match file {
        Some(f) => f == want || matches!((f, want), ("386", "amd64") | ("arm", "arm64")),
        None => false,
    }
}

/// `GLIBC_2.34` → (`GLIBC_`, [2, 34]).
pub(crate) fn split_version(v: &str) -> (&str, Vec<u64>) {
    let at = v.find(|c: char| c.is_ascii_digit()).unwrap_or(v.len());
    let nums = v[at..].split('.').map(|n| n.parse().unwrap_or(0)).collect();
    (&v[..at], nums)
}

/// The highest of `defs` with the prefix of `like`.
pub(crate) fn highest<'d>(defs: &'d [String], like: &str) -> Option<&'d str> {
    let prefix = split_version(like).0;
    defs.iter()
        .filter(|d| split_version(d).0 == prefix)
        .max_by(|a, b| split_version(a).1.cmp(&split_version(b).1))
        .map(String::as_str)
}

/// The kept contents of `path` (through symlinks) as text.
pub(crate) fn text(fs: &ImageFs, path: &str) -> Option<String> {
    let p = fs.resolve(path, true)?;
    Some(String::from_utf8_lossy(fs.content(&p)?).into_owned())
}

/// ld.so.conf: one directory a line, `#` comments, `include GLOB`
/// (relative to the including file's directory), `hwcap` ignored; the
/// directories go to `dirs` once each, in order.
pub(crate) fn ld_so_conf(fs: &ImageFs, path: &str, depth: u32, dirs: &mut Vec<String>) {
    let Some(text) = text(fs, path) else { return };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(pattern) = line
            .strip_prefix("include")
            .filter(|r| r.starts_with([' ', '\t']))
        {
            if depth >= MAX_INCLUDE_DEPTH {
                continue;
            }
            for pat in pattern.split_whitespace() {
                let pat = if pat.starts_with('/') {
                    pat.to_owned()
                } else {
                    join(parent(path), pat)
                };
                for file in glob(fs, &pat) {
                    ld_so_conf(fs, &file, depth + 1, dirs);
                }
            }
        } else if !line.is_empty() && !line.starts_with("hwcap") {
            // libc5-era `dir=TYPE` lines name the directory first.
            let dir = normalize(line.split('=').next().unwrap_or_default().trim());
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
}

/// The loader's built-in directories: the multiarch ones, then the
/// 64-bit ones for a 64-bit object, then /lib and /usr/lib.
pub(crate) fn default_dirs(info: &ElfInfo) -> Vec<String> {
    let mut d = Vec::new();
    if let Some((t, _)) = triplet(info.arch()) {
        d.push(format!("/lib/{t}"));
        d.push(format!("/usr/lib/{t}"));
    }
    match info.class {
        Class::Elf64 => d.extend(["/lib64", "/usr/lib64"].map(String::from)),
        Class::Elf32 => d.extend(["/lib32", "/usr/lib32"].map(String::from)),
    }
    d.extend(["/lib", "/usr/lib"].map(String::from));
    d
}

/// Paths of the tree matching a glob of `*`, `?` and literal components
/// (what ld.so.conf includes use), in order, symlinked directories followed.
pub(crate) fn glob(fs: &ImageFs, pattern: &str) -> Vec<String> {
    let mut current = vec!["/".to_owned()];
    for comp in normalize(pattern).split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for dir in &current {
            let Some(real) = fs.resolve(dir, true) else {
                continue;
            };
            if !comp.contains(['*', '?']) {
                let p = join(dir, comp);
                if fs.resolve(&p, true).is_some_and(|r| fs.get(&r).is_some()) {
                    next.push(p);
                }
                continue;
            }
            for (name, _) in fs.children(&real) {
                if wildcard(comp.as_bytes(), name.as_bytes()) && !name.starts_with('.') {
                    next.push(join(dir, name));
                }
            }
        }
        next.sort();
        current = next;
    }
    current
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}
