//! Container logs: written by the monitor, read by `skiff logs`.
