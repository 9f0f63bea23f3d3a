//! Restart policies and docker's back-off between restarts.

use std::time::Duration;

use crate::container::config::RestartPolicy;

/// The first delay; it doubles with each restart, up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long starts the back-off over.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// Whether the process that exited with `code` is started again.
/// `restarts`: restarts so far; `stopped`: a user stopped it.
pub fn should_restart(policy: RestartPolicy, code: i32, restarts: u32, stopped: bool) -> bool {
    if stopped {
        return false;
    }
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure { max_retries } => {
            code != 0 && (max_retries == 0 || restarts < max_retries)
        }
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
    }
}

/// The delays between runs.
#[derive(Debug, Default)]
pub struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// The delay before the next start, after a run that lasted `ran`.
    pub fn delay(&mut self, ran: Duration) -> Duration {
        let d = match self.next {
            Some(d) if ran < RESET_AFTER => d,
            _ => FIRST_DELAY,
        };
        self.next = Some((d * 2).min(MAX_DELAY));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        use RestartPolicy::*;
        assert!(!should_restart(No, 1, 0, false));
        let of3 = OnFailure { max_retries: 3 };
        assert!(should_restart(of3, 1, 0, false));
        assert!(should_restart(of3, 1, 2, false));
        assert!(!should_restart(of3, 1, 3, false), "3 restarts, then exited");
        assert!(
            !should_restart(of3, 0, 0, false),
            "success is not a failure"
        );
        assert!(should_restart(OnFailure { max_retries: 0 }, 2, 100, false));
        assert!(should_restart(Always, 0, 50, false));
        assert!(should_restart(UnlessStopped, 0, 0, false));
        for p in [of3, Always, UnlessStopped] {
            assert!(!should_restart(p, 1, 0, true), "{p}: stopped by the user");
        }
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::default();
        let quick = Duration::from_secs(1);
        let delays: Vec<u64> = (0..12).map(|_| b.delay(quick).as_millis() as u64).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000]
        );
        assert_eq!(b.delay(Duration::from_secs(10)), FIRST_DELAY);
        assert_eq!(b.delay(quick), Duration::from_millis(200));
    }
}
