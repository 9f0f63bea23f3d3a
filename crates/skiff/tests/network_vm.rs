//! Container networks against real QEMU, nftables, netlink and passt. Every
//! test makes its own network namespaces: skiff runs under `ip netns exec` in
//! a "host" namespace, and the "outside world" is a second namespace behind a
//! veth pair, with its own HTTP server. No packet leaves them.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::vm::qemu_processes_with;
use common::{run_with_timeout, wait_until, Out, Registry, Skiff, SKIFF_TIMEOUT};
use serde_json::Value;

/// The outside namespace's address, and the host namespace's on that link.
const OUTSIDE_IP: &str = "198.51.100.2";
const HOST_IP: &str = "198.51.100.1";

static NEXT: AtomicU32 = AtomicU32::new(0);

fn sh(cmd: &str) -> Out {
    let mut c = Command::new("sh");
    c.args(["-c", cmd]);
    run_with_timeout(&mut c, &["sh", "-c", cmd], None, Duration::from_secs(60))
}

#[track_caller]
fn sh_ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(out.success(), "{cmd}: {out:?}");
    out.stdout
}

/// A network namespace that goes (with whatever runs in it) when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!(
            "skt-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        sh_ok(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        Netns { name }
    }

    /// `cmd` run in the namespace by sh.
    fn sh(&self, cmd: &str) -> Out {
        sh(&format!(
            "ip netns exec {} sh -c '{}'",
            self.name,
            cmd.replace('\'', r"'\''")
        ))
    }

    #[track_caller]
    fn sh_ok(&self, cmd: &str) -> String {
        let out = self.sh(cmd);
        assert!(out.success(), "in {}: {cmd}: {out:?}", self.name);
        out.stdout
    }

    /// What a test must find empty after its containers are gone: nftables
    /// rules and skiff's links.
    fn leftovers(&self) -> String {
        let rules = self.sh_ok("nft list ruleset");
        let links = self.sh_ok("ip -o link show | grep -E ': (sk|st)-' || true");
        format!("{rules}{links}")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&format!(
            "ip netns pids {0} | xargs -r kill -9; ip netns del {0}",
            self.name
        ));
    }
}

/// A host namespace with a veth to an outside namespace that serves HTTP on
/// :8000: `/` says "outside-hello", `/cgi-bin/ip` the client's address (which
/// shows whether NAT happened). The host's default route points outside.
struct World {
    host: Netns,
    outside: Netns,
    _www: tempfile::TempDir,
}

impl World {
    fn new(tag: &str) -> World {
        let host = Netns::new(tag);
        let outside = Netns::new(&format!("{tag}o"));
        let (h, o) = (&host.name, &outside.name);
        sh_ok(&format!(
            "ip link add vh netns {h} type veth peer name vo netns {o} && \
             ip -n {h} addr add {HOST_IP}/24 dev vh && ip -n {o} addr add {OUTSIDE_IP}/24 dev vo && \
             ip -n {h} link set vh up && ip -n {o} link set vo up && \
             ip -n {h} route add default via {OUTSIDE_IP}"
        ));
        let www = tempfile::tempdir().unwrap();
        fs::write(www.path().join("index.html"), "outside-hello\n").unwrap();
        let cgi = www.path().join("cgi-bin");
        fs::create_dir(&cgi).unwrap();
        fs::write(
            cgi.join("ip"),
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$REMOTE_ADDR\"\n",
        )
        .unwrap();
        fs::set_permissions(cgi.join("ip"), fs::Permissions::from_mode(0o755)).unwrap();
        // busybox httpd daemonizes; it dies with the namespace.
        outside.sh_ok(&format!(
            "busybox httpd -p 8000 -h {}",
            www.path().display()
        ));
        World {
            host,
            outside,
            _www: www,
        }
    }
}

/// skiff in a namespace, with the env's variables (the store, the kernel),
/// behind `wrapper` (e.g. setpriv) if any.
fn skiff_in_as(ns: &Netns, wrapper: &[&str], s: &Skiff, args: &[&str]) -> Out {
    let inner = s.command(args);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name])
        .args(wrapper)
        .arg(inner.get_program());
    cmd.args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    run_with_timeout(&mut cmd, args, None, SKIFF_TIMEOUT)
}

