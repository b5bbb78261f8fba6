//! Stage 4 of a batch, settling it in Redis once its events are committed (stored or
//! spilled): metrics, re-publish (best effort), dead letters (each with the XACK of its entry
//! in one MULTI), then the XACK of the rest. Nothing here touches Postgres or the spill.

pub mod dlq;
pub mod republish;

use std::time::Duration;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::entry::{Entry, EntryRef};
use crate::metrics::Metrics;
use crate::protocol::{Event, Rejection};
use crate::redis_io::{RedisIoError, StreamClient};
use crate::retry::{self, Backoff, Stopped};
use crate::store::WriteOutcome;
use fdc_common::config::Config;

/// Backoff of a failed dead letter or ack.
pub const BACKOFF: Backoff = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(5));

/// Settles batches: the same for live batches and replayed spill records.
#[derive(Clone)]
pub struct Settle {
    pub client: StreamClient,
    /// The group, the dead-letter streams and their bounds, re-publish.
    pub config: Config,
    pub metrics: Metrics,
    /// Cancelled when the shutdown timeout has passed: stop retrying, leave entries pending.
    pub give_up: CancellationToken,
}

impl Settle {
    /// Sends dead letters (retrying Redis until `give_up`) and counts them.
    ///
    /// Each letter goes out with the XACK of its entry in one MULTI, so for entries still
    /// pending in the group (`pending_in_group`), "no longer pending" proves a write whose
    /// reply was lost: a retry skips those instead of writing them twice. Spill replay passes
    /// false: its entries were acknowledged when they were spilled.
    pub async fn dead_letter(
        &self,
        dead: &[(Entry, Rejection)],
        pending_in_group: bool,
    ) -> Result<(), Stopped> {
        let mut first_attempt = true;
        let trimmed = self
            .retry_redis("dead-letter", || {
                let retry = !std::mem::replace(&mut first_attempt, false);
                let mut conn = self.client.ops();
                let config = &self.config;
                async move {
                    let unsent = if retry && pending_in_group {
                        self.still_pending(dead).await?
                    } else {
                        dead.iter().collect()
                    };
                    let target = dlq::DlqTarget {
                        group: &config.ingest.group,
                        dlq_stream: &|s| config.dlq_stream(s),
                        field_bytes: config.ingest.dlq_field_bytes,
                        max_len: config.ingest.dlq_max_len,
                    };
                    dlq::send(&mut conn, &unsent, &target).await
                }
            })
            .await?;
        self.metrics.redis_dlq_trimmed.inc_by(trimmed);
        for (entry, why) in dead {
            self.metrics
                .redis_dlq
                .with_label_values(&[why.reason.code()])
                .inc();
            info!(stream = %entry.at.stream, id = %entry.at.id, reason = why.reason.code(), detail = %why.detail, "dead-lettered");
        }
        Ok(())
    }

    /// The letters whose entries are still pending in the group.
    async fn still_pending<'a>(
        &self,
        dead: &'a [(Entry, Rejection)],
    ) -> Result<Vec<&'a (Entry, Rejection)>, RedisIoError> {
        let mut by_stream: HashMap<&str, Vec<&str>> = HashMap::new();
        for (entry, _) in dead {
            by_stream
                .entry(&entry.at.stream)
                .or_default()
                .push(&entry.at.id);
        }
        let mut pending = HashSet::new();
        for (stream, ids) in by_stream {
            let counts = self.client.delivery_counts(stream, &ids).await?;
            pending.extend(counts.into_keys().map(|id| (stream.to_string(), id)));
        }
        Ok(dead
            .iter()
            .filter(|(entry, _)| {
                pending.contains(&(entry.at.stream.to_string(), entry.at.id.to_string()))
            })
            .collect())
    }

    pub fn record_stored(&self, events: &[Event], outcome: &WriteOutcome) {
        self.metrics
            .events_stored
            .inc_by(outcome.stored.len() as u64);
        self.metrics
            .events_duplicate
            .inc_by(outcome.duplicates as u64);
        let now = now_ns();
        for event in stored_events(events, outcome) {
            let latency = (now - event.ts_ns).max(0) as f64 / 1e9;
            self.metrics.commit_latency_seconds.observe(latency);
        }
        if outcome.duplicates > 0 {
            debug!(
                duplicates = outcome.duplicates,
                "duplicate event ids not stored again"
            );
        }
    }

    /// Best effort: a failed re-publish is logged and counted, never blocks ingest.
    pub async fn republish(&self, events: &[Event], outcome: &WriteOutcome) {
        let config = &self.config.republish;
        if !config.enabled || outcome.stored.is_empty() {
            return;
        }
        let stored = stored_events(events, outcome);
        let mut conn = self.client.ops();
        match republish::publish(&mut conn, &config.stream, config.maxlen, &stored).await {
            Ok(()) => self.metrics.republished.inc_by(stored.len() as u64),
            Err(e) => {
                self.metrics.redis_errors.inc();
                warn!(error = %e, count = stored.len(), "re-publish failed");
            }
        }
    }

    pub async fn ack(&self, acks: &[EntryRef]) -> Result<(), Stopped> {
        let mut by_stream: HashMap<&str, Vec<&str>> = HashMap::new();
        for at in acks {
            by_stream.entry(&at.stream).or_default().push(&at.id);
        }
        for (stream, ids) in by_stream {
            self.retry_redis("ack", || self.client.ack(stream, &ids))
                .await?;
            self.metrics.redis_ack.inc_by(ids.len() as u64);
        }
        Ok(())
    }

    /// Retries a Redis call until it succeeds or `give_up` fires.
    async fn retry_redis<F, Fut, T>(&self, what: &str, mut call: F) -> Result<T, Stopped>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisIoError>>,
    {
        retry::until(
            &mut BACKOFF.delays(),
            &self.give_up,
            || {
                let called = call();
                async move {
                    let value = called.await?;
                    crate::stall::report_progress();
                    Ok(value)
                }
            },
            |e: RedisIoError, _| {
                crate::stall::report_failure(&format_args!("Redis {what} failed: {e}"));
                self.metrics.redis_errors.inc();
                warn!(error = %e, what, "Redis call failed; retrying");
            },
        )
        .await
    }
}

/// The events this batch stored, each id once (a batch may carry the same id twice).
fn stored_events<'a>(events: &'a [Event], outcome: &WriteOutcome) -> Vec<&'a Event> {
    let mut seen = HashSet::with_capacity(outcome.stored.len());
    events
        .iter()
        .filter(|e| outcome.stored.contains(&e.id) && seen.insert(e.id))
        .collect()
}

pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_and_acks_wait_100ms_doubling_to_5s() {
        assert_eq!(
            BACKOFF.first_millis(8),
            [100, 200, 400, 800, 1600, 3200, 5000, 5000]
        );
    }
}
