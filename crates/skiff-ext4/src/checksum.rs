//! ext4's crc32c: the raw CRC (no pre/post inversion), seeded by the caller.

/// `crc32c_le(seed, data)` as the kernel and e2fsprogs compute it.
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    // The crate computes the standard (inverted) CRC; undo both inversions.
    !crc32c::crc32c_append(!seed, data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_standard_check_value() {
        // Standard CRC-32C of "123456789" is 0xE3069283 = !raw(!0, data).
        assert_eq!(!super::crc32c(!0, b"123456789"), 0xE306_9283);
    }
}
