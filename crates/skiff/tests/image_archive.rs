//! `skiff image save` / `load`: docker-archive and oci-archive, read by skopeo, loaded
//! back into a fresh store (from a file and from stdin), archives written by skopeo,
//! and corrupted archives.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use tempfile::TempDir;

/// A store with the `latest` fixture pulled; returns (skiff, reference, registry).
fn pulled() -> (Skiff, String, Registry) {
    let reg = Registry::start(RegistryOpts::default());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    let s = Skiff::new();
    s.pull_ok(&reference);
    (s, reference, reg)
}

fn save(s: &Skiff, reference: &str, dir: &TempDir, format: Option<&str>) -> PathBuf {
    let file = dir
        .path()
        .join(format!("image-{}.tar", format.unwrap_or("default")));
    let mut args = vec!["image", "save", reference, "-o", file.to_str().unwrap()];
    if let Some(fmt) = format {
        args.extend(["--format", fmt]);
    }
    s.ok(&args);
    assert!(file.exists(), "save did not write {}", file.display());
    file
}

fn skopeo_config(transport_ref: &str) -> Value {
    serde_json::from_str(&skopeo_inspect(transport_ref, &["--config"], None)).unwrap()
}

/// Layers of the OCI layout `dir:tag` written by skopeo.
fn layout_layer_count(dir: &Path) -> usize {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"][0]["digest"].as_str().unwrap();
    let m: Value = serde_json::from_slice(
        &std::fs::read(
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    m["layers"].as_array().unwrap().len()
}

#[test]
fn save_docker_archive_is_readable_by_skopeo() {
    let (s, reference, _reg) = pulled();
    let f = fixtures().image("latest");
    let tmp = tempdir();
    let file = save(&s, &reference, &tmp, None); // default format: docker-archive
    let data = std::fs::read(&file).unwrap();
    let manifest = tar_file(&data, "manifest.json").expect("docker-archive has manifest.json");
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"][0],
        reference.as_str(),
        "RepoTags: {manifest}"
    );
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 3);

    let t = format!("docker-archive:{}", file.display());
    let info: Value = serde_json::from_str(&skopeo_inspect(&t, &[], None)).unwrap();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3, "{info}");
    let cfg = skopeo_config(&t);
    assert_eq!(cfg["rootfs"]["diff_ids"], f.config["rootfs"]["diff_ids"]);
    assert_eq!(cfg["config"], f.config["config"]);

    let out = tempdir();
    let layout = out.path().join("layout");
    skopeo_copy(&t, &format!("oci:{}:copied", layout.display()), None);
    assert_eq!(layout_layer_count(&layout), 3);
}

#[test]
fn save_oci_archive_is_readable_by_skopeo() {
    let (s, reference, _reg) = pulled();
    let f = fixtures().image("latest");
    let tmp = tempdir();
    let file = save(&s, &reference, &tmp, Some("oci-archive"));
    let data = std::fs::read(&file).unwrap();
    assert!(
        tar_file(&data, "oci-layout").is_some(),
        "oci-archive lacks oci-layout"
    );
    assert!(
        tar_file(&data, "index.json").is_some(),
        "oci-archive lacks index.json"
    );

    let t = format!("oci-archive:{}", file.display());
    let info: Value = serde_json::from_str(&skopeo_inspect(&t, &[], None)).unwrap();
    assert_eq!(
        info["Digest"],
        f.digest.as_str(),
        "the OCI archive keeps the manifest as is"
    );
    assert_eq!(skopeo_config(&t), f.config);
    let out = tempdir();
    let layout = out.path().join("layout");
    skopeo_copy(&t, &format!("oci:{}:copied", layout.display()), None);
    assert_eq!(layout_layer_count(&layout), 3);
}

#[test]
fn save_then_load_both_formats_into_a_fresh_store() {
    let (s, reference, _reg) = pulled();
    let f = fixtures().image("latest");
    let tmp = tempdir();
    for format in ["docker-archive", "oci-archive"] {
        let file = save(&s, &reference, &tmp, Some(format));
        let fresh = Skiff::new();
        let out = fresh.ok(&["image", "load", "-i", file.to_str().unwrap()]);
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim() == format!("Loaded image: {reference}")),
            "{format}: load should print `Loaded image: {reference}`:\n{}",
            out.stdout
        );
        let img = fresh
            .image_named(&reference)
            .unwrap_or_else(|| panic!("{format}: not listed"));
        assert_eq!(
            img["id"],
            f.config_digest.as_str(),
            "{format}: config digest"
        );
        if format == "oci-archive" {
            assert_eq!(
                img["digest"],
                f.digest.as_str(),
                "oci-archive keeps the manifest digest"
            );
        }
        let v = fresh.inspect(&reference);
        assert_eq!(v["config"], f.config, "{format}");
        assert_image_complete(fresh.root(), v["digest"].as_str().unwrap());
        if format == "oci-archive" {
            for (layer, _) in &f.layers {
                assert!(
                    fresh.blobs().contains(layer),
                    "{format}: layer {layer} not loaded as is"
                );
            }
        }
        fresh.assert_consistent();

        // Loading it again is harmless.
        fresh.ok(&["image", "load", "-i", file.to_str().unwrap()]);
        assert_eq!(fresh.images().len(), 1);
        fresh.assert_consistent();
    }
}

