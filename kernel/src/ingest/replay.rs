//! Spill replay, the second entrance to the pipeline: opening the spill from the config,
//! and the background loop that feeds spilled records, oldest first, through the same
//! commit (in [`Mode::Replay`]) and settle stages as live batches, committing each record in
//! the spill once it is handled. No auth and no holdings: spilled events were authenticated,
//! and their entries acknowledged, when they were spilled. While Postgres is out, it probes
//! with exponential backoff and jitter instead of hammering a recovering server.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::commit::{Commit, Committed, Mode};
use super::settle::Settle;
use super::spill_record::decode_batch;
use crate::metrics::Metrics;
use crate::retry::{Backoff, Delays, Halt};
use crate::store::Store;
use fdc_common::config::Config;
use fdc_spill::{SpillError, SpillHandle, SpillMetrics};

/// How a write attempt of one record ended, as seen by the replay loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayFailure {
    /// Postgres is unavailable: keep the record, probe, try again later.
    Outage(String),
    /// The record passed its checksum but cannot be decoded (e.g. a batch
    /// version this build does not know, after a rollback). Retrying cannot
    /// help and keeping it would block every record behind it, but its Redis
    /// entries are acknowledged: the loop moves it to a quarantine file, and
    /// only then commits it. `data` hands the record bytes back for that.
    Undecodable { reason: String, data: Vec<u8> },
}

#[derive(Debug, Clone, Copy)]
pub struct ReplayConfig {
    /// First probe delay after an outage; doubles up to `max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// How often an empty spill is looked at again (appends also wake it).
    pub idle_poll: Duration,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            idle_poll: Duration::from_secs(1),
        }
    }
}

impl ReplayConfig {
    /// Probe delays after an outage: doubling from `min_delay` to `max_delay`, with jitter.
    fn backoff(&self) -> Delays {
        Backoff::doubling(self.min_delay, self.max_delay)
            .with_jitter()
            .delays()
    }
}

/// Runs until `stop` resolves.
///
/// `write` must return `Ok(())` only when the record is fully handled (its
/// events stored, duplicates skipped, data-error offenders dead-lettered);
/// the record is then committed and may be deleted. `Undecodable` records
/// are committed only after they were copied to a quarantine file. `probe` is a cheap
/// "is Postgres back?" check, called between backoff delays after an outage.
pub async fn run_replay<W, WF, P, PF, S>(
    spill: SpillHandle,
    cfg: ReplayConfig,
    mut probe: P,
    mut write: W,
    stop: S,
) where
    W: FnMut(Vec<u8>) -> WF,
    WF: Future<Output = Result<(), ReplayFailure>>,
    P: FnMut() -> PF,
    PF: Future<Output = bool>,
    S: Future<Output = ()>,
{
    tokio::pin!(stop);
    // Deliveries of an earlier loop that stopped mid-write were not committed.
    let _ = spill.rewind().await;
    loop {
        let record = tokio::select! {
            biased;
            _ = &mut stop => return,
            r = spill.next_record() => r,
        };
        let record = match record {
            Ok(Some(r)) => r,
            Ok(None) => {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = spill.appended() => {}
                    _ = tokio::time::sleep(cfg.idle_poll) => {}
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "spill replay cannot read the spill; retrying");
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(cfg.max_delay) => {}
                }
                continue;
            }
        };
        let outcome = tokio::select! {
            _ = &mut stop => {
                // Not committed: the record stays and is replayed next run.
                return;
            }
            o = write(record.data) => o,
        };
        match outcome {
            Ok(()) => {
                if let Err(e) = spill.commit(record.id).await {
                    // The write is done; a failed commit only means the
                    // record may be replayed again (de-duplicated).
                    warn!(error = %e, record = %record.id, "spill commit failed");
                    let _ = spill.rewind().await;
                }
            }
            Err(ReplayFailure::Undecodable { reason, data }) => {
                let bytes = data.len();
                match spill.quarantine(record.id, data).await {
                    Ok(path) => {
                        error!(
                            record = %record.id, bytes, %reason, quarantine = %path.display(),
                            "undecodable spill record moved to quarantine; see docs/spill.md"
                        );
                        if let Err(e) = spill.commit(record.id).await {
                            warn!(error = %e, record = %record.id, "spill commit failed");
                            let _ = spill.rewind().await;
                        }
                    }
                    Err(e) => {
                        // Never commit (and so delete) it without a copy:
                        // hold replay here and try again.
                        error!(
                            record = %record.id, %reason, error = %e,
                            "cannot quarantine undecodable spill record; replay waits"
                        );
                        let _ = spill.rewind().await;
                        tokio::select! {
                            _ = &mut stop => return,
                            _ = tokio::time::sleep(cfg.max_delay) => {}
                        }
                    }
                }
            }
            Err(ReplayFailure::Outage(why)) => {
                let _ = spill.rewind().await;
                warn!(reason = %why, "spill replay paused: Postgres unavailable");
                let mut delays = cfg.backoff();
                loop {
                    let delay = delays.next_delay();
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    if probe().await {
                        break;
                    }
                }
                info!("Postgres reachable again; resuming spill replay");
            }
        }
    }
}

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
