//! Pulls that go wrong: dropped connections (resume with Range), corrupt blobs, a
//! web server instead of a registry, bad references, unknown tags, and a pull killed
//! mid-download. Each must end in success or a clean one-line error, never in a store
//! that holds unverified data.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

fn registry_with_busybox() -> (Registry, String) {
    let reg = Registry::start(RegistryOpts::default());
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    (reg, reference)
}

#[test]
fn dropped_blob_downloads_resume_with_range() {
    let (reg, _) = registry_with_busybox();
    let proxy = Proxy::start(&reg, Mode::DropMidBlob { times: 2 });
    let f = fixtures().image("latest");
    let via = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new();
    let out = s.ok(&["image", "pull", &via]);
    assert_eq!(out.last_line(), f.digest);
    assert_eq!(proxy.drops_done(), 2, "{}", proxy.dump());
    assert!(
        proxy.saw_range_request(),
        "the client did not resume with a Range request:\n{}",
        proxy.dump()
    );
    // A resumed request starts where the cut-off one stopped (not at 0).
    let ranged: Vec<Recorded> = proxy
        .blob_gets()
        .into_iter()
        .filter(|r| r.range.is_some())
        .collect();
    assert!(
        ranged
            .iter()
            .any(|r| r.range.as_deref() != Some("bytes=0-")),
        "Range requests all start at 0:\n{}",
        proxy.dump()
    );
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
    assert!(
        store_tmp_files(s.root()).is_empty(),
        "partials left after success: {:?}",
        store_tmp_files(s.root())
    );
}

#[test]
fn corrupt_blobs_fail_cleanly_and_store_nothing() {
    let (reg, _) = registry_with_busybox();
    let proxy = Proxy::start(&reg, Mode::CorruptBlob);
    let f = fixtures().image("latest");
    let via = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new();
    let out = s.pull(&via);
    out.assert_clean_error(&["sha256:"]);
    let fetched = f.fetched_blobs();
    assert!(
        fetched
            .iter()
            .any(|d| out.error_line().contains(d.as_str())),
        "the error should name the blob whose digest did not match: {}",
        out.error_line()
    );
    let stored: BTreeSet<String> = s.blobs().intersection(&fetched).cloned().collect();
    assert!(stored.is_empty(), "corrupt pull stored blobs {stored:?}");
    // Partial downloads may stay for resuming, but never with corrupt bytes in them.
    assert_partials_are_clean_prefixes(s.root());
    assert!(s.images().is_empty());
    s.assert_consistent();

    // The same store, clean data: the pull succeeds.
    proxy.set_mode(Mode::Normal);
    assert_eq!(s.pull_ok(&via), f.digest);
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
    // And directly from the registry too.
    let s2 = Skiff::new();
    assert_eq!(
        s2.pull_ok(&format!("{}/test/busybox:latest", reg.host())),
        f.digest
    );
}

#[test]
fn html_instead_of_registry_fails_cleanly() {
    let (reg, _) = registry_with_busybox();
    let proxy = Proxy::start(&reg, Mode::Html);
    let via = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new();
    s.pull(&via).assert_clean_error(&["test/busybox"]);
    assert!(s.blobs().is_empty(), "{:?}", s.blobs());
    assert!(s.images().is_empty());
    s.assert_consistent();
}

#[test]
fn malformed_references_fail_before_any_request() {
    let reg = Registry::start(RegistryOpts::default());
    let proxy = Proxy::start(&reg, Mode::Normal);
    let h = proxy.host();
    let bad = [
        format!("{h}/Test/BusyBox:latest"),
        format!("{h}/test//busybox:latest"),
        format!("{h}/test/busybox:tag:extra"),
        format!("{h}/test/busybox:bad tag"),
        format!("{h}/test/busybox@sha256:abc"),
        format!("{h}/test/busybox:-leading-dash"),
        format!("{h}/-test/busybox:latest"),
    ];
    let s = Skiff::new();
    for r in &bad {
        let out = s.pull(r);
        out.assert_clean_error(&[r.as_str()]);
    }
    let out = s.pull("");
    assert!(!out.success(), "an empty reference must fail");
    assert_ne!(out.status.code(), Some(101), "panic: {}", out.stderr);
    assert_eq!(
        proxy.requests().len(),
        0,
        "malformed references reached the registry:\n{}",
        proxy.dump()
    );
    assert!(s.images().is_empty());
}

#[test]
fn unknown_tag_repository_and_digest_fail_cleanly() {
    let (reg, _) = registry_with_busybox();
    let s = Skiff::new();
    let h = reg.host();
    let unknown_tag = format!("{h}/test/busybox:nope");
    s.pull(&unknown_tag)
        .assert_clean_error(&["test/busybox:nope"]);
    let unknown_repo = format!("{h}/test/nothere:latest");
    s.pull(&unknown_repo).assert_clean_error(&["test/nothere"]);
    let zero = format!("sha256:{}", "0".repeat(64));
    let unknown_digest = format!("{h}/test/busybox@{zero}");
    s.pull(&unknown_digest).assert_clean_error(&[&zero]);
    // Nothing listening at all.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = format!("127.0.0.1:{closed}/test/busybox:latest");
    s.pull(&refused)
        .assert_clean_error(&[&format!("127.0.0.1:{closed}")]);
    assert!(s.blobs().is_empty());
    assert!(s.images().is_empty());
    s.assert_consistent();
}

