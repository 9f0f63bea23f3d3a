//! The loader's search order, `$ORIGIN`, ld.so.conf includes and the
//! entrypoint lookup, on trees built by hand with summaries as the ELF
//! reader would give them (the real-binary cases are in tests/check.rs).

use std::sync::Arc;

use skiff_elf::{Class, ElfInfo, Endianness, Kind};
use skiff_runtime::image_config::ImageProcess;

use super::paths::glob;
use super::search::Checker;
use super::*;
use crate::imagefs::{ImageFs, NodeKind, Sniff};

fn info(needed: &[&str]) -> ElfInfo {
    ElfInfo {
        machine: skiff_elf::EM_X86_64,
        class: Class::Elf64,
        endianness: Endianness::Little,
        kind: Kind::Dyn,
        interpreter: None,
        needed: needed.iter().map(|s| s.to_string()).collect(),
        runpath: Vec::new(),
        rpath: Vec::new(),
        soname: None,
        version_needs: Vec::new(),
        version_defs: Vec::new(),
        flags_1: 0,
        has_dynamic: true,
        is_pie: false,
    }
}

struct Tree(ImageFs);

impl Tree {
    fn new() -> Tree {
        let mut fs = ImageFs::default();
        fs.insert_for_test("/", NodeKind::Dir, 0o755, None);
        Tree(fs)
    }
    fn elf(mut self, path: &str, i: ElfInfo) -> Tree {
        self.0
            .insert_for_test(path, NodeKind::File, 0o755, Some(Sniff::Elf(Arc::new(i))));
        self
    }
    fn lib(self, path: &str) -> Tree {
        self.elf(path, info(&[]))
    }
    fn dir(mut self, path: &str) -> Tree {
        self.0.insert_for_test(path, NodeKind::Dir, 0o755, None);
        self
    }
    fn link(mut self, path: &str, target: &str) -> Tree {
        self.0
            .insert_for_test(path, NodeKind::Symlink(target.into()), 0o777, None);
        self
    }
    fn text(mut self, path: &str, mode: u32, content: &str) -> Tree {
        self.0.insert_for_test(path, NodeKind::File, mode, None);
        self.0.set_content_for_test(path, content.as_bytes());
        self
    }
}

fn config(env: &[&str], cwd: Option<&str>) -> ImageConfig {
    ImageConfig {
        arch: Some("amd64".into()),
        platform: "linux/amd64".into(),
        process: ImageProcess {
            env: Some(env.iter().map(|s| s.to_string()).collect()),
            working_dir: cwd.map(str::to_owned),
            ..ImageProcess::default()
        },
    }
}

fn find(t: &Tree, env: &[&str], prog: &str, i: ElfInfo, name: &str) -> Option<String> {
    let cfg = config(env, None);
    let mut c = Checker::new(&t.0, &cfg, "amd64");
    c.find_for(prog, &Arc::new(i), name)
}

#[test]
fn rpath_then_ld_library_path_then_runpath_then_defaults() {
    let t = Tree::new()
        .lib("/r/libx.so.1")
        .lib("/e/libx.so.1")
        .lib("/p/libx.so.1")
        .lib("/usr/lib/libx.so.1");
    let env = ["LD_LIBRARY_PATH=/e"];
    let mut p = info(&["libx.so.1"]);
    p.rpath = vec!["/r".into()];
    assert_eq!(
        find(&t, &env, "/bin/p", p.clone(), "libx.so.1").as_deref(),
        Some("/r/libx.so.1")
    );
    p.runpath = vec!["/p".into()];
    assert_eq!(
        find(&t, &env, "/bin/p", p.clone(), "libx.so.1").as_deref(),
        Some("/e/libx.so.1"),
        "a runpath turns the rpath off and comes after LD_LIBRARY_PATH"
    );
    assert_eq!(
        find(&t, &[], "/bin/p", p, "libx.so.1").as_deref(),
        Some("/p/libx.so.1")
    );
    let plain = info(&["libx.so.1"]);
    assert_eq!(
        find(&t, &[], "/bin/p", plain.clone(), "libx.so.1").as_deref(),
        Some("/usr/lib/libx.so.1")
    );
    let mut nodef = plain;
    nodef.flags_1 = 0x800;
    assert_eq!(
        find(&t, &[], "/bin/p", nodef, "libx.so.1"),
        None,
        "DF_1_NODEFLIB"
    );
}

