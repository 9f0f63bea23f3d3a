//! Published ports (`-p`, `-P`) of a container.
//!
//! The container's monitor binds the host side of every published port
//! *before* the VM boots, so a port that is already taken is a one-line error
//! instead of a half-started container. Once the container's address is known
//! it forwards each host socket to `container_ip:container_port`.
//!
//! Traffic from other hosts is handled by DNAT rules in nftables; this
//! userland publisher handles the rest (connections to 127.0.0.1, hairpin
//! traffic), like docker-proxy does for docker.
//!
//! Everything here works on a current-thread tokio runtime, which is what the
//! monitor uses.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A UDP session with no traffic either way for this long is dropped (and its
/// socket to the container closed); the next datagram from that client starts
/// a new one.
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// At most this many UDP sessions (client addresses) per published UDP port;
/// datagrams from new clients beyond it are dropped until sessions expire.
pub const UDP_MAX_SESSIONS: usize = 1024;

/// How long a forwarded TCP connection waits for the container to accept.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Listen backlog of a published TCP port.
const TCP_BACKLOG: i32 = 1024;

/// Largest UDP payload (IPv4: 65535 - 20 - 8; IPv6 jumbograms are not relayed).
const MAX_DATAGRAM: usize = 65_535;

/// Datagrams queued towards one UDP session before further ones are dropped.
const SESSION_QUEUE: usize = 64;

/// Replies queued from all sessions of a UDP port towards its host socket.
const REPLY_QUEUE: usize = 256;

/// The form of a `-p` spec, quoted in its error messages.
const PUBLISH_FORM: &str = "[hostIP:]hostPort[-range]:containerPort[/tcp|udp]";

/// The form of an image's ExposedPorts key, quoted in its error messages.
const EXPOSED_FORM: &str = "port[-range][/tcp|udp]";

/// Transport protocol of a published port; the two that docker's `-p` and an
/// image's ExposedPorts name (sctp is not supported).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default when a spec names none).
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = PortSpecError;

    /// `tcp` or `udp` (any case), as after the `/` of a port spec.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("tcp") {
            Ok(Protocol::Tcp)
        } else if s.eq_ignore_ascii_case("udp") {
            Ok(Protocol::Udp)
        } else {
            Err(PortSpecError::UnknownProtocol {
                protocol: s.to_owned(),
            })
        }
    }
}

/// One published port. host_port 0 = any free port (chosen at bind).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// Host address to listen on; 0.0.0.0 when the spec names none.
    pub host_ip: IpAddr,
    /// Host port; 0 until bound when the spec leaves it to the system.
    pub host_port: u16,
    /// Port inside the container that connections are forwarded to.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// A `-p` spec or an ExposedPorts key that cannot be used; every message
/// quotes the spec and says what was expected, so the CLI can print it as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    /// The spec does not have the shape of a `-p` value.
    #[error("invalid port {spec:?}: use {PUBLISH_FORM}")]
    Invalid {
        /// The spec as given.
        spec: String,
    },
    /// The key does not have the shape of an ExposedPorts key.
    #[error("invalid exposed port {spec:?}: use {EXPOSED_FORM}")]
    Exposed {
        /// The key as given.
        spec: String,
    },
    /// The host IP before the host port is not an IP address.
    #[error(
        "invalid host IP {ip:?} in port {spec:?}: use an IPv4 address or an IPv6 address \
         in brackets, e.g. 127.0.0.1:8080:80 or [::1]:8080:80"
    )]
    HostIp {
        /// The spec as given.
        spec: String,
        /// The host IP part of it.
        ip: String,
    },
    /// The protocol after `/` is neither tcp nor udp.
    #[error("invalid protocol {protocol:?} in port {spec:?}: use tcp or udp")]
    Protocol {
        /// The spec as given.
        spec: String,
        /// The protocol part of it.
        protocol: String,
    },
    /// A protocol name on its own that is neither tcp nor udp.
    #[error("invalid protocol {protocol:?}: use tcp or udp")]
    UnknownProtocol {
        /// The name as given.
        protocol: String,
    },
    /// A port number outside 1-65535 (a single host port may be 0: any port).
    #[error("invalid port number {port:?} in port {spec:?}: ports are 1-65535")]
    PortNumber {
        /// The spec as given.
        spec: String,
        /// The offending number as written.
        port: String,
    },
    /// A range whose start is after its end.
    #[error("invalid port range {range:?} in port {spec:?}: use start-end with start <= end")]
    Range {
        /// The spec as given.
        spec: String,
        /// The offending range as written.
        range: String,
    },
    /// Host and container ranges of different lengths (docker would pick one
    /// host port out of a host range for a single container port; skiff
    /// maps ports one to one).
    #[error(
        "port ranges in {spec:?} differ in length: host and container ranges must be \
         equal length, e.g. 8080-8081:80-81"
    )]
    RangeLength {
        /// The spec as given.
        spec: String,
    },
}

