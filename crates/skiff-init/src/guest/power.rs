//! Ending the VM. PID 1 must never exit (the kernel would panic), so every
//! way out goes through here.

use std::time::Duration;

use rustix::system::RebootCommand;

/// Syncs and powers the VM off; QEMU exits.
pub fn off(why: &str) -> ! {
    crate::debug!("powering off: {why}");
    rustix::fs::sync();
    if let Err(e) = rustix::system::reboot(RebootCommand::PowerOff) {
        crate::error!("power off failed: {e}");
    }
    // Only reached if reboot(2) failed: wait instead of exiting, which
    // would panic the kernel.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A fatal error: logged to the console, then power off.
pub fn fatal(what: &str) -> ! {
    crate::error!("fatal: {what}");
    off("fatal error")
}
