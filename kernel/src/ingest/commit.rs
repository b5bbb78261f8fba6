//! Stage 3 of a batch: committing its events, stored in Postgres (one transaction, events
//! Postgres rejects for their content isolated by splitting the batch) or, during an outage,
//! spilled durably to disk. Nothing here touches Redis.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::spill_record::encode_batch;
use crate::entry::EntriesByRef;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::protocol::{Event, Reason, Rejection};
use crate::retry::{self, Backoff, Classify, Failure, Halt};
use crate::store::{Store, StoreError, WriteOutcome};
use fdc_spill::{SpillError, SpillHandle};

/// Backoff of a Postgres write during an outage.
pub const BACKOFF: Backoff = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(5));

/// What a write does while Postgres is unavailable.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    /// A live batch: spill it (with these entries, for a later DLQ copy) if a spill is
    /// configured and has room, then count it as done; otherwise retry until Postgres is
    /// back or `give_up` fires.
    Live(&'a EntriesByRef),
    /// A replayed spill record: return [`Halt::Failed`] at once; replay keeps the record and
    /// tries again later.
    Replay,
}

/// A committed batch: what Postgres stored (empty for a spilled batch), and the events it
/// rejected for their content, each with its dead-letter reason.
#[derive(Debug, Default)]
pub struct Committed {
    pub stored: WriteOutcome,
    pub rejected: Vec<(Event, Rejection)>,
}

#[derive(Clone)]
pub struct Commit {
    pub store: Store,
    /// Where batches go while Postgres is unavailable (`spill.dir`); `None`: retry instead.
    pub spill: Option<SpillHandle>,
    pub health: Health,
    pub metrics: Metrics,
    /// Cancelled when the shutdown timeout has passed: stop retrying, leave entries pending.
    pub give_up: CancellationToken,
}

impl Commit {
    /// Stores `events`; events Postgres rejects for their content are isolated by splitting
    /// the batch, and returned with the reason. Outages are handled as `mode` says; a batch
    /// split for isolation can be partly stored and partly spilled.
    pub async fn commit(
        &self,
        events: &[Event],
        mode: Mode<'_>,
    ) -> Result<Committed, Halt<StoreError>> {
        let mut outcome = WriteOutcome::default();
        let mut rejected = Vec::new();
        let mut todo: Vec<&[Event]> = vec![events];
        while let Some(part) = todo.pop() {
            if part.is_empty() {
                continue;
            }
            match self.store_retrying(part, mode).await? {
                Ok(done) => {
                    outcome.stored.extend(done.stored);
                    outcome.duplicates += done.duplicates;
                }
                Err(e) if part.len() == 1 => {
                    rejected.push((
                        part[0].clone(),
                        Rejection::new(Reason::Rejected, format!("Postgres rejected it: {e}")),
                    ));
                }
                Err(_) => {
                    let (left, right) = part.split_at(part.len() / 2);
                    todo.push(right);
                    todo.push(left);
                }
            }
        }
        Ok(Committed {
            stored: outcome,
            rejected,
        })
    }

    /// One write, retried while Postgres is unavailable. `Ok(Err(_))` is a data error.
    async fn store_retrying(
        &self,
        events: &[Event],
        mode: Mode<'_>,
    ) -> Result<Result<WriteOutcome, StoreError>, Halt<StoreError>> {
        let mut delays = BACKOFF.delays();
        loop {
            let started = Instant::now();
            let e = match self.store.write_batch(events).await {
                Ok(outcome) => {
                    crate::stall::report_progress();
                    self.health.set_writer_blocked(false);
                    self.metrics.pg_batch_size.observe(events.len() as f64);
                    self.metrics
                        .pg_batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(Ok(outcome));
                }
                Err(e) => e,
            };
            self.metrics.pg_errors.with_label_values(&[e.kind()]).inc();
            if e.classify() != Failure::Outage {
                warn!(error = %e, events = events.len(), "Postgres rejected a batch; isolating");
                return Ok(Err(e));
            }
            crate::stall::report_failure(&e);
            match mode {
                Mode::Replay => return Err(Halt::Failed(Failure::Outage, e)),
                Mode::Live(entries) => {
                    if let Some(spill) = &self.spill {
                        if spill_batch(spill, events, entries, &self.health).await {
                            crate::stall::report_progress();
                            self.health.set_writer_blocked(false);
                            return Ok(Ok(WriteOutcome::default()));
                        }
                    }
                }
            }
            self.health.set_writer_blocked(true);
            let delay = delays.next_delay();
            warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Postgres unavailable; batch kept pending");
            retry::sleep_or_stop(delay, &self.give_up).await?;
        }
    }
}

/// Writes `events` to the spill. True when durable: the caller may then acknowledge
/// their entries. False when the spill is full or failed: the caller keeps retrying
/// Postgres and acknowledges nothing (its bounded queue then stops the reader).
/// `health` learns whether the spill is full, for `/readyz` to say why ingest stopped.
pub async fn spill_batch(
    spill: &SpillHandle,
    events: &[Event],
    entries: &EntriesByRef,
    health: &Health,
) -> bool {
    let record = match encode_batch(events, entries) {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot encode batch for the spill");
            return false;
        }
    };
    let appended = spill.append(record).await;
    health.set_spill_full(matches!(&appended, Err(e) if e.classify() == Failure::Full));
    match appended {
        Ok(id) => {
            spill.metrics().events_written.inc_by(events.len() as u64);
            warn!(events = events.len(), record = %id, "Postgres unavailable; batch spilled to disk");
            true
        }
        Err(e) if e.classify() == Failure::Full => {
            warn!(error = %e, "spill full and Postgres unavailable; ingest paused");
            false
        }
        Err(e) => {
            error!(error = %e, "spill write failed; retrying Postgres instead");
            false
        }
    }
}

impl Classify for SpillError {
    /// `Full` pauses ingest; a directory that cannot be opened stops the kernel; any other
    /// failure of an append is an outage of the spill (the writer retries Postgres instead).
    fn classify(&self) -> Failure {
        match self {
            SpillError::Full { .. } => Failure::Full,
            SpillError::Config(_) | SpillError::Locked { .. } => Failure::Fatal,
            _ => Failure::Outage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_wait_100ms_doubling_to_5s() {
        assert_eq!(
            BACKOFF.first_millis(8),
            [100, 200, 400, 800, 1600, 3200, 5000, 5000]
        );
    }
}
