//! The line handshake that opens a session on the control port.
//!
//! ```text
//! host  -> guest   SKIFF-HELLO <session>\n        (repeated every second until answered)
//! guest -> host    SKIFF-READY <session> <nonce>\n
//! host  -> guest   SKIFF-GO <session> <nonce>\n
//! ```
//! After GO both sides speak HTTP/2. Each side discards whatever precedes the
//! line it waits for: a guest may have unread bytes of a dead host, a host may
//! read the tail of an earlier guest's answers. The guest answers a session
//! once, so repeated HELLOs queued before the guest opened the port cannot be
//! mistaken for HTTP/2. Lines are read a byte at a time so nothing after the
//! final line is consumed.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HELLO: &str = "SKIFF-HELLO";
const READY: &str = "SKIFF-READY";
const GO: &str = "SKIFF-GO";
/// Bytes kept of a line without a newline: the noise of an old HTTP/2 stream
/// may run for kilobytes; only its end can hold our line.
const MAX_LINE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("control channel closed during the handshake")]
    Closed,
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid session id {0:?} (want 1-64 of [A-Za-z0-9_-])")]
    BadSessionId(String),
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads one line (without the newline) and returns it from its last
/// `SKIFF-` on: our lines may follow binary noise of an old stream (an
/// HTTP/2 SETTINGS or GOAWAY frame) with no newline in between. Of a long
/// line only the last [`MAX_LINE`] bytes or so are kept. `Ok(None)` on EOF.
async fn read_line<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    buf.clear();
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        if byte[0] == b'\n' {
            let start = buf.windows(6).rposition(|w| w == b"SKIFF-").unwrap_or(0);
            return Ok(Some(String::from_utf8_lossy(&buf[start..]).into_owned()));
        }
        if buf.len() >= MAX_LINE {
            buf.drain(..MAX_LINE / 2);
        }
        buf.push(byte[0]);
    }
}

/// Host side: opens session `session` on `io` and returns once the guest has
/// answered and been told to go. Apply a timeout around it; it waits for the
/// guest as long as the channel stays open.
pub async fn host_handshake<IO>(io: &mut IO, session: &str) -> Result<(), SessionError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    if !valid_token(session) {
        return Err(SessionError::BadSessionId(session.to_owned()));
    }
    let hello = format!("{HELLO} {session}\n");
    let mut resend = tokio::time::interval(Duration::from_secs(1));
    let mut buf = Vec::with_capacity(MAX_LINE);
    loop {
        let line = tokio::select! {
            _ = resend.tick() => {
                io.write_all(hello.as_bytes()).await?;
                io.flush().await?;
                continue;
            }
            line = read_line(io, &mut buf) => line?,
        };
        let Some(line) = line else {
            return Err(SessionError::Closed);
        };
        let mut words = line.split(' ');
        if words.next() != Some(READY) || words.next() != Some(session) {
            continue;
        }
        let Some(nonce) = words.next().filter(|n| valid_token(n)) else {
            continue;
        };
        io.write_all(format!("{GO} {session} {nonce}\n").as_bytes())
            .await?;
        io.flush().await?;
        return Ok(());
    }
}

