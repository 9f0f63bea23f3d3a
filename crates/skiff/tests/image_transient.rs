//! Transient registry errors during `skiff image pull`: 503 and 429 answers to blob
//! GETs are retried (429 after the server's `Retry-After`), and a registry that keeps
//! failing ends the pull with one clean error in bounded time, storing nothing.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

fn registry_with_busybox() -> Registry {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_fixture("latest", "test/busybox", "latest");
    reg
}

/// GETs per blob digest.
fn gets_per_blob(gets: &[Recorded]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for g in gets {
        if let Some(d) = g.blob_digest() {
            *m.entry(d.to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// `line` without `host` and without any "sha256:<hex>" digests (so a number found in
/// what is left was not part of a port or a digest by chance).
fn strip_hosts_and_digests(line: &str, host: &str) -> String {
    let mut s = line.replace(host, "<host>");
    while let Some(i) = s.find("sha256:") {
        let hex_len = s[i + 7..]
            .bytes()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        s.replace_range(i..i + 7 + hex_len, "<digest>");
    }
    s
}

#[test]
fn blob_503s_are_retried_and_the_pull_succeeds() {
    let reg = registry_with_busybox();
    let proxy = Proxy::start(
        &reg,
        Mode::Status {
            code: 503,
            times: 2,
            retry_after: None,
        },
    );
    let f = fixtures().image("latest");
    let via = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new().with_env("SKIFF_RETRY_BACKOFF_MS", "50");
    let out = s.ok(&["image", "pull", &via]);
    assert_eq!(out.last_line(), f.digest, "{}", proxy.dump());
    assert_eq!(proxy.statuses_done(), 2, "{}", proxy.dump());

    let gets = proxy.blob_gets();
    let failed: Vec<&Recorded> = gets.iter().filter(|g| g.status == 503).collect();
    assert_eq!(failed.len(), 2, "{}", proxy.dump());
    // Each blob that got a 503 was asked for again, later, and then served.
    for r in &failed {
        let d = r.blob_digest().unwrap();
        assert!(
            gets.iter()
                .any(|g| g.blob_digest() == Some(d) && g.status == 200 && g.at >= r.at),
            "blob {d} was not fetched again after its 503:\n{}",
            proxy.dump()
        );
    }
    // Every blob was downloaded exactly once in the end (no needless refetches).
    for d in f.fetched_blobs() {
        let served = gets
            .iter()
            .filter(|g| g.blob_digest() == Some(d.as_str()) && g.status == 200)
            .count();
        assert_eq!(
            served,
            1,
            "blob {d} served {served} times:\n{}",
            proxy.dump()
        );
    }
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
    assert!(
        store_tmp_files(s.root()).is_empty(),
        "partials left after success: {:?}",
        store_tmp_files(s.root())
    );
    assert!(
        s.image_named(&via).is_some(),
        "pulled image not listed: {:#?}",
        s.images()
    );
}

#[test]
fn a_429_is_retried_after_its_retry_after_delay() {
    let reg = registry_with_busybox();
    let proxy = Proxy::start(
        &reg,
        Mode::Status {
            code: 429,
            times: 1,
            retry_after: Some(1),
        },
    );
    let f = fixtures().image("latest");
    let via = format!("{}/test/busybox:latest", proxy.host());
    // A 50 ms backoff: a client that ignored Retry-After would come back ~20x sooner
    // than the server asked.
    let s = Skiff::new().with_env("SKIFF_RETRY_BACKOFF_MS", "50");
    let start = Instant::now();
    let out = s.ok(&["image", "pull", &via]);
    let elapsed = start.elapsed();
    assert_eq!(out.last_line(), f.digest);
    assert_eq!(proxy.statuses_done(), 1, "{}", proxy.dump());

    let gets = proxy.blob_gets();
    let limited: Vec<&Recorded> = gets.iter().filter(|g| g.status == 429).collect();
    assert_eq!(limited.len(), 1, "{}", proxy.dump());
    let limited = limited[0];
    let d = limited.blob_digest().unwrap();
    let retry = gets
        .iter()
        .filter(|g| g.blob_digest() == Some(d) && g.at > limited.at)
        .min_by_key(|g| g.at)
        .unwrap_or_else(|| panic!("blob {d} was not asked for again:\n{}", proxy.dump()));
    assert_eq!(retry.status, 200, "{}", proxy.dump());
    let gap = retry.at - limited.at;
    assert!(
        gap >= Duration::from_millis(950),
        "blob {d} was retried {gap:?} after a 429 with `Retry-After: 1` (the backoff is \
         50 ms): the client did not wait as asked"
    );
    assert!(
        gap < Duration::from_secs(10),
        "blob {d} was retried only {gap:?} after a 429 with `Retry-After: 1`"
    );
    assert!(
        elapsed >= Duration::from_millis(950),
        "pull took {elapsed:?}"
    );
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
}

#[test]
fn persistent_500s_fail_cleanly_after_bounded_retries_and_store_nothing() {
    let reg = registry_with_busybox();
    let proxy = Proxy::start(
        &reg,
        Mode::Status {
            code: 500,
            times: usize::MAX,
            retry_after: None,
        },
    );
    let f = fixtures().image("latest");
    let via = format!("{}/test/busybox:latest", proxy.host());
    let s = Skiff::new().with_env("SKIFF_RETRY_BACKOFF_MS", "10");
    let out = s.pull(&via);
    out.assert_clean_error(&[&via]);
    let line = strip_hosts_and_digests(out.error_line(), &proxy.host());
    assert!(
        line.contains("500"),
        "the error should name the status (500): {}",
        out.error_line()
    );

    let gets = proxy.blob_gets();
    assert!(
        !gets.is_empty() && gets.iter().all(|g| g.status == 500),
        "{}",
        proxy.dump()
    );
    let per_blob = gets_per_blob(&gets);
    let most = per_blob.values().copied().max().unwrap_or(0);
    assert!(
        most >= 2,
        "no blob GET was retried after a 500:\n{}",
        proxy.dump()
    );
    assert!(
        most <= 10,
        "a blob was asked for {most} times: retries should be bounded:\n{}",
        proxy.dump()
    );

    assert!(
        s.blobs().is_empty(),
        "a failed pull stored blobs: {:?}",
        s.blobs()
    );
    assert!(s.images().is_empty(), "{:#?}", s.images());
    s.assert_consistent();

    // The registry recovers: the same store pulls fine.
    proxy.set_mode(Mode::Normal);
    assert_eq!(s.pull_ok(&via), f.digest);
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
}
