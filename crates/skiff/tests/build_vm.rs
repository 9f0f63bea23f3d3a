//! `skiff build` end to end: RUN steps in real QEMU micro-VMs, the layer
//! cache, multi-stage builds down to a `FROM scratch` image of one static
//! binary (compiled in the builder stage by gcc), reproducible output, and
//! hostile inputs refused in one line with nothing stored.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{run_tool, Registry, RegistryOpts, Skiff};

/// A C toolchain root filesystem made from this host's packages
/// (scripts/toolchain-rootfs.sh), once per test binary.
fn toolchain_tar() -> PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skiff-toolchain.tar");
        if !out.exists() {
            let tmp = out.with_extension(format!("{}.tar", std::process::id()));
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/toolchain-rootfs.sh");
            run_tool(Command::new(script).arg(&tmp));
            fs::rename(&tmp, &out).unwrap();
        }
        out
    })
    .clone()
}

const HELLO_C: &str =
    "#include <stdio.h>\nint main(void) { puts(\"hello from a static binary\"); return 0; }\n";

/// The seeds' shape: a toolchain stage, a builder that compiles, a
/// `FROM scratch` stage with the one static binary as its entrypoint.
const SEED: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=scratch
FROM ${BASE} AS toolchain
ADD toolchain.tar /

FROM toolchain AS builder
WORKDIR /src
COPY hello.c .
RUN gcc -static -Os -o /hello hello.c && strip /hello

