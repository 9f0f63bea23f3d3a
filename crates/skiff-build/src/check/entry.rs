//! The entrypoint: Entrypoint + Cmd's first word, looked up as the
//! container's exec would (the config's `PATH`, docker's default without
//! one; symlinks inside the image), then checked as what the kernel finds:
//! an ELF program, or a `#!` script whose interpreter (itself checked, and
//! for `/usr/bin/env NAME`, NAME in `PATH` too) must be in the image.

use skiff_runtime::image_config::ImageProcess;

use super::paths::absolute;
use super::search::{At, Checker};
use super::{elf_kind, executable, verdict, FileKind, FileVerdict, Verdict};
use crate::imagefs::Sniff;

/// PATH when the image's environment has none (docker's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Scripts whose interpreter is a script, at most (Linux's binfmt limit).
const MAX_SCRIPT_DEPTH: u32 = 4;

/// The program a container of this image runs by default.
pub(crate) fn command_word(p: &ImageProcess) -> Option<String> {
    let ep = p.entrypoint.clone().unwrap_or_default();
    let args = if ep.is_empty() {
        p.cmd.clone().unwrap_or_default()
    } else {
        ep
    };
    args.into_iter().next().filter(|w| !w.is_empty())
}

/// Finds `word` as execvp does: with a slash it names a file (relative to
/// the working directory), else the first executable regular file along
/// PATH. Returns the path found (not resolved), or the error as runc words it.
pub(crate) fn lookup(c: &Checker<'_>, word: &str) -> Result<String, String> {
    if word.contains('/') {
        let path = absolute(&c.cwd, word);
        let real = c.fs.resolve(&path, true).unwrap_or_else(|| path.clone());
        return match executable(c.fs, &real) {
            Ok(()) => Ok(path),
            Err(why) => Err(format!("exec: \"{word}\": {why}")),
        };
    }
    let mut denied = None;
    for dir in c.path_var.split(':') {
        let dir = if dir.is_empty() { c.cwd.as_str() } else { dir };
        let path = absolute(&absolute(&c.cwd, dir), word);
        let Some(real) = c.fs.resolve(&path, true) else {
            continue;
        };
        match executable(c.fs, &real) {
            Ok(()) => return Ok(path),
            Err("no such file or directory") => {}
            Err(why) => {
                denied.get_or_insert(format!("exec: \"{word}\": {path}: {why}"));
            }
        }
    }
    Err(denied.unwrap_or_else(|| format!("exec: \"{word}\": executable file not found in $PATH")))
}

/// The entrypoint's verdict first, then its interpreters'; and the
/// resolved paths they cover (not to be listed again).
pub(crate) fn check_entrypoint(c: &mut Checker<'_>, word: &str) -> (Vec<FileVerdict>, Vec<String>) {
    let mut out = Vec::new();
    let mut covered = Vec::new();
    match lookup(c, word) {
        Err(reason) => {
            let kind = if reason.ends_with("not found in $PATH")
                || reason.ends_with("no such file or directory")
            {
                FileKind::Missing
            } else {
                FileKind::Other
            };
            out.push(verdict(word, kind, Err(reason), true));
        }
        Ok(path) => {
            let v = check_exec(c, &path, 0, &mut out, &mut covered);
            out.insert(
                0,
                FileVerdict {
                    entrypoint: true,
                    ..v
                },
            );
        }
    }
    (out, covered)
}

/// What the kernel does with `path` (found, executable): the verdict on it;
/// interpreters' verdicts go to `extra`.
fn check_exec(
    c: &mut Checker<'_>,
    path: &str,
    depth: u32,
    extra: &mut Vec<FileVerdict>,
    covered: &mut Vec<String>,
) -> FileVerdict {
    let real = c.fs.resolve(path, true).unwrap_or_else(|| path.to_owned());
    covered.push(real.clone());
    match c.fs.sniff(&real).cloned() {
        Some(Sniff::Elf(info)) => {
            let kind = elf_kind(&info);
            let result = match kind {
                FileKind::Other => {
                    Err("not an executable ELF file (an object file or core dump)".to_owned())
                }
                // A library run directly (ld.so, libc.so.6): a program all the same.
                _ => c.check_program(&real, &info),
            };
            verdict(path, kind, result, false)
        }
        Some(Sniff::BadElf(why)) => verdict(
            path,
            FileKind::Other,
            Err(format!("not a valid ELF file: {why}")),
            false,
        ),
        Some(Sniff::Script(line)) => {
            let result = check_script(c, &line, depth, extra, covered);
            verdict(path, FileKind::Script, result, false)
        }
        None => verdict(
            path,
            FileKind::Other,
            Err("exec format error: neither an ELF program nor a #! script".to_owned()),
            false,
        ),
    }
}

fn check_script(
    c: &mut Checker<'_>,
    line: &str,
    depth: u32,
    extra: &mut Vec<FileVerdict>,
    covered: &mut Vec<String>,
) -> Result<(), String> {
    if depth >= MAX_SCRIPT_DEPTH {
        return Err("too many levels of #! interpreters".to_owned());
    }
    // Linux: the interpreter, then the rest of the line as one argument.
    let (interp, arg) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, a.trim()),
        None => (line, ""),
    };
    if interp.is_empty() {
        return Err("empty #! line".to_owned());
    }
    let ipath = absolute(&c.cwd, interp);
    let real = c.fs.resolve(&ipath, true);
    match real.as_deref().map(|r| executable(c.fs, r)) {
        Some(Ok(())) => {}
        Some(Err("no such file or directory")) | None => {
            return Err(format!("interpreter {interp}, not in the image"));
        }
        Some(Err(why)) => return Err(format!("interpreter {interp}: {why}")),
    }
    let v = check_exec(c, &ipath, depth + 1, extra, covered);
    let failed = (v.verdict == Verdict::Fails).then(|| v.reason.clone().unwrap_or_default());
    extra.push(v);
    if let Some(why) = failed {
        return Err(format!("interpreter {interp}: {why}"));
    }
    // `#!/usr/bin/env NAME`: env looks NAME up in PATH.
    let is_env =
        matches!(c.elf_at(&ipath), At::Elf(..)) && interp.rsplit('/').next() == Some("env");
    if is_env {
        let mut words = arg
            .split_whitespace()
            .filter(|w| !w.starts_with('-') && !w.contains('='));
        if let Some(name) = words.next() {
            let found = lookup(c, name).map_err(|e| format!("{e} (for {interp} {name})"))?;
            let v = check_exec(c, &found, depth + 1, extra, covered);
            let failed =
                (v.verdict == Verdict::Fails).then(|| v.reason.clone().unwrap_or_default());
            extra.push(v);
            if let Some(why) = failed {
                return Err(format!("{name} ({found}): {why}"));
            }
        }
    }
    Ok(())
}