/// Both archive formats load from stdin (the format is told from the bytes).
#[test]
fn load_from_stdin() {
    let (s, reference, _reg) = pulled();
    let f = fixtures().image("latest");
    let tmp = tempdir();
    for format in ["docker-archive", "oci-archive"] {
        let file = save(&s, &reference, &tmp, Some(format));
        let fresh = Skiff::new();
        let out = fresh.run_with_stdin(&["image", "load"], Some(std::fs::read(&file).unwrap()));
        out.assert_success();
        assert!(
            out.stdout.contains(&format!("Loaded image: {reference}")),
            "{format}: {}",
            out.stdout
        );
        assert_eq!(fresh.inspect(&reference)["config"], f.config, "{format}");
        if format == "oci-archive" {
            // An OCI archive carries the manifest itself (docker's has to be rebuilt).
            assert_eq!(fresh.inspect(&reference)["digest"], f.digest.as_str());
        }
        fresh.assert_consistent();
    }
}

#[test]
fn load_archives_written_by_skopeo() {
    let reg = Registry::start(RegistryOpts::default());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    let f = fixtures().image("latest");
    let tmp = tempdir();

    let docker = tmp.path().join("skopeo-docker.tar");
    skopeo_copy(
        &format!("docker://{reference}"),
        &format!(
            "docker-archive:{}:example.com/test/busybox:v1",
            docker.display()
        ),
        None,
    );
    let s = Skiff::new();
    let out = s.ok(&["image", "load", "-i", docker.to_str().unwrap()]);
    assert!(
        out.stdout
            .contains("Loaded image: example.com/test/busybox:v1"),
        "{}",
        out.stdout
    );
    let v = s.inspect("example.com/test/busybox:v1");
    assert_eq!(
        v["config"]["rootfs"]["diff_ids"],
        f.config["rootfs"]["diff_ids"]
    );
    assert_image_complete(s.root(), v["digest"].as_str().unwrap());
    s.assert_consistent();

    let oci = tmp.path().join("skopeo-oci.tar");
    skopeo_copy(
        &format!("docker://{reference}"),
        &format!("oci-archive:{}:example.com/test/busybox:v2", oci.display()),
        None,
    );
    let s = Skiff::new();
    let out = s.ok(&["image", "load", "-i", oci.to_str().unwrap()]);
    assert!(out.stdout.contains("Loaded image: "), "{}", out.stdout);
    assert!(
        s.images().iter().any(|i| i["digest"] == f.digest.as_str()),
        "the skopeo oci-archive's manifest is not listed: {:#?}",
        s.images()
    );
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
}

#[test]
fn corrupted_archives_fail_cleanly_and_store_nothing() {
    let (s, reference, _reg) = pulled();
    let tmp = tempdir();
    for format in ["docker-archive", "oci-archive"] {
        let file = save(&s, &reference, &tmp, Some(format));
        let entry = corrupt_largest_tar_entry(&file);
        let fresh = Skiff::new();
        let out = fresh.run(&["image", "load", "-i", file.to_str().unwrap()]);
        out.assert_clean_error(&[]);
        assert!(
            fresh.blobs().is_empty(),
            "{format}: a corrupt archive (entry {entry}) left blobs: {:?}",
            fresh.blobs()
        );
        assert!(fresh.images().is_empty(), "{format}: {:#?}", fresh.images());
        fresh.assert_consistent();
        assert!(
            store_tmp_files(fresh.root()).is_empty(),
            "{format}: {:?}",
            store_tmp_files(fresh.root())
        );
    }
    // A file that is not an archive at all, and one that does not exist.
    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar archive\n".repeat(100)).unwrap();
    let fresh = Skiff::new();
    fresh
        .run(&["image", "load", "-i", junk.to_str().unwrap()])
        .assert_clean_error(&[]);
    let missing = tmp.path().join("missing.tar");
    fresh
        .run(&["image", "load", "-i", missing.to_str().unwrap()])
        .assert_clean_error(&["missing.tar"]);
    assert!(fresh.blobs().is_empty());
}

/// A load that fails after writing blobs another image uses must not delete
/// them, and must name nothing (names are recorded all at once, at the end).
#[test]
fn failed_load_keeps_shared_blobs_and_names_nothing() {
    let (s, reference, _reg) = pulled();
    let dir = tempdir();
    let good = save(&s, &reference, &dir, Some("docker-archive"));
    // The same archive with a second, invalid name: fails after its blobs are in.
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    run_tool(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(&good)
            .arg("-C")
            .arg(&x),
    );
    let manifest = x.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m[0]["RepoTags"] = serde_json::json!(["localhost/fresh/name:1", "BAD/Upper:x"]);
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let bad = dir.path().join("bad.tar");
    run_tool(
        std::process::Command::new("tar")
            .arg("-cf")
            .arg(&bad)
            .arg("-C")
            .arg(&x)
            .arg("."),
    );
    let blobs_before = s.blobs();

    s.run(&["image", "load", "-i", bad.to_str().unwrap()])
        .assert_clean_error(&["bad.tar"]);
    assert!(
        s.image_named("localhost/fresh/name:1").is_none(),
        "a failed load named an image"
    );
    assert_eq!(s.blobs(), blobs_before, "a failed load changed the blobs");
    // The original image is intact: it saves (reads every blob) again.
    save(&s, &reference, &dir, Some("oci-archive"));
    s.assert_consistent();
}
