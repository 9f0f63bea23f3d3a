//! Published ports (`-p`, `-P`) of a container: the spec grammar, and the
//! userland publisher the monitor runs.

/// The host sockets bound before boot and forwarded to the container.
pub mod publish;
/// `-p` specs and ExposedPorts keys.
pub mod spec;

pub use publish::{bind_all, Bound, PortError, UDP_IDLE_TIMEOUT, UDP_MAX_SESSIONS};
pub use spec::{parse_exposed, parse_publish, PortMapping, PortSpecError, Protocol};
