use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;

/// A context directory with `files` (a trailing `/` makes a directory) and
/// an optional `.dockerignore`.
fn ctx_with(files: &[&str], ignore: Option<&str>) -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    fs::create_dir(&root).unwrap();
    for f in files {
        let p = root.join(f);
        if f.ends_with('/') {
            fs::create_dir_all(&p).unwrap();
        } else {
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, format!("content of {f}")).unwrap();
        }
    }
    if let Some(text) = ignore {
        fs::write(root.join(".dockerignore"), text).unwrap();
    }
    let ctx = Context::open(&root, &root.join("Containerfile")).unwrap();
    (dir, ctx)
}

fn sources(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// Every path the walk of the whole context yields (the root itself left
/// out), as strings.
fn walked(ctx: &Context) -> Vec<String> {
    let sel = ctx.select(&sources(&["."])).unwrap();
    ctx.walk(&sel[0])
        .unwrap()
        .into_iter()
        .skip(1)
        .map(|e| e.rel.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn ignore_docker_documented_examples() {
    let (_d, ctx) = ctx_with(
        &[
            "somedir/temporary.txt",
            "somedir/temp",
            "somedir/subdir/temporary.txt",
            "somedir/keep.txt",
            "tempa",
            "tempab",
            "temp",
            "temporary.txt",
        ],
        Some("# comment\n*/temp*\n*/*/temp*\ntemp?\n"),
    );
    assert_eq!(
        walked(&ctx),
        [
            ".dockerignore",
            "somedir",
            "somedir/keep.txt",
            "somedir/subdir",
            "temp",
            "tempab",
            "temporary.txt"
        ]
    );
}

#[test]
fn ignore_exclusions_last_match_wins() {
    let (_d, ctx) = ctx_with(
        &[
            "README.md",
            "CHANGES.md",
            "README-secret.md",
            "README-x.md",
            "a.txt",
        ],
        Some("*.md\n!README*.md\nREADME-secret.md\n"),
    );
    assert_eq!(
        walked(&ctx),
        [".dockerignore", "README-x.md", "README.md", "a.txt"]
    );
}

#[test]
fn ignore_double_star_and_directories() {
    let (_d, ctx) = ctx_with(
        &[
            "a.go",
            "x/y/b.go",
            "x/y/c.txt",
            "build/a/b",
            "build/keep",
            "private/p",
            "q",
        ],
        Some("**/*.go\nbuild\n!build/keep\n/secret/../private\n"),
    );
    // `build` is ignored, but walked into for what `!` brings back, and
    // then shown as the parent of that.
    assert_eq!(
        walked(&ctx),
        [
            ".dockerignore",
            "build",
            "build/keep",
            "q",
            "x",
            "x/y",
            "x/y/c.txt"
        ]
    );
    assert!(matches!(
        ctx.select(&sources(&["private/p"])),
        Err(ContextError::NotFound(_))
    ));
    assert!(ctx.select(&sources(&["build/keep"])).is_ok());
    assert!(ctx.select(&sources(&["build"])).is_ok());
    assert!(ctx.select(&sources(&["build/a/b"])).is_err());
}

#[test]
fn ignored_source_is_not_found() {
    let (_d, ctx) = ctx_with(&["secret.key", "app.py"], Some("*.key\n"));
    let err = ctx.select(&sources(&["secret.key"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "COPY source 'secret.key' not found in the build context"
    );
    // A glob does not see it either.
    let sel = ctx.select(&sources(&["*"])).unwrap();
    let names: Vec<_> = sel.iter().map(|s| s.rel.clone()).collect();
    assert_eq!(
        names,
        [PathBuf::from(".dockerignore"), PathBuf::from("app.py")]
    );
}

#[test]
fn containerfile_and_ignore_file_ignored_only_when_listed() {
    let (_d, ctx) = ctx_with(&["Containerfile", "app.py"], Some("*.py\n"));
    assert!(ctx
        .select(&sources(&["Containerfile", ".dockerignore"]))
        .is_ok());
    let (_d, ctx) = ctx_with(&["Containerfile"], Some("Containerfile\n.dockerignore\n"));
    assert!(ctx.select(&sources(&["Containerfile"])).is_err());
    assert!(ctx.select(&sources(&[".dockerignore"])).is_err());
}

#[test]
fn bad_ignore_pattern_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".dockerignore"), "ok\n[unclosed\n").unwrap();
    let err = Context::open(dir.path(), &dir.path().join("Containerfile")).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn ignore_file_lookup_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for f in ["a", "b", "c", "d"] {
        fs::write(root.join(f), "x").unwrap();
    }
    fs::create_dir(root.join("build")).unwrap();
    let cf = root.join("build/app.Containerfile");
    fs::write(&cf, "FROM scratch").unwrap();
    fs::write(root.join(".dockerignore"), "a\n").unwrap();
    let names = |ctx: &Context| -> Vec<String> {
        ctx.select(&sources(&["*"]))
            .unwrap()
            .iter()
            .map(|s| s.rel.to_string_lossy().into_owned())
            .filter(|n| n.len() == 1)
            .collect()
    };
    assert_eq!(names(&Context::open(root, &cf).unwrap()), ["b", "c", "d"]);
    fs::write(root.join(".containerignore"), "b\n").unwrap();
    assert_eq!(names(&Context::open(root, &cf).unwrap()), ["a", "c", "d"]);
    fs::write(root.join("build/app.Containerfile.dockerignore"), "c\n").unwrap();
    assert_eq!(names(&Context::open(root, &cf).unwrap()), ["a", "b", "d"]);
    fs::write(root.join("build/app.Containerfile.containerignore"), "d\n").unwrap();
    let ctx = Context::open(root, &cf).unwrap();
    assert_eq!(names(&ctx), ["a", "b", "c"]);
    assert_eq!(
        ctx.ignore_file(),
        Some(
            root.join("build/app.Containerfile.containerignore")
                .as_path()
        )
    );
}

#[test]
fn select_globs_and_roots() {
    let (_d, ctx) = ctx_with(
        &[
            "b.txt",
            "a.txt",
            "c.md",
            "dir/x.txt",
            "deep/er/x.txt",
            "dir/sub/",
        ],
        None,
    );
    let rels = |s: &[&str]| -> Vec<String> {
        ctx.select(&sources(s))
            .unwrap()
            .iter()
            .map(|s| s.rel.to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(rels(&["*.txt"]), ["a.txt", "b.txt"]);
    assert_eq!(rels(&["[ab].txt", "c.md"]), ["a.txt", "b.txt", "c.md"]);
    assert_eq!(rels(&["[^a].txt"]), ["b.txt"]);
    assert_eq!(rels(&["d?r/*.txt"]), ["dir/x.txt"]);
    // `**` is a plain `*` in COPY sources: one component.
    assert_eq!(rels(&["**/x.txt"]), ["dir/x.txt"]);
    assert_eq!(rels(&["/a.txt", "./dir/../c.md"]), ["a.txt", "c.md"]);
    let root = ctx.select(&sources(&["."])).unwrap();
    assert_eq!(root[0].rel, PathBuf::new());
    assert!(root[0].is_dir);
    let sel = ctx.select(&sources(&["dir/s*"])).unwrap();
    assert!(sel[0].is_dir);
    let err = ctx.select(&sources(&["*.rs"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "COPY source '*.rs' not found in the build context"
    );
    assert!(matches!(
        ctx.select(&sources(&["[a.txt"])),
        Err(ContextError::BadSource(_))
    ));
}

#[test]
fn dotdot_escape_refused() {
    let (_d, ctx) = ctx_with(&["a.txt"], None);
    for s in ["../x", "a/../../x", "/../etc/passwd"] {
        let err = ctx.select(&sources(&[s])).unwrap_err();
        assert!(matches!(err, ContextError::Outside(_)), "{s}: {err}");
        assert!(err.to_string().contains(s), "{err}");
    }
}

#[test]
fn symlink_escape_refused_anywhere() {
    let (d, ctx) = ctx_with(&["real.txt", "d/inner.txt"], None);
    let root = ctx.root().to_owned();
    let outside = d.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("f"), "host secret").unwrap();
    symlink("../outside", root.join("up")).unwrap();
    symlink("/etc", root.join("abs")).unwrap();
    symlink("../../outside/f", root.join("d/deep")).unwrap();
    for s in ["up", "up/f", "abs/passwd", "d/deep", "u*"] {
        let err = ctx.select(&sources(&[s])).unwrap_err();
        assert!(
            matches!(err, ContextError::SymlinkEscape { .. }),
            "{s}: {err}"
        );
        assert!(err.to_string().contains(&format!("'{s}'")), "{err}");
    }
    // Inside a selected directory a symlink is an entry, not followed.
    let sel = ctx.select(&sources(&["d"])).unwrap();
    let entries = ctx.walk(&sel[0]).unwrap();
    let deep = entries.iter().find(|e| e.rel == Path::new("deep")).unwrap();
    assert_eq!(
        deep.link_target.as_deref(),
        Some(Path::new("../../outside/f"))
    );
    // A symlink that stays inside is followed at the top: its target's
    // content under its own name.
    symlink("real.txt", root.join("alias")).unwrap();
    symlink(root.join("d"), root.join("absinside")).unwrap();
    let sel = ctx
        .select(&sources(&["alias", "absinside/inner.txt"]))
        .unwrap();
    assert_eq!(sel[0].rel, PathBuf::from("alias"));
    let e = &ctx.walk(&sel[0]).unwrap()[0];
    assert!(e.meta.is_file());
    assert_eq!(e.host, root.join("real.txt"));
    assert_eq!(ctx.walk(&sel[1]).unwrap()[0].host, root.join("d/inner.txt"));
}

#[test]
fn symlink_loop_is_an_error() {
    let (_d, ctx) = ctx_with(&[], None);
    symlink("b", ctx.root().join("a")).unwrap();
    symlink("a", ctx.root().join("b")).unwrap();
    assert!(matches!(
        ctx.select(&sources(&["a"])),
        Err(ContextError::SymlinkLoop(_))
    ));
}

#[test]
fn walk_order_is_by_name_bytes_depth_first() {
    let (_d, ctx) = ctx_with(&["a/b", "a-b", "B", "_", "a/a/z", "a/c"], None);
    assert_eq!(
        walked(&ctx),
        ["B", "_", "a", "a/a", "a/a/z", "a/b", "a/c", "a-b"]
    );
    let sel = ctx.select(&sources(&["a"])).unwrap();
    let rels: Vec<String> = ctx
        .walk(&sel[0])
        .unwrap()
        .iter()
        .map(|e| e.rel.to_string_lossy().into_owned())
        .collect();
    assert_eq!(rels, ["", "a", "a/z", "b", "c"]);
}

#[test]
fn content_hash_follows_content_and_mode_not_mtime() {
    let (_d, ctx) = ctx_with(&["src/a.txt", "src/b.txt"], None);
    let root = ctx.root().to_owned();
    let sel = ctx.select(&sources(&["src"])).unwrap();
    let h0 = ctx.content_hash(&sel).unwrap();
    assert!(h0.starts_with("sha256:"));
    assert_eq!(ctx.content_hash(&sel).unwrap(), h0);

    let f = fs::File::options()
        .write(true)
        .open(root.join("src/a.txt"))
        .unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(12345))
        .unwrap();
    drop(f);
    assert_eq!(ctx.content_hash(&sel).unwrap(), h0, "mtime must not count");

    // Same size, other bytes.
    fs::write(root.join("src/a.txt"), "content of src/A.txt").unwrap();
    let h1 = ctx.content_hash(&sel).unwrap();
    assert_ne!(h1, h0);

    fs::set_permissions(root.join("src/b.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    let h2 = ctx.content_hash(&sel).unwrap();
    assert_ne!(h2, h1);

    fs::rename(root.join("src/b.txt"), root.join("src/c.txt")).unwrap();
    assert_ne!(ctx.content_hash(&sel).unwrap(), h2);
}

#[test]
fn pattern_clean_matches_go() {
    for (input, want) in [
        ("a//b/./c/", "a/b/c"),
        ("/../a", "/a"),
        ("../a", "../a"),
        ("a/../..", ".."),
        ("", "."),
        ("/", "/"),
    ] {
        assert_eq!(pattern::clean(input), want, "{input}");
    }
}