FROM scratch
COPY --from=builder /hello /hello
ENTRYPOINT ["/hello"]
"#;

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn a_multi_stage_build_makes_a_small_scratch_image_that_runs_and_rebuilds_from_cache() {
    let s = Skiff::for_vms();
    let ctx = common::tempdir();
    fs::copy(toolchain_tar(), ctx.path().join("toolchain.tar")).unwrap();
    fs::write(ctx.path().join("hello.c"), HELLO_C).unwrap();
    fs::write(ctx.path().join("Containerfile"), SEED).unwrap();
    let dir = ctx.path().to_str().unwrap();

    let first = s.ok(&["build", "-t", "hello:static", dir]);
    assert!(
        first.stderr.contains("STEP 9/9: ENTRYPOINT"),
        "{}",
        first.stderr
    );
    assert_eq!(
        count(&first.stderr, "--> Using cache"),
        0,
        "{}",
        first.stderr
    );
    let id = first.last_line().to_owned();
    assert!(id.starts_with("sha256:"), "{first:?}");

    // A normal image of one static binary: small, and it runs in a VM.
    let img = s
        .images()
        .into_iter()
        .find(|i| {
            i["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("/hello:static"))
        })
        .expect("tagged");
    let size = img["Size"]
        .as_u64()
        .or_else(|| img["size"].as_u64())
        .unwrap_or(u64::MAX);
    assert!(size < 2 << 20, "the scratch image is {size} bytes: {img}");
    let cfg = s.inspect("hello:static");
    assert_eq!(
        cfg["config"]["config"]["Entrypoint"],
        serde_json::json!(["/hello"]),
        "{cfg}"
    );
    let layers = cfg["manifest"]["layers"].as_array().map(Vec::len);
    assert_eq!(layers, Some(1), "one layer: the binary ({cfg})");
    let out = s.ok(&["run", "--rm", "hello:static"]);
    assert_eq!(out.stdout, "hello from a static binary\n");

    // Unchanged: every layer step from the cache, no VM, the same image.
    let again = s.ok(&["build", "-t", "hello:static", dir]);
    assert!(
        again.stderr.contains("(5 of 5 layer steps from the cache)"),
        "{}",
        again.stderr
    );
    assert_eq!(
        again.last_line(),
        id,
        "an unchanged rebuild is the same image"
    );

    // One copied file changed: the steps before it are cached, it and the
    // ones after it run again.
    fs::write(
        ctx.path().join("hello.c"),
        HELLO_C.replace("hello from", "changed:"),
    )
    .unwrap();
    let changed = s.ok(&["build", "-t", "hello:static", dir]);
    let e = &changed.stderr;
    let cached_steps: Vec<&str> = e
        .split("STEP ")
        .filter(|step| step.contains("--> Using cache"))
        .filter_map(|step| step.lines().next())
        .collect();
    assert_eq!(
        cached_steps,
        ["2/9: ADD toolchain.tar /", "4/9: WORKDIR /src"],
        "{e}"
    );
    assert!(e.contains("(2 of 5 layer steps from the cache)"), "{e}");
    assert_eq!(
        s.ok(&["run", "--rm", "hello:static"]).stdout,
        "changed: a static binary\n"
    );

    // What build made is an ordinary image: a registry takes it.
    let reg = Registry::start(RegistryOpts::default());
    let dest = format!("{}/me/hello:static", reg.host());
    s.ok(&["image", "push", "-q", "hello:static", &dest]);
    let raw = common::skopeo_inspect(&format!("docker://{dest}"), &["--tls-verify=false"], None);
    assert!(raw.contains("\"Layers\""), "{raw}");
}

/// A busybox image from the VM fixtures, pulled into `s`, named `base`.
fn busybox_base(s: &Skiff) -> (Registry, String) {
    let reg = Registry::start(RegistryOpts::default());
    let image = reg.push_vm_fixture("users", "test/vm");
    s.ok(&["pull", "-q", &image]);
    (reg, image)
}

#[test]
fn run_steps_become_layers_with_whiteouts_and_the_config_follows_the_file() {
    let s = Skiff::for_vms();
    let (_reg, base) = busybox_base(&s);
    let ctx = common::tempdir();
    let file = format!(
        r#"FROM {base}
ARG GREETING=hello
ENV APP_HOME=/srv/app PATH=/bin:/usr/bin
WORKDIR $APP_HOME
RUN <<EOF
set -e
echo "$GREETING from RUN" > made.txt
ln made.txt hard.txt
rm /bin/false
mkdir -p /opt/tree/sub && echo x > /opt/tree/sub/f
rm -rf /opt/tree && mkdir /opt/tree && echo fresh > /opt/tree/new
EOF
COPY <<EOF /etc/motd
welcome to $APP_HOME
EOF
USER 1000:1000
LABEL org.example.kind=test
EXPOSE 8080
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s CMD true
CMD ["sh", "-c", "cat made.txt hard.txt /etc/motd; ls /opt/tree; test -e /bin/false || echo no-false; id -u"]
"#
    );
    fs::write(ctx.path().join("Containerfile"), file).unwrap();
    let dir = ctx.path().to_str().unwrap();
    let out = s.ok(&[
        "build",
        "--build-arg",
        "GREETING=hi",
        "--build-arg",
        "UNUSED=1",
        "-t",
        "made",
        dir,
    ]);
    assert!(
        out.stderr.contains("build argument UNUSED was not used"),
        "{}",
        out.stderr
    );

    let cfg = s.inspect("made");
    let c = &cfg["config"]["config"];
    assert_eq!(c["WorkingDir"], "/srv/app", "{cfg}");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Labels"]["org.example.kind"], "test");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{cfg}");
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e.as_str().unwrap().starts_with("GREETING")),
        "build args are not kept in the image: {cfg}"
    );
    let history = cfg["config"]["history"].as_array().unwrap();
    assert!(
        history.iter().any(|h| h["created_by"]
            .as_str()
            .unwrap_or("")
            .starts_with("RUN /bin/sh -c")),
        "{cfg}"
    );

    // The RUN layer holds what changed, whiteouts included, and nothing of
    // skiff-init's own (/etc/hosts, /etc/resolv.conf).
    let run = s.ok(&["run", "--rm", "made"]);
    assert_eq!(
        run.stdout, "hi from RUN\nhi from RUN\nwelcome to /srv/app\nnew\nno-false\n1000\n",
        "{run:?}"
    );

    // A failing RUN fails the build with its exit code; nothing is named.
    let bad = ctx.path().join("bad");
    fs::create_dir(&bad).unwrap();
    fs::write(
        bad.join("Containerfile"),
        format!("FROM {base}\nRUN echo before; exit 3\n"),
    )
    .unwrap();
    let failed = s.run(&["build", "-t", "broken", bad.to_str().unwrap()]);
    assert!(!failed.success());
    assert!(failed.stderr.contains("before\n"), "{}", failed.stderr);
    let last = failed.stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last, "Error: Containerfile:2: RUN echo before; exit 3: the command exited with code 3",
        "{}",
        failed.stderr
    );
    assert!(s
        .images()
        .iter()
        .all(|i| !i["name"].as_str().unwrap_or("").contains("broken")));
    // No VM, container or changes file stays behind.
    assert!(common::vm::qemu_processes_with(s.root().to_str().unwrap()).is_empty());
    assert_eq!(s.ok(&["ps", "-aq"]).stdout, "");
    let tmp: Vec<_> = fs::read_dir(s.root().join("tmp"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        tmp.iter()
            .all(|e| !e.file_name().to_string_lossy().contains("build-")),
        "{tmp:?}"
    );

    // kill -9 of the build while its RUN step's VM runs: the VM and the
    // step's container go with it, and the next build works.
    fs::write(
        bad.join("Containerfile"),
        format!("FROM {base}\nRUN echo started; sleep 600\n"),
    )
    .unwrap();
    let mut build = s.spawn(&["build", "-t", "killed", bad.to_str().unwrap()]);
    let root = s.root().to_str().unwrap().to_owned();
    common::wait_until(Duration::from_secs(60), "the RUN step's VM", || {
        !common::vm::qemu_processes_with(&root).is_empty()
    });
    build.child.kill().unwrap();
    let _ = build.child.wait();
    common::wait_until(
        Duration::from_secs(30),
        "the VM and container to go",
        || {
            common::vm::qemu_processes_with(&root).is_empty()
                && s.ok(&["ps", "-aq"]).stdout.is_empty()
        },
    );
    fs::write(
        bad.join("Containerfile"),
        format!("FROM {base}\nRUN echo again > /again\n"),
    )
    .unwrap();
    s.ok(&["build", "-q", "-t", "after", bad.to_str().unwrap()]);
}

