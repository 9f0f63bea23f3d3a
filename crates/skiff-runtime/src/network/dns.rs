//! The name server of a skiff network.
//!
//! There is no daemon: the monitor of every running container binds the
//! network's gateway address, port 53, with `SO_REUSEPORT`, and the kernel
//! hands each query to one of them. All of them read the same allocation
//! records (through [`Names`]), so whichever answers gives the same answer,
//! and answers follow containers as they come and go. Names that are not the
//! network's go to the host's name servers, relayed byte for byte.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tracing::debug;

/// TTL of our answers: short, because containers come and go.
const TTL_SECS: u32 = 5;
/// How long one upstream gets to answer before the next is asked.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwards in flight at once; beyond this queries are dropped (the client
/// retries) rather than letting a dead upstream pile up tasks and sockets.
const MAX_FORWARDS: usize = 256;
/// glibc's MAXNS: name servers past the third are never asked.
const MAX_UPSTREAMS: usize = 3;
/// The classic limit of a DNS answer over UDP; we send no EDNS record, so a
/// client expects no more.
const MAX_ANSWER_LEN: usize = 512;
/// The largest UDP payload, so that no datagram is cut short.
const MAX_DATAGRAM: usize = 65_535;

/// Looks names up in the network's current allocations.
///
/// Called on the serving task for every query, so it should be quick.
pub trait Names: Send + Sync + 'static {
    /// The IPv4 addresses of `name` (lower-cased, no trailing dot) when it is a container's name or alias on this network; None when the name is not ours.
    fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>>;
}

/// Binds a UDP socket on `addr` shared with the other monitors of the network (SO_REUSEADDR + SO_REUSEPORT, non-blocking, registered with tokio).
///
/// Must be called within a tokio runtime. The socket is close-on-exec, so
/// processes the monitor starts do not hold the port.
pub fn bind(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(addr).into())?;
    UdpSocket::from_std(socket.into())
}

/// The host's name servers from a resolv.conf text (`nameserver` lines, IPv4 and IPv6, port 53), in order; at most 3 like glibc. Comments (# ;) ignored.
///
/// Lines that do not parse are skipped, as are IPv6 addresses with a named
/// zone (`fe80::1%eth0`); a numeric zone (`fe80::1%2`) is kept.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            // A comment's first word is `#…` or `;…`, never `nameserver`.
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            parse_nameserver(words.next()?)
        })
        .take(MAX_UPSTREAMS)
        .collect()
}

/// One `nameserver` address, on port 53.
fn parse_nameserver(word: &str) -> Option<SocketAddr> {
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    let (ip, zone) = word.split_once('%')?;
    let ip: Ipv6Addr = ip.parse().ok()?;
    let scope = zone.parse::<u32>().ok()?;
    Some(SocketAddrV6::new(ip, 53, 0, scope).into())
}

/// Answers queries on `socket` until the task is dropped/aborted.
///
/// The network's names are answered here; other names are forwarded to
/// `upstreams` in order, each in its own task so that a slow upstream does not
/// hold up local answers.
pub async fn serve(socket: UdpSocket, names: Arc<dyn Names>, upstreams: Vec<SocketAddr>) {
    serve_with(socket, names, upstreams, UPSTREAM_TIMEOUT).await
}

/// [`serve`] with the upstream timeout as a parameter, so tests can be quick.
async fn serve_with(
    socket: UdpSocket,
    names: Arc<dyn Names>,
    mut upstreams: Vec<SocketAddr>,
    timeout: Duration,
) {
    // Forwarding to ourselves would only bounce the query between monitors.
    if let Ok(local) = socket.local_addr() {
        upstreams.retain(|upstream| *upstream != local);
    }
    let socket = Arc::new(socket);
    let upstreams: Arc<[SocketAddr]> = upstreams.into();
    let forwards = Arc::new(Semaphore::new(MAX_FORWARDS));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, client) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                debug!(%error, "dns: receiving a query");
                // Do not spin should the error persist.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let packet = &buf[..len];
        match handle(packet, names.as_ref()) {
            Action::Ignore => {}
            Action::Reply(reply) => send(&socket, &reply, client).await,
            Action::Forward(request) => {
                let Ok(permit) = forwards.clone().try_acquire_owned() else {
                    debug!(%client, "dns: too many queries forwarded at once, dropping one");
                    continue;
                };
                let socket = socket.clone();
                let upstreams = upstreams.clone();
                let query = packet.to_vec();
                tokio::spawn(async move {
                    let _permit = permit;
                    let reply = match forward(&query, &upstreams, timeout).await {
                        Some(reply) => reply,
                        None => match response(&request, ResponseCode::ServFail).to_vec() {
                            Ok(reply) => reply,
                            Err(error) => {
                                debug!(%error, "dns: encoding SERVFAIL");
                                return;
                            }
                        },
                    };
                    send(&socket, &reply, client).await;
                });
            }
        }
    }
}

