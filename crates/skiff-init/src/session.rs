//! The control channel's life: handshake, serve, and back to the handshake
//! when the host goes away, on the same descriptor, forever.

use std::time::Duration;

use skiff_proto::session::guest_handshake;

use crate::agent::AgentService;
use crate::clock;
use crate::fd_io::FdIo;

/// Serves sessions on `port` one after another. Only returns if the port
/// itself fails persistently (it never does for a healthy virtio port).
pub async fn serve_forever(port: FdIo, agent: AgentService) {
    loop {
        let mut io = port.clone();
        let nonce = clock::nonce();
        match guest_handshake(&mut io, &nonce).await {
            Ok(session) => crate::debug!("session {session}: handshake done"),
            Err(e) => {
                crate::error!("control channel handshake: {e}");
                // An I/O error on the port: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        // Returns when the HTTP/2 connection has ended (host gone, garbage).
        if let Err(e) = skiff_proto::serve(io, agent.clone()).await {
            crate::error!("control channel: {e}");
        }
        crate::debug!("session ended; waiting for the next host");
    }
}
