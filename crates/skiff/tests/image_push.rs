//! `skiff image push`: to another repository and another registry, checked with skopeo;
//! no re-uploads of blobs the registry has; cross-repository mounts; chunked uploads;
//! Basic and Bearer auth on push.

mod common;

use common::*;
use serde_json::Value;

fn registry_with_busybox() -> (Registry, String) {
    let reg = Registry::start(RegistryOpts::default());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    (reg, reference)
}

/// skopeo reads `reference` back: same manifest digest, same config, and a full copy
/// (which verifies every blob) succeeds.
fn verify_with_skopeo(reference: &str, creds: Option<&str>) {
    let f = fixtures().image("latest");
    assert_eq!(
        skopeo_digest(reference, creds),
        f.digest,
        "pushed manifest digest"
    );
    let cfg = skopeo_inspect(&format!("docker://{reference}"), &["--config"], creds);
    let cfg: Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg, f.config);
    let out = tempdir();
    skopeo_copy(
        &format!("docker://{reference}"),
        &format!("oci:{}:check", out.path().join("layout").display()),
        creds,
    );
}

#[test]
fn push_to_another_repository_is_intact() {
    let (reg, reference) = registry_with_busybox();
    let s = Skiff::new();
    s.pull_ok(&reference);
    let dest = format!("{}/other/name:tag1", reg.host());
    s.ok(&["image", "push", &reference, &dest]);
    verify_with_skopeo(&dest, None);
    // The local store is unchanged by a push.
    s.assert_consistent();
    assert_image_complete(s.root(), &fixtures().image("latest").digest);
}

#[test]
fn push_to_a_fresh_registry_uploads_everything() {
    let (_reg, reference) = registry_with_busybox();
    let empty = Registry::start(RegistryOpts::default());
    let proxy = Proxy::start(&empty, Mode::Normal);
    let s = Skiff::new();
    s.pull_ok(&reference);
    let dest = format!("{}/copy/busybox:v1", proxy.host());
    // `skiff push` is the short form of `image push`.
    s.ok(&["push", &reference, &dest]);
    let f = fixtures().image("latest");
    // Every blob went up: one finished upload (PUT, or monolithic POST, with ?digest=)
    // per blob.
    let puts: Vec<Recorded> = proxy
        .uploads()
        .into_iter()
        .filter(|r| matches!(r.method.as_str(), "PUT" | "POST") && r.query.contains("digest="))
        .collect();
    assert_eq!(puts.len(), f.fetched_blobs().len(), "{}", proxy.dump());
    verify_with_skopeo(&format!("{}/copy/busybox:v1", empty.host()), None);
}

#[test]
fn push_mounts_across_repositories_and_repush_uploads_nothing() {
    let (reg, _) = registry_with_busybox();
    let proxy = Proxy::start(&reg, Mode::Normal);
    let src = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new();
    s.pull_ok(&src);

    // To a new repository on the same registry: blobs are mounted, not re-sent.
    proxy.reset();
    let dest = format!("{}/other/name:v1", proxy.host());
    s.ok(&["image", "push", &src, &dest]);
    let mounts = proxy
        .count(|r| r.method == "POST" && r.query.contains("mount=") && r.query.contains("from="));
    assert!(
        mounts > 0,
        "no cross-repository mount was tried:\n{}",
        proxy.dump()
    );
    let patches = proxy.count(|r| r.method == "PATCH");
    assert_eq!(
        patches,
        0,
        "blob data was sent although the mounts succeeded:\n{}",
        proxy.dump()
    );
    verify_with_skopeo(&format!("{}/other/name:v1", reg.host()), None);

    // Again: the registry has every blob (HEAD), nothing is uploaded.
    proxy.reset();
    s.ok(&["image", "push", &src, &dest]);
    let uploads = proxy.uploads();
    assert!(
        uploads.is_empty(),
        "re-push uploaded blobs:\n{}",
        proxy.dump()
    );
    assert!(proxy.count(|r| r.method == "PUT" && r.path.contains("/manifests/")) <= 1);

    // Single-argument form pushes back to where the image came from: also nothing.
    proxy.reset();
    s.ok(&["image", "push", &src]);
    assert!(
        proxy.uploads().is_empty(),
        "push to the source repo uploaded blobs:\n{}",
        proxy.dump()
    );
    verify_with_skopeo(&format!("{}/test/busybox:latest", reg.host()), None);
}

#[test]
fn chunked_push_with_small_chunk_size() {
    let (_reg, reference) = registry_with_busybox();
    let empty = Registry::start(RegistryOpts::default());
    let proxy = Proxy::start(&empty, Mode::Normal);
    let s = Skiff::new();
    s.pull_ok(&reference);
    let dest = format!("{}/chunked/busybox:v1", proxy.host());
    s.ok(&["image", "push", "--chunk-size", "4096", &reference, &dest]);

    let f = fixtures().image("latest");
    let (_, big) = f.largest_layer();
    let patches: Vec<Recorded> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    let min = (big as usize).div_ceil(4096) - 1;
    assert!(
        patches.len() >= min,
        "{} PATCH requests for a {big}-byte layer with 4096-byte chunks (expected >= {min})",
        patches.len()
    );
    assert!(
        patches.iter().all(|p| p.body_len <= 4096),
        "a PATCH was larger than the chunk size: {:?}",
        patches.iter().map(|p| p.body_len).max()
    );
    assert!(
        patches.iter().all(|p| p.status == 202),
        "a PATCH was not accepted:\n{}",
        proxy.dump()
    );
    verify_with_skopeo(&format!("{}/chunked/busybox:v1", empty.host()), None);
}

#[test]
fn push_needs_credentials_on_an_auth_registry() {
    let (_reg, reference) = registry_with_busybox();
    let secured = Registry::start(RegistryOpts::with_auth());
    let s = Skiff::new();
    s.pull_ok(&reference);
    let dest = format!("{}/pushed/busybox:v1", secured.host());
    s.run(&["image", "push", &reference, &dest])
        .assert_clean_error(&["pushed/busybox"]);

    s.run_with_stdin(
        &["login", &secured.host(), "-u", USER, "--password-stdin"],
        Some(format!("{PASS}\n").into_bytes()),
    )
    .assert_success();
    s.ok(&["image", "push", &reference, &dest]);
    verify_with_skopeo(&dest, secured.creds_arg().as_deref());
}

#[test]
fn push_through_bearer_auth_gets_a_push_token() {
    let (reg, reference) = registry_with_busybox();
    let proxy = Proxy::start(&reg, Mode::Bearer);
    let s = Skiff::new();
    s.pull_ok(&reference);
    s.write_auth(&proxy.host(), USER, PASS);
    let dest = format!("{}/bearer/busybox:v1", proxy.host());
    s.ok(&["image", "push", &reference, &dest]);
    let tokens = proxy.token_requests();
    assert!(
        tokens.iter().any(|t| t.query.contains("push")),
        "no token with push scope was requested:\n{}",
        proxy.dump()
    );
    assert!(
        tokens.len() <= 4,
        "too many token requests for one push:\n{}",
        proxy.dump()
    );
    verify_with_skopeo(&format!("{}/bearer/busybox:v1", reg.host()), None);
}
