//! `skiff image pull` (and `ls`, `inspect`) against a real registry: multi-layer
//! images, digests, re-pulls, multi-platform indexes, Basic and Bearer auth, `login` /
//! `logout`, concurrent pulls.

mod common;

use common::*;
use serde_json::Value;

/// A registry holding the `latest` fixture as `test/busybox:latest`.
fn registry_with_busybox() -> (Registry, String) {
    let reg = Registry::start(RegistryOpts::default());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    (reg, reference)
}

#[test]
fn pull_multilayer_image_then_ls_and_inspect() {
    let (reg, reference) = registry_with_busybox();
    let f = fixtures().image("latest");
    let expected = skopeo_digest(&reference, None);
    assert_eq!(expected, f.digest, "skopeo sees the fixture's digest");

    let s = Skiff::new();
    let out = s.ok(&["image", "pull", &reference]);
    assert_eq!(
        out.last_line(),
        expected,
        "pull prints the manifest digest last"
    );
    assert!(
        !out.stderr.contains('\x1b'),
        "no terminal escapes when stderr is not a TTY:\n{}",
        out.stderr
    );
    assert_image_complete(s.root(), &expected);
    for d in f.all_blobs() {
        assert!(s.blobs().contains(&d), "blob {d} missing after pull");
    }
    s.assert_consistent();

    // ls --format json
    let imgs = s.images();
    assert_eq!(imgs.len(), 1, "{imgs:#?}");
    let img = &imgs[0];
    assert_eq!(img["name"], reference.as_str());
    assert_eq!(
        img["repository"],
        format!("{}/test/busybox", reg.host()).as_str()
    );
    assert_eq!(img["tag"], "latest");
    assert_eq!(img["digest"], expected.as_str());
    assert_eq!(img["id"], f.config_digest.as_str());
    let size = img["size"].as_u64().expect("size is a number of bytes");
    let layers: u64 = f.layers.iter().map(|l| l.1).sum();
    assert!(
        size >= layers,
        "size {size} is less than the layers' {layers} bytes"
    );
    assert!(
        size < layers * 3,
        "size {size} is implausibly large (layers: {layers} bytes)"
    );
    assert!(
        img.get("created").is_some(),
        "ls json lacks `created`: {img}"
    );

    // ls (table)
    let table = s.ok(&["image", "ls"]).stdout;
    let header = table.lines().next().unwrap_or("");
    for col in ["REPOSITORY", "TAG", "DIGEST", "SIZE", "CREATED"] {
        assert!(header.contains(col), "table header lacks {col}: {header:?}");
    }
    let repo = format!("{}/test/busybox", reg.host());
    assert!(
        table
            .lines()
            .skip(1)
            .any(|l| l.contains(&repo) && l.contains("latest")),
        "table lacks the image:\n{table}"
    );

    // ls -q: one line per image
    let q = s.ok(&["image", "ls", "-q"]).stdout;
    assert_eq!(
        q.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "ls -q:\n{q}"
    );
    // `skiff images` is the short form of `image ls`, flags and all.
    assert_eq!(s.ok(&["images"]).stdout.lines().next(), Some(header));
    assert_eq!(s.ok(&["images", "-q"]).stdout, q);
    assert_eq!(
        s.ok(&["images", "--format", "json"]).json(),
        Value::Array(imgs.clone())
    );

    // inspect
    let v = s.inspect(&reference);
    assert_eq!(v["name"], reference.as_str());
    assert_eq!(v["digest"], expected.as_str());
    assert_eq!(
        v["manifest"], f.manifest,
        "inspect shows the registry's manifest"
    );
    assert_eq!(v["config"], f.config, "inspect shows the image config");
    assert_eq!(v["config"]["architecture"], "amd64");
    assert_eq!(v["manifest"]["layers"].as_array().unwrap().len(), 3);
}

