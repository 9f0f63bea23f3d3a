//! `image check` on images made here, in a temporary store, from real
//! programs compiled by the host's gcc: the founding cases. Needs gcc, g++,
//! libc6-dev, busybox-static and Debian's `musl` package (scripts/setup.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use skiff_build::check::{check_image, CheckOptions, FileKind, Report, Verdict};
use skiff_oci::store::ImageRecord;
use skiff_oci::Store;

const HELLO_C: &str = "#include <stdio.h>\nint main(void){puts(\"hello\");return 0;}\n";
const HELLO_CXX: &str = "#include <iostream>\nint main(){std::cout<<\"hello\"<<std::endl;}\n";

/// Compiles `src` with `compiler` and `flags` in `dir`; returns the program's bytes.
fn build(dir: &Path, compiler: &str, name: &str, ext: &str, src: &str, flags: &[&str]) -> Vec<u8> {
    let source = dir.join(format!("{name}.{ext}"));
    std::fs::write(&source, src).unwrap();
    let out = dir.join(name);
    // Flags after the source: libraries must follow what needs them.
    let st = Command::new(compiler)
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .args(flags)
        .current_dir(dir)
        .status()
        .unwrap_or_else(|e| panic!("{compiler}: {e} (install build-essential)"));
    assert!(st.success(), "{compiler} {flags:?} failed");
    std::fs::read(&out).unwrap()
}

/// An image file: path in the image, mode, contents or symlink target.
enum F {
    File(&'static str, u32, Vec<u8>),
    Owned(String, u32, Vec<u8>),
    Link(&'static str, &'static str),
}

fn tar_layer(files: &[F]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for f in files {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        match f {
            F::File(p, mode, data) => add(&mut b, &mut h, p, *mode, data),
            F::Owned(p, mode, data) => add(&mut b, &mut h, p, *mode, data),
            F::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, p.trim_start_matches('/'), target)
                    .unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn add(b: &mut tar::Builder<Vec<u8>>, h: &mut tar::Header, p: &str, mode: u32, data: &[u8]) {
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    b.append_data(h, p.trim_start_matches('/'), data).unwrap();
}

/// Stores an image of one gzip layer and `config` (the `config` object of
/// an image config); returns its record.
fn image(store: &Store, files: &[F], config: serde_json::Value) -> ImageRecord {
    let tar = tar_layer(files);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let layer = store.put_bytes(&gz, None).unwrap();
    let diff = skiff_oci::Digest::of(&tar);
    let cfg = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]},
    });
    let cfg = serde_json::to_vec(&cfg).unwrap();
    let cfg_digest = store.put_bytes(&cfg, None).unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest.to_string(), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.to_string(), "size": gz.len()}],
    });
    let digest = store
        .put_bytes(&serde_json::to_vec(&manifest).unwrap(), None)
        .unwrap();
    store.make_record(None, &digest, None, None).unwrap()
}

/// The host's copies of what `ldd` says `program` loads, at the same paths.
fn glibc_files(program: &Path) -> Vec<F> {
    let out = Command::new("ldd").arg(program).output().expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut files = Vec::new();
    for line in text.lines() {
        let path = match line.split("=>").nth(1) {
            Some(rest) => rest.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            let data = std::fs::read(p).unwrap();
            files.push(F::Owned(p.to_owned(), 0o755, data));
        }
    }
    assert!(files.len() >= 2, "ldd {}: {text}", program.display());
    files
}

fn busybox() -> Vec<u8> {
    std::fs::read("/bin/busybox").expect("busybox-static is needed at /bin/busybox")
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        Fixture { dir, store }
    }
    fn src(&self) -> PathBuf {
        let p = self.dir.path().join("src");
        std::fs::create_dir_all(&p).unwrap();
        p
    }
    fn check(&self, files: &[F], config: serde_json::Value) -> Report {
        let rec = image(&self.store, files, config);
        check_image(&self.store, &rec, &CheckOptions::default()).unwrap()
    }
}

fn entry(report: &Report) -> &skiff_build::check::FileVerdict {
    let e = &report.files[0];
    assert!(e.entrypoint, "{report:#?}");
    e
}

