//! Everything that only makes sense as PID 1 of a guest: the boot sequence,
//! the control port, switching to the container's root, powering off.

pub mod container_root;
pub mod control_port;
pub mod modules;
pub mod namespaces;
pub mod power;
pub mod signals;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use skiff_proto::PROBE_OK_MARKER;

use crate::agent::{AgentService, Mode as AgentMode};
use crate::clock::boottime_us;
use crate::{cmdline, log, mounts, session};

/// How long the control port may take to appear after the modules loaded.
const PORT_WAIT: Duration = Duration::from_secs(5);

/// Boots the guest's userland and serves the host. Never returns.
pub fn run(init_started_us: u64) -> ! {
    let mounted = mounts::mount_system("/");
    ensure_std_fds();
    let flags = cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    let console = OpenOptions::new()
        .write(true)
        .custom_flags(OFlags::NOCTTY.bits() as i32)
        .open("/dev/console")
        .ok();
    log::init(console, flags.debug);
    if let Err(e) = mounted {
        crate::error!("{e}");
    }
    if flags.probe {
        log::write_raw(&format!("{PROBE_OK_MARKER}\n"));
        power::off("probe done");
    }
    crate::debug!("started at {init_started_us} us");
    modules::load_all();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => power::fatal(&format!("starting the runtime: {e}")),
    };
    runtime.block_on(async move {
        let agent = match AgentService::new(AgentMode::Guest, init_started_us) {
            Ok(a) => a,
            Err(e) => power::fatal(&format!("starting the reaper: {e}")),
        };
        signals::forward(&agent);
        let port = match control_port::open(PORT_WAIT).await {
            Ok(p) => p,
            Err(e) => power::fatal(&e),
        };
        agent.set_ready_us(boottime_us());
        crate::debug!("control port ready at {} us", boottime_us());
        session::serve_forever(port, agent).await;
    });
    power::fatal("the control channel loop ended")
}

/// The kernel starts init with /dev/console as fds 0-2 only if the
/// initramfs has that node. Without them, the first files opened would
/// become 0-2 and be mistaken for stdio by every child.
fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: only probes whether the descriptor number is open.
        let open =
            rustix::io::fcntl_getfd(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).is_ok();
        if !open {
            // open(2) returns the lowest free number: this one.
            match rustix::fs::open("/dev/null", OFlags::RDWR, Mode::empty()) {
                Ok(null) => std::mem::forget(null),
                Err(_) => return,
            }
        }
    }
}