#[test]
fn pull_by_digest() {
    let (reg, _) = registry_with_busybox();
    let f = fixtures().image("latest");
    let by_digest = format!("{}/test/busybox@{}", reg.host(), f.digest);
    let s = Skiff::new();
    let out = s.ok(&["image", "pull", "-q", &by_digest]);
    assert_eq!(
        out.stdout.trim(),
        f.digest,
        "pull -q prints only the digest"
    );
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
    assert!(
        s.images().iter().any(|i| i["digest"] == f.digest.as_str()),
        "ls lacks the image pulled by digest: {:#?}",
        s.images()
    );
    let v = s.inspect(&by_digest);
    assert_eq!(v["digest"], f.digest.as_str());
    assert_eq!(v["config"], f.config);
}

#[test]
fn pull_via_localhost_name() {
    let (reg, _) = registry_with_busybox();
    let reference = format!("localhost:{}/test/busybox:latest", reg.port);
    let s = Skiff::new();
    assert_eq!(s.pull_ok(&reference), fixtures().image("latest").digest);
    assert!(s.image_named(&reference).is_some(), "{:#?}", s.images());
}

#[test]
fn second_pull_fetches_no_blobs() {
    let (reg, _) = registry_with_busybox();
    let proxy = Proxy::start(&reg, Mode::Normal);
    let f = fixtures().image("latest");
    let via = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new();
    assert_eq!(s.pull_ok(&via), f.digest);
    for d in f.fetched_blobs() {
        let n = proxy.count(|r| r.is_blob_get() && r.blob_digest() == Some(d.as_str()));
        assert_eq!(
            n,
            1,
            "blob {d} fetched {n} times on the first pull:\n{}",
            proxy.dump()
        );
    }

    proxy.reset();
    assert_eq!(s.pull_ok(&via), f.digest);
    let gets = proxy.blob_gets();
    assert!(
        gets.is_empty(),
        "the second pull fetched blobs again:\n{}",
        proxy.dump()
    );
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
    assert_eq!(s.images().len(), 1);
}

#[test]
fn multi_platform_index_selects_the_platform() {
    let reg = Registry::start(RegistryOpts::default());
    let m = reg.push_multiarch("test/multi");
    let host_digest = match host_platform() {
        "linux/amd64" => &m.amd64_digest,
        _ => &m.arm64_digest,
    };

    // Default: the host platform.
    let s = Skiff::new();
    assert_eq!(
        &s.pull_ok(&m.reference),
        host_digest,
        "default platform ({})",
        host_platform()
    );
    assert_image_complete(s.root(), host_digest);
    let img = s
        .image_named(&m.reference)
        .expect("pulled index is listed by name");
    // `ls` may show either the platform manifest's digest or the index's (what the
    // registry reports for the tag, as podman does); `inspect` shows the manifest's.
    assert!(
        img["digest"] == host_digest.as_str() || img["digest"] == m.index_digest.as_str(),
        "ls digest {} is neither the manifest {host_digest} nor the index {}",
        img["digest"],
        m.index_digest
    );
    assert_eq!(s.inspect(&m.reference)["digest"], host_digest.as_str());
    s.assert_consistent();

    // Explicit platforms.
    for platform in ["linux/arm64", "linux/arm64/v8"] {
        let s = Skiff::new();
        let out = s.ok(&["image", "pull", "--platform", platform, &m.reference]);
        assert_eq!(out.last_line(), m.arm64_digest, "--platform {platform}");
        let v = s.inspect(&m.reference);
        assert_eq!(v["digest"], m.arm64_digest.as_str());
        assert_eq!(v["config"]["architecture"], "arm64");
        assert_image_complete(s.root(), &m.arm64_digest);
        s.assert_consistent();
    }
    let s = Skiff::new();
    let out = s.ok(&["image", "pull", "--platform", "linux/amd64", &m.reference]);
    assert_eq!(out.last_line(), m.amd64_digest);

    // By the index digest.
    let s = Skiff::new();
    let by_digest = format!("{}/test/multi@{}", reg.host(), m.index_digest);
    let out = s.ok(&["image", "pull", "--platform", "linux/arm64", &by_digest]);
    assert_eq!(out.last_line(), m.arm64_digest);

    // No match: the error lists what the index has.
    let s = Skiff::new();
    let out = s.run(&["image", "pull", "--platform", "linux/s390x", &m.reference]);
    out.assert_clean_error(&["linux/s390x", "linux/amd64", "linux/arm64"]);
    assert!(s.images().is_empty());
    assert!(
        s.blobs()
            .iter()
            .all(|b| !fixtures().image("latest").fetched_blobs().contains(b)),
        "no layers should be downloaded for a platform that does not exist"
    );
    s.assert_consistent();
}