fn layer_listing(s: &Skiff, image: &str) -> Vec<String> {
    let cfg = s.inspect(image);
    let mut names = Vec::new();
    for l in cfg["manifest"]["layers"].as_array().unwrap() {
        let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let blob = s.root().join("blobs/sha256").join(hex);
        let out = run_tool(
            Command::new("tar")
                .arg("-tvf")
                .arg(&blob)
                .arg("--full-time")
                .arg("--numeric-owner"),
        );
        names.extend(out.lines().map(str::to_owned));
    }
    names
}

#[test]
fn copy_only_builds_are_reproducible_and_honour_the_ignore_file() {
    let ctx = common::tempdir();
    let d = ctx.path();
    fs::create_dir_all(d.join("app/sub")).unwrap();
    fs::write(d.join("app/a.txt"), "a").unwrap();
    fs::write(d.join("app/sub/b.txt"), "b").unwrap();
    fs::write(d.join("app/secret.key"), "no").unwrap();
    fs::write(d.join(".dockerignore"), "**/*.key\n").unwrap();
    fs::write(
        d.join("Dockerfile"),
        "FROM scratch\nENV a=hello\nENV a=bye b=$a\nSHELL [\"/bin/ash\", \"-c\"]\nCOPY --chmod=640 --chown=7:8 app/ /app/\nCOPY <<EOF /etc/note\nbuilt\nEOF\nCMD [\"/app\"]\n",
    )
    .unwrap();
    let dir = d.to_str().unwrap();
    let digests: Vec<String> = (0..2)
        .map(|_| {
            // Separate stores: nothing shared but the inputs.
            let s = Skiff::new().with_env("SOURCE_DATE_EPOCH", "1700000000");
            s.ok(&["build", "--no-cache", "-t", "repro", dir]);
            let listing = layer_listing(&s, "repro");
            assert!(
                listing.iter().any(|l| l.contains("app/sub/b.txt")),
                "{listing:?}"
            );
            assert!(
                listing.iter().all(|l| !l.contains("secret.key")),
                "ignored: {listing:?}"
            );
            assert!(
                listing
                    .iter()
                    .filter(|l| l.contains("app/a.txt"))
                    .all(|l| l.starts_with("-rw-r----- 7/8")),
                "{listing:?}"
            );
            // Every mtime clamped to the epoch (2023-11-14 22:13:20 UTC).
            assert!(
                listing.iter().all(|l| l.contains("2023-11-14")),
                "{listing:?}"
            );
            s.inspect("repro")["digest"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(!digests[0].is_empty());
    assert_eq!(digests[0], digests[1], "two builds, one image");
}

#[test]
fn hostile_build_inputs_fail_in_one_line_and_store_nothing() {
    let s = Skiff::new();
    let outside = common::tempdir();
    fs::write(outside.path().join("passwd"), "secret").unwrap();
    let ctx = common::tempdir();
    let d = ctx.path();
    std::os::unix::fs::symlink(outside.path().join("passwd"), d.join("link")).unwrap();
    let cases: Vec<(String, &[&str])> = vec![
        (
            "FROM scratch\nCOPY ../passwd /x\n".into(),
            &["Containerfile:2", "../passwd"],
        ),
        (
            "FROM scratch\nCOPY link /x\n".into(),
            &["Containerfile:2", "link"],
        ),
        (
            "FROM scratch\nCOPY missing.txt /x\n".into(),
            &["Containerfile:2", "missing.txt"],
        ),
        (
            "FROM scratch\nRUN <<EOF\necho never ends\n".into(),
            &["Containerfile:2", "heredoc"],
        ),
        (
            "FROM scratch\nONBUILD RUN x\n".into(),
            &["Containerfile:2", "ONBUILD"],
        ),
        ("COPY a /b\n".into(), &["Containerfile:1"]),
        (
            format!("FROM scratch\n{}", "ENV A=1\n".repeat(10_000)),
            &["Containerfile:", "1000"],
        ),
        (
            "FROM scratch\nCOPY --chmod=999 . /x\n".into(),
            &["Containerfile:2", "999"],
        ),
    ];
    for (text, needles) in cases {
        fs::write(d.join("Containerfile"), &text).unwrap();
        // -q: only the error on stderr.
        let out = s.run(&["build", "-q", "-t", "hostile", d.to_str().unwrap()]);
        assert!(!out.success(), "{text:.60}: {out:?}");
        out.assert_clean_error(needles);
        assert!(s.images().is_empty(), "{text:.60}: {:?}", s.images());
    }
    let none = s.run(&["build", outside.path().join("nothing").to_str().unwrap()]);
    none.assert_clean_error(&["not a directory"]);
}