/// docker's -p grammar: "80" (container port, any host port), "8080:80",
/// "127.0.0.1:8080:80", "127.0.0.1::80" (any host port on that ip),
/// "8080-8081:80-81" (equal-length ranges), "80-81" (container range, any host
/// ports), "8080:80/udp", "[::1]:8080:80" (IPv6 host ip in brackets).
///
/// A host range must be as long as the container range (docker's "8000-8010:80",
/// one port out of the range, is rejected). Container ports are 1-65535; a
/// single host port may be 0 (any free port).
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, PortSpecError> {
    let invalid = || PortSpecError::Invalid {
        spec: spec.to_owned(),
    };
    let (rest, protocol) = split_protocol(spec)?;
    let (ip, host, container) = split_publish(rest).ok_or_else(invalid)?;

    let host_ip = match ip {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(ip) => ip.parse().map_err(|_| PortSpecError::HostIp {
            spec: spec.to_owned(),
            ip: ip.to_owned(),
        })?,
    };
    if container.is_empty() {
        return Err(invalid());
    }
    let (c_start, c_end) = parse_range(spec, container, false, invalid)?;
    let host = if host.is_empty() {
        None
    } else {
        let (h_start, h_end) = parse_range(spec, host, true, invalid)?;
        if h_end - h_start != c_end - c_start {
            return Err(PortSpecError::RangeLength {
                spec: spec.to_owned(),
            });
        }
        Some(h_start)
    };

    Ok((c_start..=c_end)
        .map(|container_port| PortMapping {
            host_ip,
            // Equal lengths were checked: h_start + offset stays <= h_end.
            host_port: host.map_or(0, |h| h + (container_port - c_start)),
            container_port,
            protocol,
        })
        .collect())
}

/// An image's ExposedPorts key: "80/tcp", "53/udp", "8080" (tcp),
/// "7000-7002/tcp" -> (port, protocol) list; `-P` publishes each of them on
/// any free host port.
pub fn parse_exposed(key: &str) -> Result<Vec<(u16, Protocol)>, PortSpecError> {
    let invalid = || PortSpecError::Exposed {
        spec: key.to_owned(),
    };
    let (ports, protocol) = split_protocol(key)?;
    if ports.is_empty() {
        return Err(invalid());
    }
    let (start, end) = parse_range(key, ports, false, invalid)?;
    Ok((start..=end).map(|port| (port, protocol)).collect())
}

/// Splits an optional `/tcp` or `/udp` off the end of `spec` (tcp when absent).
fn split_protocol(spec: &str) -> Result<(&str, Protocol), PortSpecError> {
    match spec.rsplit_once('/') {
        None => Ok((spec, Protocol::Tcp)),
        Some((rest, name)) => match name.parse() {
            Ok(protocol) => Ok((rest, protocol)),
            Err(_) => Err(PortSpecError::Protocol {
                spec: spec.to_owned(),
                protocol: name.to_owned(),
            }),
        },
    }
}

/// `[ip:]host:container`, `container`, or `[v6]:host:container` → (ip, host,
/// container); host and container possibly empty, ip `None` when not given
/// (an empty ip before `::` is not given; `[]` is given and empty). Like
/// docker, an unbracketed IPv6 address is everything before the last two
/// colons.
fn split_publish(rest: &str) -> Option<(Option<&str>, &str, &str)> {
    if let Some(bracketed) = rest.strip_prefix('[') {
        let (ip, ports) = bracketed.split_once("]:")?;
        let (host, container) = ports.split_once(':')?;
        if container.contains(':') {
            return None;
        }
        return Some((Some(ip), host, container));
    }
    match rest.rsplit_once(':') {
        None => Some((None, "", rest)),
        Some((front, container)) => match front.rsplit_once(':') {
            None => Some((None, front, container)),
            Some(("", host)) => Some((None, host, container)),
            Some((ip, host)) => Some((Some(ip), host, container)),
        },
    }
}

/// `N` or `N-M` → (N, M). Port 0 only when `allow_any` and the text is a single
/// port (host port 0 = any); shape errors come from `invalid`.
fn parse_range(
    spec: &str,
    text: &str,
    allow_any: bool,
    invalid: impl Fn() -> PortSpecError,
) -> Result<(u16, u16), PortSpecError> {
    let number = |part: &str, zero_ok: bool| -> Result<u16, PortSpecError> {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        match part.parse::<u16>() {
            Ok(0) if !zero_ok => Err(PortSpecError::PortNumber {
                spec: spec.to_owned(),
                port: part.to_owned(),
            }),
            Ok(port) => Ok(port),
            Err(_) => Err(PortSpecError::PortNumber {
                spec: spec.to_owned(),
                port: part.to_owned(),
            }),
        }
    };
    match text.split_once('-') {
        None => {
            let port = number(text, allow_any)?;
            Ok((port, port))
        }
        Some((start, end)) => {
            let start_port = number(start, false)?;
            let end_port = number(end, false)?;
            if start_port > end_port {
                return Err(PortSpecError::Range {
                    spec: spec.to_owned(),
                    range: text.to_owned(),
                });
            }
            Ok((start_port, end_port))
        }
    }
}

