//! Arbitrary bytes as a layer (plain, gzip- or zstd-wrapped, one or two
//! layers; see `body.rs`): the writer must never panic, and whatever it
//! builds must pass `e2fsck -fn`.
//!
//! Run with `-detect_leaks=0`: a compressed layer is inflated on a scoped
//! thread, and `std::thread::scope` returns once the thread's closure is
//! done, possibly before the OS thread has run its TLS destructors, so
//! LeakSanitizer now and then reports glibc's 32-byte
//! `__cxa_thread_atexit_impl` record of that thread as leaked.

#![no_main]

#[path = "../body.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    body::run(data);
});
