//! `stats`: the guest's CPU and memory use and the sandbox's memory on the host.

use super::{Container, ContainerError, Result};
use crate::agent::GuestStats;
use crate::monitor::client;
use crate::monitor::protocol::{Event, Request};

/// One reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    pub guest: GuestStats,
    pub sandbox_rss: u64,
}

/// What `stats` prints: CPU use between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// 100 per busy CPU, as docker counts.
    pub cpu_percent: f64,
    pub memory_used: u64,
    pub memory_limit: u64,
    pub pids: u32,
    /// The sandbox's (QEMU's) resident memory on the host.
    pub sandbox_rss: u64,
}

impl Stats {
    pub fn between(a: &Sample, b: &Sample) -> Stats {
        let wall = b.guest.now.saturating_sub(a.guest.now);
        let busy = b.guest.cpu_busy.saturating_sub(a.guest.cpu_busy);
        let cpu_percent = if wall.is_zero() {
            0.0
        } else {
            busy.as_secs_f64() / wall.as_secs_f64() * 100.0
        };
        Stats {
            cpu_percent,
            memory_used: b
                .guest
                .memory_total
                .saturating_sub(b.guest.memory_available),
            memory_limit: b.guest.memory_total,
            pids: b.guest.processes,
            sandbox_rss: b.sandbox_rss,
        }
    }
}

pub async fn sample(c: &Container) -> Result<Sample> {
    if !c.status().can_exec() {
        return Err(ContainerError::NotRunning(c.name().to_owned()));
    }
    match client::call(c, &Request::Stats).await? {
        Event::Stats { guest, sandbox_rss } => Ok(Sample { guest, sandbox_rss }),
        _ => Err(ContainerError::Monitor {
            name: c.name().to_owned(),
            message: "unexpected answer to stats".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cpu_is_busy_time_over_wall_time() {
        let g = |now: u64, busy: u64| GuestStats {
            now: Duration::from_millis(now),
            cpu_busy: Duration::from_millis(busy),
            cpus: 2,
            memory_total: 1000,
            memory_available: 400,
            processes: 3,
        };
        let a = Sample {
            guest: g(1000, 100),
            sandbox_rss: 5,
        };
        let b = Sample {
            guest: g(2000, 1600),
            sandbox_rss: 6,
        };
        let s = Stats::between(&a, &b);
        assert!((s.cpu_percent - 150.0).abs() < 1e-9, "{}", s.cpu_percent);
        assert_eq!(
            (s.memory_used, s.memory_limit, s.pids, s.sandbox_rss),
            (600, 1000, 3, 6)
        );
        assert_eq!(Stats::between(&a, &a).cpu_percent, 0.0);
    }
}
