//! ConfigureNetwork's netlink messages against a real kernel, inside a
//! network namespace of the test's own (nothing on the host changes).

use std::process::Command;

use skiff_proto::v1::{Interface, NetworkConfig, Route};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip(8)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn loopback_addresses_and_routes_in_a_fresh_namespace() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root for a network namespace: run the suite as root (scripts/test.sh)"
    );
    // A thread of its own: unshare(CLONE_NEWNET) moves only the calling
    // thread, and ip(8) started from it inherits that namespace.
    std::thread::spawn(|| {
        // SAFETY: this thread holds no file descriptors or state tied to
        // the old namespace.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
            .expect("unshare");
        assert!(
            !ip(&["-o", "link", "show", "lo"]).contains(",UP"),
            "lo starts down"
        );
        let config = NetworkConfig {
            interfaces: vec![Interface {
                name: "lo".into(),
                addresses: vec!["10.77.0.1/16".into(), "fd77::1/64".into()],
                mtu: 60000,
                ..Default::default()
            }],
            routes: vec![
                Route {
                    destination: "10.78.0.0/16".into(),
                    gateway: "10.77.0.2".into(),
                    device: "lo".into(),
                },
                Route {
                    destination: "10.79.0.0/24".into(),
                    device: "lo".into(),
                    ..Default::default()
                },
            ],
        };
        skiff_init::netlink::configure(&config).expect("configure");
        // Twice is fine: replace, not create-exclusive.
        skiff_init::netlink::configure(&config).expect("configure again");

        let link = ip(&["-o", "link", "show", "lo"]);
        assert!(link.contains(",UP") && link.contains("mtu 60000"), "{link}");
        let addrs = ip(&["-o", "addr", "show", "dev", "lo"]);
        assert!(addrs.contains("inet 10.77.0.1/16"), "{addrs}");
        assert!(addrs.contains("inet6 fd77::1/64"), "{addrs}");
        let routes = ip(&["route", "show"]);
        assert!(
            routes.contains("10.78.0.0/16 via 10.77.0.2 dev lo"),
            "{routes}"
        );
        assert!(routes.contains("10.79.0.0/24 dev lo"), "{routes}");

        let bad = NetworkConfig {
            interfaces: vec![Interface {
                mac: "02:00:00:00:00:99".into(),
                ..Default::default()
            }],
            routes: vec![],
        };
        assert!(matches!(
            skiff_init::netlink::configure(&bad),
            Err(skiff_init::netlink::NetError::NoMac(_))
        ));
    })
    .join()
    .expect("namespace thread");
}
