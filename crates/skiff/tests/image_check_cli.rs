//! `skiff image check` through the CLI: images made by `skiff build` (no VM:
//! COPY-only stages), the table, the JSON and the exit status. The verdicts
//! of every founding case are tested in skiff-build's tests/check.rs.

mod common;

use std::fs;
use std::process::Command;

use common::{run_tool, Skiff};

const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n";

/// A `FROM scratch` image of one binary compiled with `gcc_args`.
fn scratch_image(s: &Skiff, name: &str, gcc_args: &[&str]) {
    let ctx = common::tempdir();
    let src = ctx.path().join("hello.c");
    fs::write(&src, HELLO_C).unwrap();
    run_tool(
        Command::new("gcc")
            .args(gcc_args)
            .arg("-o")
            .arg(ctx.path().join("hello"))
            .arg(&src),
    );
    fs::write(
        ctx.path().join("Containerfile"),
        "FROM scratch\nCOPY hello /hello\nENTRYPOINT [\"/hello\"]\n",
    )
    .unwrap();
    s.ok(&["build", "-q", "-t", name, ctx.path().to_str().unwrap()]);
}

#[test]
fn a_static_binary_runs_and_a_dynamic_one_needs_its_interpreter() {
    let s = Skiff::new();
    scratch_image(&s, "static", &["-static", "-O2"]);
    scratch_image(&s, "dynamic", &["-O2"]);

    let ok = s.ok(&["image", "check", "static"]);
    let row = ok
        .stdout
        .lines()
        .find(|l| l.starts_with("/hello"))
        .unwrap_or_default();
    assert!(
        row.contains("static") && row.contains("runs"),
        "{}",
        ok.stdout
    );

    let bad = s.run(&["image", "check", "dynamic"]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        bad.stdout
            .contains("needs interpreter /lib64/ld-linux-x86-64.so.2, not in the image"),
        "{}",
        bad.stdout
    );

    let json = s.run(&[
        "image",
        "check",
        "--format",
        "json",
        "--entrypoint-only",
        "dynamic",
    ]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["entrypoint"], "/hello");
    assert_eq!(v["entrypoint_ok"], false);
    assert_eq!(v["files"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["files"][0]["verdict"], "fails");

    let missing = s.run(&["image", "check", "nosuch"]);
    assert!(!missing.success());
    missing.assert_clean_error(&["nosuch"]);
}
