//! `skiff image tag`, `rm` and `prune`: names come and go, shared blobs stay while any
//! image references them, prune frees exactly the unreferenced ones.

mod common;

use std::collections::BTreeSet;

use common::*;

#[test]
fn rm_keeps_shared_layers_and_prune_removes_only_unreferenced_blobs() {
    let reg = Registry::start(RegistryOpts::default());
    let latest_ref = reg.push_fixture("latest", "test/busybox", "latest");
    let extra_ref = reg.push_fixture("extra", "test/busybox", "extra");
    let f = fixtures();
    let (latest, extra) = (f.image("latest"), f.image("extra"));
    let shared: BTreeSet<String> = latest.layers.iter().map(|l| l.0.clone()).collect();
    assert_eq!(shared.len(), 3);
    let extra_only: BTreeSet<String> = extra
        .all_blobs()
        .difference(&latest.all_blobs())
        .cloned()
        .collect();
    assert_eq!(
        extra_only.len(),
        3,
        "extra's manifest, config and top layer"
    );

    let s = Skiff::new();
    assert_eq!(s.pull_ok(&latest_ref), latest.digest);
    assert_eq!(s.pull_ok(&extra_ref), extra.digest);
    let both: BTreeSet<String> = latest
        .all_blobs()
        .union(&extra.all_blobs())
        .cloned()
        .collect();
    assert_eq!(
        s.blobs(),
        both,
        "the store holds exactly the two images' blobs"
    );

    // rm (as docker rmi) removes the name and the blobs no other image needs, at once.
    s.ok(&["image", "rm", &extra_ref]);
    let names: Vec<String> = s
        .images()
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        names,
        vec![latest_ref.clone()],
        "after rm only `latest` is listed"
    );
    assert_eq!(
        s.blobs(),
        latest.all_blobs(),
        "rm should free exactly extra's own blobs and keep the shared ones"
    );
    s.assert_consistent();

    // The remaining image is intact: inspect and save work.
    let v = s.inspect(&latest_ref);
    assert_eq!(v["digest"], latest.digest.as_str());
    let tmp = tempdir();
    let tar = tmp.path().join("latest.tar");
    s.ok(&["image", "save", &latest_ref, "-o", tar.to_str().unwrap()]);
    skopeo_inspect(&format!("docker-archive:{}", tar.display()), &[], None);

    // An image that loses its only name to another (a re-tag, as a re-pull of a moved
    // tag does) stays, dangling, until prune: prune frees exactly its own blobs, and
    // says how many and how much.
    assert_eq!(s.pull_ok(&extra_ref), extra.digest);
    s.ok(&["image", "tag", &latest_ref, &extra_ref]);
    assert_eq!(s.blobs(), both, "a dangling image keeps its blobs");
    let dangling: Vec<_> = s
        .images()
        .into_iter()
        .filter(|i| i["name"].is_null())
        .collect();
    assert_eq!(dangling.len(), 1, "{:#?}", s.images());
    assert_eq!(dangling[0]["digest"], extra.digest.as_str());
    s.assert_consistent();
    let extra_only_bytes: u64 = extra_only
        .iter()
        .map(|d| {
            std::fs::metadata(f.layout.join("blobs/sha256").join(&d[7..]))
                .unwrap()
                .len()
        })
        .sum();
    let out = s.ok(&["image", "prune"]);
    assert_prune_said(&out.stdout, 3, extra_only_bytes);
    assert_eq!(
        s.blobs(),
        latest.all_blobs(),
        "after prune exactly `latest`'s blobs remain"
    );
    assert!(s.images().iter().all(|i| !i["name"].is_null()));
    s.assert_consistent();
    assert_eq!(s.inspect(&latest_ref)["config"], latest.config);
    assert_eq!(s.inspect(&extra_ref)["digest"], latest.digest.as_str());
    let tar2 = tmp.path().join("latest2.tar");
    s.ok(&["image", "save", &latest_ref, "-o", tar2.to_str().unwrap()]);
    let cfg = skopeo_inspect(
        &format!("docker-archive:{}", tar2.display()),
        &["--config"],
        None,
    );
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(
        cfg["rootfs"]["diff_ids"],
        latest.config["rootfs"]["diff_ids"]
    );

    // A second prune has nothing to free and changes nothing.
    let out = s.ok(&["image", "prune"]);
    assert_prune_said(&out.stdout, 0, 0);
    assert_eq!(s.blobs(), latest.all_blobs());
}

/// `prune` printed `Deleted N blob(s), reclaimed SIZE` with SIZE (decimal units, three
/// decimals at most) standing for `bytes`.
#[track_caller]
fn assert_prune_said(stdout: &str, blobs: usize, bytes: u64) {
    let plural = if blobs == 1 { "" } else { "s" };
    let line = stdout.trim();
    let size = line
        .strip_prefix(&format!("Deleted {blobs} blob{plural}, reclaimed "))
        .unwrap_or_else(|| panic!("prune said {line:?}, expected {blobs} blobs deleted"));
    let split = size
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or_else(|| panic!("no unit in {size:?}"));
    let (num, unit) = size.split_at(split);
    let scale = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other:?} in {line:?}"),
    };
    let said: f64 = num.parse::<f64>().unwrap() * scale;
    assert!(
        (said - bytes as f64).abs() <= 0.0005 * scale,
        "prune said {line:?}, but {bytes} bytes were freed"
    );
}

#[test]
fn tag_then_rm_one_name_keeps_the_other() {
    let reg = Registry::start(RegistryOpts::default());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    let f = fixtures().image("latest");
    let s = Skiff::new();
    s.pull_ok(&reference);

    let other = "example.com/skiff/renamed:v1";
    s.ok(&["image", "tag", &reference, other]);
    let imgs = s.images();
    assert_eq!(imgs.len(), 2, "{imgs:#?}");
    let tagged = s.image_named(other).expect("the new name is listed");
    assert_eq!(tagged["digest"], f.digest.as_str());
    assert_eq!(tagged["repository"], "example.com/skiff/renamed");
    assert_eq!(tagged["tag"], "v1");
    assert_eq!(s.inspect(other)["digest"], f.digest.as_str());

    s.ok(&["image", "rm", &reference]);
    assert!(s.image_named(&reference).is_none());
    assert!(s.image_named(other).is_some());
    assert_image_complete(s.root(), &f.digest);
    assert_eq!(s.inspect(other)["config"], f.config);
    s.ok(&["image", "prune"]);
    assert_eq!(
        s.blobs(),
        f.all_blobs(),
        "prune must keep blobs the other name uses"
    );

    s.ok(&["image", "rm", other]);
    assert!(s.images().iter().all(|i| i["name"] != other));
    s.ok(&["image", "prune"]);
    assert!(
        s.blobs().is_empty(),
        "all blobs unreferenced after both names are gone: {:?}",
        s.blobs()
    );
    s.assert_consistent();
}

#[test]
fn rm_and_inspect_of_unknown_images_fail_cleanly() {
    let s = Skiff::new();
    s.run(&["image", "rm", "example.com/nope/nothing:1"])
        .assert_clean_error(&["example.com/nope/nothing:1"]);
    s.run(&["image", "inspect", "example.com/nope/nothing:1"])
        .assert_clean_error(&["example.com/nope/nothing:1"]);
    s.run(&[
        "image",
        "tag",
        "example.com/nope/nothing:1",
        "example.com/x:1",
    ])
    .assert_clean_error(&["example.com/nope/nothing:1"]);
    // ls on an empty (even non-existent) store is fine.
    assert!(s.images().is_empty());
}