#[test]
fn multiarch_and_wrong_class() {
    let mut i386 = info(&[]);
    i386.class = Class::Elf32;
    i386.machine = 3;
    let t = Tree::new()
        .elf("/lib/x86_64-linux-gnu/libz.so.1", i386.clone())
        .lib("/usr/lib/x86_64-linux-gnu/libz.so.1")
        .lib("/lib/libz.so.1");
    let p = info(&["libz.so.1"]);
    assert_eq!(
        find(&t, &[], "/bin/p", p, "libz.so.1").as_deref(),
        Some("/usr/lib/x86_64-linux-gnu/libz.so.1"),
        "the 32-bit one is skipped, the multiarch dir comes before /lib"
    );
}

#[test]
fn origin_is_the_resolved_program_directory() {
    let t = Tree::new()
        .dir("/app")
        .dir("/app/bin")
        .dir("/usr/local/bin")
        .lib("/app/lib/libapp.so")
        .link("/usr/local/bin/prog", "/app/bin/prog");
    let mut p = info(&["libapp.so"]);
    p.runpath = vec!["${ORIGIN}/../lib".into()];
    let t = t.elf("/app/bin/prog", p.clone());
    assert_eq!(
        find(&t, &[], "/usr/local/bin/prog", p.clone(), "libapp.so").as_deref(),
        Some("/app/lib/libapp.so")
    );
    p.runpath = vec!["$ORIGIN/../lib".into(), "$UNKNOWN/x".into()];
    assert_eq!(
        find(&t, &[], "/app/bin/prog", p.clone(), "libapp.so").as_deref(),
        Some("/app/lib/libapp.so")
    );
    p.runpath = vec!["$ORIGIN/lib".into()];
    assert_eq!(find(&t, &[], "/app/bin/prog", p, "libapp.so"), None);
}

#[test]
fn ld_so_conf_includes() {
    let t = Tree::new()
        .dir("/etc")
        .dir("/etc/ld.so.conf.d")
        .text(
            "/etc/ld.so.conf",
            0o644,
            "# comment\ninclude ld.so.conf.d/*.conf\n/opt/first\n",
        )
        .text("/etc/ld.so.conf.d/b.conf", 0o644, "/opt/b # trailing\n")
        .text(
            "/etc/ld.so.conf.d/a.conf",
            0o644,
            "/opt/a\ninclude /etc/ld.so.conf.d/*.conf\n",
        )
        .text("/etc/ld.so.conf.d/skip.txt", 0o644, "/opt/never\n")
        .lib("/opt/b/libq.so")
        .lib("/opt/never/libn.so")
        .lib("/usr/lib/libq.so");
    assert_eq!(
        glob(&t.0, "/etc/ld.so.conf.d/*.conf"),
        ["/etc/ld.so.conf.d/a.conf", "/etc/ld.so.conf.d/b.conf"]
    );
    let p = info(&[]);
    assert_eq!(
        find(&t, &[], "/bin/p", p.clone(), "libq.so").as_deref(),
        Some("/opt/b/libq.so")
    );
    assert_eq!(
        find(&t, &[], "/bin/p", p, "libn.so"),
        None,
        "only *.conf is included"
    );
}