#[test]
fn killed_pull_leaves_a_usable_store() {
    let (reg, _) = registry_with_busybox();
    let f = fixtures().image("latest");
    let big = f.largest_layer();
    // ~1 MiB at 200 kB/s: several seconds, plenty of time to kill it mid-blob.
    let proxy = Proxy::start(
        &reg,
        Mode::Slow {
            bytes_per_sec: 200_000,
        },
    );
    let via = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new();
    let mut child = s.spawn(&["image", "pull", &via]);
    // Killed once part of the big layer is on disk (the store writes partials through a
    // buffer, so this is a state the next pull can resume from).
    wait_until(
        Duration::from_secs(60),
        "part of the big layer to be on disk",
        || {
            assert!(
                child.is_running(),
                "pull finished before it could be killed"
            );
            partial_len(s.root(), &big.0) > 0
        },
    );
    let status = child.kill();
    assert!(!status.success());
    let kept = partial_len(s.root(), &big.0);
    assert!(kept > 0 && kept < big.1, "partial of {kept} bytes");

    // The next commands work, the store is consistent, no half image is listed.
    assert!(
        s.image_named(&via).is_none(),
        "an interrupted pull is listed: {:#?}",
        s.images()
    );
    s.assert_consistent();
    assert_partials_are_clean_prefixes(s.root());
    assert!(
        !s.blobs().contains(&big.0),
        "the unfinished layer is in blobs/"
    );

    proxy.set_mode(Mode::Normal);
    proxy.reset();
    assert_eq!(s.pull_ok(&via), f.digest);
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
    assert!(
        store_tmp_files(s.root()).is_empty(),
        "tmp/ not cleaned: {:?}",
        store_tmp_files(s.root())
    );
    // The re-pull fetched only the rest of the big layer, once.
    let big_gets: Vec<Recorded> = proxy
        .blob_gets()
        .into_iter()
        .filter(|r| r.blob_digest() == Some(big.0.as_str()))
        .collect();
    assert_eq!(big_gets.len(), 1, "{}", proxy.dump());
    assert_eq!(
        big_gets[0].range.as_deref(),
        Some(format!("bytes={kept}-").as_str()),
        "the re-pull did not resume after the {kept} bytes kept:\n{}",
        proxy.dump()
    );
    assert_eq!(big_gets[0].body_sent as u64, big.1 - kept);
    // prune after the interruption keeps the image.
    s.ok(&["image", "prune"]);
    assert_image_complete(s.root(), &f.digest);
}

#[test]
fn corrupt_partial_left_by_a_killed_pull_does_not_poison_the_next_pull() {
    // The `big` fixture: an 8 MiB layer, so what the killed process received is on disk
    // whatever its write buffering.
    let reg = Registry::start(RegistryOpts::default());
    let via_reg = reg.push_fixture("big", "test/big", "latest");
    let f = fixtures().image("big");
    let big = f.largest_layer();
    let proxy = Proxy::start(
        &reg,
        Mode::SlowCorrupt {
            bytes_per_sec: 4_000_000,
            corrupt_above: 4_000_000,
        },
    );
    let via = via_reg.replace(&reg.host(), &proxy.host());
    let s = Skiff::new();
    let mut child = s.spawn(&["image", "pull", &via]);
    // Killed once the flipped byte (in the middle) is on disk.
    let past_flip = big.1 / 2 + 1;
    wait_until(
        Duration::from_secs(60),
        "the partial to hold the corrupt byte",
        || {
            assert!(
                child.is_running(),
                "pull finished before it could be killed"
            );
            partial_len(s.root(), &big.0) >= past_flip
        },
    );
    child.kill();
    let kept = partial_len(s.root(), &big.0);
    assert!(
        kept < big.1 && partial_is_corrupt(s.root(), &big.0),
        "the scenario needs a corrupt partial short of the whole layer ({kept} of {} bytes)",
        big.1
    );
    // The next pull from a good source must work (DESIGN: "the next command repairs or
    // ignores the leftovers"): it resumes, finds the digest wrong, fetches it whole.
    proxy.set_mode(Mode::Normal);
    proxy.reset();
    let out = s.pull(&via);
    assert!(
        out.success(),
        "pull after a killed corrupt download failed:\n{}\n{}",
        out.stderr,
        proxy.dump()
    );
    assert_eq!(out.last_line(), f.digest);
    let ranges: Vec<Option<String>> = proxy
        .blob_gets()
        .into_iter()
        .filter(|r| r.blob_digest() == Some(big.0.as_str()))
        .map(|r| r.range)
        .collect();
    assert_eq!(
        ranges,
        [Some(format!("bytes={kept}-")), None],
        "expected a resume, then one whole fetch:\n{}",
        proxy.dump()
    );
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
    assert!(
        store_tmp_files(s.root()).is_empty(),
        "{:?}",
        store_tmp_files(s.root())
    );
}
