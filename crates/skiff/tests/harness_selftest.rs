//! Self-tests of the integration-test harness itself (tests/common): the registry, the
//! fixtures, the proxy's modes — checked with skopeo and raw HTTP, without skiff, so a
//! failure here points at the harness or the environment, not at skiff.

mod common;

use std::io::{Read, Write};

use common::*;
use serde_json::Value;

#[test]
fn registry_and_fixtures_roundtrip_with_skopeo() {
    let reg = Registry::start(RegistryOpts::default());
    let f = fixtures();
    let latest = f.image("latest");
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    assert_eq!(skopeo_digest(&reference, None), latest.digest);

    let tags = reg.request("GET", "/v2/test/busybox/tags/list", &[], b"");
    assert_eq!(tags.status, 200, "{}", tags.text());
    let v: Value = serde_json::from_slice(&tags.body).unwrap();
    assert_eq!(v["tags"][0], "latest");

    // Every layer is served with the digest and size the fixture says.
    for (digest, size) in &latest.layers {
        let r = reg.request("GET", &format!("/v2/test/busybox/blobs/{digest}"), &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len() as u64, *size);
        assert_eq!(format!("sha256:{}", sha256_hex(&r.body)), *digest);
    }
    // The busybox layer is big enough to be cut in half / chunked by the fault tests.
    assert!(latest.largest_layer().1 > 100_000);

    let out = tempdir();
    skopeo_copy(
        &format!("docker://{reference}"),
        &format!("oci:{}:copy", out.path().join("l").display()),
        None,
    );
}

#[test]
fn auth_registry_requires_basic_credentials() {
    let reg = Registry::start(RegistryOpts::with_auth());
    let anon = http_request(&reg.host(), "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(anon.status, 401);
    assert!(anon
        .header("WWW-Authenticate")
        .unwrap_or("")
        .starts_with("Basic"));
    let authed = reg.request("GET", "/v2/", &[], b"");
    assert_eq!(authed.status, 200, "{}", reg.log());

    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    let creds = reg.creds_arg().unwrap();
    assert_eq!(
        skopeo_digest(&reference, Some(&creds)),
        fixtures().image("latest").digest
    );
    let anon_inspect = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--no-creds",
            "--retry-times",
            "0",
        ])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(!anon_inspect.status.success());
}

#[test]
fn multiarch_index_is_served() {
    let reg = Registry::start(RegistryOpts::default());
    let m = reg.push_multiarch("test/multi");
    let raw = skopeo_inspect(&format!("docker://{}", m.reference), &["--raw"], None);
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        m.index_digest
    );
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    // skopeo's own platform resolution picks the arm64/v8 manifest.
    let out = run_tool(
        std::process::Command::new("skopeo")
            .args([
                "--override-arch",
                "arm64",
                "--override-variant",
                "v8",
                "inspect",
            ])
            .args(["--tls-verify=false", "--no-creds", "--config"])
            .arg(format!("docker://{}", m.reference)),
    );
    let config: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    assert_ne!(m.amd64_digest, m.arm64_digest);
}

#[test]
fn proxy_forwards_push_and_pull_and_records_requests() {
    let reg = Registry::start(RegistryOpts::default());
    let proxy = Proxy::start(&reg, Mode::Normal);
    let f = fixtures();
    // Push through the proxy: exercises uploads and Location rewriting.
    run_tool(
        std::process::Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet", "--preserve-digests"])
            .arg("--dest-tls-verify=false")
            .arg(format!("oci:{}:latest", f.layout.display()))
            .arg(format!("docker://{}/via/proxy:v1", proxy.host())),
    );
    assert!(!proxy.uploads().is_empty(), "{}", proxy.dump());
    assert_eq!(
        skopeo_digest(&format!("{}/via/proxy:v1", reg.host()), None),
        f.image("latest").digest
    );

    proxy.reset();
    let out = tempdir();
    skopeo_copy(
        &format!("docker://{}/via/proxy:v1", proxy.host()),
        &format!("oci:{}:x", out.path().join("l").display()),
        None,
    );
    let gets: Vec<String> = proxy
        .blob_gets()
        .iter()
        .map(|r| r.blob_digest().unwrap().to_string())
        .collect();
    for d in f.image("latest").fetched_blobs() {
        assert!(
            gets.contains(&d),
            "blob {d} not fetched through the proxy:\n{}",
            proxy.dump()
        );
    }
    assert!(proxy.count_method_path("GET", "/v2/via/proxy/manifests/") >= 1);
}

#[test]
fn proxy_bearer_mode_works_with_skopeo() {
    let reg = Registry::start(RegistryOpts::default());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    let proxy = Proxy::start(&reg, Mode::Bearer);
    let via = reference.replace(&reg.host(), &proxy.host());
    let creds = format!("{USER}:{PASS}");
    assert_eq!(
        skopeo_digest(&via, Some(&creds)),
        fixtures().image("latest").digest
    );
    let tokens = proxy.token_requests();
    assert!(!tokens.is_empty());
    assert!(
        tokens
            .iter()
            .any(|t| t.query.contains("repository%3Atest%2Fbusybox%3Apull")
                || t.query.contains("repository:test/busybox:pull")),
        "{}",
        proxy.dump()
    );

    let anon = http_request(
        &proxy.host(),
        "GET",
        "/v2/test/busybox/manifests/latest",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(anon.status, 401);
    let challenge = anon.header("WWW-Authenticate").unwrap();
    assert!(
        challenge.contains("scope=\"repository:test/busybox:pull\""),
        "{challenge}"
    );
    let bad = http_request(
        &proxy.host(),
        "GET",
        "/token?service=test-registry&scope=repository:test/busybox:pull",
        &[("Authorization", &basic_auth_value(USER, "wrong"))],
        b"",
    )
    .unwrap();
    assert_eq!(bad.status, 401);
}

#[test]
fn proxy_corrupt_mode_is_detected_by_skopeo() {
    let reg = Registry::start(RegistryOpts::default());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    let proxy = Proxy::start(&reg, Mode::CorruptBlob);
    let out = tempdir();
    let st = std::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--retry-times",
            "0",
        ])
        .arg(format!(
            "docker://{}",
            reference.replace(&reg.host(), &proxy.host())
        ))
        .arg(format!("oci:{}:x", out.path().join("l").display()))
        .output()
        .unwrap();
    assert!(!st.status.success(), "skopeo accepted corrupted blobs");
}