#[test]
fn musl_uses_its_path_file() {
    let mut prog = info(&["libc.musl-x86_64.so.1", "libq.so"]);
    prog.interpreter = Some("/lib/ld-musl-x86_64.so.1".into());
    let t = Tree::new()
        .dir("/etc")
        .text("/etc/ld-musl-x86_64.path", 0o644, "/opt/m:/usr/lib\n")
        .lib("/opt/m/libq.so")
        .lib("/lib/libq.so");
    assert_eq!(
        find(&t, &[], "/bin/p", prog.clone(), "libq.so").as_deref(),
        Some("/opt/m/libq.so")
    );
    let t = Tree::new().lib("/usr/local/lib/libq.so");
    assert_eq!(
        find(&t, &[], "/bin/p", prog, "libq.so").as_deref(),
        Some("/usr/local/lib/libq.so")
    );
}

#[test]
fn transitive_needs_see_the_programs_rpath() {
    let a = info(&["libb.so"]);
    let t = Tree::new()
        .elf("/usr/lib/liba.so", a.clone())
        .lib("/r/libb.so");
    let mut p = info(&["liba.so"]);
    p.rpath = vec!["/r".into()];
    p.interpreter = Some("/lib64/ld-linux-x86-64.so.2".into());
    p.is_pie = true;
    let t = t
        .lib("/lib64/ld-linux-x86-64.so.2")
        .elf("/bin/p", p.clone());
    let cfg = config(&[], None);
    let mut c = Checker::new(&t.0, &cfg, "amd64");
    assert_eq!(c.check_program("/bin/p", &Arc::new(p.clone())), Ok(()));
    // The library checked on its own has no rpath to use.
    let err = c
        .check_library("/usr/lib/liba.so", &Arc::new(a))
        .unwrap_err();
    assert!(err.contains("libb.so"), "{err}");
    // With a runpath of its own, the program's rpath no longer applies.
    let mut a2 = info(&["libb.so"]);
    a2.runpath = vec!["/nowhere".into()];
    let t = t.elf("/usr/lib/liba.so", a2);
    let mut c = Checker::new(&t.0, &cfg, "amd64");
    let err = c.check_program("/bin/p", &Arc::new(p)).unwrap_err();
    assert_eq!(
        err,
        "needs libb.so (for /usr/lib/liba.so), not found in the image's library path"
    );
}

#[test]
fn version_messages_name_the_newest_available() {
    let mut libc = info(&[]);
    libc.soname = Some("libc.so.6".into());
    libc.version_defs = ["GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.3", "GLIBC_PRIVATE"]
        .map(String::from)
        .to_vec();
    let mut p = info(&["libc.so.6"]);
    p.interpreter = Some("/lib64/ld-linux-x86-64.so.2".into());
    p.version_needs = vec![(
        "libc.so.6".into(),
        vec!["GLIBC_2.2.5".into(), "GLIBC_2.34".into()],
    )];
    let t = Tree::new()
        .lib("/lib64/ld-linux-x86-64.so.2")
        .elf("/lib/x86_64-linux-gnu/libc.so.6", libc);
    let cfg = config(&[], None);
    let mut c = Checker::new(&t.0, &cfg, "amd64");
    assert_eq!(c.image_libc(), ["glibc 2.17"]);
    let err = c.check_program("/bin/p", &Arc::new(p)).unwrap_err();
    assert_eq!(
        err,
        "needs GLIBC_2.34 (libc.so.6); the image's libc provides up to GLIBC_2.17"
    );
}

