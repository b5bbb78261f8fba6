//! Keeps the dependency part of readiness current: every [`PROBE_EVERY`] a PING to Redis and a
//! `SELECT 1` to Postgres, each bounded by [`PROBE_TIMEOUT`], recorded in [`Health`]. `/readyz`
//! reads the result and never waits on a server itself, so it answers at once even while a
//! server is silent, with the cause of the last failed probe.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::redis_io::StreamClient;
use crate::store::Store;

pub const PROBE_EVERY: Duration = Duration::from_millis(500);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Probes until `stop`. `redis_shown`: the Redis URL without its password, for messages.
pub async fn probe_dependencies(
    health: Health,
    store: Store,
    redis: StreamClient,
    redis_shown: String,
    stop: CancellationToken,
) {
    loop {
        let (postgres, redis_answer) = tokio::join!(
            store.check(PROBE_TIMEOUT),
            tokio::time::timeout(PROBE_TIMEOUT, redis.check())
        );
        health.set_dependency(
            "Postgres",
            postgres.err().map(|e| crate::error_chain::render(&e)),
        );
        health.set_dependency(
            "Redis",
            match redis_answer {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("Redis at {redis_shown} unreachable: {e}")),
                Err(_) => Some(format!(
                    "Redis at {redis_shown} unreachable: no answer within {}",
                    humantime::format_duration(PROBE_TIMEOUT)
                )),
            },
        );
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}
