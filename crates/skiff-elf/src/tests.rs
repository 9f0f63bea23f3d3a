//! Real files: the host's libc and programs compiled here by gcc (installed
//! with the build tools), so the summaries are checked against what a real
//! linker writes.

use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles `src` (C) with `flags` into `dir/name`.
fn cc(dir: &Path, name: &str, src: &str, flags: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = dir.join(name);
    let st = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&c)
        .status()
        .expect("gcc");
    assert!(st.success(), "gcc {flags:?} failed");
    out
}

const HELLO: &str = "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n";

fn host_libc() -> Vec<u8> {
    std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap()
}

#[test]
fn magic_and_classes() {
    assert!(is_elf(b"\x7fELF\x02"));
    assert!(!is_elf(b"\x7fEL"));
    assert!(!is_elf(b"#!/bin/sh"));
    assert_eq!(inspect(b"MZ\0\0").unwrap_err(), ElfError::NotElf);
    let mut f = host_libc();
    f[4] = 9;
    assert!(matches!(inspect(&f), Err(ElfError::Unsupported(_))));
    f[4] = 2;
    f[5] = 7; // EI_DATA
    assert!(matches!(inspect(&f), Err(ElfError::Unsupported(_))));
    assert!(matches!(
        inspect(b"\x7fELF\x02\x01\x01"),
        Err(ElfError::Corrupt(_))
    ));
}

#[test]
fn glibc_defines_its_versions() {
    let info = inspect(&host_libc()).unwrap();
    assert_eq!(info.arch(), Some("amd64"));
    assert_eq!(info.kind, Kind::Dyn);
    assert_eq!(info.soname.as_deref(), Some("libc.so.6"));
    assert!(!info.is_pie, "libc is a library");
    for v in ["GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.34"] {
        assert!(
            info.version_defs.iter().any(|d| d == v),
            "{v}: {:?}",
            info.version_defs
        );
    }
    assert!(
        !info.version_defs.iter().any(|d| d == "libc.so.6"),
        "base entry left out"
    );
    assert!(info.needed.iter().any(|n| n.starts_with("ld-linux")));
}

#[test]
fn dynamic_pie_program() {
    let d = tempfile::tempdir().unwrap();
    let exe = cc(d.path(), "hello", HELLO, &["-pie", "-fPIE"]);
    let info = inspect(&std::fs::read(&exe).unwrap()).unwrap();
    assert_eq!(
        info.interpreter.as_deref(),
        Some("/lib64/ld-linux-x86-64.so.2")
    );
    assert_eq!(info.needed, ["libc.so.6"]);
    assert!(info.is_pie && info.has_dynamic);
    assert_eq!(info.kind, Kind::Dyn);
    let (file, versions) = &info.version_needs[0];
    assert_eq!(file, "libc.so.6");
    assert!(
        versions.iter().any(|v| v.starts_with("GLIBC_2.")),
        "{versions:?}"
    );
    assert!(
        header(&std::fs::read(&exe).unwrap()[..4096])
            .unwrap()
            .has_interp
    );
}

#[test]
fn static_and_static_pie() {
    let d = tempfile::tempdir().unwrap();
    let st = inspect(&std::fs::read(cc(d.path(), "st", HELLO, &["-static"])).unwrap()).unwrap();
    assert_eq!((st.kind, st.interpreter.as_deref()), (Kind::Exec, None));
    assert!(st.needed.is_empty() && !st.is_pie);
    let sp = std::fs::read(cc(d.path(), "sp", HELLO, &["-static-pie"])).unwrap();
    let sp_info = inspect(&sp).unwrap();
    assert_eq!(
        (sp_info.kind, sp_info.interpreter.as_deref()),
        (Kind::Dyn, None)
    );
    assert!(sp_info.is_pie && sp_info.has_dynamic && sp_info.needed.is_empty());
    let h = header(&sp[..4096]).unwrap();
    assert!(!h.has_interp);
    assert_eq!(h.arch(), Some("amd64"));
}

