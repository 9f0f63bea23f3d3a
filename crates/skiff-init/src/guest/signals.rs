//! Signals sent to PID 1 (by the host through QEMU, or by a process in the
//! guest) are meant for the container: they go to its main process.

use rustix::process::Signal;
use tokio::signal::unix::{signal, SignalKind};

use crate::agent::AgentService;

pub fn forward(agent: &AgentService) {
    let forwarded = [
        (SignalKind::terminate(), Signal::TERM),
        (SignalKind::interrupt(), Signal::INT),
        (SignalKind::hangup(), Signal::HUP),
        (SignalKind::quit(), Signal::QUIT),
        (SignalKind::user_defined1(), Signal::USR1),
        (SignalKind::user_defined2(), Signal::USR2),
    ];
    for (kind, sig) in forwarded {
        let mut stream = match signal(kind) {
            Ok(s) => s,
            Err(e) => {
                crate::error!("cannot catch signal {}: {e}", sig.as_raw());
                continue;
            }
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                agent.forward_signal(sig);
            }
        });
    }
}
