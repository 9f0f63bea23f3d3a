//! Random ids: container ids, session ids, filesystem UUIDs.

/// `N` bytes from the kernel's random source. Should that ever fail, the time
/// and pid stand in: these ids need to be unique, not secret.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes();
        let pid = std::process::id().to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % t.len()] ^ pid[i % pid.len()].rotate_left(i as u32);
        }
    }
    b
}

/// `N` random bytes as 2N lowercase hex digits.
pub fn random_hex<const N: usize>() -> String {
    hex::encode(random_bytes::<N>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_differ_and_are_hex() {
        let (a, b) = (super::random_hex::<32>(), super::random_hex::<32>());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