fn auth_json(s: &Skiff) -> Value {
    serde_json::from_slice(&std::fs::read(s.auth_file()).expect("auth file written"))
        .expect("auth file is JSON")
}

#[test]
fn basic_auth_login_pull_logout() {
    let reg = Registry::start(RegistryOpts::with_auth());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    let extra = reg.push_fixture("extra", "test/busybox", "extra");
    let f = fixtures().image("latest");
    let host = reg.host();
    let s = Skiff::new();

    // Anonymous: refused, cleanly, nothing stored.
    let out = s.pull(&reference);
    out.assert_clean_error_any(
        &["test/busybox"],
        &["401", "unauthorized", "auth", "credential", "denied"],
    );
    assert!(s.images().is_empty());
    assert!(
        s.blobs().is_empty(),
        "failed pull stored blobs: {:?}",
        s.blobs()
    );

    // Wrong password: login fails and stores nothing for the host.
    let out = s.run_with_stdin(
        &["login", &host, "-u", USER, "--password-stdin"],
        Some(b"wrong\n".to_vec()),
    );
    out.assert_clean_error(&[&host]);
    if s.auth_file().exists() {
        assert!(
            auth_json(&s)["auths"].get(&host).is_none(),
            "bad credentials were saved"
        );
    }

    // Right password.
    let out = s.run_with_stdin(
        &["login", &host, "-u", USER, "--password-stdin"],
        Some(format!("{PASS}\n").into_bytes()),
    );
    out.assert_success();
    let auth = auth_json(&s);
    assert_eq!(
        auth["auths"][&host]["auth"],
        base64_encode(format!("{USER}:{PASS}").as_bytes()).as_str(),
        "auth.json: {auth}"
    );
    assert_eq!(s.pull_ok(&reference), f.digest);
    assert_image_complete(s.root(), &f.digest);

    // Logout: the entry goes, and pulls fail again.
    s.ok(&["logout", &host]);
    if s.auth_file().exists() {
        assert!(
            auth_json(&s)["auths"].get(&host).is_none(),
            "logout left the entry"
        );
    }
    let out = s.pull(&extra);
    out.assert_clean_error(&["test/busybox"]);
    assert!(s.image_named(&extra).is_none());
    s.assert_consistent();
}

#[test]
fn bearer_token_flow_reuses_tokens() {
    let (reg, _) = registry_with_busybox();
    let proxy = Proxy::start(&reg, Mode::Bearer);
    let f = fixtures().image("latest");
    let via = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new();

    // No credentials: the token endpoint refuses.
    s.pull(&via).assert_clean_error(&["test/busybox"]);
    assert!(s.blobs().is_empty());

    s.write_auth(&proxy.host(), USER, PASS);
    proxy.reset();
    assert_eq!(s.pull_ok(&via), f.digest);
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();

    let tokens = proxy.token_requests();
    let blob_gets = proxy.blob_gets();
    assert_eq!(blob_gets.len(), f.fetched_blobs().len(), "{}", proxy.dump());
    assert!(
        blob_gets.iter().all(|r| r.status == 200),
        "{}",
        proxy.dump()
    );
    assert!(
        !tokens.is_empty(),
        "no token was requested:\n{}",
        proxy.dump()
    );
    assert!(
        tokens.len() <= 2,
        "{} token requests for one pull of {} blobs (tokens should be reused):\n{}",
        tokens.len(),
        blob_gets.len(),
        proxy.dump()
    );
    assert!(
        tokens
            .iter()
            .any(|t| t.query.contains("repository%3Atest%2Fbusybox%3Apull")
                || t.query.contains("repository:test/busybox:pull")),
        "token requests lack the pull scope:\n{}",
        proxy.dump()
    );
    // Re-pull with the cached token: no new blobs, at most one more token.
    proxy.reset();
    assert_eq!(s.pull_ok(&via), f.digest);
    assert!(proxy.blob_gets().is_empty());
    assert!(proxy.token_requests().len() <= 1, "{}", proxy.dump());
}