/// What to do with one datagram.
enum Action {
    /// Not a query we can answer: say nothing.
    Ignore,
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not our name: ask the upstreams (the parsed query, for a SERVFAIL).
    Forward(Message),
}

/// Decides on one datagram: answers the network's names, NOTIMP for other
/// opcodes, FORMERR for no question, forwarding for the rest.
fn handle(packet: &[u8], names: &dyn Names) -> Action {
    let Ok(request) = Message::from_vec(packet) else {
        return Action::Ignore;
    };
    // Never answer an answer: that could set two servers talking forever.
    if request.message_type() != MessageType::Query {
        return Action::Ignore;
    }
    if request.op_code() != OpCode::Query {
        return reply(response(&request, ResponseCode::NotImp));
    }
    let Some(query) = request.query() else {
        return reply(response(&request, ResponseCode::FormErr));
    };
    let Some(ips) = names.lookup(&normalise(query.name())) else {
        return Action::Forward(request);
    };
    let mut answer = response(&request, ResponseCode::NoError);
    answer.set_authoritative(true);
    // Anything but A is NODATA, not NXDOMAIN: musl gives up on a name whose
    // AAAA lookup says it does not exist, even when its A lookup succeeded.
    if query.query_type() == RecordType::A
        && matches!(query.query_class(), DNSClass::IN | DNSClass::ANY)
    {
        let name = query.name().clone();
        for ip in ips {
            answer.add_answer(Record::from_rdata(name.clone(), TTL_SECS, RData::A(A(ip))));
        }
    }
    reply(answer)
}

/// The name as [`Names::lookup`] wants it: lower-case, no trailing dot.
fn normalise(name: &Name) -> String {
    let name = name.to_ascii().to_ascii_lowercase();
    match name.strip_suffix('.') {
        Some(stripped) => stripped.to_owned(),
        None => name,
    }
}

/// A response to `request`: its id, RD copied, RA set, its (first) question.
fn response(request: &Message, code: ResponseCode) -> Message {
    let mut message = Message::new();
    message
        .set_header(Header::response_from_request(request.header()))
        .set_recursion_available(true)
        .set_response_code(code);
    if let Some(query) = request.query() {
        message.add_query(query.clone());
    }
    message
}

/// Encodes `message`, dropping answers until it fits in a UDP answer.
///
/// No TC flag: it would send the client to TCP, which we do not serve, and
/// some of a name's addresses are more use than none.
fn reply(mut message: Message) -> Action {
    loop {
        let bytes = match message.to_vec() {
            Ok(bytes) => bytes,
            Err(error) => {
                debug!(%error, "dns: encoding an answer");
                return Action::Ignore;
            }
        };
        if bytes.len() <= MAX_ANSWER_LEN || message.answers_mut().pop().is_none() {
            return Action::Reply(bytes);
        }
    }
}

/// Sends `reply` to `client`; a failure only costs the client a retry.
async fn send(socket: &UdpSocket, reply: &[u8], client: SocketAddr) {
    if let Err(error) = socket.send_to(reply, client).await {
        debug!(%error, %client, "dns: sending an answer");
    }
}

/// The first answer from `upstreams`, asked in order, `timeout` each.
async fn forward(query: &[u8], upstreams: &[SocketAddr], timeout: Duration) -> Option<Vec<u8>> {
    for &upstream in upstreams {
        match tokio::time::timeout(timeout, ask(query, upstream)).await {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(error)) => debug!(%error, %upstream, "dns: asking upstream"),
            Err(_) => debug!(%upstream, "dns: upstream did not answer in time"),
        }
    }
    None
}

