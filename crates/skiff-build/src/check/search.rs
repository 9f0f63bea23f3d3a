//! The dynamic loader's work, done on the image's tree without running
//! anything: finding each `DT_NEEDED` library and checking symbol versions.
//!
//! glibc's order (`ld.so(8)`): a name with a slash is a path; else the
//! `DT_RPATH` of the object that needs it and of its loaders up to the
//! program (only while none of them has `DT_RUNPATH`), `LD_LIBRARY_PATH`
//! (from the image's `Env`), the object's own `DT_RUNPATH`, the directories
//! of /etc/ld.so.conf (what `ldconfig` puts in the cache; the cache itself
//! may be stale, so it is not read), then the default directories (unless
//! `DF_1_NODEFLIB`). musl's: `LD_LIBRARY_PATH`, the run paths of the object
//! and its loaders, then /etc/ld-musl-ARCH.path or `/lib:/usr/local/lib:/usr/lib`.
//! A candidate of another machine or class is skipped, as loaders do, and a
//! library already loaded under that name or soname is reused.

use std::collections::HashMap;
use std::sync::Arc;

use skiff_elf::{Class, ElfInfo};

use super::paths::{
    absolute, compatible, default_dirs, family_of, highest, ld_so_conf, split_version, text,
    triplet, Family,
};
use super::{executable, ImageConfig};
use crate::imagefs::{join, normalize, parent, ImageFs, NodeKind, Sniff};

/// `DF_1_NODEFLIB`: the object's needs are not searched in the default dirs.
const DF_1_NODEFLIB: u64 = 0x800;
/// A loaded object: the path it was found at (its `$ORIGIN` comes from
/// that), where that resolves to, the names it answers to, its summary.
#[derive(Debug, Clone)]
struct Obj {
    found: String,
    origin: String,
    names: Vec<String>,
    info: Arc<ElfInfo>,
}

/// What is at a path, for loading.
pub(crate) enum At {
    Elf(String, Arc<ElfInfo>),
    NotElf,
    Missing,
}