/// A host port that could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Another socket holds the port (the common case: say so in one line).
    #[error("port {port}/{protocol} on {ip} is already in use")]
    InUse {
        /// Host address.
        ip: IpAddr,
        /// Host port as requested.
        port: u16,
        /// TCP or UDP.
        protocol: Protocol,
    },
    /// Any other failure to create, bind or listen (no such local address,
    /// permission denied for a low port, ...).
    #[error("binding {}/{protocol}", SocketAddr::new(*.ip, *.port))]
    Bind {
        /// Host address.
        ip: IpAddr,
        /// Host port as requested.
        port: u16,
        /// TCP or UDP.
        protocol: Protocol,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

/// Host sockets bound for every mapping (listening TCP / bound UDP), with port
/// 0 resolved to the chosen port. Holding it keeps the ports reserved between
/// the bind before boot and [`Bound::serve`]; dropping it frees them.
#[derive(Debug)]
pub struct Bound {
    ports: Vec<BoundPort>,
}

#[derive(Debug)]
struct BoundPort {
    /// With host_port as bound.
    mapping: PortMapping,
    socket: HostSocket,
}

#[derive(Debug)]
enum HostSocket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

/// Binds the host side of every mapping, all or nothing: on error everything
/// bound so far is closed again. TCP sockets get SO_REUSEADDR (a TIME_WAIT of
/// a previous run does not block a restart) but never SO_REUSEPORT (a second
/// container on the same port must fail, not share it). IPv6 sockets are
/// IPv6-only, so `[::]:80` and `0.0.0.0:80` are separate ports, as in docker.
pub fn bind_all(mappings: &[PortMapping]) -> Result<Bound, PortError> {
    // On an early return `ports` is dropped, closing what was bound so far.
    let mut ports = Vec::with_capacity(mappings.len());
    for mapping in mappings {
        let (socket, port) = bind_one(mapping).map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                PortError::InUse {
                    ip: mapping.host_ip,
                    port: mapping.host_port,
                    protocol: mapping.protocol,
                }
            } else {
                PortError::Bind {
                    ip: mapping.host_ip,
                    port: mapping.host_port,
                    protocol: mapping.protocol,
                    source,
                }
            }
        })?;
        ports.push(BoundPort {
            mapping: PortMapping {
                host_port: port,
                ..mapping.clone()
            },
            socket,
        });
    }
    Ok(Bound { ports })
}

/// One host socket, non-blocking and close-on-exec (the monitor starts the
/// VMM; it must not inherit the ports), and the port it got.
fn bind_one(mapping: &PortMapping) -> io::Result<(HostSocket, u16)> {
    use socket2::{Domain, Socket, Type};

    let addr = SocketAddr::new(mapping.host_ip, mapping.host_port);
    let domain = Domain::for_address(addr);
    let socket = match mapping.protocol {
        Protocol::Tcp => Socket::new(domain, Type::STREAM, Some(socket2::Protocol::TCP))?,
        Protocol::Udp => Socket::new(domain, Type::DGRAM, Some(socket2::Protocol::UDP))?,
    };
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if mapping.protocol == Protocol::Tcp {
        socket.set_reuse_address(true)?;
    }
    socket.bind(&addr.into())?;
    if mapping.protocol == Protocol::Tcp {
        socket.listen(TCP_BACKLOG)?;
    }
    socket.set_nonblocking(true)?;
    let port = socket
        .local_addr()?
        .as_socket()
        .map(|a| a.port())
        .ok_or_else(|| io::Error::other("bound socket has no IP address"))?;
    let socket = match mapping.protocol {
        Protocol::Tcp => HostSocket::Tcp(socket.into()),
        Protocol::Udp => HostSocket::Udp(socket.into()),
    };
    Ok((socket, port))
}