#[test]
fn proxy_drop_mode_cuts_body_and_range_resumes() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_fixture("latest", "test/busybox", "latest");
    let proxy = Proxy::start(&reg, Mode::DropMidBlob { times: 1 });
    let (digest, size) = fixtures().image("latest").largest_layer();
    let path = format!("/v2/test/busybox/blobs/{digest}");
    let first = http_request(&proxy.host(), "GET", &path, &[], b"");
    assert!(first.is_err(), "the first blob GET should be cut short");
    assert_eq!(proxy.drops_done(), 1);
    let got = proxy.blob_gets()[0].body_sent;
    assert_eq!(got as u64, size / 2);

    // The registry serves the rest with a 206 (the client resumes with Range).
    let whole = reg.request("GET", &path, &[], b"").body;
    let range = format!("bytes={got}-");
    let rest = http_request(&proxy.host(), "GET", &path, &[("Range", &range)], b"").unwrap();
    assert_eq!(rest.status, 206, "{:?}", rest.headers);
    assert_eq!(rest.body, whole[got..]);
    assert!(proxy.saw_range_request());
}

#[test]
fn proxy_html_and_slow_modes() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_fixture("latest", "test/busybox", "latest");
    let proxy = Proxy::start(&reg, Mode::Html);
    let r = http_request(
        &proxy.host(),
        "GET",
        "/v2/test/busybox/manifests/latest",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("Content-Type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("<html>"));

    // Slow: the body goes out in pieces of a twentieth of the rate, a pause after each,
    // and the record counts each piece as it goes. A client reading along sees the count
    // stand at many values in between; a proxy that wrote the body at once would go from
    // nothing to everything in one step.
    let rate = 1_000_000;
    proxy.set_mode(Mode::Slow {
        bytes_per_sec: rate,
    });
    let (digest, size) = fixtures().image("latest").largest_layer();
    assert!(
        size as usize > 10 * (rate / 20),
        "the layer is too small to pace"
    );
    let mut conn = std::net::TcpStream::connect(proxy.host()).unwrap();
    write!(
        conn,
        "GET /v2/test/busybox/blobs/{digest} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        proxy.host()
    )
    .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut in_between = std::collections::BTreeSet::new();
    loop {
        let n = conn.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
        let sent = proxy.blob_gets()[0].body_sent as u64;
        if sent > 0 && sent < size {
            in_between.insert(sent);
        }
    }
    assert!(
        in_between.len() >= 5,
        "the slow proxy was seen mid-body only at {in_between:?} of {size} bytes"
    );
    let head_end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let body = &received[head_end..];
    assert_eq!(body.len() as u64, size);
    assert_eq!(format!("sha256:{}", sha256_hex(body)), digest);
}

/// The store check catches what it says it does: a listed image missing its config or
/// a layer, a record naming another config, a blob whose bytes are not its name, a
/// stray file in tmp/. Checked on a store made by hand from the fixture layout.
#[test]
fn store_check_catches_incomplete_and_corrupt_stores() {
    let f = fixtures().image("latest");
    let make = || {
        let root = tempdir();
        let blobs = root.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for d in f.all_blobs() {
            let hex = d.trim_start_matches("sha256:");
            std::fs::copy(
                fixtures().layout.join("blobs/sha256").join(hex),
                blobs.join(hex),
            )
            .unwrap();
        }
        std::fs::create_dir_all(root.path().join("images")).unwrap();
        let index = serde_json::json!({"version": 1, "images": [
            {"name": "127.0.0.1:1/t:latest", "digest": f.digest, "config": f.config_digest, "size": 1}
        ]});
        std::fs::write(
            root.path().join("images/index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        root
    };
    let blob = |root: &std::path::Path, d: &str| {
        root.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let rejected = |root: &std::path::Path| {
        std::panic::catch_unwind(|| assert_store_consistent(root)).is_err()
    };

    let good = make();
    assert_store_consistent(good.path());

    let no_layer = make();
    std::fs::remove_file(blob(no_layer.path(), &f.layers[1].0)).unwrap();
    assert!(rejected(no_layer.path()), "a missing layer passed");

    let no_config = make();
    std::fs::remove_file(blob(no_config.path(), &f.config_digest)).unwrap();
    assert!(rejected(no_config.path()), "a missing config passed");

    let other_config = make();
    let p = other_config.path().join("images/index.json");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace(&f.config_digest, &f.layers[0].0)).unwrap();
    assert!(
        rejected(other_config.path()),
        "a record naming another config passed"
    );

    let flipped = make();
    let p = blob(flipped.path(), &f.layers[0].0);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    assert!(rejected(flipped.path()), "a corrupt blob passed");

    let stray = make();
    std::fs::create_dir_all(stray.path().join("tmp")).unwrap();
    std::fs::write(stray.path().join("tmp/upload-1"), b"x").unwrap();
    assert!(rejected(stray.path()), "a stray temp file passed");
}