fn skiff_in(ns: &Netns, s: &Skiff, args: &[&str]) -> Out {
    skiff_in_as(ns, &[], s, args)
}

#[track_caller]
fn ok_in(ns: &Netns, s: &Skiff, args: &[&str]) -> Out {
    let out = skiff_in(ns, s, args);
    out.assert_success();
    out
}

/// A registry with the busybox image, and a skiff env that has pulled it
/// (the registry listens on the test host's loopback, not in the namespaces).
fn setup() -> (Registry, Skiff, String) {
    let (reg, s, image) = common::vm::pulled("users");
    s.unset_env("SKIFF_NETWORK");
    (reg, s, image)
}

fn inspect(ns: &Netns, s: &Skiff, name: &str) -> Value {
    ok_in(ns, s, &["inspect", name]).json()[0].clone()
}

/// A static UDP echo server (the image's busybox has no UDP server).
fn udp_echo() -> PathBuf {
    static P: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        common::vm::static_c_tool(
            "udpecho",
            r#"#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  if (bind(s, (struct sockaddr *)&a, sizeof a)) return 1;
  for (;;) {
    char buf[2048]; struct sockaddr_in from; socklen_t fl = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    if (n > 0) sendto(s, buf, n, 0, (struct sockaddr *)&from, fl);
  }
}
"#,
        )
    })
    .clone()
}

/// One UDP round trip from the namespace with python3: the reply, or "".
fn udp_roundtrip(ns: &Netns, port: u16, payload: &str) -> String {
    ns.sh(&format!(
        "python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.settimeout(3); s.sendto(b\"{payload}\", (\"127.0.0.1\", {port})); print(s.recv(100).decode())'"
    ))
    .stdout
    .trim()
    .to_owned()
}

/// `url` fetched from inside `container` (at most 3 s: busybox's own
/// `wget -T` crashes in this static build, so `timeout` bounds it).
fn fetch(ns: &Netns, s: &Skiff, container: &str, url: &str) -> Out {
    skiff_in(
        ns,
        s,
        &["exec", container, "timeout", "3", "wget", "-qO-", url],
    )
}

/// `url` fetched from inside `container`, no time limit (an answer is due).
fn wget(ns: &Netns, s: &Skiff, container: &str, url: &str) -> Out {
    skiff_in(ns, s, &["exec", container, "wget", "-qO-", url])
}

/// [`wget`] that must succeed.
fn wget_ok(ns: &Netns, s: &Skiff, container: &str, url: &str) -> Out {
    let out = wget(ns, s, container, url);
    assert!(out.success(), "wget {url} in {container}: {out:?}");
    out
}

fn curl(ns: &Netns, url: &str) -> Out {
    ns.sh(&format!("curl -sS -m 5 {url}"))
}