type PortTask = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Bound {
    /// The mappings with host ports as bound (what `docker port` and the
    /// container's state report).
    pub fn mappings(&self) -> Vec<PortMapping> {
        self.ports.iter().map(|p| p.mapping.clone()).collect()
    }

    /// Forwards every mapping to `target:container_port` until the future is
    /// dropped; it never completes on its own. Must be called inside a tokio
    /// runtime (a current-thread one is enough).
    ///
    /// TCP: each accepted connection is its own task that connects to the
    /// target and copies both ways (TCP_NODELAY on both sides); a failed
    /// connect just closes the client. UDP: each client address gets a session
    /// with its own socket connected to the target, relaying both ways, dropped
    /// after [`UDP_IDLE_TIMEOUT`] without traffic, at most
    /// [`UDP_MAX_SESSIONS`] at a time.
    ///
    /// The host sockets are owned by this future itself, so dropping it closes
    /// them at once (the ports can be bound again right away); the connection
    /// and session tasks are aborted with it.
    pub async fn serve(self, target: Ipv4Addr) {
        let mut ports: FuturesUnordered<PortTask> = FuturesUnordered::new();
        for BoundPort { mapping, socket } in self.ports {
            let to = SocketAddr::new(IpAddr::V4(target), mapping.container_port);
            match socket {
                HostSocket::Tcp(listener) => match TcpListener::from_std(listener) {
                    Ok(listener) => ports.push(Box::pin(serve_tcp(listener, to))),
                    Err(error) => tracing::warn!(
                        %error, port = mapping.host_port, "cannot serve published tcp port"
                    ),
                },
                HostSocket::Udp(socket) => match UdpSocket::from_std(socket) {
                    Ok(socket) => ports.push(Box::pin(serve_udp(
                        socket,
                        to,
                        UDP_IDLE_TIMEOUT,
                        UDP_MAX_SESSIONS,
                    ))),
                    Err(error) => tracing::warn!(
                        %error, port = mapping.host_port, "cannot serve published udp port"
                    ),
                },
            }
        }
        while ports.next().await.is_some() {}
        std::future::pending::<()>().await;
    }
}

/// Accepts on one published TCP port forever; connections live in a JoinSet
/// owned by this future, so they are aborted when it is dropped.
async fn serve_tcp(listener: TcpListener, target: SocketAddr) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    connections.spawn(relay_tcp(client, peer, target));
                }
                Err(error) => {
                    tracing::debug!(%error, %target, "accepting a published tcp connection");
                    // Out of file descriptors and the like: do not spin.
                    if error.kind() != io::ErrorKind::ConnectionAborted {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One forwarded TCP connection.
async fn relay_tcp(mut client: TcpStream, peer: SocketAddr, target: SocketAddr) {
    let _ = client.set_nodelay(true);
    let mut upstream =
        match tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%error, %peer, %target, "connecting a published port");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, %target, "connecting a published port timed out");
                return;
            }
        };
    let _ = upstream.set_nodelay(true);
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%error, %peer, %target, "relaying a published port");
    }
}

/// Relays one published UDP port forever. The host socket stays owned by this
/// future (sessions send their replies through a channel), so dropping it
/// frees the port at once.
async fn serve_udp(host: UdpSocket, target: SocketAddr, idle: Duration, max_sessions: usize) {
    let (reply_tx, mut reply_rx) = mpsc::channel::<(SocketAddr, Vec<u8>)>(REPLY_QUEUE);
    let mut sessions: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut tasks: JoinSet<SocketAddr> = JoinSet::new();
    let mut full_warned = false;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            received = host.recv_from(&mut buf) => match received {
                Ok((n, client)) => {
                    let datagram = buf[..n].to_vec();
                    if let Some(session) = sessions.get(&client) {
                        match session.try_send(datagram) {
                            Ok(()) => continue,
                            // A busy session: drop the datagram, as a full
                            // socket buffer would.
                            Err(mpsc::error::TrySendError::Full(_)) => continue,
                            // It just expired: start a new one below.
                            Err(mpsc::error::TrySendError::Closed(datagram)) => {
                                sessions.remove(&client);
                                start_session(
                                    &mut sessions, &mut tasks, &reply_tx, client, target,
                                    datagram, idle, max_sessions, &mut full_warned,
                                ).await;
                            }
                        }
                    } else {
                        start_session(
                            &mut sessions, &mut tasks, &reply_tx, client, target,
                            datagram, idle, max_sessions, &mut full_warned,
                        ).await;
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, %target, "receiving on a published udp port");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some((client, datagram)) = reply_rx.recv() => {
                if let Err(error) = host.send_to(&datagram, client).await {
                    tracing::debug!(%error, %client, "replying on a published udp port");
                }
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(client) = done {
                    // Only if no newer session took its place.
                    if sessions.get(&client).is_some_and(|s| s.is_closed()) {
                        sessions.remove(&client);
                    }
                }
            }
        }
    }
}

/// Opens a session for a new client and hands it its first datagram, unless
/// there are `max_sessions` already (then the datagram is dropped).
#[allow(clippy::too_many_arguments)]
async fn start_session(
    sessions: &mut HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    tasks: &mut JoinSet<SocketAddr>,
    replies: &mpsc::Sender<(SocketAddr, Vec<u8>)>,
    client: SocketAddr,
    target: SocketAddr,
    first: Vec<u8>,
    idle: Duration,
    max_sessions: usize,
    full_warned: &mut bool,
) {
    // Expired sessions not yet reaped do not count.
    sessions.retain(|_, s| !s.is_closed());
    if sessions.len() >= max_sessions {
        if !*full_warned {
            tracing::warn!(%target, max_sessions, "too many udp clients; dropping datagrams of new ones");
            *full_warned = true;
        }
        return;
    }
    *full_warned = false;
    let upstream = match connect_udp(target).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::debug!(%error, %client, %target, "opening a udp session");
            return;
        }
    };
    let (tx, rx) = mpsc::channel(SESSION_QUEUE);
    // Cannot fail: the receiver is alive and the queue empty.
    let _ = tx.try_send(first);
    sessions.insert(client, tx);
    tasks.spawn(udp_session(client, upstream, rx, replies.clone(), idle));
}