#[test]
fn docker_identity_token_is_exchanged_by_refresh_grant() {
    let (reg, _) = registry_with_busybox();
    let proxy = Proxy::start(&reg, Mode::Bearer);
    let f = fixtures().image("latest");
    let via = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new();
    // docker's config.json shape after an OAuth login: no password, an identity token.
    let auth = serde_json::json!({"auths": {proxy.host(): {
        "auth": base64_encode(b"<token>:"),
        "identitytoken": REFRESH_TOKEN,
    }}});
    std::fs::write(s.auth_file(), serde_json::to_vec(&auth).unwrap()).unwrap();
    assert_eq!(s.pull_ok(&via), f.digest);
    assert_image_complete(s.root(), &f.digest);
    let tokens = proxy.token_requests();
    assert!(
        !tokens.is_empty() && tokens.iter().all(|t| t.method == "POST" && t.status == 200),
        "{}",
        proxy.dump()
    );
    assert!(
        tokens.iter().all(|t| t.authorization.is_none()),
        "the password path was used:\n{}",
        proxy.dump()
    );

    // A wrong identity token is refused, cleanly, in a fresh store.
    let s2 = Skiff::new();
    let bad = serde_json::json!({"auths": {proxy.host(): {"auth": base64_encode(b"<token>:"), "identitytoken": "nope"}}});
    std::fs::write(s2.auth_file(), serde_json::to_vec(&bad).unwrap()).unwrap();
    s2.pull(&via)
        .assert_clean_error(&["test/busybox", "refused"]);
    assert!(s2.blobs().is_empty());
}

#[test]
fn login_against_bearer_registry() {
    let (reg, _) = registry_with_busybox();
    let proxy = Proxy::start(&reg, Mode::Bearer);
    let host = proxy.host();
    let s = Skiff::new();
    s.run_with_stdin(
        &["login", &host, "-u", USER, "--password-stdin"],
        Some(b"nope\n".to_vec()),
    )
    .assert_clean_error(&[&host]);
    s.run_with_stdin(
        &["login", &host, "-u", USER, "--password-stdin"],
        Some(format!("{PASS}\n").into_bytes()),
    )
    .assert_success();
    assert!(
        !proxy.token_requests().is_empty(),
        "login did not verify via the token endpoint"
    );
    assert_eq!(
        s.pull_ok(&format!("{host}/test/busybox:latest")),
        fixtures().image("latest").digest
    );
}

#[test]
fn concurrent_pulls_share_downloads() {
    let (reg, _) = registry_with_busybox();
    // Slow enough that the two pulls overlap.
    let proxy = Proxy::start(
        &reg,
        Mode::Slow {
            bytes_per_sec: 2_000_000,
        },
    );
    let f = fixtures().image("latest");
    let big = f.largest_layer();
    let via = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new();
    let a = s.spawn(&["image", "pull", &via]);
    // The second pull starts while the first is mid-way through the big layer, and asks
    // for the manifest before that download has ended: the two overlap for certain.
    let big_in_flight = |p: &Proxy| {
        p.count(|r| {
            r.is_blob_get()
                && r.blob_digest() == Some(big.0.as_str())
                && r.body_sent > 0
                && (r.body_sent as u64) < big.1
        }) > 0
    };
    wait_until(
        std::time::Duration::from_secs(60),
        "the first pull to be downloading the big layer",
        || big_in_flight(&proxy),
    );
    let b = s.spawn(&["image", "pull", &via]);
    wait_until(
        std::time::Duration::from_secs(60),
        "the second pull to ask for the manifest",
        || proxy.count_method_path("GET", "/v2/test/busybox/manifests/") >= 2,
    );
    assert!(
        big_in_flight(&proxy),
        "the first pull finished the big layer before the second began:\n{}",
        proxy.dump()
    );
    let a = a.wait(SKIFF_TIMEOUT);
    let b = b.wait(SKIFF_TIMEOUT);
    a.assert_success();
    b.assert_success();
    assert_eq!(a.last_line(), f.digest);
    assert_eq!(b.last_line(), f.digest);
    for d in f.fetched_blobs() {
        let n = proxy.count(|r| r.is_blob_get() && r.blob_digest() == Some(d.as_str()));
        assert!(
            n <= 1,
            "blob {d} was downloaded {n} times by two concurrent pulls:\n{}",
            proxy.dump()
        );
    }
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
    let imgs = s.images();
    assert_eq!(imgs.len(), 1, "{imgs:#?}");
    assert_eq!(imgs[0]["name"], via.as_str());
    // And a third pull, for good measure, fetches nothing.
    proxy.reset();
    s.pull_ok(&via);
    assert!(proxy.blob_gets().is_empty());
}

