//! Manifests `skiff image pull` must refuse: Docker schema 1, unknown media types,
//! oversized documents and bytes that do not match their digest. Each ends in one
//! clean `Error:` line naming the reference and the problem, with the store untouched
//! and no blob fetched.

mod common;

use serde_json::json;

use common::*;

const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// A registry holding the `latest` fixture as test/busybox:latest, and a proxy in front
/// of it answering manifest requests with `canned`.
fn serve_canned(canned: Canned) -> (Registry, Proxy, String) {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_fixture("latest", "test/busybox", "latest");
    let proxy = Proxy::start(&reg, Mode::Canned(canned));
    let via = format!("{}/test/busybox:latest", proxy.host());
    (reg, proxy, via)
}

/// The refused pull left nothing behind and fetched no blob.
#[track_caller]
fn assert_store_untouched(s: &Skiff, proxy: &Proxy) {
    assert!(
        proxy.count_method_path("GET", "/v2/test/busybox/manifests/") >= 1,
        "the manifest was never asked for:\n{}",
        proxy.dump()
    );
    assert!(
        proxy.blob_gets().is_empty(),
        "blobs were fetched for a refused manifest:\n{}",
        proxy.dump()
    );
    assert!(s.blobs().is_empty(), "blobs stored: {:?}", s.blobs());
    assert!(
        store_tmp_files(s.root()).is_empty(),
        "temp files: {:?}",
        store_tmp_files(s.root())
    );
    assert!(s.images().is_empty(), "images: {:#?}", s.images());
    s.assert_consistent();
}

/// Control: with the proxy forwarding again, the same store pulls the image.
#[track_caller]
fn assert_normal_pull_works(s: &Skiff, proxy: &Proxy, via: &str) {
    proxy.set_mode(Mode::Normal);
    let f = fixtures().image("latest");
    assert_eq!(s.pull_ok(via), f.digest);
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
}

fn schema1_body() -> Vec<u8> {
    let f = fixtures().image("latest");
    let v1 = json!({"id": "a".repeat(64), "created": "2020-01-01T00:00:00Z", "os": "linux"});
    let m = json!({
        "schemaVersion": 1,
        "name": "test/busybox",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": f.layers.iter().rev().map(|(d, _)| json!({"blobSum": d})).collect::<Vec<_>>(),
        "history": f.layers.iter().map(|_| json!({"v1Compatibility": v1.to_string()})).collect::<Vec<_>>(),
        "signatures": [{
            "header": {
                "jwk": {"crv": "P-256", "kid": "ABCD:EFGH", "kty": "EC", "x": "eA", "y": "eQ"},
                "alg": "ES256"
            },
            "signature": "c2lnbmF0dXJl",
            "protected": "eyJmb3JtYXRMZW5ndGgiOjEwfQ"
        }]
    });
    serde_json::to_vec_pretty(&m).unwrap()
}

#[test]
fn docker_schema1_manifest_is_refused() {
    let canned = Canned::manifest(SCHEMA1_SIGNED, schema1_body());
    let (_reg, proxy, via) = serve_canned(canned.clone());
    let s = Skiff::new();
    s.pull(&via).assert_clean_error(&[&via, "schema 1"]);
    assert_store_untouched(&s, &proxy);

    // Real registries send the digest of the unsigned payload for a signed schema 1
    // manifest, which is not the digest of the bytes: still "schema 1", not "digest".
    let other = format!("sha256:{}", sha256_hex(b"the unsigned payload"));
    proxy.set_mode(Mode::Canned(
        canned.with_header("Docker-Content-Digest", &other),
    ));
    s.pull(&via).assert_clean_error(&[&via, "schema 1"]);
    assert_store_untouched(&s, &proxy);

    assert_normal_pull_works(&s, &proxy, &via);
}

#[test]
fn unknown_manifest_media_type_is_refused() {
    let weird = "application/vnd.example.weird+json";
    let body = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": weird})).unwrap();
    let (_reg, proxy, via) = serve_canned(Canned::manifest(weird, body));
    let s = Skiff::new();
    s.pull(&via)
        .assert_clean_error(&[&via, "media type", weird]);
    assert_store_untouched(&s, &proxy);
    assert_normal_pull_works(&s, &proxy, &via);
}