async fn connect_udp(target: SocketAddr) -> io::Result<UdpSocket> {
    let local = match target {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    Ok(socket)
}

/// One UDP client: datagrams from `rx` go to the target, replies go back
/// through `replies`; ends after `idle` without traffic either way. Returns
/// the client's address so the port's loop can forget it.
async fn udp_session(
    client: SocketAddr,
    upstream: UdpSocket,
    mut rx: mpsc::Receiver<Vec<u8>>,
    replies: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    idle: Duration,
) -> SocketAddr {
    let expiry = tokio::time::sleep(idle);
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            datagram = rx.recv() => {
                let Some(datagram) = datagram else { break };
                match upstream.send(&datagram).await {
                    Ok(_) => {}
                    // An ICMP error from an earlier datagram (nothing listens yet).
                    Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(error) => {
                        tracing::debug!(%error, %client, "sending to the container");
                    }
                }
                expiry.as_mut().reset(tokio::time::Instant::now() + idle);
            }
            ready = upstream.readable() => {
                if ready.is_err() {
                    break;
                }
                // A buffer only while a datagram is there: idle sessions hold none.
                let mut datagram = vec![0u8; MAX_DATAGRAM];
                match upstream.try_recv(&mut datagram) {
                    Ok(n) => {
                        datagram.truncate(n);
                        datagram.shrink_to_fit();
                        if replies.send((client, datagram)).await.is_err() {
                            break;
                        }
                        expiry.as_mut().reset(tokio::time::Instant::now() + idle);
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(error) => {
                        tracing::debug!(%error, %client, "receiving from the container");
                        break;
                    }
                }
            }
            () = &mut expiry => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    fn m(host_ip: IpAddr, host_port: u16, container_port: u16, protocol: Protocol) -> PortMapping {
        PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        }
    }

    #[test]
    fn protocol_text() {
        assert_eq!(Protocol::Tcp.to_string(), "tcp");
        assert_eq!(Protocol::Udp.to_string(), "udp");
        assert_eq!("udp".parse::<Protocol>(), Ok(Protocol::Udp));
        assert_eq!("TCP".parse::<Protocol>(), Ok(Protocol::Tcp));
        let err = "sctp".parse::<Protocol>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid protocol "sctp": use tcp or udp"#
        );
        assert_eq!(serde_json::to_string(&Protocol::Udp).unwrap(), r#""udp""#);
        let mapping = m(LOCAL, 8080, 80, Protocol::Tcp);
        let json = serde_json::to_string(&mapping).unwrap();
        assert_eq!(
            json,
            r#"{"host_ip":"127.0.0.1","host_port":8080,"container_port":80,"protocol":"tcp"}"#
        );
        assert_eq!(serde_json::from_str::<PortMapping>(&json).unwrap(), mapping);
    }

    #[test]
    fn publish_good() {
        use Protocol::{Tcp, Udp};
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let cases: Vec<(&str, Vec<PortMapping>)> = vec![
            ("80", vec![m(ANY, 0, 80, Tcp)]),
            ("8080:80", vec![m(ANY, 8080, 80, Tcp)]),
            ("0:80", vec![m(ANY, 0, 80, Tcp)]),
            ("127.0.0.1:8080:80", vec![m(LOCAL, 8080, 80, Tcp)]),
            ("127.0.0.1::80", vec![m(LOCAL, 0, 80, Tcp)]),
            ("::80", vec![m(ANY, 0, 80, Tcp)]),
            (
                "8080-8081:80-81",
                vec![m(ANY, 8080, 80, Tcp), m(ANY, 8081, 81, Tcp)],
            ),
            ("80-81", vec![m(ANY, 0, 80, Tcp), m(ANY, 0, 81, Tcp)]),
            ("8080:80/udp", vec![m(ANY, 8080, 80, Udp)]),
            ("8080:80/tcp", vec![m(ANY, 8080, 80, Tcp)]),
            ("53/udp", vec![m(ANY, 0, 53, Udp)]),
            ("[::1]:8080:80", vec![m(v6, 8080, 80, Tcp)]),
            ("[::1]::80/udp", vec![m(v6, 0, 80, Udp)]),
            ("::1:8080:80", vec![m(v6, 8080, 80, Tcp)]),
            ("[127.0.0.1]:8080:80", vec![m(LOCAL, 8080, 80, Tcp)]),
            (
                "127.0.0.1:7000-7002:8000-8002/udp",
                vec![
                    m(LOCAL, 7000, 8000, Udp),
                    m(LOCAL, 7001, 8001, Udp),
                    m(LOCAL, 7002, 8002, Udp),
                ],
            ),
            ("65535:65535", vec![m(ANY, 65535, 65535, Tcp)]),
            ("65535-65535:1-1", vec![m(ANY, 65535, 1, Tcp)]),
            ("080:080", vec![m(ANY, 80, 80, Tcp)]),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_publish(spec), Ok(want), "{spec}");
        }
        assert_eq!(parse_publish("1-65535").map(|v| v.len()), Ok(65535));
    }

    #[test]
    fn publish_bad() {
        let invalid = |s: &str| PortSpecError::Invalid { spec: s.into() };
        let number = |s: &str, p: &str| PortSpecError::PortNumber {
            spec: s.into(),
            port: p.into(),
        };
        let length = |s: &str| PortSpecError::RangeLength { spec: s.into() };
        let host_ip = |s: &str, ip: &str| PortSpecError::HostIp {
            spec: s.into(),
            ip: ip.into(),
        };
        let protocol = |s: &str, p: &str| PortSpecError::Protocol {
            spec: s.into(),
            protocol: p.into(),
        };
        let range = |s: &str, r: &str| PortSpecError::Range {
            spec: s.into(),
            range: r.into(),
        };
        let cases = vec![
            ("", invalid("")),
            ("x", invalid("x")),
            ("80:x", invalid("80:x")),
            ("x:80", invalid("x:80")),
            ("8080:", invalid("8080:")),
            ("127.0.0.1:8080:", invalid("127.0.0.1:8080:")),
            (" 80", invalid(" 80")),
            ("+80", invalid("+80")),
            ("80-", invalid("80-")),
            ("-80", invalid("-80")),
            ("80-81-82", invalid("80-81-82")),
            ("[::1]:80", invalid("[::1]:80")),
            ("[::1:8080:80", invalid("[::1:8080:80")),
            ("[::1]:8080:80:90", invalid("[::1]:8080:80:90")),
            ("0", number("0", "0")),
            ("8080:0", number("8080:0", "0")),
            ("65536", number("65536", "65536")),
            ("70000:80", number("70000:80", "70000")),
            ("0-5:80-85", number("0-5:80-85", "0")),
            ("0-1", number("0-1", "0")),
            ("8000-8010:80", length("8000-8010:80")),
            ("8080:80-81", length("8080:80-81")),
            ("0:80-81", length("0:80-81")),
            ("8080-8082:80-81", length("8080-8082:80-81")),
            ("81-80", range("81-80", "81-80")),
            ("9-8:80-81", range("9-8:80-81", "9-8")),
            ("80/sctp", protocol("80/sctp", "sctp")),
            ("80/", protocol("80/", "")),
            ("80/tcp/udp", invalid("80/tcp/udp")),
            ("1.2.3:80:80", host_ip("1.2.3:80:80", "1.2.3")),
            ("a:b:c", host_ip("a:b:c", "a")),
            ("80:80:80:80", host_ip("80:80:80:80", "80:80")),
            ("[]:80:80", host_ip("[]:80:80", "")),
            ("localhost:80:80", host_ip("localhost:80:80", "localhost")),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_publish(spec), Err(want), "{spec}");
        }

        let msg = |s: &str| parse_publish(s).unwrap_err().to_string();
        assert_eq!(
            msg("80:x"),
            r#"invalid port "80:x": use [hostIP:]hostPort[-range]:containerPort[/tcp|udp]"#
        );
        assert_eq!(
            msg("8000-8010:80"),
            r#"port ranges in "8000-8010:80" differ in length: host and container ranges must be equal length, e.g. 8080-8081:80-81"#
        );
        assert_eq!(
            msg("8080:0"),
            r#"invalid port number "0" in port "8080:0": ports are 1-65535"#
        );
        assert_eq!(
            msg("80/sctp"),
            r#"invalid protocol "sctp" in port "80/sctp": use tcp or udp"#
        );
        assert_eq!(
            msg("81-80"),
            r#"invalid port range "81-80" in port "81-80": use start-end with start <= end"#
        );
        assert!(
            msg("1.2.3:80:80").starts_with(r#"invalid host IP "1.2.3" in port "1.2.3:80:80": "#)
        );
        for spec in ["", "80:x", "0", "81-80", "80/x", "x:1:2", "1-2:3"] {
            assert!(!msg(spec).contains('\n'), "{spec}");
        }
    }

    #[test]
    fn exposed() {
        use Protocol::{Tcp, Udp};
        assert_eq!(parse_exposed("80/tcp"), Ok(vec![(80, Tcp)]));
        assert_eq!(parse_exposed("53/udp"), Ok(vec![(53, Udp)]));
        assert_eq!(parse_exposed("8080"), Ok(vec![(8080, Tcp)]));
        assert_eq!(
            parse_exposed("7000-7002/tcp"),
            Ok(vec![(7000, Tcp), (7001, Tcp), (7002, Tcp)])
        );
        let exposed = |s: &str| PortSpecError::Exposed { spec: s.into() };
        assert_eq!(parse_exposed(""), Err(exposed("")));
        assert_eq!(parse_exposed("/tcp"), Err(exposed("/tcp")));
        assert_eq!(parse_exposed("x/tcp"), Err(exposed("x/tcp")));
        assert_eq!(parse_exposed("80/tcp/udp"), Err(exposed("80/tcp/udp")));
        assert_eq!(parse_exposed("8080:80"), Err(exposed("8080:80")));
        assert_eq!(
            parse_exposed("0/tcp"),
            Err(PortSpecError::PortNumber {
                spec: "0/tcp".into(),
                port: "0".into()
            })
        );
        assert_eq!(
            parse_exposed("7002-7000/udp"),
            Err(PortSpecError::Range {
                spec: "7002-7000/udp".into(),
                range: "7002-7000".into()
            })
        );
        assert_eq!(
            parse_exposed("132/sctp"),
            Err(PortSpecError::Protocol {
                spec: "132/sctp".into(),
                protocol: "sctp".into()
            })
        );
        assert_eq!(
            parse_exposed("x").unwrap_err().to_string(),
            r#"invalid exposed port "x": use port[-range][/tcp|udp]"#
        );
    }

    /// A port that was free a moment ago.
    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    }

    #[test]
    fn bind_resolves_port_zero() {
        let bound = bind_all(&[
            m(LOCAL, 0, 80, Protocol::Tcp),
            m(LOCAL, 0, 53, Protocol::Udp),
        ])
        .unwrap();
        let got = bound.mappings();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|p| p.host_port != 0 && p.host_ip == LOCAL));
        assert_eq!(
            (got[0].container_port, got[0].protocol),
            (80, Protocol::Tcp)
        );
        assert_eq!(
            (got[1].container_port, got[1].protocol),
            (53, Protocol::Udp)
        );
        // Really listening / bound.
        std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, got[0].host_port)).unwrap();
        assert!(std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, got[1].host_port)).is_err());
        drop(bound);
        std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, got[1].host_port)).unwrap();
    }

    #[test]
    fn bind_in_use() {
        let held = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let err = bind_all(&[m(LOCAL, port, 80, Protocol::Tcp)]).unwrap_err();
        assert!(
            matches!(err, PortError::InUse { ip, port: p, protocol: Protocol::Tcp } if ip == LOCAL && p == port),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("port {port}/tcp on 127.0.0.1 is already in use")
        );

        // 0.0.0.0 conflicts with a listener on 127.0.0.1 too.
        let err = bind_all(&[m(ANY, port, 80, Protocol::Tcp)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("port {port}/tcp on 0.0.0.0 is already in use")
        );

        let held_udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held_udp.local_addr().unwrap().port();
        let err = bind_all(&[m(LOCAL, port, 53, Protocol::Udp)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("port {port}/udp on 127.0.0.1 is already in use")
        );
    }

    #[test]
    fn bind_other_error() {
        // TEST-NET-1 is not a local address.
        let err =
            bind_all(&[m("192.0.2.1".parse().unwrap(), 8080, 80, Protocol::Tcp)]).unwrap_err();
        assert!(matches!(err, PortError::Bind { .. }), "{err:?}");
        assert_eq!(err.to_string(), "binding 192.0.2.1:8080/tcp");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn bind_all_or_nothing() {
        let first = free_port();
        let held = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = held.local_addr().unwrap().port();
        let err = bind_all(&[
            m(LOCAL, first, 80, Protocol::Tcp),
            m(LOCAL, first, 80, Protocol::Udp),
            m(LOCAL, taken, 81, Protocol::Tcp),
        ])
        .unwrap_err();
        assert!(matches!(err, PortError::InUse { port, .. } if port == taken));
        // The first two were closed again.
        let again = bind_all(&[
            m(LOCAL, first, 80, Protocol::Tcp),
            m(LOCAL, first, 80, Protocol::Udp),
        ])
        .unwrap();
        assert_eq!(again.mappings()[0].host_port, first);

        // The same port twice in one list is in use by the list itself.
        drop(again);
        let err = bind_all(&[
            m(LOCAL, first, 80, Protocol::Tcp),
            m(LOCAL, first, 81, Protocol::Tcp),
        ])
        .unwrap_err();
        assert!(matches!(err, PortError::InUse { .. }), "{err:?}");
        bind_all(&[m(LOCAL, first, 80, Protocol::Tcp)]).unwrap();
    }

    #[test]
    fn serve_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let bound = bind_all(&[]).unwrap();
        let fut = bound.serve(Ipv4Addr::LOCALHOST);
        assert_send(&fut);
    }

    async fn tcp_echo() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    /// Replies to each datagram with the datagram followed by the sender's
    /// port, so the test sees both its own data and which session carried it.
    async fn udp_echo() -> u16 {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let mut reply = buf[..n].to_vec();
                reply.extend_from_slice(format!("@{}", from.port()).as_bytes());
                let _ = socket.send_to(&reply, from).await;
            }
        });
        port
    }

    fn pattern(len: usize) -> Vec<u8> {
        let mut x: u32 = 0x1234_5678;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    async fn round_trip(port: u16, data: &[u8]) -> Vec<u8> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        let (mut r, mut w) = stream.into_split();
        let to_send = data.to_vec();
        let writer = tokio::spawn(async move {
            w.write_all(&to_send).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        writer.await.unwrap();
        back
    }

    #[tokio::test]
    async fn tcp_round_trip_and_release() {
        let echo = tcp_echo().await;
        let bound = bind_all(&[m(LOCAL, 0, echo, Protocol::Tcp)]).unwrap();
        let host_port = bound.mappings()[0].host_port;
        let mut serve = Box::pin(bound.serve(Ipv4Addr::LOCALHOST));

        let data = pattern(1 << 20);
        let test = async {
            let (a, b) = tokio::join!(round_trip(host_port, &data), round_trip(host_port, b"hi"));
            // Keep a connection open across the drop below.
            let open = TcpStream::connect((Ipv4Addr::LOCALHOST, host_port))
                .await
                .unwrap();
            (a, b, open)
        };
        let (back, small, _open) = tokio::select! {
            r = test => r,
            () = &mut serve => unreachable!("serve returned"),
        };
        assert_eq!(back.len(), data.len());
        assert!(back == data, "data differs");
        assert_eq!(small, b"hi");

        // Dropping the future frees the port at once, even with a connection open.
        drop(serve);
        let again = bind_all(&[m(LOCAL, host_port, echo, Protocol::Tcp)]).unwrap();
        drop(again);
    }

    #[tokio::test]
    async fn tcp_connect_failure_closes_client() {
        // Nothing listens on the target port.
        let dead = free_port();
        let bound = bind_all(&[m(LOCAL, 0, dead, Protocol::Tcp)]).unwrap();
        let host_port = bound.mappings()[0].host_port;
        let serve = tokio::spawn(bound.serve(Ipv4Addr::LOCALHOST));
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, host_port))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
        serve.abort();
        let _ = serve.await;
        bind_all(&[m(LOCAL, host_port, dead, Protocol::Tcp)]).unwrap();
    }

    async fn ask(client: &UdpSocket, port: u16, msg: &[u8]) -> Option<String> {
        client
            .send_to(msg, (Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    /// (payload, session source port) of a reply.
    fn split_reply(reply: &str) -> (&str, &str) {
        reply.rsplit_once('@').unwrap()
    }

    #[tokio::test]
    async fn udp_round_trip_and_release() {
        let echo = udp_echo().await;
        let bound = bind_all(&[m(LOCAL, 0, echo, Protocol::Udp)]).unwrap();
        let host_port = bound.mappings()[0].host_port;
        let serve = tokio::spawn(bound.serve(Ipv4Addr::LOCALHOST));

        let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let (ra, rb) = tokio::join!(ask(&a, host_port, b"from a"), ask(&b, host_port, b"from b"));
        let ra = ra.expect("a got no reply");
        let rb = rb.expect("b got no reply");
        let (pa, sa) = split_reply(&ra);
        let (pb, sb) = split_reply(&rb);
        assert_eq!((pa, pb), ("from a", "from b"));
        assert_ne!(sa, sb, "two clients share a session");
        // The same client stays on its session.
        let ra2 = ask(&a, host_port, b"again").await.expect("no second reply");
        assert_eq!(split_reply(&ra2), ("again", sa));
        // A large datagram makes it through whole.
        let big = vec![b'x'; 60_000];
        let rbig = ask(&b, host_port, &big).await.expect("no big reply");
        assert_eq!(split_reply(&rbig).0.len(), 60_000);

        serve.abort();
        let _ = serve.await;
        bind_all(&[m(LOCAL, host_port, echo, Protocol::Udp)]).unwrap();
    }

    #[tokio::test]
    async fn udp_idle_and_cap() {
        let echo = udp_echo().await;
        let host = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let host_port = host.local_addr().unwrap().port();
        let target = SocketAddr::new(LOCAL, echo);
        let idle = Duration::from_millis(100);
        let serve = tokio::spawn(serve_udp(host, target, idle, 1));

        let a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        ask(&a, host_port, b"1").await.expect("no reply");
        // The cap is one session: b is not served while a's is alive.
        assert_eq!(ask(&b, host_port, b"2").await, None);
        // After a's session expired, b gets one.
        tokio::time::sleep(idle * 2).await;
        let second = ask(&b, host_port, b"3")
            .await
            .expect("no reply after expiry");
        assert_eq!(split_reply(&second).0, "3");
        serve.abort();
    }
}