/// Guest side: waits for a host to open a session, answers it with `nonce`
/// and returns the session id once the host said GO. A read of 0 bytes means
/// no host is connected to the port yet; it is retried after a short sleep.
pub async fn guest_handshake<IO>(io: &mut IO, nonce: &str) -> Result<String, SessionError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    if !valid_token(nonce) {
        return Err(SessionError::BadSessionId(nonce.to_owned()));
    }
    let mut answered: Option<String> = None;
    let mut buf = Vec::with_capacity(MAX_LINE);
    loop {
        let Some(line) = read_line(io, &mut buf).await? else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut words = line.split(' ');
        match words.next() {
            Some(HELLO) => {
                let Some(sid) = words.next().filter(|s| valid_token(s)) else {
                    continue;
                };
                if answered.as_deref() == Some(sid) {
                    continue;
                }
                io.write_all(format!("{READY} {sid} {nonce}\n").as_bytes())
                    .await?;
                io.flush().await?;
                answered = Some(sid.to_owned());
            }
            Some(GO) => {
                let (Some(sid), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                if answered.as_deref() == Some(sid) && n == nonce {
                    return Ok(sid.to_owned());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fresh_session_after_stale_bytes() {
        let (mut host, mut guest) = tokio::io::duplex(4096);
        // Leftovers of an earlier owner on both sides.
        host.write_all(b"\x00\x00\x12garbage PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nSKIFF-GO old n0\n")
            .await
            .unwrap();
        guest
            .write_all(b"SKIFF-READY old n0\nstale h2 bytes\n")
            .await
            .unwrap();
        let g = tokio::spawn(async move {
            let sid = guest_handshake(&mut guest, "nonce1").await.unwrap();
            let mut rest = [0u8; 5];
            guest.read_exact(&mut rest).await.unwrap();
            (sid, rest)
        });
        host_handshake(&mut host, "s1").await.unwrap();
        host.write_all(b"after").await.unwrap();
        let (sid, rest) = g.await.unwrap();
        assert_eq!(sid, "s1");
        assert_eq!(&rest, b"after");
    }

    #[tokio::test]
    async fn repeated_hello_is_answered_once() {
        let (mut host, mut guest) = tokio::io::duplex(4096);
        // Three HELLOs queued before the guest reads: one READY only.
        host.write_all(b"SKIFF-HELLO s2\nSKIFF-HELLO s2\n")
            .await
            .unwrap();
        let g = tokio::spawn(async move {
            guest_handshake(&mut guest, "n").await.unwrap();
            let mut after = [0u8; 2];
            guest.read_exact(&mut after).await.unwrap();
            guest.write_all(b"ok").await.unwrap();
            after
        });
        host_handshake(&mut host, "s2").await.unwrap();
        host.write_all(b"h2").await.unwrap();
        let mut reply = [0u8; 2];
        host.read_exact(&mut reply).await.unwrap();
        assert_eq!(
            &reply, b"ok",
            "nothing but the single READY preceded the payload"
        );
        assert_eq!(&g.await.unwrap(), b"h2");
    }

    #[tokio::test]
    async fn lines_after_binary_noise_without_newline() {
        let (mut host, mut guest) = tokio::io::duplex(8192);
        // An HTTP/2 SETTINGS/GOAWAY tail of the last session, no newline, then our lines.
        let mut noise = vec![0u8, 0, 6, 4, 0, 0, 0, 0, 0, 0x7f, 0xff];
        noise.extend(std::iter::repeat_n(0xaa, 100));
        host.write_all(&noise).await.unwrap();
        guest.write_all(&noise).await.unwrap();
        let g = tokio::spawn(async move { guest_handshake(&mut guest, "n2").await.unwrap() });
        // The guest answers a session once: a READY lost in the noise would hang.
        tokio::time::timeout(Duration::from_secs(5), host_handshake(&mut host, "s3"))
            .await
            .expect("READY found after the noise")
            .unwrap();
        assert_eq!(g.await.unwrap(), "s3");

        // Kilobytes of noise: only the end of the line is kept, and it holds ours.
        let (mut host, mut guest) = tokio::io::duplex(16384);
        host.write_all(&[0x55; 5000]).await.unwrap();
        guest.write_all(&[0x55; 5000]).await.unwrap();
        let g = tokio::spawn(async move { guest_handshake(&mut guest, "n3").await.unwrap() });
        tokio::time::timeout(Duration::from_secs(5), host_handshake(&mut host, "s4"))
            .await
            .expect("READY found after long noise")
            .unwrap();
        assert_eq!(g.await.unwrap(), "s4");
    }

    #[tokio::test]
    async fn closed_channel_is_an_error() {
        let (mut host, guest) = tokio::io::duplex(64);
        drop(guest);
        assert!(matches!(
            host_handshake(&mut host, "s").await,
            Err(SessionError::Closed) | Err(SessionError::Io(_))
        ));
    }

    #[tokio::test]
    async fn rejects_bad_session_ids() {
        let (mut host, _guest) = tokio::io::duplex(64);
        assert!(matches!(
            host_handshake(&mut host, "a b").await,
            Err(SessionError::BadSessionId(_))
        ));
    }
}