#[test]
fn search_paths_and_soname() {
    let d = tempfile::tempdir().unwrap();
    let lib = cc(
        d.path(),
        "libfoo.so.1",
        "int foo(void){return 1;}\n",
        &["-shared", "-fPIC", "-Wl,-soname,libfoo.so.1"],
    );
    let info = inspect(&std::fs::read(&lib).unwrap()).unwrap();
    assert_eq!(info.soname.as_deref(), Some("libfoo.so.1"));
    assert!(!info.is_pie && info.interpreter.is_none());
    let run = cc(
        d.path(),
        "run",
        HELLO,
        &["-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib:/opt/x"],
    );
    let info = inspect(&std::fs::read(run).unwrap()).unwrap();
    assert_eq!(info.runpath, ["$ORIGIN/../lib", "/opt/x"]);
    assert!(info.rpath.is_empty());
    let old = cc(
        d.path(),
        "old",
        HELLO,
        &["-Wl,--disable-new-dtags,-rpath,/opt/y"],
    );
    let info = inspect(&std::fs::read(old).unwrap()).unwrap();
    assert_eq!(
        (info.rpath.as_slice(), info.runpath.len()),
        (&["/opt/y".to_owned()][..], 0)
    );
}

/// With the section headers gone (as `sstrip` leaves a file), the dynamic
/// section is still found through the program headers.
#[test]
fn no_section_headers() {
    let d = tempfile::tempdir().unwrap();
    let mut f = std::fs::read(cc(d.path(), "hello", HELLO, &[])).unwrap();
    f[40..48].fill(0); // e_shoff
    f[60..64].fill(0); // e_shnum, e_shstrndx
    let info = inspect(&f).unwrap();
    assert_eq!(info.needed, ["libc.so.6"]);
    assert!(info.version_needs.is_empty());
}

#[test]
fn notes_and_sections() {
    let d = tempfile::tempdir().unwrap();
    let exe = std::fs::read(cc(d.path(), "hello", HELLO, &["-Wl,--build-id"])).unwrap();
    let n = notes(&exe).unwrap();
    assert!(
        n.iter()
            .any(|n| n.name == b"GNU" && n.kind == 3 && n.desc.len() == 20),
        "{n:?}"
    );
    assert!(section(&exe, ".comment")
        .unwrap()
        .is_some_and(|c| !c.is_empty()));
    assert_eq!(section(&exe, ".modinfo").unwrap(), None);
    assert_eq!(section(b"\0\0\0\0", ".x"), Err(ElfError::NotElf));
}

#[test]
fn truncation_is_corrupt_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let exe = std::fs::read(cc(d.path(), "hello", HELLO, &[])).unwrap();
    for len in [20, 64, 100, 700, 3000, exe.len() / 2, exe.len() - 1] {
        let r = inspect(&exe[..len]);
        assert!(
            matches!(r, Err(ElfError::Corrupt(_)) | Ok(_)),
            "{len}: {r:?}"
        );
        let _ = notes(&exe[..len]);
        let _ = section(&exe[..len], ".comment");
    }
    assert!(matches!(inspect(&exe[..100]), Err(ElfError::Corrupt(_))));
}

#[test]
fn docker_names() {
    use Class::*;
    use Endianness::*;
    assert_eq!(docker_arch(EM_X86_64, Elf64, Little), Some("amd64"));
    assert_eq!(docker_arch(EM_AARCH64, Elf64, Little), Some("arm64"));
    assert_eq!(docker_arch(40, Elf32, Little), Some("arm"));
    assert_eq!(docker_arch(21, Elf64, Little), Some("ppc64le"));
    assert_eq!(docker_arch(22, Elf64, Big), Some("s390x"));
    assert_eq!(
        docker_arch(EM_X86_64, Elf32, Little),
        None,
        "x32 is no docker platform"
    );
    assert_eq!(docker_arch(0x1234, Elf64, Little), None);
}
