//! Glue between the ingest pipeline and the spill: opening it from the config,
//! spilling a batch on a Postgres outage, and replaying spilled batches
//! through the writer's normal write path.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{run_replay, ReplayConfig, ReplayFailure, SpillError, SpillHandle, SpillMetrics};
use crate::config::Config;
use crate::ingest::spill_record::decode_batch;
use crate::ingest::{Commit, Committed, Mode, Settle};
use crate::metrics::Metrics;
use crate::retry::Halt;
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

/// What replay carries a record through: the same commit and settle stages as live batches,
/// without auth or holdings (spilled events were authenticated, and their entries
/// acknowledged, when they were spilled).
struct Replayer {
    commit: Commit,
    settle: Settle,
}

impl Replayer {
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
        let Committed {
            stored: outcome,
            rejected,
        } = match self.commit.commit(&batch.events, Mode::Replay).await {
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
        if let Some(spill) = &self.commit.spill {
            spill
                .metrics()
                .events_replayed
                .inc_by(batch.events.len() as u64);
        }
        Ok(())
    }
}

/// Starts the replay task: it probes Postgres with backoff while it is down and replays
/// spilled batches, oldest first, through `commit` (in [`Mode::Replay`]) and `settle`, until
/// `stop` fires.
pub fn spawn_replay(
    commit: Commit,
    settle: Settle,
    store: Store,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let spill = commit.spill.clone()?;
    let writer = Arc::new(Replayer { commit, settle });
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