/// Credentials come from the first file that has them, in the README's order:
/// `$REGISTRY_AUTH_FILE` alone when set; else `$XDG_RUNTIME_DIR/containers/auth.json`,
/// `~/.config/containers/auth.json`, then docker's `~/.docker/config.json` (or
/// `$DOCKER_CONFIG/config.json`). A file with wrong credentials ahead of one with right
/// ones makes the pull fail, which shows which file was read.
#[test]
fn credentials_are_searched_in_order() {
    let reg = Registry::start(RegistryOpts::with_auth());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    let f = fixtures().image("latest");
    let host = reg.host();
    let s = Skiff::new();
    s.unset_env("REGISTRY_AUTH_FILE");
    let home = s.home().to_path_buf();
    let runtime = home.join("run/containers/auth.json");
    let config = home.join(".config/containers/auth.json");
    let docker = home.join(".docker/config.json");
    let docker_config = home.join("docker-config-dir");
    let write = |path: &std::path::Path, pass: Option<&str>| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let v = match pass {
            Some(p) => {
                serde_json::json!({"auths": {&host: {"auth": base64_encode(format!("{USER}:{p}").as_bytes())}}})
            }
            None => serde_json::json!({"auths": {}}),
        };
        std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    // Wrong credentials found, or none at all.
    let refused = |why: &str| {
        let out = s.pull(&reference);
        eprintln!("expecting a refusal: {why}");
        out.assert_clean_error_any(
            &["test/busybox"],
            &["rejected the credentials", "authentication required"],
        );
    };

    // Only docker's file: read.
    write(&docker, Some(PASS));
    assert_eq!(s.pull_ok(&reference), f.digest, "~/.docker/config.json");
    // ~/.config/containers/auth.json comes before it.
    write(&config, Some("wrong"));
    refused("~/.config/containers/auth.json before ~/.docker/config.json");
    // $XDG_RUNTIME_DIR/containers/auth.json before both.
    write(&runtime, Some(PASS));
    assert_eq!(s.pull_ok(&reference), f.digest, "$XDG_RUNTIME_DIR first");
    // A file without this host is passed over.
    write(&runtime, None);
    refused("a file without the host is skipped, the next one is read");
    // $REGISTRY_AUTH_FILE is the only file read when set.
    write(&config, Some(PASS));
    assert_eq!(s.pull_ok(&reference), f.digest);
    s.set_env("REGISTRY_AUTH_FILE", home.join("nothing-here.json"));
    refused("$REGISTRY_AUTH_FILE alone");
    s.unset_env("REGISTRY_AUTH_FILE");
    // $DOCKER_CONFIG replaces ~/.docker.
    std::fs::remove_file(&runtime).unwrap();
    std::fs::remove_file(&config).unwrap();
    write(&docker, Some("wrong"));
    refused("~/.docker/config.json with a wrong password");
    write(&docker_config.join("config.json"), Some(PASS));
    s.set_env("DOCKER_CONFIG", &docker_config);
    assert_eq!(
        s.pull_ok(&reference),
        f.digest,
        "$DOCKER_CONFIG/config.json"
    );
    s.assert_consistent();
}