/// The image-wide state of a check: loader configuration and caches.
pub(crate) struct Checker<'a> {
    pub fs: &'a ImageFs,
    pub config: &'a ImageConfig,
    pub host: String,
    pub cwd: String,
    pub path_var: String,
    ld_library_path: Vec<String>,
    conf_dirs: Vec<String>,
    musl_dirs: Option<Vec<String>>,
    /// (name, machine, class, dirs) → the object found, or why not.
    cache: HashMap<String, Result<Obj, Option<String>>>,
    libraries: HashMap<String, Result<(), String>>,
    glibc: Option<(String, Option<String>)>,
    /// Dynamic loaders in the image by soname (`ld-linux-x86-64.so.2`), for
    /// saying where one is when a program names another path.
    loaders: HashMap<String, String>,
    musl: Option<String>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(fs: &'a ImageFs, config: &'a ImageConfig, host: &str) -> Checker<'a> {
        let env = config.process.env.clone().unwrap_or_default();
        let var = |k: &str| {
            env.iter()
                .find_map(|e| e.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .map(str::to_owned)
        };
        let cwd = config
            .process
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .map_or_else(|| "/".to_owned(), |w| normalize(&w));
        let ld_library_path = var("LD_LIBRARY_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| absolute(&cwd, d))
            .collect();
        let mut c = Checker {
            fs,
            config,
            host: host.to_owned(),
            path_var: var("PATH").unwrap_or_else(|| super::entry::DEFAULT_PATH.to_owned()),
            cwd,
            ld_library_path,
            conf_dirs: Vec::new(),
            musl_dirs: None,
            cache: HashMap::new(),
            libraries: HashMap::new(),
            glibc: None,
            loaders: HashMap::new(),
            musl: None,
        };
        ld_so_conf(fs, "/etc/ld.so.conf", 0, &mut c.conf_dirs);
        if let Some((_, m)) = triplet(config.arch.as_deref()) {
            let p = format!("/etc/ld-musl-{m}.path");
            if let Some(text) = text(fs, &p) {
                let dirs = text
                    .split(['\n', ':'])
                    .map(str::trim)
                    .filter(|d| !d.is_empty());
                c.musl_dirs = Some(dirs.map(normalize).collect());
            }
        }
        c.find_libcs();
        c
    }

    /// Which C libraries the image has, for messages and the report.
    fn find_libcs(&mut self) {
        for (path, node, sniff) in self.fs.sniffed() {
            let Sniff::Elf(info) = sniff else { continue };
            if !matches!(node.kind, NodeKind::File | NodeKind::Hardlink(_)) {
                continue;
            }
            if let Some(so) = info.soname.as_deref().filter(|s| s.starts_with("ld-")) {
                self.loaders
                    .entry(so.to_owned())
                    .or_insert_with(|| path.to_owned());
            }
            if self.glibc.is_none() && info.soname.as_deref() == Some("libc.so.6") {
                let v = highest(&info.version_defs, "GLIBC_2").map(str::to_owned);
                self.glibc = Some((path.to_owned(), v));
            }
        }
        // musl's loader is libc itself, installed as /lib/ld-musl-ARCH.so.1.
        for dir in ["/lib", "/usr/lib"] {
            let Some(real) = self.fs.resolve(dir, true) else {
                continue;
            };
            for (name, _) in self.fs.children(&real) {
                if self.musl.is_none() && name.starts_with("ld-musl-") {
                    let p = join(&real, name);
                    if let At::Elf(real, _) = self.elf_at(&p) {
                        self.musl = Some(real);
                    }
                }
            }
        }
    }

    /// `glibc 2.36`, `musl`.
    pub(crate) fn image_libc(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((_, v)) = &self.glibc {
            out.push(match v.as_deref().and_then(|v| v.strip_prefix("GLIBC_")) {
                Some(v) => format!("glibc {v}"),
                None => "glibc".to_owned(),
            });
        }
        if self.musl.is_some() {
            out.push("musl".to_owned());
        }
        out
    }

    /// What `path` resolves to.
    pub(crate) fn elf_at(&self, path: &str) -> At {
        let Some(real) = self.fs.resolve(path, true) else {
            return At::Missing;
        };
        match self.fs.get(&real).map(|n| &n.kind) {
            Some(NodeKind::File | NodeKind::Hardlink(_)) => match self.fs.sniff(&real) {
                Some(Sniff::Elf(i)) => At::Elf(real, i.clone()),
                _ => At::NotElf,
            },
            Some(_) => At::NotElf,
            None => At::Missing,
        }
    }

    pub(crate) fn check_arch(&self, info: &ElfInfo) -> Result<(), String> {
        let name = info.arch_name();
        if let Some(arch) = &self.config.arch {
            if !compatible(info.arch(), arch) {
                return Err(format!("built for {name}, the image's platform is {arch}"));
            }
        }
        if !compatible(info.arch(), &self.host) {
            return Err(format!("built for {name}, this host is {}", self.host));
        }
        Ok(())
    }

    fn missing_interp(&self, interp: &str, family: Option<Family>) -> String {
        let (glibc, musl) = (self.glibc.is_some(), self.musl.is_some());
        match family {
            Some(Family::Glibc) if musl && !glibc => {
                format!("built for glibc, image has musl (no {interp})")
            }
            Some(Family::Musl) if glibc && !musl => {
                format!("built for musl, image has glibc (no {interp})")
            }
            _ => {
                let name = interp.rsplit('/').next().unwrap_or(interp);
                match self.loaders.get(name) {
                    Some(p) => format!("needs interpreter {interp}, not in the image (it has {p})"),
                    None => format!("needs interpreter {interp}, not in the image"),
                }
            }
        }
    }

    /// A program (the kernel's part, then the loader's).
    pub(crate) fn check_program(&mut self, path: &str, info: &Arc<ElfInfo>) -> Result<(), String> {
        self.check_arch(info)?;
        let Some(interp) = &info.interpreter else {
            return Ok(());
        };
        let family = family_of(info);
        let ld = match self.elf_at(interp) {
            At::Elf(real, ld) => {
                if ld.machine != info.machine || ld.class != info.class {
                    return Err(format!(
                        "interpreter {interp} is built for {}, the program for {}",
                        ld.arch_name(),
                        info.arch_name()
                    ));
                }
                if let Err(why) = executable(self.fs, &real) {
                    return Err(format!("interpreter {interp}: {why}"));
                }
                Obj {
                    found: interp.clone(),
                    origin: parent(&real).to_owned(),
                    names: [Some(interp.clone()), ld.soname.clone()]
                        .into_iter()
                        .flatten()
                        .collect(),
                    info: ld,
                }
            }
            At::NotElf => return Err(format!("interpreter {interp} is not an ELF file")),
            At::Missing => return Err(self.missing_interp(interp, family)),
        };
        let real = self
            .fs
            .resolve(path, true)
            .unwrap_or_else(|| path.to_owned());
        let root = Obj {
            found: path.to_owned(),
            origin: parent(&real).to_owned(),
            names: vec![path.to_owned()],
            info: info.clone(),
        };
        self.closure(root, Some(ld), family.unwrap_or(Family::Glibc))
    }

    /// A library's own needs (as if a program without search paths loaded
    /// it), once per library.
    pub(crate) fn check_library(&mut self, path: &str, info: &Arc<ElfInfo>) -> Result<(), String> {
        if let Some(r) = self.libraries.get(path) {
            return r.clone();
        }
        let r = self.check_arch(info).and_then(|()| {
            let family =
                family_of(info).unwrap_or(if self.musl.is_some() && self.glibc.is_none() {
                    Family::Musl
                } else {
                    Family::Glibc
                });
            let root = Obj {
                found: path.to_owned(),
                origin: parent(path).to_owned(),
                names: [Some(path.to_owned()), info.soname.clone()]
                    .into_iter()
                    .flatten()
                    .collect(),
                info: info.clone(),
            };
            self.closure(root, None, family)
        });
        self.libraries.insert(path.to_owned(), r.clone());
        r
    }

    /// Loads everything `root` needs, breadth first as ld.so does, then
    /// checks the symbol versions each object needs against what the
    /// object that answers for that file defines.
    fn closure(&mut self, root: Obj, ld: Option<Obj>, family: Family) -> Result<(), String> {
        let mut loaded = vec![root];
        let mut loader: Vec<Option<usize>> = vec![None];
        if let Some(ld) = ld {
            loaded.push(ld);
            loader.push(None);
        }
        let mut missing: Vec<String> = Vec::new();
        let mut i = 0;
        while i < loaded.len() {
            let needed = loaded[i].info.needed.clone();
            for name in needed {
                if loaded.iter().any(|o| o.names.contains(&name)) {
                    continue;
                }
                match self.search(&name, i, &loaded, &loader, family) {
                    Ok(obj) => {
                        loaded.push(obj);
                        loader.push(Some(i));
                    }
                    Err(wrong) => {
                        let mut m = name.clone();
                        if i > 0 {
                            m.push_str(&format!(" (for {})", loaded[i].found));
                        }
                        if let Some(w) = wrong {
                            m.push_str(&format!(" ({w})"));
                        }
                        if !missing.contains(&m) {
                            missing.push(m);
                        }
                    }
                }
            }
            i += 1;
        }
        if !missing.is_empty() {
            return Err(format!(
                "needs {}, not found in the image's library path",
                missing.join(", ")
            ));
        }
        let mut problems: Vec<String> = Vec::new();
        for (idx, o) in loaded.iter().enumerate() {
            for (file, versions) in &o.info.version_needs {
                let Some(t) = loaded.iter().find(|x| x.names.iter().any(|n| n == file)) else {
                    continue;
                };
                let absent: Vec<&str> = versions
                    .iter()
                    .filter(|v| !t.info.version_defs.contains(v))
                    .map(String::as_str)
                    .collect();
                let Some(first) = absent.first() else {
                    continue;
                };
                let whose = if file.starts_with("libc.so") {
                    "the image's libc".to_owned()
                } else {
                    format!("the image's {file}")
                };
                let has = match highest(&t.info.version_defs, first) {
                    Some(h) => format!("{whose} provides up to {h}"),
                    None => format!("{whose} defines no {} versions", split_version(first).0),
                };
                let by = if idx > 0 {
                    format!(", for {}", o.found)
                } else {
                    String::new()
                };
                problems.push(format!("needs {} ({file}{by}); {has}", absent.join(", ")));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Where `name` is found for a program `path` (for tests of the order).
    #[cfg(test)]
    pub(crate) fn find_for(
        &mut self,
        path: &str,
        info: &Arc<ElfInfo>,
        name: &str,
    ) -> Option<String> {
        let real = self
            .fs
            .resolve(path, true)
            .unwrap_or_else(|| path.to_owned());
        let root = Obj {
            found: path.to_owned(),
            origin: parent(&real).to_owned(),
            names: vec![path.to_owned()],
            info: info.clone(),
        };
        let family = family_of(info).unwrap_or(Family::Glibc);
        self.search(name, 0, &[root], &[None], family)
            .ok()
            .map(|o| o.found)
    }

    /// Finds the library `name` needed by `loaded[by]`; `Err` says, when a
    /// candidate was skipped as being for another machine, which.
    fn search(
        &mut self,
        name: &str,
        by: usize,
        loaded: &[Obj],
        loader: &[Option<usize>],
        family: Family,
    ) -> Result<Obj, Option<String>> {
        let want = loaded[by].info.clone();
        let dirs: Vec<String> = if name.contains('/') {
            vec![String::new()]
        } else {
            self.search_dirs(by, loaded, loader, family)
        };
        let key = format!(
            "{name}\0{}\0{:?}\0{}",
            want.machine,
            want.class,
            dirs.join("\0")
        );
        if let Some(r) = self.cache.get(&key) {
            return r.clone();
        }
        let mut wrong = None;
        let mut result = Err(None);
        for d in &dirs {
            let cand = if d.is_empty() {
                absolute(&self.cwd, name)
            } else {
                normalize(&join(d, name))
            };
            match self.elf_at(&cand) {
                At::Elf(_, info) if info.machine == want.machine && info.class == want.class => {
                    result = Ok(Obj {
                        origin: parent(&cand).to_owned(),
                        names: [Some(name.to_owned()), info.soname.clone()]
                            .into_iter()
                            .flatten()
                            .collect(),
                        found: cand,
                        info,
                    });
                    break;
                }
                At::Elf(real, info) => {
                    wrong.get_or_insert(format!("{real} is {}", info.arch_name()));
                }
                At::NotElf | At::Missing => {}
            }
        }
        if result.is_err() {
            result = Err(wrong);
        }
        self.cache.insert(key, result.clone());
        result
    }

    fn search_dirs(
        &self,
        by: usize,
        loaded: &[Obj],
        loader: &[Option<usize>],
        family: Family,
    ) -> Vec<String> {
        let o = &loaded[by];
        let mut dirs = Vec::new();
        let chain = || std::iter::successors(Some(by), |&j| loader[j]);
        match family {
            Family::Glibc => {
                if o.info.runpath.is_empty() {
                    for j in chain() {
                        let l = &loaded[j];
                        if l.info.runpath.is_empty() {
                            dirs.extend(self.expand(&l.info.rpath, l));
                        }
                    }
                    // The program's RPATH applies to everything it loads.
                    if loaded[0].info.runpath.is_empty() && !chain().any(|j| j == 0) {
                        dirs.extend(self.expand(&loaded[0].info.rpath, &loaded[0]));
                    }
                }
                dirs.extend(self.ld_library_path.iter().cloned());
                dirs.extend(self.expand(&o.info.runpath, o));
                if o.info.flags_1 & DF_1_NODEFLIB == 0 {
                    dirs.extend(self.conf_dirs.iter().cloned());
                    dirs.extend(default_dirs(&o.info));
                }
            }
            Family::Musl => {
                dirs.extend(self.ld_library_path.iter().cloned());
                for j in chain() {
                    let l = &loaded[j];
                    let paths = if l.info.runpath.is_empty() {
                        &l.info.rpath
                    } else {
                        &l.info.runpath
                    };
                    dirs.extend(self.expand(paths, l));
                }
                match &self.musl_dirs {
                    Some(d) => dirs.extend(d.iter().cloned()),
                    None => dirs.extend(["/lib", "/usr/local/lib", "/usr/lib"].map(String::from)),
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        dirs
    }

    /// Expands `$ORIGIN`, `$LIB` and `$PLATFORM` (also as `${…}`); an entry
    /// with any other `$` token is dropped, as ld.so does.
    fn expand(&self, entries: &[String], o: &Obj) -> Vec<String> {
        let lib = if o.info.class == Class::Elf64 {
            "lib64"
        } else {
            "lib"
        };
        let platform = match o.info.arch() {
            Some("amd64") => "x86_64",
            Some("arm64") => "aarch64",
            Some("386") => "i686",
            Some(other) => other,
            None => "",
        };
        entries
            .iter()
            .filter_map(|e| {
                let mut s = e.clone();
                for (token, value) in [
                    ("ORIGIN", o.origin.as_str()),
                    ("LIB", lib),
                    ("PLATFORM", platform),
                ] {
                    s = s
                        .replace(&format!("${{{token}}}"), value)
                        .replace(&format!("${token}"), value);
                }
                if s.contains('$') {
                    return None;
                }
                Some(absolute(&self.cwd, &s))
            })
            .collect()
    }
}
