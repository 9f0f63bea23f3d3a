//! Where skiff-init's messages go: /dev/console in the guest (the host reads
//! it from the VM's serial console), stderr on a host. Errors are always
//! written; debug lines only with `skiff.debug=1`.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

static DEBUG: AtomicBool = AtomicBool::new(false);
static CONSOLE: OnceLock<Mutex<File>> = OnceLock::new();

/// Sends messages to `console` from now on (stderr until then).
pub fn init(console: Option<File>, debug: bool) {
    DEBUG.store(debug, Ordering::Relaxed);
    if let Some(f) = console {
        let _ = CONSOLE.set(Mutex::new(f));
    }
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

pub fn write_line(line: &str) {
    // One write per line so lines from the kernel do not split ours. The
    // guest uptime, as the kernel stamps its own lines, shows where boot time goes.
    let us = crate::clock::boottime_us();
    let text = format!(
        "[{:5}.{:06}] skiff-init: {line}\n",
        us / 1_000_000,
        us % 1_000_000
    );
    write_console(&text, &mut std::io::stderr());
}

/// Writes raw text (the probe marker) to the console, without a prefix.
pub fn write_raw(text: &str) {
    write_console(text, &mut std::io::stdout());
}

/// To the console once [`init`] set one, else to `fallback`.
fn write_console(text: &str, fallback: &mut dyn Write) {
    match CONSOLE.get() {
        Some(f) => {
            if let Ok(mut f) = f.lock() {
                let _ = f.write_all(text.as_bytes());
            }
        }
        None => {
            let _ = fallback.write_all(text.as_bytes());
        }
    }
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write_line(&format!($($arg)*)) };
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::write_line(&format!($($arg)*))
        }
    };
}
