//! The Python runtime's pulse, watched from a Rust thread: the last resort against a hook that
//! holds the GIL and never gives it back (C code that does not return, such as a regular
//! expression backtracking for ever on hostile input). Then no Python thread runs, not even the
//! runtime's own watchdog (`flowtap_host/watchdog.py`), so a thread that needs no GIL has to
//! notice and end the worker.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When the runtime's watchdog last ran, and how long it may stay away (`hook_stuck_timeout`).
#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    last: Mutex<Option<(Instant, Duration)>>,
}

impl Heartbeat {
    /// The runtime's watchdog ran; it may stay away `limit` (zero: for ever).
    pub(crate) fn beat(&self, limit: Duration) {
        *self.lock() = Some((Instant::now(), limit));
    }

    /// How long the runtime has been away, once that is past its limit.
    pub(crate) fn overdue(&self, now: Instant) -> Option<Duration> {
        let (at, limit) = (*self.lock())?;
        let away = now.saturating_duration_since(at);
        (!limit.is_zero() && away > limit).then_some(away)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Duration)>> {
        self.last
            .lock()
            .expect("heartbeat lock is never poisoned: no code panics while holding it")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdue_only_past_a_nonzero_limit_after_a_first_beat() {
        let heartbeat = Heartbeat::default();
        let now = Instant::now();
        assert_eq!(heartbeat.overdue(now + Duration::from_secs(3600)), None);
        heartbeat.beat(Duration::from_secs(2));
        assert_eq!(
            heartbeat.overdue(Instant::now() + Duration::from_secs(1)),
            None
        );
        assert!(
            heartbeat
                .overdue(Instant::now() + Duration::from_secs(3))
                .is_some_and(|away| away >= Duration::from_secs(2))
        );
        heartbeat.beat(Duration::ZERO);
        assert_eq!(heartbeat.overdue(now + Duration::from_secs(3600)), None);
    }
}
