//! Glue between the ingest pipeline and the spill: opening it from the config,
//! spilling a batch on a Postgres outage, and replaying spilled batches
//! through the writer's normal write path.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::batch::{decode_batch, encode_batch};
use super::{run_replay, ReplayConfig, ReplayFailure, SpillError, SpillHandle, SpillMetrics};
use crate::config::Config;
use crate::health::Health;
use crate::ingest::{OnOutage, Writer};
use crate::metrics::Metrics;
use crate::protocol::{EntriesByRef, Event};
use crate::retry::{Classify, Failure, Halt};
use crate::store::Store;

/// Opens `spill.dir` when configured and registers the spill metrics.
pub async fn open(config: &Config, metrics: &Metrics) -> Result<Option<SpillHandle>, SpillError> {
    let Some(cfg) = config.spill.clone() else {
        return Ok(None);
    };
    let spill_metrics = SpillMetrics::new();
    spill_metrics
        .register(&metrics.registry)
        .map_err(|e| SpillError::Config(format!("registering spill metrics: {e}")))?;
    let cfg_dir = cfg.dir.clone();
    let (handle, report) = SpillHandle::open(cfg, spill_metrics).await?;
    match handle
        .requeue_quarantined(|data| decode_batch(data).is_ok())
        .await
    {
        Ok((0, 0)) => {}
        Ok((requeued, left)) => {
            if requeued > 0 {
                info!(
                    records = requeued,
                    "quarantined spill records this build decodes were put back for replay"
                );
            }
            if left > 0 {
                error!(records = left, dir = %cfg_dir.display(),
                    "quarantined spill records this build cannot decode wait for an operator; see docs/spill.md");
            }
        }
        // Not fatal: the files stay and the next start tries again.
        Err(e) => error!(error = %e, "cannot requeue quarantined spill records"),
    }
    if report.records > 0 {
        info!(
            records = report.records,
            "spilled batches found; they are replayed once Postgres answers"
        );
    }
    Ok(Some(handle))
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

impl Writer {
    /// Replays one spilled batch: stores it through the same isolating write
    /// path as live traffic (duplicates skipped, data-error offenders
    /// dead-lettered). `Outage` leaves the record in the spill for a later
    /// try; `Undecodable` has the replay loop quarantine it.
    pub async fn replay_record(&self, data: Vec<u8>) -> Result<(), ReplayFailure> {
        let mut batch = match decode_batch(&data) {
            Ok(b) => b,
            Err(e) => {
                return Err(ReplayFailure::Undecodable {
                    reason: e.to_string(),
                    data,
                })
            }
        };
        let (outcome, rejected) = match self.store_isolating(&batch.events, OnOutage::Fail).await {
            Ok(r) => r,
            Err(Halt::Failed(_, e)) => return Err(ReplayFailure::Outage(e.to_string())),
            Err(Halt::Stopped) => return Err(ReplayFailure::Outage("shutting down".into())),
        };
        let mut dead = Vec::with_capacity(rejected.len());
        for (event, why) in rejected {
            match batch.entries.remove(&event.source) {
                Some(entry) => dead.push((entry, why)),
                None => warn!(event = %event.id, detail = %why.detail,
                    "Postgres rejected a spilled event whose fields were not kept; not dead-lettered"),
            }
        }
        self.settle.record_stored(&batch.events, &outcome);
        self.settle.republish(&batch.events, &outcome).await;
        if self.settle.dead_letter(&dead, false).await.is_err() {
            return Err(ReplayFailure::Outage("shutting down".into()));
        }
        if let Some(spill) = &self.spill {
            spill
                .metrics()
                .events_replayed
                .inc_by(batch.events.len() as u64);
        }
        Ok(())
    }
}

/// Starts the replay task: it probes Postgres with backoff while it is down and replays
/// spilled batches, oldest first, through `writer`, until `stop` fires.
pub fn spawn_replay(
    writer: Writer,
    store: Store,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let spill = writer.spill.clone()?;
    let writer = Arc::new(writer);
    Some(tokio::spawn(run_replay(
        spill,
        ReplayConfig::default(),
        move || {
            let store = store.clone();
            async move { store.ping(Duration::from_secs(2)).await }
        },
        move |data| {
            let writer = writer.clone();
            async move { writer.replay_record(data).await }
        },
        stop.cancelled_owned(),
    )))
}
