//! What a container's processes may do, decided on the host and applied by
//! skiff-init in the guest: the capability set (docker's default, changed by
//! `--cap-add`/`--cap-drop`) and the seccomp program compiled from a
//! docker-format profile (docker's default one unless told otherwise).

/// Capabilities by name and number, sets of them, docker's add/drop rules.
pub mod capabilities;
/// Docker-format seccomp profiles and their classic BPF programs.
pub mod seccomp;
