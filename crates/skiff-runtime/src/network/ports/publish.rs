//! The publisher of a container's ports.
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
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::spec::{PortMapping, Protocol};

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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::spec::tests::{m, ANY, LOCAL};

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
