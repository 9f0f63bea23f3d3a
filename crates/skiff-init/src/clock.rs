//! Guest uptime (CLOCK_BOOTTIME) in microseconds, the time base of every
//! timestamp in the protocol.

use rustix::time::{clock_gettime, ClockId};

pub fn boottime_us() -> u64 {
    let t = clock_gettime(ClockId::Boottime);
    (t.tv_sec as u64).saturating_mul(1_000_000) + (t.tv_nsec as u64) / 1_000
}

pub fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

/// A handshake nonce: unique per boot and session. getrandom may block or
/// fail this early in a guest without entropy, so the clock is mixed in and
/// getrandom is only asked not to block.
pub fn nonce() -> String {
    let mut buf = [0u8; 8];
    let random = rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::NONBLOCK)
        .map(|_| u64::from_le_bytes(buf))
        .unwrap_or(0);
    format!("{:x}{:016x}", monotonic_ns(), random)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nonces_differ_and_are_tokens() {
        let (a, b) = (super::nonce(), super::nonce());
        assert_ne!(a, b);
        assert!(a.len() <= 64 && a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