#[test]
fn manifest_over_4_mib_is_refused() {
    // A valid OCI manifest (the fixture's), padded with a ~5 MiB annotation.
    let f = fixtures().image("latest");
    let mut m = f.manifest.clone();
    m["annotations"] = json!({"org.example.padding": "x".repeat(5 << 20)});
    let body = serde_json::to_vec(&m).unwrap();
    assert!(body.len() > 5 << 20);
    let (_reg, proxy, via) = serve_canned(Canned::manifest(OCI_MANIFEST, body));
    let s = Skiff::new();
    s.pull(&via)
        .assert_clean_error_any(&[&via], &["4194304", "larger", "4 MiB", "too large"]);
    assert_store_untouched(&s, &proxy);
    assert_normal_pull_works(&s, &proxy, &via);
}

#[test]
fn manifest_not_matching_docker_content_digest_is_refused() {
    // The real manifest, announced under another (well-formed) digest.
    let f = fixtures().image("latest");
    let wrong = fixtures().image("extra").digest.clone();
    assert_ne!(wrong, f.digest);
    let canned = Canned::manifest(OCI_MANIFEST, f.manifest_bytes.clone())
        .with_header("Docker-Content-Digest", &wrong);
    let (_reg, proxy, via) = serve_canned(canned);
    let s = Skiff::new();
    let out = s.pull(&via);
    out.assert_clean_error(&[&via, "digest"]);
    assert!(
        out.error_line().contains(&wrong) || out.error_line().contains(&f.digest),
        "the error should say which digests disagree: {}",
        out.error_line()
    );
    assert_store_untouched(&s, &proxy);
    assert_normal_pull_works(&s, &proxy, &via);
}

#[test]
fn manifest_by_digest_must_match_the_requested_digest() {
    // Asked for `latest` by digest, the server sends the `extra` manifest, with a
    // Docker-Content-Digest header that agrees with those bytes: only the digest in
    // the reference can tell.
    let f = fixtures().image("latest");
    let extra = fixtures().image("extra");
    let canned = Canned::manifest(OCI_MANIFEST, extra.manifest_bytes.clone());
    assert_eq!(canned.body_digest(), extra.digest);
    let (_reg, proxy, _) = serve_canned(canned);
    let by_digest = format!("{}/test/busybox@{}", proxy.host(), f.digest);
    let s = Skiff::new();
    s.pull(&by_digest)
        .assert_clean_error(&["test/busybox", "digest", &f.digest]);
    assert!(
        proxy.blob_gets().is_empty(),
        "blobs were fetched for a manifest that failed its digest check:\n{}",
        proxy.dump()
    );
    assert!(s.blobs().is_empty(), "blobs stored: {:?}", s.blobs());
    assert!(s.images().is_empty(), "images: {:#?}", s.images());
    s.assert_consistent();

    proxy.set_mode(Mode::Normal);
    assert_eq!(s.pull_ok(&by_digest), f.digest);
    assert_image_complete(s.root(), &f.digest);
}

/// A manifest whose layer size disagrees with the blob the registry serves: one byte
/// short, one byte over. Either way the pull fails at once (no retry can make the sizes
/// agree) with one line naming the layer and both sizes; the store keeps nothing of it,
/// and the right manifest then pulls.
#[test]
fn layer_size_that_disagrees_with_the_blob_is_refused() {
    let f = fixtures().image("latest");
    let (digest, size) = f.largest_layer();
    for wrong in [size - 1, size + 1] {
        let mut m: serde_json::Value = serde_json::from_slice(&f.manifest_bytes).unwrap();
        let layer = m["layers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|l| l["digest"] == digest.as_str())
            .unwrap();
        layer["size"] = json!(wrong);
        let canned = Canned::manifest(OCI_MANIFEST, serde_json::to_vec(&m).unwrap());
        let (_reg, proxy, via) = serve_canned(canned);
        let s = Skiff::new();
        let out = s.pull(&via);
        out.assert_clean_error(&[
            &via,
            &digest,
            &format!("is {size} bytes, the manifest says {wrong}"),
        ]);
        assert!(
            !s.blobs().contains(&digest),
            "size {wrong} of {size}: the layer was stored"
        );
        assert!(s.images().is_empty(), "size {wrong}: {:#?}", s.images());
        let gets = proxy.count(|r| r.is_blob_get() && r.blob_digest() == Some(digest.as_str()));
        assert_eq!(
            gets,
            1,
            "size {wrong} of {size}: the layer was asked for {gets} times:\n{}",
            proxy.dump()
        );
        s.assert_consistent();
        assert_normal_pull_works(&s, &proxy, &via);
    }
}