/// Sends the raw `query` to `upstream` from a fresh ephemeral socket and
/// waits for its answer, which carries the client's id already.
async fn ask(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: only the upstream's datagrams arrive, and a closed port
    // fails at once instead of waiting out the timeout.
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let len = socket.recv(&mut buf).await?;
        // Only a response with the query's id is the answer; anything else
        // is stray, so wait on.
        let is_answer =
            len >= 12 && query.len() >= 2 && buf[..2] == query[..2] && buf[2] & 0x80 != 0;
        if is_answer {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::Mutex;

    /// Names in a map that a test can change while the server runs.
    #[derive(Default)]
    struct MapNames(Mutex<HashMap<String, Vec<Ipv4Addr>>>);

    impl MapNames {
        fn insert(&self, name: &str, ips: &[Ipv4Addr]) {
            self.0.lock().unwrap().insert(name.to_owned(), ips.to_vec());
        }
    }

    impl Names for MapNames {
        fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
            self.0.lock().unwrap().get(name).cloned()
        }
    }

    const LOCALHOST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
    const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

    /// Starts a server on 127.0.0.1 and returns its address.
    fn start(names: Arc<MapNames>, upstreams: Vec<SocketAddr>) -> SocketAddr {
        let socket = bind(LOCALHOST).unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(serve_with(socket, names, upstreams, SHORT_TIMEOUT));
        addr
    }

    /// A fake upstream that answers every query with A 192.0.2.1.
    async fn upstream() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let (len, from) = socket.recv_from(&mut buf).await.unwrap();
                let request = Message::from_vec(&buf[..len]).unwrap();
                let mut answer = response(&request, ResponseCode::NoError);
                let name = request.query().unwrap().name().clone();
                answer.add_answer(Record::from_rdata(name, 60, RData::A(A(UPSTREAM_IP))));
                socket
                    .send_to(&answer.to_vec().unwrap(), from)
                    .await
                    .unwrap();
            }
        });
        addr
    }

    /// An upstream that never answers (kept bound so nothing refuses).
    async fn silent_upstream() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    fn next_id() -> u16 {
        static ID: AtomicU16 = AtomicU16::new(1000);
        ID.fetch_add(1, Ordering::Relaxed)
    }

    fn query(name: &str, kind: RecordType) -> Message {
        let mut message = Message::new();
        message
            .set_id(next_id())
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message
    }

    /// Sends `request` to `server` and returns the parsed answer.
    async fn exchange(server: SocketAddr, request: &Message) -> Message {
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(&request.to_vec().unwrap(), server)
            .await
            .unwrap();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (len, _) = tokio::time::timeout(Duration::from_secs(3), client.recv_from(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(len <= MAX_ANSWER_LEN);
        let answer = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(answer.id(), request.id());
        assert_eq!(answer.message_type(), MessageType::Response);
        answer
    }

    async fn ask_name(server: SocketAddr, name: &str, kind: RecordType) -> Message {
        exchange(server, &query(name, kind)).await
    }

    fn a_records(message: &Message) -> Vec<Ipv4Addr> {
        message
            .answers()
            .iter()
            .filter_map(|record| match record.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    const WEB: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 88, 0, 2), Ipv4Addr::new(10, 88, 0, 3)];

    #[tokio::test]
    async fn answers_a_for_a_known_name() {
        let names = Arc::new(MapNames::default());
        names.insert("web", &WEB);
        let server = start(names, vec![]);

        for name in ["web", "WeB.", "WEB"] {
            let answer = ask_name(server, name, RecordType::A).await;
            assert_eq!(answer.response_code(), ResponseCode::NoError);
            assert!(answer.authoritative());
            assert!(answer.recursion_desired());
            assert!(answer.recursion_available());
            assert_eq!(answer.queries().len(), 1);
            // The question comes back as asked, case and all (as a FQDN).
            let asked = format!("{}.", name.trim_end_matches('.'));
            assert_eq!(answer.queries()[0].name().to_ascii(), asked);
            assert_eq!(a_records(&answer), WEB);
            assert!(answer.answers().iter().all(|r| r.ttl() == TTL_SECS));
        }
    }

    #[tokio::test]
    async fn other_types_of_a_known_name_are_nodata() {
        let names = Arc::new(MapNames::default());
        names.insert("web", &WEB);
        let server = start(names, vec![]);

        for kind in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let answer = ask_name(server, "web", kind).await;
            assert_eq!(answer.response_code(), ResponseCode::NoError);
            assert!(answer.answers().is_empty());
            assert_eq!(answer.queries()[0].query_type(), kind);
        }
    }

    #[tokio::test]
    async fn unknown_names_are_forwarded_and_relayed() {
        let names = Arc::new(MapNames::default());
        let server = start(names, vec![upstream().await]);

        let answer = ask_name(server, "example.test", RecordType::A).await;
        assert_eq!(answer.response_code(), ResponseCode::NoError);
        assert_eq!(a_records(&answer), [UPSTREAM_IP]);
        assert_eq!(answer.answers()[0].ttl(), 60);
    }

    #[tokio::test]
    async fn a_silent_upstream_gives_way_to_the_next() {
        let silent = silent_upstream().await;
        let upstreams = vec![silent.local_addr().unwrap(), upstream().await];
        let server = start(Arc::new(MapNames::default()), upstreams);

        let answer = ask_name(server, "example.test", RecordType::A).await;
        assert_eq!(a_records(&answer), [UPSTREAM_IP]);
    }

    #[tokio::test]
    async fn servfail_when_no_upstream_answers() {
        let silent = silent_upstream().await;
        let names = Arc::new(MapNames::default());
        names.insert("web", &WEB);
        let server = start(names, vec![silent.local_addr().unwrap()]);

        // A forward waits on the silent upstream...
        let pending = tokio::spawn(ask_name(server, "example.test", RecordType::A));
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...while local names are answered at once.
        let local = ask_name(server, "web", RecordType::A).await;
        assert!(!pending.is_finished());
        assert_eq!(a_records(&local), WEB);

        let answer = pending.await.unwrap();
        assert_eq!(answer.response_code(), ResponseCode::ServFail);
        assert_eq!(answer.queries()[0].name().to_ascii(), "example.test.");
        assert!(answer.recursion_available());
    }

    #[tokio::test]
    async fn servfail_without_upstreams() {
        let server = start(Arc::new(MapNames::default()), vec![]);
        let answer = ask_name(server, "example.test", RecordType::A).await;
        assert_eq!(answer.response_code(), ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn answers_follow_changes() {
        let names = Arc::new(MapNames::default());
        let server = start(names.clone(), vec![]);

        let before = ask_name(server, "db", RecordType::A).await;
        assert_eq!(before.response_code(), ResponseCode::ServFail);

        names.insert("db", &[Ipv4Addr::new(10, 88, 0, 9)]);
        let after = ask_name(server, "db.", RecordType::A).await;
        assert_eq!(after.response_code(), ResponseCode::NoError);
        assert_eq!(a_records(&after), [Ipv4Addr::new(10, 88, 0, 9)]);
    }

    #[tokio::test]
    async fn other_opcodes_are_notimp() {
        let server = start(Arc::new(MapNames::default()), vec![]);
        let mut request = query("web", RecordType::A);
        request.set_op_code(OpCode::Status);
        let answer = exchange(server, &request).await;
        assert_eq!(answer.response_code(), ResponseCode::NotImp);
    }

    #[tokio::test]
    async fn malformed_datagrams_and_answers_are_ignored() {
        let names = Arc::new(MapNames::default());
        names.insert("web", &WEB);
        let server = start(names, vec![]);
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();

        let mut response = query("web", RecordType::A);
        response.set_message_type(MessageType::Response);
        let request = query("web", RecordType::A);
        for datagram in [
            vec![1, 2, 3],
            vec![0xff; 40],
            response.to_vec().unwrap(),
            request.to_vec().unwrap(),
        ] {
            client.send_to(&datagram, server).await.unwrap();
        }

        let mut buf = vec![0u8; MAX_DATAGRAM];
        let (len, _) = tokio::time::timeout(Duration::from_secs(3), client.recv_from(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        let answer = Message::from_vec(&buf[..len]).unwrap();
        assert_eq!(answer.id(), request.id());
        assert_eq!(a_records(&answer), WEB);
    }

    #[tokio::test]
    async fn many_addresses_fit_in_one_datagram() {
        let names = Arc::new(MapNames::default());
        let ips: Vec<Ipv4Addr> = (0..200).map(|i| Ipv4Addr::new(10, 88, 1, i)).collect();
        names.insert("many", &ips);
        let server = start(names, vec![]);

        // exchange checks the 512-byte limit.
        let answer = ask_name(server, "many", RecordType::A).await;
        assert!(!answer.answers().is_empty());
        assert!(!answer.truncated());
    }

    #[test]
    fn resolv_conf() {
        let text = "\
# nameserver 9.9.9.9
; nameserver 9.9.9.8
#nameserver 9.9.9.7
search example.com
nameserver 192.0.2.53
nameserver   2001:db8::53   # trailing comment
nameserver not-an-address
nameserver
options ndots:2
\tnameserver\t198.51.100.1
nameserver 203.0.113.1
";
        assert_eq!(
            upstreams_from_resolv_conf(text),
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
                "198.51.100.1:53".parse().unwrap(),
            ]
        );
        assert!(upstreams_from_resolv_conf("").is_empty());
        assert_eq!(
            upstreams_from_resolv_conf("nameserver fe80::1%2\nnameserver fe80::1%eth0\n"),
            [SocketAddr::V6(SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                53,
                0,
                2
            ))]
        );
    }

    #[tokio::test]
    async fn monitors_share_the_address() {
        let first = bind(LOCALHOST).unwrap();
        let SocketAddr::V4(addr) = first.local_addr().unwrap() else {
            panic!("not IPv4");
        };
        let second = bind(addr).unwrap();
        assert_eq!(second.local_addr().unwrap(), SocketAddr::V4(addr));
    }
}
