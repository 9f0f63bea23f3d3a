//! registries.conf (containers-registries.conf(5)) as it affects `skiff image pull`:
//! mirrors, blocked registries, unqualified-search registries.

mod common;

use common::*;

#[test]
fn pull_goes_through_a_configured_mirror() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_fixture("latest", "test/busybox", "latest");
    let proxy = Proxy::start(&reg, Mode::Normal);
    let s = Skiff::new();
    // The primary location does not resolve (.invalid); the mirror serves the image.
    s.write_registries_conf(&format!(
        "[[registry]]\nlocation = \"mirror-test.invalid\"\n\n[[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
        proxy.host()
    ));
    let reference = "mirror-test.invalid/test/busybox:latest";
    assert_eq!(s.pull_ok(reference), fixtures().image("latest").digest);
    assert!(
        proxy.count_method_path("GET", "/v2/test/busybox/manifests/") >= 1,
        "the mirror was not asked:\n{}",
        proxy.dump()
    );
    assert!(
        s.image_named(reference).is_some(),
        "stored under the name asked for: {:#?}",
        s.images()
    );
    s.assert_consistent();
}

#[test]
fn blocked_registry_is_refused_without_contacting_it() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_fixture("latest", "test/busybox", "latest");
    let proxy = Proxy::start(&reg, Mode::Normal);
    let s = Skiff::new();
    s.write_registries_conf(&format!(
        "[[registry]]\nlocation = \"{}\"\nblocked = true\n",
        proxy.host()
    ));
    let reference = format!("{}/test/busybox:latest", proxy.host());
    s.pull(&reference).assert_clean_error(&["blocked"]);
    assert_eq!(
        proxy.requests().len(),
        0,
        "a blocked registry was contacted:\n{}",
        proxy.dump()
    );
    assert!(s.blobs().is_empty());
}

#[test]
fn short_names_use_unqualified_search_registries() {
    let reg = Registry::start(RegistryOpts::default());
    reg.push_fixture("latest", "test/busybox", "latest");
    let s = Skiff::new();
    s.write_registries_conf(&format!(
        "unqualified-search-registries = [\"{}\"]\n",
        reg.host()
    ));
    assert_eq!(
        s.pull_ok("test/busybox:latest"),
        fixtures().image("latest").digest
    );
    let full = format!("{}/test/busybox:latest", reg.host());
    assert!(
        s.image_named(&full).is_some(),
        "stored under the qualified name: {:#?}",
        s.images()
    );
    s.assert_consistent();
}
