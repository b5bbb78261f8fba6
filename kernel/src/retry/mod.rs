//! One retry policy and one failure classification for every loop that waits for Redis,
//! Postgres or the spill to come back.
//!
//! [`Backoff`] is a doubling delay between a minimum and a maximum (crate `backon`), with
//! jitter only where a loop asks for it. [`Failure`] says what a caller does with an error;
//! each error type of an adapter implements [`Classify`]. Shutdown is not a failure: a wait
//! that the stop token cuts short returns [`Stopped`].

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

pub mod breaker;

/// What a caller does with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server cannot take the work now, the work itself is fine: retry (or spill).
    Outage,
    /// The work itself is bad: isolate it, dead-letter or quarantine it, never retry it as is.
    Poison,
    /// No room to keep the work: pause, report not ready.
    Full,
    /// Retrying cannot help (bad configuration, a failed migration): stop the task.
    Fatal,
}

/// Errors that know which [`Failure`] they are.
pub trait Classify {
    fn classify(&self) -> Failure;
}

/// A wait cut short by shutdown (the stop or give-up token fired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped")]
pub struct Stopped;

/// How a retried operation ended without a result.
#[derive(Debug)]
pub enum Halt<E> {
    /// Shutdown came first.
    Stopped,
    /// A failure the caller asked not to wait out, with its class.
    Failed(Failure, E),
}

impl<E> From<Stopped> for Halt<E> {
    fn from(_: Stopped) -> Halt<E> {
        Halt::Stopped
    }
}

/// A doubling delay from `min` to `max`, with optional jitter (up to one more delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: bool,
}

impl Backoff {
    /// Doubles from `min` up to `max`, then stays at `max`; no jitter.
    pub const fn doubling(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            jitter: false,
        }
    }

    /// The same delays, each plus a random part of up to itself.
    pub const fn with_jitter(self) -> Backoff {
        Backoff {
            jitter: true,
            ..self
        }
    }

    pub const fn min(&self) -> Duration {
        self.min
    }

    pub const fn max(&self) -> Duration {
        self.max
    }

    /// An endless sequence of delays, starting at `min`.
    pub fn delays(&self) -> Delays {
        Delays {
            backoff: *self,
            inner: self.build(),
        }
    }

    fn build(&self) -> ExponentialBackoff {
        let builder = ExponentialBuilder::new()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .without_max_times();
        if self.jitter {
            builder.with_jitter().build()
        } else {
            builder.build()
        }
    }
}

#[cfg(test)]
impl Backoff {
    /// The first `n` delays in milliseconds: what the timing tests of each loop compare.
    pub(crate) fn first_millis(&self, n: usize) -> Vec<u64> {
        self.delays()
            .take(n)
            .map(|d| d.as_millis() as u64)
            .collect()
    }
}

/// The delays of one [`Backoff`], in order; [`Delays::reset`] starts again at `min`.
#[derive(Debug)]
pub struct Delays {
    backoff: Backoff,
    inner: ExponentialBackoff,
}