#[test]
fn entrypoint_lookup_follows_path_and_symlinks() {
    let mut prog = info(&[]);
    prog.kind = Kind::Exec;
    let t = Tree::new()
        .dir("/usr")
        .dir("/usr/local")
        .dir("/usr/local/bin")
        .dir("/opt")
        .text("/usr/local/bin/tool", 0o644, "#!/bin/sh\n")
        .link("/usr/local/bin/app", "../../../opt/real/app")
        .elf("/opt/real/app", prog.clone())
        .elf("/srv/rel", prog);
    let cfg = config(&["PATH=/usr/local/bin:/bin"], Some("/srv"));
    let c = Checker::new(&t.0, &cfg, "amd64");
    assert_eq!(
        entry::lookup(&c, "app").as_deref(),
        Ok("/usr/local/bin/app")
    );
    assert_eq!(
        c.fs.resolve("/usr/local/bin/app", true).as_deref(),
        Some("/opt/real/app")
    );
    assert_eq!(
        entry::lookup(&c, "./rel").as_deref(),
        Ok("/srv/rel"),
        "relative to WorkingDir"
    );
    let e = entry::lookup(&c, "tool").unwrap_err();
    assert!(e.ends_with("permission denied"), "{e}");
    let e = entry::lookup(&c, "nope").unwrap_err();
    assert_eq!(e, "exec: \"nope\": executable file not found in $PATH");
    let mut c = Checker::new(&t.0, &cfg, "amd64");
    let (v, covered) = entry::check_entrypoint(&mut c, "app");
    assert_eq!(
        (v[0].path.as_str(), v[0].kind, v[0].verdict),
        ("/usr/local/bin/app", FileKind::Static, Verdict::Runs)
    );
    assert!(v[0].entrypoint && covered.contains(&"/opt/real/app".to_owned()));
}

#[test]
fn scripts_need_their_interpreter() {
    let t = Tree::new()
        .text("/bin/run", 0o755, "")
        .text("/usr/bin/py", 0o755, "");
    let mut fs = t.0;
    fs.insert_for_test(
        "/bin/run",
        NodeKind::File,
        0o755,
        Some(Sniff::Script("/bin/bash -e".into())),
    );
    fs.insert_for_test(
        "/bin/envy",
        NodeKind::File,
        0o755,
        Some(Sniff::Script("/usr/bin/env python3".into())),
    );
    let mut env = info(&[]);
    env.kind = Kind::Exec;
    fs.insert_for_test(
        "/usr/bin/env",
        NodeKind::File,
        0o755,
        Some(Sniff::Elf(Arc::new(env))),
    );
    let cfg = config(&["PATH=/usr/bin:/bin"], None);
    let mut c = Checker::new(&fs, &cfg, "amd64");
    let (v, _) = entry::check_entrypoint(&mut c, "/bin/run");
    assert_eq!(
        (v[0].kind, v[0].verdict),
        (FileKind::Script, Verdict::Fails)
    );
    assert_eq!(
        v[0].reason.as_deref(),
        Some("interpreter /bin/bash, not in the image")
    );
    let (v, _) = entry::check_entrypoint(&mut c, "/bin/envy");
    let why = v[0].reason.as_deref().unwrap_or_default();
    assert!(
        why.contains("python3") && why.contains("not found in $PATH"),
        "{why}"
    );
}

#[test]
fn interpreter_and_architecture_messages() {
    let mut ld = info(&[]);
    ld.soname = Some("ld-linux-x86-64.so.2".into());
    let t = Tree::new().elf("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", ld);
    let mut p = info(&["libc.so.6"]);
    p.interpreter = Some("/lib64/ld-linux-x86-64.so.2".into());
    p.is_pie = true;
    let cfg = config(&[], None);
    let mut c = Checker::new(&t.0, &cfg, "amd64");
    assert_eq!(
        c.check_program("/bin/p", &Arc::new(p.clone())).unwrap_err(),
        "needs interpreter /lib64/ld-linux-x86-64.so.2, not in the image \
         (it has /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)"
    );
    let mut arm = p.clone();
    arm.machine = skiff_elf::EM_AARCH64;
    assert_eq!(
        c.check_program("/bin/p", &Arc::new(arm)).unwrap_err(),
        "built for arm64, the image's platform is amd64"
    );
    let mut c = Checker::new(&t.0, &cfg, "arm64");
    assert_eq!(
        c.check_program("/bin/p", &Arc::new(p)).unwrap_err(),
        "built for amd64, this host is arm64"
    );
}
