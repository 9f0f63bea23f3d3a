//! `skiff image pull` from a registry that serves HTTPS only, with a certificate from a
//! throwaway CA (made with `openssl`): verified TLS needs the CA in
//! `SKIFF_CERTS_DIR/<host>/ca.crt`; a loopback registry is insecure by default (TLS
//! without verification, like docker) unless registries.conf says `insecure = false`.

mod common;

use common::*;

/// A TLS-only registry holding the `latest` fixture (pushed by skopeo with verified TLS
/// against the CA, so the certificate itself is known to be good for 127.0.0.1).
fn tls_registry() -> (TestCerts, Registry, String) {
    let certs = TestCerts::generate();
    let reg = Registry::start(RegistryOpts::with_tls(&certs));
    let reference = reg.push_fixture("latest", "test/busybox", "latest");
    (certs, reg, reference)
}

fn strict_conf(host: &str) -> String {
    format!("[[registry]]\nlocation = \"{host}\"\ninsecure = false\n")
}

/// A refused TLS pull: a clean error about the certificate, nothing stored.
#[track_caller]
fn assert_refused(s: &Skiff, reference: &str) {
    let out = s.pull(reference);
    out.assert_clean_error_any(&[reference], &["certificate", "tls"]);
    assert!(s.blobs().is_empty(), "blobs stored: {:?}", s.blobs());
    assert!(s.images().is_empty(), "images: {:#?}", s.images());
    s.assert_consistent();
}

#[test]
fn verified_tls_without_the_ca_fails_cleanly() {
    let (certs, reg, reference) = tls_registry();
    // Default backoff: a refused certificate must not be retried as if transient.
    let s = Skiff::new();
    s.write_registries_conf(&strict_conf(&reg.host()));
    // No CA at all (the harness's SKIFF_CERTS_DIR is empty).
    assert_refused(&s, &reference);
    let handshakes = reg.log().matches("TLS handshake error").count();
    assert_eq!(
        handshakes,
        1,
        "a certificate refusal was retried:\n{}",
        reg.log()
    );

    // The right CA, filed under another host: does not apply to this one.
    let misfiled = tempdir();
    certs.write_certs_d(misfiled.path(), "127.0.0.1:1");
    s.set_env("SKIFF_CERTS_DIR", misfiled.path());
    assert_refused(&s, &reference);

    // Another CA, filed under this host: does not vouch for this certificate.
    let other = TestCerts::generate();
    let wrong_ca = tempdir();
    other.write_certs_d(wrong_ca.path(), &reg.host());
    s.set_env("SKIFF_CERTS_DIR", wrong_ca.path());
    assert_refused(&s, &reference);
}

#[test]
fn verified_tls_with_the_ca_in_certs_dir_pulls() {
    let (certs, reg, reference) = tls_registry();
    let f = fixtures().image("latest");
    let certs_d = tempdir();
    certs.write_certs_d(certs_d.path(), &reg.host());
    let s = Skiff::new().with_env("SKIFF_CERTS_DIR", certs_d.path());
    s.write_registries_conf(&strict_conf(&reg.host()));
    assert_eq!(s.pull_ok(&reference), f.digest);
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
    assert!(
        s.image_named(&reference).is_some(),
        "pulled image not listed: {:#?}",
        s.images()
    );
    // The registry served the blobs (over TLS: it speaks nothing else).
    let log = reg.log();
    assert!(
        f.layers
            .iter()
            .all(|(d, _)| log.contains(&format!("/v2/test/busybox/blobs/{d}"))),
        "the registry log does not show the layer downloads:\n{log}"
    );
}

#[test]
fn loopback_registry_is_insecure_by_default_over_tls() {
    let (_certs, reg, reference) = tls_registry();
    let f = fixtures().image("latest");
    // Empty registries.conf, no CA: 127.0.0.1 is insecure, so unverified TLS is fine.
    let s = Skiff::new();
    assert_eq!(s.pull_ok(&reference), f.digest);
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();
    let log = reg.log();
    assert!(
        log.contains("/v2/test/busybox/manifests/latest"),
        "the registry was not asked for the manifest:\n{log}"
    );
}

/// The default certs.d (`/etc/containers/certs.d/<host:port>/`) is read, and every
/// `*.crt` in it counts as a CA, whatever its name. The test files its CA under this
/// registry's own port (no other host is affected) and removes what it made.
#[test]
fn default_certs_d_with_any_crt_name_is_trusted() {
    let (certs, reg, reference) = tls_registry();
    let f = fixtures().image("latest");
    assert!(
        rustix::process::geteuid().is_root(),
        "this test writes below /etc/containers/certs.d and runs as root"
    );
    let certs_d = std::path::Path::new("/etc/containers/certs.d");
    let guard = CreatedDirs::new(&certs_d.join(reg.host()));
    std::fs::copy(certs.ca_cert(), guard.leaf().join("test-root.crt")).unwrap();
    let s = Skiff::new();
    s.unset_env("SKIFF_CERTS_DIR");
    s.write_registries_conf(&strict_conf(&reg.host()));
    assert_eq!(s.pull_ok(&reference), f.digest);
    assert_image_complete(s.root(), &f.digest);
    s.assert_consistent();

    // Control: without the file, the same pull is refused.
    std::fs::remove_file(guard.leaf().join("test-root.crt")).unwrap();
    let s = Skiff::new();
    s.unset_env("SKIFF_CERTS_DIR");
    s.write_registries_conf(&strict_conf(&reg.host()));
    assert_refused(&s, &reference);
}

/// Creates a directory and those of its parents that are missing; removes exactly
/// those again on drop.
struct CreatedDirs(Vec<std::path::PathBuf>);

impl CreatedDirs {
    fn new(leaf: &std::path::Path) -> Self {
        let mut missing: Vec<std::path::PathBuf> = leaf
            .ancestors()
            .take_while(|p| !p.exists())
            .map(|p| p.to_path_buf())
            .collect();
        std::fs::create_dir_all(leaf).unwrap();
        missing.reverse();
        CreatedDirs(missing)
    }

    fn leaf(&self) -> &std::path::Path {
        self.0.last().expect("the directory already existed")
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            if d == self.0.last().unwrap() {
                let _ = std::fs::remove_dir_all(d);
            } else {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}