impl Delays {
    /// The next delay. Never ends: after `max` it stays at `max`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.inner.next().unwrap_or(self.backoff.max);
        if self.backoff.jitter {
            delay
        } else {
            // `backon` doubles in `f32`: whole milliseconds keep the sequence exact.
            Duration::from_millis((delay.as_secs_f64() * 1000.0).round() as u64)
        }
    }

    /// After a success: the next delay is `min` again.
    pub fn reset(&mut self) {
        self.inner = self.backoff.build();
    }

    /// Waits for the next delay, or returns [`Stopped`] as soon as `stop` fires.
    pub async fn pause(&mut self, stop: &CancellationToken) -> Result<(), Stopped> {
        let delay = self.next_delay();
        sleep_or_stop(delay, stop).await
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

/// Sleeps `delay`, or returns [`Stopped`] as soon as `stop` fires.
pub async fn sleep_or_stop(delay: Duration, stop: &CancellationToken) -> Result<(), Stopped> {
    tokio::select! {
        _ = stop.cancelled() => Err(Stopped),
        _ = tokio::time::sleep(delay) => Ok(()),
    }
}

/// Runs `op` until it succeeds, waiting the next delay of `delays` after each error
/// (`on_error` sees the error and the delay that follows). Every error is retried: an
/// operation that must not retry some errors returns them inside its `Ok`.
pub async fn until<T, E, F, Fut>(
    delays: &mut Delays,
    stop: &CancellationToken,
    mut op: F,
    mut on_error: impl FnMut(E, Duration),
) -> Result<T, Stopped>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                let delay = delays.next_delay();
                on_error(e, delay);
                sleep_or_stop(delay, stop).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn first(backoff: Backoff, n: usize) -> Vec<Duration> {
        backoff.delays().take(n).collect()
    }

    #[test]
    fn reader_delays_double_from_100ms_to_2s() {
        let b = Backoff::doubling(ms(100), ms(2000));
        assert_eq!(
            first(b, 8),
            [100, 200, 400, 800, 1600, 2000, 2000, 2000].map(ms)
        );
    }

    #[test]
    fn write_and_ack_delays_double_from_100ms_to_5s() {
        let b = Backoff::doubling(ms(100), ms(5000));
        assert_eq!(
            first(b, 9),
            [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000].map(ms)
        );
    }

    #[test]
    fn startup_delays_double_from_200ms_to_5s() {
        let b = Backoff::doubling(ms(200), ms(5000));
        assert_eq!(first(b, 7), [200, 400, 800, 1600, 3200, 5000, 5000].map(ms));
    }

    #[test]
    fn auth_delays_keep_their_bounds() {
        // last_seen flush: 1 s to 10 s; registration restart: 200 ms to 10 s; breaker: 500 ms
        // to 5 s.
        assert_eq!(
            first(Backoff::doubling(ms(1000), ms(10_000)), 6),
            [1000, 2000, 4000, 8000, 10_000, 10_000].map(ms)
        );
        assert_eq!(
            first(Backoff::doubling(ms(200), ms(10_000)), 8),
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000].map(ms)
        );
        assert_eq!(
            first(Backoff::doubling(ms(500), ms(5000)), 6),
            [500, 1000, 2000, 4000, 5000, 5000].map(ms)
        );
    }

    #[test]
    fn long_runs_stay_at_the_maximum() {
        let mut d = Backoff::doubling(ms(100), ms(2000)).delays();
        let last = (0..10_000).map(|_| d.next_delay()).last();
        assert_eq!(last, Some(ms(2000)));
    }

    #[test]
    fn reset_starts_again_at_the_minimum() {
        let mut d = Backoff::doubling(ms(200), ms(10_000)).delays();
        d.next_delay();
        d.next_delay();
        d.reset();
        assert_eq!(d.next_delay(), ms(200));
        assert_eq!(d.next_delay(), ms(400));
    }

    #[test]
    fn jittered_delays_stay_within_one_more_delay() {
        let b = Backoff::doubling(ms(200), ms(5000)).with_jitter();
        let plain = first(Backoff::doubling(ms(200), ms(5000)), 10);
        for _ in 0..50 {
            for (got, base) in b.delays().take(10).zip(&plain) {
                assert!(got >= *base && got <= *base * 2, "{got:?} for {base:?}");
            }
        }
    }

    #[tokio::test]
    async fn until_retries_every_error_with_the_delays_in_order() {
        let stop = CancellationToken::new();
        let mut delays = Backoff::doubling(ms(1), ms(3)).delays();
        let mut seen = Vec::new();
        let mut tries = 0;
        let got = until(
            &mut delays,
            &stop,
            || {
                tries += 1;
                let n = tries;
                async move {
                    if n < 4 {
                        Err(n)
                    } else {
                        Ok(n)
                    }
                }
            },
            |e, delay| seen.push((e, delay)),
        )
        .await;
        assert_eq!(got, Ok(4));
        assert_eq!(seen, [(1, ms(1)), (2, ms(2)), (3, ms(3))]);
    }

    #[tokio::test]
    async fn until_returns_stopped_when_the_token_fires() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut delays = Backoff::doubling(ms(60_000), ms(60_000)).delays();
        let got: Result<(), Stopped> =
            until(&mut delays, &stop, || async { Err("down") }, |_, _| {}).await;
        assert_eq!(got, Err(Stopped));
    }
}
