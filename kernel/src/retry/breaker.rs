//! How a lookup on the ingest path (auth, schemas) behaves while Postgres is unavailable: after
//! a failed lookup it stops asking Postgres for a short, growing pause, so that an outage costs
//! at most one failed round trip per pause instead of one per batch (each failed attempt waits
//! up to `postgres.connect_timeout`). Meanwhile entries are decided from the last known state.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Backoff, Delays};

/// First pause after a failure; doubled per consecutive failure up to [`MAX_PAUSE`].
const MIN_PAUSE: Duration = Duration::from_millis(500);
/// Longest pause: once Postgres is back, lookups resume within this time.
pub const MAX_PAUSE: Duration = Duration::from_secs(5);
/// The pauses after consecutive failures.
const PAUSES: Backoff = Backoff::doubling(MIN_PAUSE, MAX_PAUSE);

struct State {
    /// No lookup before this instant (`None`: Postgres answered last time).
    paused_until: Option<Instant>,
    pauses: Delays,
}

impl Default for State {
    fn default() -> State {
        State {
            paused_until: None,
            pauses: PAUSES.delays(),
        }
    }
}

/// A small circuit breaker around the auth lookups.
#[derive(Default)]
pub struct OutageBreaker {
    state: Mutex<State>,
}

impl OutageBreaker {
    /// May we ask Postgres now?
    pub fn allows(&self, now: Instant) -> bool {
        let s = self.state.lock().expect("breaker lock");
        s.paused_until.is_none_or(|t| now >= t)
    }

    /// True while the last lookup failed (an outage is assumed).
    pub fn is_open(&self) -> bool {
        self.state
            .lock()
            .expect("breaker lock")
            .paused_until
            .is_some()
    }

    pub fn success(&self) {
        *self.state.lock().expect("breaker lock") = State::default();
    }

    /// Records a failed lookup; returns the pause before the next attempt.
    pub fn failure(&self, now: Instant) -> Duration {
        let mut s = self.state.lock().expect("breaker lock");
        let pause = s.pauses.next_delay();
        s.paused_until = Some(now + pause);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_bound_and_reset_on_success() {
        let b = OutageBreaker::default();
        let t = Instant::now();
        assert!(b.allows(t) && !b.is_open());
        assert_eq!(b.failure(t), MIN_PAUSE);
        assert!(!b.allows(t + MIN_PAUSE / 2));
        assert!(b.allows(t + MIN_PAUSE));
        assert!(b.is_open());
        let ms = Duration::from_millis;
        let next: Vec<Duration> = (0..5).map(|_| b.failure(t)).collect();
        assert_eq!(next, [1000, 2000, 4000, 5000, 5000].map(ms));
        let mut last = MIN_PAUSE;
        for _ in 0..10 {
            last = b.failure(t);
        }
        assert_eq!(last, MAX_PAUSE);
        b.success();
        assert!(b.allows(t) && !b.is_open());
        assert_eq!(b.failure(t), MIN_PAUSE);
    }
}