/// Loopback registries other than 127.0.0.1 (IPv6 `::1`, `127.0.0.2`) are spoken to in
/// plain HTTP, as docker does: the proxy in front of the registry speaks only HTTP and
/// records each request it could parse.
#[test]
fn plain_http_to_ipv6_loopback_and_other_127_addresses() {
    let (reg, _) = registry_with_busybox();
    let f = fixtures().image("latest");
    for bind in ["[::1]:0", "127.0.0.2:0"] {
        let proxy = Proxy::start_on(bind, &reg, Mode::Normal);
        let via = format!("{}/test/busybox:latest", proxy.host());
        let s = Skiff::new();
        assert_eq!(s.pull_ok(&via), f.digest, "{via}");
        assert!(
            proxy.count_method_path("GET", "/v2/test/busybox/manifests/latest") >= 1,
            "{via}: no plain-HTTP manifest request:\n{}",
            proxy.dump()
        );
        assert_eq!(
            proxy.blob_gets().len(),
            f.fetched_blobs().len(),
            "{}",
            proxy.dump()
        );
        assert_eq!(s.images()[0]["name"], via.as_str());
        s.assert_consistent();
    }
}

/// The store is `--root`, else `$SKIFF_ROOT`, else `/var/lib/skiff` for root and
/// `$XDG_DATA_HOME/skiff` or `~/.local/share/skiff` for other users.
#[test]
fn store_root_from_flag_env_and_defaults() {
    use std::os::unix::process::CommandExt;
    let (_reg, reference) = registry_with_busybox();
    let f = fixtures().image("latest");
    let s = Skiff::new();
    let env_root = tempdir();
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // $SKIFF_ROOT: the pull lands there.
    run(s
        .command_without_root(&["pull", "-q", &reference])
        .env("SKIFF_ROOT", env_root.path()));
    assert_image_complete(env_root.path(), &f.digest);
    assert_store_consistent(env_root.path());
    // --root wins over $SKIFF_ROOT.
    let flag_root = tempdir();
    let ls = run(s
        .command_without_root(&["--root", flag_root.path().to_str().unwrap(), "images", "-q"])
        .env("SKIFF_ROOT", env_root.path()));
    assert_eq!(ls.trim(), "", "--root should win over SKIFF_ROOT");

    // Defaults, read back from `system info` (which creates nothing).
    let info_root = |cmd: &mut std::process::Command| -> String {
        let v: Value = serde_json::from_str(&run(cmd)).unwrap();
        v["root"].as_str().unwrap().to_owned()
    };
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs as root"
    );
    assert_eq!(
        info_root(&mut s.command_without_root(&["system", "info", "--format", "json"])),
        "/var/lib/skiff"
    );
    // Another user: a pull as `nobody` goes below its HOME, or $XDG_DATA_HOME.
    let home = tempdir();
    rustix::fs::chown(
        home.path(),
        Some(rustix::process::Uid::from_raw(65534)),
        Some(rustix::process::Gid::from_raw(65534)),
    )
    .unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let as_nobody = |args: &[&str]| {
        let mut cmd = s.command_without_root(args);
        cmd.env("HOME", home.path())
            .env_remove("XDG_DATA_HOME")
            .env_remove("REGISTRY_AUTH_FILE")
            .env("XDG_RUNTIME_DIR", home.path().join("run"))
            .uid(65534)
            .gid(65534);
        cmd
    };
    run(&mut as_nobody(&["pull", "-q", &reference]));
    let user_root = home.path().join(".local/share/skiff");
    assert_image_complete(&user_root, &f.digest);
    assert_store_consistent(&user_root);
    let data_home = home.path().join("data");
    assert_eq!(
        info_root(
            as_nobody(&["system", "info", "--format", "json"]).env("XDG_DATA_HOME", &data_home)
        ),
        data_home.join("skiff").display().to_string()
    );
}