fn hello_cmd() -> serde_json::Value {
    json!({"Cmd": ["hello"], "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]})
}

#[test]
fn a_glibc_program_in_scratch_needs_its_interpreter() {
    let fx = Fixture::new();
    let hello = build(&fx.src(), "gcc", "hello", "c", HELLO_C, &[]);
    let r = fx.check(
        &[
            F::File("/app/hello", 0o755, hello),
            F::Link("/usr/local/bin/hello", "/app/hello"),
        ],
        hello_cmd(),
    );
    let e = entry(&r);
    assert_eq!((e.kind, e.verdict), (FileKind::Dynamic, Verdict::Fails));
    assert_eq!(e.path, "/usr/local/bin/hello");
    assert_eq!(
        e.reason.as_deref(),
        Some("needs interpreter /lib64/ld-linux-x86-64.so.2, not in the image")
    );
    assert_eq!(
        (r.entrypoint.as_deref(), r.entrypoint_ok),
        (Some("hello"), Some(false))
    );
    assert!(r.libc.is_empty());
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["files"][0]["verdict"], "fails");
    assert_eq!(v["files"][0]["kind"], "dynamic");
    assert_eq!(v["platform"], "linux/amd64");
    // The program is listed once, under the entrypoint's name.
    assert_eq!(r.files.len(), 1, "{:#?}", r.files);
}

#[test]
fn b_static_libstdcxx_still_needs_the_glibc_interpreter() {
    let fx = Fixture::new();
    let hello = build(
        &fx.src(),
        "g++",
        "hello",
        "cc",
        HELLO_CXX,
        &["-static-libgcc", "-static-libstdc++"],
    );
    let r = fx.check(
        &[F::File("/hello", 0o755, hello)],
        json!({"Entrypoint": ["/hello"]}),
    );
    let e = entry(&r);
    assert_eq!((e.kind, e.verdict), (FileKind::Dynamic, Verdict::Fails));
    assert_eq!(
        e.reason.as_deref(),
        Some("needs interpreter /lib64/ld-linux-x86-64.so.2, not in the image")
    );
}

fn musl_files() -> Vec<F> {
    let libc = std::fs::read("/usr/lib/x86_64-linux-musl/libc.so")
        .expect("Debian's musl package is needed (apt-get install musl; scripts/setup.sh)");
    vec![
        F::File("/lib/ld-musl-x86_64.so.1", 0o755, libc),
        F::Link("/lib/libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1"),
        F::File("/bin/busybox", 0o755, busybox()),
        F::Link("/bin/sh", "busybox"),
    ]
}

#[test]
fn c_a_glibc_program_in_a_musl_image() {
    let fx = Fixture::new();
    let hello = build(&fx.src(), "gcc", "hello", "c", HELLO_C, &[]);
    let mut files = musl_files();
    files.push(F::File("/usr/bin/hello", 0o755, hello));
    let r = fx.check(&files, hello_cmd());
    let e = entry(&r);
    assert_eq!(e.verdict, Verdict::Fails);
    let why = e.reason.as_deref().unwrap_or_default();
    assert!(why.starts_with("built for glibc, image has musl"), "{why}");
    assert_eq!(r.libc, ["musl"]);
    // busybox (static) runs; the musl libc is fine as a library.
    let bb = r
        .files
        .iter()
        .find(|f| f.path == "/bin/busybox")
        .expect("busybox listed");
    assert_eq!((bb.kind, bb.verdict), (FileKind::Static, Verdict::Runs));
    assert!(
        !r.files.iter().any(|f| f.path.contains("ld-musl")),
        "fine libraries are not listed"
    );
}

#[test]
fn d_a_glibc_program_on_a_debian_like_image_runs() {
    let fx = Fixture::new();
    let src = fx.src();
    let hello = build(&src, "gcc", "hello", "c", HELLO_C, &[]);
    let cxx = build(
        &src,
        "g++",
        "hellocxx",
        "cc",
        HELLO_CXX,
        &["-static-libgcc", "-static-libstdc++"],
    );
    let mut files = glibc_files(&src.join("hello"));
    files.extend(glibc_files(&src.join("hellocxx")));
    files.push(F::File("/usr/bin/hello", 0o755, hello));
    files.push(F::File("/usr/bin/hellocxx", 0o755, cxx));
    let rec = image(&fx.store, &files, hello_cmd());
    let r = check_image(&fx.store, &rec, &CheckOptions::default()).unwrap();
    let e = entry(&r);
    assert_eq!(
        (e.kind, e.verdict, e.reason.as_deref()),
        (FileKind::Dynamic, Verdict::Runs, None)
    );
    assert_eq!(r.entrypoint_ok, Some(true));
    assert!(r.libc[0].starts_with("glibc 2."), "{:?}", r.libc);
    assert!(!r.any_fails(), "{:#?}", r.files);
    let cxx = r
        .files
        .iter()
        .find(|f| f.path == "/usr/bin/hellocxx")
        .unwrap();
    assert_eq!(cxx.verdict, Verdict::Runs);
    // Libraries show with all_libraries, each once.
    let all = CheckOptions {
        all_libraries: true,
        ..CheckOptions::default()
    };
    let r = check_image(&fx.store, &rec, &all).unwrap();
    let libc: Vec<_> = r
        .files
        .iter()
        .filter(|f| f.path.ends_with("/libc.so.6"))
        .collect();
    assert_eq!(libc.len(), 1, "{:#?}", r.files);
    assert_eq!(
        (libc[0].kind, libc[0].verdict),
        (FileKind::Library, Verdict::Runs)
    );
    // entrypoint_only lists the entrypoint alone.
    let only = CheckOptions {
        entrypoint_only: true,
        ..CheckOptions::default()
    };
    assert_eq!(check_image(&fx.store, &rec, &only).unwrap().files.len(), 1);
}

#[test]
fn e_a_static_program_in_scratch_runs() {
    let fx = Fixture::new();
    let hello = build(&fx.src(), "gcc", "hello", "c", HELLO_C, &["-static"]);
    let pie = build(&fx.src(), "gcc", "pie", "c", HELLO_C, &["-static-pie"]);
    let r = fx.check(
        &[F::File("/hello", 0o755, hello), F::File("/pie", 0o755, pie)],
        json!({"Entrypoint": ["/hello"], "Cmd": ["--flag"]}),
    );
    let e = entry(&r);
    assert_eq!(
        (e.kind, e.verdict, e.reason.as_deref()),
        (FileKind::Static, Verdict::Runs, None)
    );
    let pie = r.files.iter().find(|f| f.path == "/pie").unwrap();
    assert_eq!(
        (pie.kind, pie.verdict),
        (FileKind::StaticPie, Verdict::Runs)
    );
}

/// A libc.so.6 that defines only GLIBC_2.2.5 … GLIBC_2.17, as an old glibc would.
fn old_libc(dir: &Path) -> Vec<u8> {
    let map = "GLIBC_2.2.5 { global: puts; local: *; };\n\
               GLIBC_2.3 { global: old_a; } GLIBC_2.2.5;\n\
               GLIBC_2.17 { global: old_b; } GLIBC_2.3;\n";
    std::fs::write(dir.join("v.map"), map).unwrap();
    build(
        dir,
        "gcc",
        "libc.so.6",
        "c",
        "int puts(const char *s){(void)s;return 0;}\nint old_a;\nint old_b;\n",
        &[
            "-shared",
            "-fPIC",
            "-nostdlib",
            "-Wl,-soname,libc.so.6",
            "-Wl,--version-script=v.map",
        ],
    )
}

#[test]
fn f_a_program_needing_a_newer_glibc_names_the_version() {
    let fx = Fixture::new();
    let src = fx.src();
    // glibc >= 2.34 links __libc_start_main@GLIBC_2.34 into every program.
    let hello = build(&src, "gcc", "hello", "c", HELLO_C, &[]);
    let ld = std::fs::read("/lib64/ld-linux-x86-64.so.2").unwrap();
    let r = fx.check(
        &[
            F::File("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", 0o755, ld),
            F::Link("/lib64", "usr/lib/x86_64-linux-gnu"),
            F::File("/usr/lib/x86_64-linux-gnu/libc.so.6", 0o755, old_libc(&src)),
            F::File("/usr/bin/hello", 0o755, hello),
        ],
        hello_cmd(),
    );
    assert_eq!(r.libc, ["glibc 2.17"]);
    let e = entry(&r);
    assert_eq!(e.verdict, Verdict::Fails);
    assert_eq!(
        e.reason.as_deref(),
        Some("needs GLIBC_2.34 (libc.so.6); the image's libc provides up to GLIBC_2.17")
    );
}

#[test]
fn g_a_bash_script_without_bash() {
    let fx = Fixture::new();
    let mut files = musl_files();
    files.push(F::File(
        "/entry.sh",
        0o755,
        b"#!/bin/bash\necho hi\n".to_vec(),
    ));
    files.push(F::File("/ok.sh", 0o755, b"#!/bin/sh\necho hi\n".to_vec()));
    let r = fx.check(&files, json!({"Entrypoint": ["/entry.sh"]}));
    let e = entry(&r);
    assert_eq!((e.kind, e.verdict), (FileKind::Script, Verdict::Fails));
    assert_eq!(
        e.reason.as_deref(),
        Some("interpreter /bin/bash, not in the image")
    );
    let r = fx.check(&files, json!({"Entrypoint": ["/ok.sh"]}));
    assert_eq!(entry(&r).verdict, Verdict::Runs, "{:#?}", r.files);
    assert_eq!(
        r.files[1].path, "/bin/sh",
        "the interpreter's own verdict follows"
    );
}

#[test]
fn h_a_missing_library_is_named_and_found_where_ld_so_looks() {
    let fx = Fixture::new();
    let src = fx.src();
    let lib = build(
        &src,
        "gcc",
        "libfoo.so.1",
        "c",
        "int foo(void){return 42;}\n",
        &["-shared", "-fPIC", "-Wl,-soname,libfoo.so.1"],
    );
    std::fs::copy(src.join("libfoo.so.1"), src.join("libfoo.so")).unwrap();
    let main = "int foo(void);\nint main(void){return foo()==42?0:1;}\n";
    let prog = build(&src, "gcc", "prog", "c", main, &["-L.", "-lfoo"]);
    let origin = build(
        &src,
        "gcc",
        "oprog",
        "c",
        main,
        &["-L.", "-lfoo", "-Wl,-rpath,$ORIGIN/../lib"],
    );
    let base = || {
        let mut f = glibc_files(Path::new("/bin/true"));
        f.push(F::File("/usr/bin/prog", 0o755, prog.clone()));
        f
    };
    let cfg = json!({"Entrypoint": ["prog"]});
    let r = fx.check(&base(), cfg.clone());
    assert_eq!(
        entry(&r).reason.as_deref(),
        Some("needs libfoo.so.1, not found in the image's library path")
    );
    // In a directory ld.so.conf names (through an include glob): found.
    let mut files = base();
    files.push(F::File(
        "/etc/ld.so.conf",
        0o644,
        b"include /etc/ld.so.conf.d/*.conf\n".to_vec(),
    ));
    files.push(F::File(
        "/etc/ld.so.conf.d/local.conf",
        0o644,
        b"/opt/foo/lib\n".to_vec(),
    ));
    files.push(F::File("/opt/foo/lib/libfoo.so.1", 0o644, lib.clone()));
    assert_eq!(entry(&fx.check(&files, cfg.clone())).verdict, Verdict::Runs);
    // Next to the program, through its $ORIGIN run path.
    let mut files = base();
    files.push(F::File("/app/bin/oprog", 0o755, origin));
    files.push(F::File("/app/lib/libfoo.so.1", 0o644, lib));
    let r = fx.check(&files, json!({"Entrypoint": ["/app/bin/oprog"]}));
    assert_eq!(entry(&r).verdict, Verdict::Runs, "{:#?}", r.files);
    // /usr/bin/prog is listed too, failing, in the whole-image check.
    let p = r.files.iter().find(|f| f.path == "/usr/bin/prog").unwrap();
    assert!(p
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("libfoo.so.1"));
}

#[test]
fn a_missing_entrypoint_and_no_entrypoint() {
    let fx = Fixture::new();
    let r = fx.check(&musl_files(), json!({"Cmd": ["nginx"]}));
    let e = entry(&r);
    assert_eq!(
        (e.path.as_str(), e.kind, e.verdict),
        ("nginx", FileKind::Missing, Verdict::Fails)
    );
    assert_eq!(
        e.reason.as_deref(),
        Some("exec: \"nginx\": executable file not found in $PATH")
    );
    let r = fx.check(&musl_files(), json!({}));
    assert_eq!((r.entrypoint.as_deref(), r.entrypoint_ok), (None, None));
    assert!(!r.any_fails(), "{:#?}", r.files);
}