/// The default network end to end: TCP and UDP published on one port, seen
/// from the host's loopback and from another host's side; outbound through
/// NAT; a port in use fails before boot and leaves nothing; after rm the
/// namespace holds no rule, bridge or tap, and the ports are free again.
#[test]
fn published_ports_and_nat_on_the_default_network() {
    let (reg, s, image) = setup();
    let w = World::new("pub");
    // The echo server goes in by `cp` once the container runs.
    let out = ok_in(
        &w.host,
        &s,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8080:80",
            "-p",
            "8080:80/udp",
            &image,
            "sh",
            "-c",
            "mkdir -p /www && echo hello-web > /www/index.html && httpd -p 80 -h /www \
             && while [ ! -x /bin/udpecho ]; do sleep 0.1; done && exec /bin/udpecho 80",
        ],
    );
    let id = out.stdout.trim().to_owned();
    ok_in(
        &w.host,
        &s,
        &["cp", &udp_echo().display().to_string(), "web:/bin/udpecho"],
    );

    // TCP from the host's loopback (the monitor's publisher) and from the
    // outside namespace to the host's address (DNAT).
    wait_until(Duration::from_secs(30), "httpd in the container", || {
        curl(&w.host, "http://127.0.0.1:8080/").stdout == "hello-web\n"
    });
    let out = curl(&w.outside, &format!("http://{HOST_IP}:8080/"));
    assert_eq!(out.stdout, "hello-web\n", "{out:?}");
    // UDP on the same port number.
    wait_until(Duration::from_secs(20), "the UDP echo", || {
        udp_roundtrip(&w.host, 8080, "ping-udp") == "ping-udp"
    });

    let v = inspect(&w.host, &s, "web");
    let ns = &v["NetworkSettings"];
    let ip = ns["IPAddress"].as_str().unwrap().to_owned();
    assert!(ip.starts_with("10.90."), "{ns}");
    assert_eq!(
        ns["Gateway"],
        ip.rsplit_once('.').unwrap().0.to_owned() + ".1"
    );
    assert!(
        ns["MacAddress"].as_str().unwrap().starts_with("02:5f:"),
        "{ns}"
    );
    assert_eq!(ns["Ports"]["80/tcp"][0]["HostPort"], "8080", "{ns}");
    assert_eq!(ns["Ports"]["80/udp"][0]["HostPort"], "8080", "{ns}");
    let out = ok_in(&w.host, &s, &["ps", "--format", "json"]);
    assert_eq!(
        out.json()[0]["Ports"],
        "0.0.0.0:8080->80/tcp, 0.0.0.0:8080->80/udp"
    );
    let out = ok_in(&w.host, &s, &["port", "web"]);
    assert_eq!(
        out.stdout,
        "80/tcp -> 0.0.0.0:8080\n80/udp -> 0.0.0.0:8080\n"
    );
    // Another host that routes the subnet through us reaches published
    // ports only, never the container's other ports.
    w.outside
        .sh_ok(&format!("ip route add 10.90.0.0/16 via {HOST_IP}"));
    let out = curl(&w.outside, &format!("http://{ip}/"));
    assert!(
        !out.success(),
        "unpublished port reached from outside: {out:?}"
    );
    // A container reaches a published port of its own network through the
    // host's address (the publisher answers: no DNAT hairpin).
    let out = wget_ok(&w.host, &s, "web", &format!("http://{HOST_IP}:8080/"));
    assert_eq!(out.stdout, "hello-web\n");
    // The container's address from the host directly.
    assert_eq!(
        curl(&w.host, &format!("http://{ip}/")).stdout,
        "hello-web\n"
    );

    // Outbound: the outside sees the host's address, not the container's.
    let out = wget_ok(
        &w.host,
        &s,
        "web",
        &format!("http://{OUTSIDE_IP}:8000/cgi-bin/ip"),
    );
    // (busybox httpd gives IPv4 clients in their IPv6-mapped form.)
    assert_eq!(
        out.stdout.trim(),
        format!("[::ffff:{HOST_IP}]"),
        "masqueraded"
    );
    // The guest's resolver is the gateway; its hosts file has its address.
    let out = ok_in(
        &w.host,
        &s,
        &["exec", "web", "cat", "/etc/resolv.conf", "/etc/hosts"],
    );
    assert!(
        out.stdout
            .contains(&format!("nameserver {}", ns["Gateway"].as_str().unwrap())),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&format!("{ip}\t{}", &id[..12])),
        "{out:?}"
    );

    // A port in use: one line, exit 125, before any VM, and nothing new.
    let before = w.host.leftovers();
    let out = skiff_in(
        &w.host,
        &s,
        &[
            "run", "-d", "--name", "clash", "-p", "8080:80", &image, "true",
        ],
    );
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        out.stderr
            .contains("port 8080/tcp on 0.0.0.0 is already in use"),
        "{out:?}"
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    assert_eq!(
        w.host.leftovers(),
        before,
        "a failed start changes no rule or link"
    );
    ok_in(&w.host, &s, &["rm", "clash"]);

    // A malformed -p is refused before anything is made.
    let out = skiff_in(&w.host, &s, &["run", "--rm", "-p", "80:x", &image, "true"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(out.stderr.contains("invalid port \"80:x\""), "{out:?}");

    // -P: every EXPOSEd port on a free host port; the resolver and hosts
    // flags reach the guest's files.
    let exposed = image.replace("test/vm", "test/exposed");
    reg.push_vm_fixture("exposed", "test/exposed");
    s.ok(&["pull", "-q", &exposed]);
    let out = ok_in(
        &w.host,
        &s,
        &[
            "run",
            "-d",
            "--name",
            "all",
            "-P",
            "-h",
            "myhost",
            "--dns",
            "10.0.0.2",
            "--dns-search",
            "corp",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "db.local:10.0.0.9",
            &exposed,
            "sh",
            "-c",
            WEB,
        ],
    );
    let all_id = out.stdout.trim().to_owned();
    let out = ok_in(&w.host, &s, &["port", "all", "80/tcp"]);
    let host_port: u16 = out
        .stdout
        .trim()
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_ne!(host_port, 0);
    assert_ne!(host_port, 8080);
    let out = ok_in(&w.host, &s, &["port", "all"]);
    assert!(out.stdout.contains("53/udp -> 0.0.0.0:"), "{out:?}");
    wait_until(Duration::from_secs(30), "httpd on the -P port", || {
        curl(&w.host, &format!("http://127.0.0.1:{host_port}/")).stdout == "myhost\n"
    });
    let out = ok_in(
        &w.host,
        &s,
        &["exec", "all", "cat", "/etc/resolv.conf", "/etc/hosts"],
    );
    for want in [
        "nameserver 10.0.0.2",
        "search corp",
        "options ndots:2",
        "10.0.0.9\tdb.local",
        "\tmyhost",
    ] {
        assert!(out.stdout.contains(want), "{want:?} in {out:?}");
    }
    ok_in(&w.host, &s, &["rm", "-f", "web", "all"]);
    assert!(qemu_processes_with(&all_id).is_empty());
    assert_eq!(w.host.leftovers(), "", "nothing left in the namespace");
    assert!(qemu_processes_with(&id).is_empty());
    // Both ports are free again (to a server that, like every server, sets
    // SO_REUSEADDR: the publisher's closed connections may be in TIME_WAIT).
    w.host.sh_ok(
        "python3 -c 'import socket; t=socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((\"0.0.0.0\", 8080)); \
         u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((\"0.0.0.0\", 8080))'",
    );

    // A monitor killed with SIGKILL takes QEMU and the tap with it; the next
    // command that looks at the container takes its lease, rules and bridge.
    let out = ok_in(
        &w.host,
        &s,
        &[
            "run", "-d", "--name", "victim", "-p", "9091:80", &image, "sleep", "600",
        ],
    );
    let victim = out.stdout.trim().to_owned();
    assert_ne!(w.host.leftovers(), "");
    let monitor = inspect(&w.host, &s, "victim")["State"]["MonitorPid"]
        .as_i64()
        .unwrap();
    sh_ok(&format!("kill -9 {monitor}"));
    wait_until(
        Duration::from_secs(10),
        "QEMU to die with its monitor",
        || qemu_processes_with(&victim).is_empty(),
    );
    let out = ok_in(&w.host, &s, &["ps", "-a", "--format", "json"]);
    assert_eq!(out.json()[0]["ExitCode"], 255, "{out:?}");
    assert_eq!(w.host.leftovers(), "", "the next command cleaned up");
    ok_in(&w.host, &s, &["rm", "victim"]);
}

/// The container's address on its network, from inspect.
fn ip_of(ns: &Netns, s: &Skiff, name: &str) -> String {
    inspect(ns, s, name)["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned()
}

const WEB: &str = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www";

/// User-defined networks: names and aliases resolve and follow containers
/// that come later; concurrent starts get distinct addresses; networks are
/// isolated from each other; an internal one has no way out; a container
/// that takes another address gets nothing through; a network in use is not
/// removed; bad input is one line and makes nothing.
#[test]
fn names_isolation_and_the_network_commands() {
    let (_reg, s, image) = setup();
    let w = World::new("dns");
    let h = &w.host;
    let out = ok_in(h, &s, &["network", "create", "appnet"]);
    assert_eq!(out.stdout.trim().len(), 64, "prints the id: {out:?}");
    ok_in(
        h,
        &s,
        &["network", "create", "--subnet", "10.90.50.0/24", "other"],
    );
    ok_in(h, &s, &["network", "create", "--internal", "backend"]);
    let out = skiff_in(
        h,
        &s,
        &["network", "create", "--subnet", "10.90.50.128/25", "clash"],
    );
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("overlaps network other (10.90.50.0/24)"),
        "{out:?}"
    );
    let out = skiff_in(h, &s, &["network", "create", "appnet"]);
    assert!(
        out.stderr.contains("network appnet already exists"),
        "{out:?}"
    );
    let ls = ok_in(h, &s, &["network", "ls", "--format", "json"]).json();
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["appnet", "backend", "other", "skiff"]);

    // Unknown network, alias off a user network, --network host: one line,
    // exit 125, no container.
    for (args, msg) in [
        (vec!["--network", "nope"], "network nope not found"),
        (
            vec!["--network-alias", "x"],
            "--network-alias needs a user-defined network",
        ),
        (vec!["--network", "host"], "--network host is not available"),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend(args);
        a.extend([image.as_str(), "true"]);
        let out = skiff_in(h, &s, &a);
        assert_eq!(out.status.code(), Some(125), "{out:?}");
        assert!(out.stderr.contains(msg), "{out:?}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
    }
    assert_eq!(ok_in(h, &s, &["ps", "-aq"]).stdout, "");

    // Three starts at once on one network: three addresses.
    let runs: Vec<_> = [("db", Some("database")), ("client", None), ("peer", None)]
        .into_iter()
        .map(|(name, alias)| {
            let (s, image) = (&s, image.clone());
            let mut args = vec!["run", "-d", "--name", name, "--network", "appnet"];
            if let Some(a) = alias {
                args.extend(["--network-alias", a]);
            }
            if name == "client" {
                // It re-addresses its eth0 below (the anti-spoofing check).
                args.extend(["--cap-add", "NET_ADMIN"]);
            }
            let args: Vec<String> = args.into_iter().map(String::from).collect();
            (args, image, s)
        })
        .collect();
    std::thread::scope(|scope| {
        for (args, image, s) in &runs {
            scope.spawn(move || {
                let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
                a.extend([image.as_str(), "sh", "-c", WEB]);
                ok_in(h, s, &a);
            });
        }
    });
    let ips: std::collections::BTreeSet<String> = ["db", "client", "peer"]
        .iter()
        .map(|n| ip_of(h, &s, n))
        .collect();
    assert_eq!(ips.len(), 3, "distinct addresses: {ips:?}");

    // By name and by alias; the hostname answers.
    wait_until(Duration::from_secs(30), "db's httpd", || {
        wget(h, &s, "client", "http://db/").success()
    });
    let db_id = inspect(h, &s, "db")["Id"].as_str().unwrap()[..12].to_owned();
    for url in ["http://db/", "http://database/", "http://DB./"] {
        let out = wget_ok(h, &s, "client", url);
        assert_eq!(out.stdout.trim(), db_id, "{url}");
    }
    // A name that appears after the client started.
    ok_in(
        h,
        &s,
        &[
            "run",
            "-d",
            "--name",
            "late",
            "--network",
            "appnet",
            &image,
            "sh",
            "-c",
            WEB,
        ],
    );
    // (Up to 60 s: with the suite's other VMs, seven guests share two cores.)
    let mut last = None;
    let found = (0..300).any(|_| {
        let out = wget(h, &s, "client", "http://late/");
        let ok = out.success();
        last = Some(out);
        if !ok {
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    });
    if !found {
        let ns = skiff_in(h, &s, &["exec", "client", "nslookup", "late"]);
        let file = fs::read_to_string(s.root().join("networks/appnet.json")).unwrap_or_default();
        panic!("the late container never answered by name: {last:?}\nnslookup: {ns:?}\nnetwork: {file}");
    }
    // A name that is gone no longer resolves (it did a moment ago).
    let late_ip = ip_of(h, &s, "late");
    let out = ok_in(h, &s, &["exec", "client", "nslookup", "late"]);
    assert!(
        out.stdout.contains(&format!("Address: {late_ip}")),
        "{out:?}"
    );
    ok_in(h, &s, &["rm", "-f", "late"]);
    let out = skiff_in(h, &s, &["exec", "client", "nslookup", "late"]);
    assert!(!out.stdout.contains(&late_ip), "{out:?}");
    // Other names go to the host's resolvers (none in this namespace: an
    // error, not a hang and not a wrong answer).
    let out = skiff_in(h, &s, &["exec", "client", "nslookup", "example.invalid"]);
    assert!(!out.stdout.contains("Address: 10."), "{out:?}");

    // Another network: no route to appnet's containers, and no names.
    let db_ip = ip_of(h, &s, "db");
    ok_in(
        h,
        &s,
        &[
            "run",
            "-d",
            "--name",
            "lonely",
            "--network",
            "other",
            &image,
            "sleep",
            "600",
        ],
    );
    let out = fetch(h, &s, "lonely", &format!("http://{db_ip}/"));
    assert!(!out.success(), "isolated: {out:?}");
    let out = fetch(h, &s, "lonely", "http://db/");
    assert!(!out.success(), "no names across networks: {out:?}");
    // ...but the outside is reachable from there.
    let out = wget_ok(h, &s, "lonely", &format!("http://{OUTSIDE_IP}:8000/"));
    assert_eq!(out.stdout, "outside-hello\n");

    // Internal: no way out.
    let out = skiff_in(
        h,
        &s,
        &[
            "run",
            "--rm",
            "--network",
            "backend",
            &image,
            "timeout",
            "3",
            "wget",
            "-qO-",
            &format!("http://{OUTSIDE_IP}:8000/"),
        ],
    );
    // (The same request from `other` above got through.)
    assert!(!out.success(), "internal: {out:?}");

    // Anti-spoofing: the client takes an unused address, then its own
    // address with another MAC; neither gets a packet to db through. With
    // its own address and MAC back, it does (the method works).
    let client_ip = ip_of(h, &s, "client");
    let client_mac = inspect(h, &s, "client")["NetworkSettings"]["MacAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    let gw = inspect(h, &s, "client")["NetworkSettings"]["Gateway"]
        .as_str()
        .unwrap()
        .to_owned();
    let unused = format!("{}.200", client_ip.rsplit_once('.').unwrap().0);
    let set = |ip: &str, mac: &str| {
        format!(
            "ip link set eth0 down && ip link set eth0 address {mac} && ip link set eth0 up && \
             ip addr flush dev eth0 && ip addr add {ip}/24 dev eth0 && ip route add default via {gw}"
        )
    };
    let fetch = format!("timeout 3 wget -qO- http://{db_ip}/ >/dev/null");
    let spoof = format!(
        "{} && ! {fetch} && {} && ! {fetch} && {} && {fetch} && echo blocked-then-allowed",
        set(&unused, &client_mac),
        set(&client_ip, "02:00:00:00:00:01"),
        set(&client_ip, &client_mac),
    );
    let out = ok_in(h, &s, &["exec", "client", "sh", "-c", &spoof]);
    assert_eq!(out.stdout.trim(), "blocked-then-allowed", "{out:?}");
    // db is still fine for the others.
    wget_ok(h, &s, "peer", "http://db/");

    // A network in use stays; once its containers are gone it goes.
    let out = skiff_in(h, &s, &["network", "rm", "appnet"]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("in use by running containers"),
        "{out:?}"
    );
    ok_in(h, &s, &["rm", "-f", "db", "client", "peer", "lonely"]);
    ok_in(h, &s, &["network", "rm", "appnet", "other"]);
    // prune keeps a network a stopped (here: never started) container names.
    ok_in(h, &s, &["network", "create", "kept"]);
    ok_in(
        h,
        &s,
        &[
            "create",
            "--name",
            "idle",
            "--network",
            "kept",
            &image,
            "true",
        ],
    );
    let out = ok_in(h, &s, &["network", "prune", "-f"]);
    assert_eq!(out.stdout, "Deleted Networks:\nbackend\n");
    ok_in(h, &s, &["rm", "idle"]);
    ok_in(h, &s, &["network", "rm", "kept"]);
    let out = skiff_in(h, &s, &["network", "rm", "skiff"]);
    assert!(out.stderr.contains("cannot be removed"), "{out:?}");
    assert_eq!(h.leftovers(), "", "nothing left in the namespace");

    // --network none: loopback only.
    let out = ok_in(
        h,
        &s,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            "ip",
            "-o",
            "link",
        ],
    );
    let links: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split(':').nth(1).unwrap().trim())
        .collect();
    assert_eq!(links, ["lo"], "{out:?}");

    // system reset takes a running container, its network, its bridge and
    // rules down, and empties the store.
    ok_in(h, &s, &["network", "create", "last"]);
    ok_in(
        h,
        &s,
        &[
            "run",
            "-d",
            "--name",
            "r",
            "--network",
            "last",
            "-p",
            "9090:80",
            &image,
            "sleep",
            "600",
        ],
    );
    assert_ne!(h.leftovers(), "");
    let out = ok_in(h, &s, &["system", "reset", "--force"]);
    assert_eq!(
        out.stdout,
        "Removed 1 containers and 2 networks; images and caches deleted\n"
    );
    assert_eq!(h.leftovers(), "", "nothing left after system reset");
    assert_eq!(ok_in(h, &s, &["ps", "-aq"]).stdout, "");
    assert_eq!(ok_in(h, &s, &["images", "-q"]).stdout, "");
}

/// A user without root gets passt: published ports and outbound access,
/// and an address that inspect calls private; passt goes with the container.
#[test]
fn a_non_root_user_gets_user_mode_networking() {
    let (_reg, s, image) = setup();
    let w = World::new("usr");
    // The user's store and home, and the shared kernel and init, readable.
    for p in [s.root(), s.home()] {
        sh_ok(&format!("chown -R 65534:65534 {}", p.display()));
    }
    let as_nobody = [
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
    ];
    let user = |args: &[&str]| skiff_in_as(&w.host, &as_nobody, &s, args);
    let out = user(&[
        "run", "-d", "--name", "u", "-p", "8082:80", &image, "sh", "-c", WEB,
    ]);
    out.assert_success();
    let id = out.stdout.trim().to_owned();
    wait_until(Duration::from_secs(30), "httpd through passt", || {
        curl(&w.host, "http://127.0.0.1:8082/").stdout.trim() == &id[..12]
    });
    let out = user(&[
        "exec",
        "u",
        "wget",
        "-qO-",
        &format!("http://{OUTSIDE_IP}:8000/"),
    ]);
    assert_eq!(out.stdout, "outside-hello\n", "{out:?}");
    let out = user(&["inspect", "u"]);
    let ns = out.json()[0]["NetworkSettings"].clone();
    assert_eq!(ns["NetworkMode"], "passt", "{ns}");
    assert_eq!(ns["Networks"]["passt"]["Private"], true, "{ns}");
    assert_eq!(ns["Ports"]["80/tcp"][0]["HostPort"], "8082", "{ns}");
    let out = user(&["port", "u"]);
    assert_eq!(out.stdout, "80/tcp -> 0.0.0.0:8082\n", "{out:?}");
    // (Debian's passt re-executes itself as passt.avx2 where it can.)
    let out = w.host.sh_ok("pgrep -u 65534 ^passt || true");
    assert_eq!(out.lines().count(), 1, "one passt, the user's: {out}");
    // A skiff network needs root: one line that says what to use.
    let out = user(&["run", "--rm", "--network", "skiff", &image, "true"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(out.stderr.contains("skiff networks need root"), "{out:?}");
    user(&["rm", "-f", "u"]).assert_success();
    wait_until(Duration::from_secs(5), "passt to go", || {
        w.host.sh_ok("pgrep ^passt || true").is_empty()
    });
    assert_eq!(w.host.leftovers(), "", "user mode touches no rule or link");
    assert!(qemu_processes_with(&id).is_empty());
}
