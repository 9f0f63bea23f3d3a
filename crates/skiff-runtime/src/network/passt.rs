//! User-mode networking for containers of users without root: passt (as
//! rootless podman uses it) on a UNIX socket that QEMU's `-netdev stream`
//! connects to. Outbound traffic leaves through passt's own sockets, so the
//! guest's address is private to its VM; published ports are passt's `-t`
//! and `-u` listeners.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::attach::{Attached, Link};
use super::ports::{self, PortMapping, Protocol};
use super::{ContainerNetwork, NetworkError};

/// The guest's side, as QEMU's user-mode network has always had it.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// Traffic to the gateway reaches the host's loopback (passt maps it).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// DNS queries to this address go to the host's first resolver.
pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// passt's largest MTU: fewer, larger frames through the socket.
const MTU: u32 = 65520;
const MAC: &str = "02:5f:0a:00:02:0f";

/// A running passt; killed and reaped when dropped.
pub struct Passt {
    child: tokio::process::Child,
}

impl Drop for Passt {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }
}

/// passt's port spec for one mapping: `[ADDR/]HOST:CONTAINER`.
fn port_spec(m: &PortMapping) -> String {
    match m.host_ip {
        IpAddr::V4(ip) if ip.is_unspecified() => format!("{}:{}", m.host_port, m.container_port),
        ip => format!("{ip}/{}:{}", m.host_port, m.container_port),
    }
}

/// The ports passt publishes for the running container, in its directory.
pub const PUBLISHED: &str = "published.json";

/// The ports recorded for the container in `dir` (user mode).
pub fn published(dir: &Path) -> Vec<PortMapping> {
    std::fs::read(dir.join(PUBLISHED))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// passt finds its end of the socket pair here.
const PASST_FD: i32 = 3;

/// Starts passt for the container in `dir` on one end of a socket pair; the
/// other end is QEMU's (no socket path: the container's may be longer than a
/// UNIX socket's name can be).
pub async fn attach(dir: &Path, spec: &ContainerNetwork) -> Result<Attached, NetworkError> {
    // Free ports are found (and a port in use is reported) by binding them
    // here first; passt binds them again a moment later.
    let bound = ports::bind_all(&spec.ports)?;
    let mapped = bound.mappings();
    drop(bound);
    // Where `port` and `inspect` find them (there is no lease in user mode).
    let published = serde_json::to_vec(&mapped).map_err(|e| NetworkError::Passt(e.to_string()))?;
    skiff_util::atomic::write(&dir.join(PUBLISHED), &published, 0o644)
        .map_err(|e| NetworkError::Passt(format!("recording the ports: {e}")))?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| NetworkError::Passt(format!("socket pair: {e}")))?;
    let mut cmd = tokio::process::Command::new("passt");
    // passt drops root for nobody unless told: it must stay the monitor's
    // user to create its socket in the container's directory.
    let runas = format!(
        "{}:{}",
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw()
    );
    cmd.args(["--foreground", "--quiet", "--one-off", "--ipv4-only"])
        .args(["--runas", &runas])
        .args(["--fd", &PASST_FD.to_string()])
        .arg("--log-file")
        .arg(dir.join("passt.log"))
        .args(["--address", &GUEST_IP.to_string(), "--netmask", "24"])
        .args(["--gateway", &GATEWAY.to_string()])
        .args(["--dns-forward", &DNS.to_string()])
        .args(["--mtu", &MTU.to_string()]);
    for m in &mapped {
        cmd.arg(match m.protocol {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
        });
        cmd.arg(port_spec(m));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let theirs_fd = theirs.as_raw_fd();
    let mut die_with_parent = skiff_util::child::die_with_parent();
    // SAFETY: the hook only makes async-signal-safe calls (prctl, getppid, dup2).
    unsafe {
        cmd.pre_exec(move || {
            die_with_parent()?;
            skiff_util::child::keep_fd_at(theirs_fd, PASST_FD)
        });
    }
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NetworkError::Passt("passt not found: install passt".into())
        } else {
            NetworkError::Passt(format!("starting passt: {e}"))
        }
    })?;
    drop(theirs);
    let mut passt = Passt { child };
    // passt checks its interfaces and ports first; one that fails exits at
    // once (before QEMU would find a dead socket).
    tokio::time::sleep(Duration::from_millis(20)).await;
    if let Ok(Some(status)) = passt.child.try_wait() {
        let log = std::fs::read_to_string(dir.join("passt.log")).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(NetworkError::Passt(format!(
            "passt exited ({status}): {last}"
        )));
    }
    let nameservers = if spec.dns.is_empty() {
        vec![DNS.to_string()]
    } else {
        spec.dns.clone()
    };
    Ok(Attached {
        network: "passt".into(),
        link: Link::Passt {
            socket: ours.into(),
            _passt: passt,
        },
        mac: MAC.into(),
        ip: GUEST_IP,
        prefix: 24,
        gateway: GATEWAY,
        mtu: MTU,
        internal: false,
        nameservers,
        search: spec.dns_search.clone(),
        options: spec.dns_options.clone(),
        ports: mapped,
        _services: tokio::task::JoinSet::new(),
    })
}
