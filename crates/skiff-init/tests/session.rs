//! The guest's session loop on one descriptor: a session that breaks (the
//! host went away, garbage on the line) is followed by a fresh handshake on
//! the same port, as with a virtio-serial port that outlives its hosts.

use std::time::Duration;

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use skiff_init::agent::{AgentService, Mode};
use skiff_init::fd_io::FdIo;
use skiff_proto::session::host_handshake;
use skiff_proto::v1::HelloRequest;
use skiff_proto::PROTOCOL_VERSION;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_broken_session_is_followed_by_a_new_one() {
    let (guest, host) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .unwrap();
    skiff_init::log::init(None, std::env::var_os("SKIFF_TEST_DEBUG").is_some());
    let agent = AgentService::new(Mode::Host, 1).unwrap();
    let port = FdIo::new(guest, false).unwrap();
    tokio::spawn(skiff_init::session::serve_forever(port, agent));
    let mut host =
        tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(host)).unwrap();

    // Session 1 ends in garbage instead of an HTTP/2 preface.
    host_handshake(&mut host, "first").await.unwrap();
    host.write_all(b"this is not HTTP/2 at all\r\n\r\n\r\n")
        .await
        .unwrap();

    // Session 2 on the same stream works.
    tokio::time::timeout(Duration::from_secs(10), host_handshake(&mut host, "second"))
        .await
        .expect("the guest answers a new session")
        .unwrap();
    let mut client = skiff_proto::connect(host).await.unwrap();
    let hello = client
        .hello(HelloRequest {
            protocol_version: PROTOCOL_VERSION,
            session_id: "second".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hello.init_started_us, 1);
}
