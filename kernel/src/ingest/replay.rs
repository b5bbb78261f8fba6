//! Spill replay, the second entrance to the pipeline: opening the spill from the config,
//! and the background loop that feeds spilled records, oldest first, through the same
//! commit (in [`Mode::Replay`]) and settle stages as live batches, committing each record in
//! the spill once it is handled. Consecutive records are replayed together, up to a size
//! budget: an outage at a modest rate spills many small batches, and one Postgres commit per
//! small batch would replay them far slower than live traffic is stored. No auth and no
//! holdings: spilled events were authenticated, and their entries acknowledged, when they were
//! spilled. While Postgres is out, it probes with exponential backoff (capped at a second) and
//! jitter instead of hammering a recovering server.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::commit::{Commit, Committed, Mode};
use super::settle::Settle;
use super::spill_record::{decode_batch, SpilledBatch};
use crate::metrics::Metrics;
use crate::retry::{Backoff, Delays, Halt};
use crate::store::Store;
use fdc_common::config::Config;
use fdc_spill::{RecordId, SpillError, SpillHandle, SpillMetrics};

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
    /// Records written together at most (one Postgres transaction), and their bytes: the group
    /// closes at whichever is reached first (a record is never split).
    pub group_records: usize,
    pub group_bytes: usize,
    /// Groups written at once (see [`run_replay`]); 1 writes them one after another.
    pub groups_in_flight: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
            idle_poll: Duration::from_secs(1),
            group_records: 1024,
            group_bytes: 4 << 20,
            groups_in_flight: 2,
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

/// A group's write, running as its own task so it goes on while the loop reads the next group.
struct InFlight {
    ids: Vec<RecordId>,
    write: JoinHandle<Result<u64, ReplayFailure>>,
}

/// Stops every write still running (a stop, or a failure of an earlier group): an unfinished
/// write is rolled back, or found stored by the next try (Postgres de-duplicates).
fn abort_all(in_flight: &mut VecDeque<InFlight>) {
    for group in in_flight.drain(..) {
        group.write.abort();
    }
}

/// Runs until `stop` resolves.
///
/// `write` gets a group of consecutive records and must return `Ok(events)` only when all of
/// them are fully handled (their events stored, duplicates skipped, data-error offenders
/// dead-lettered); the records are then committed, in order, and may be deleted, and the
/// events counted in `kernel_spill_events_replayed_total` (here, in order, so a group written
/// while the one before it failed, and so read again, is not counted twice). It returns
/// `Undecodable` without writing anything when one record of the group cannot be decoded:
/// the loop then takes those records one at a time, so the bad one is quarantined alone (and
/// committed only after it was copied to a quarantine file) and the others are stored.
/// `probe` is a cheap "is Postgres back?" check, called between backoff delays after an outage.
///
/// Up to `cfg.groups_in_flight` writes run at once: the next group is read and its write
/// started while the one before it is still being written, so reading and decoding a group
/// overlap Postgres's work on the previous one. Outcomes are taken oldest first: a group is
/// committed only after every group before it was, and a failure stops the writes after it
/// (they are read again after the rewind).
pub async fn run_replay<W, WF, P, PF, S>(
    spill: SpillHandle,
    cfg: ReplayConfig,
    mut probe: P,
    mut write: W,
    stop: S,
) where
    W: FnMut(Vec<Vec<u8>>) -> WF,
    WF: Future<Output = Result<u64, ReplayFailure>> + Send + 'static,
    P: FnMut() -> PF,
    PF: Future<Output = bool>,
    S: Future<Output = ()>,
{
    tokio::pin!(stop);
    // Deliveries of an earlier loop that stopped mid-write were not committed.
    let _ = spill.rewind().await;
    // Records still to take one at a time, after a group with an undecodable record.
    let mut alone = 0usize;
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    'replay: loop {
        // Start writes until the pipeline is full or the spill has nothing more.
        let depth = if alone > 0 {
            1
        } else {
            cfg.groups_in_flight.max(1)
        };
        while in_flight.len() < depth {
            let (records, bytes) = if alone > 0 {
                (1, 0)
            } else {
                (cfg.group_records, cfg.group_bytes)
            };
            let read = tokio::select! {
                biased;
                _ = &mut stop => {
                    // Not committed: the records stay and are replayed next run.
                    abort_all(&mut in_flight);
                    return;
                }
                r = spill.next_records(records, bytes) => r,
            };
            let group = match read {
                Ok(group) if !group.is_empty() => group,
                Ok(_) => break,
                // With writes running, the error is met again (and handled) after them.
                Err(_) if !in_flight.is_empty() => break,
                Err(e) => {
                    warn!(error = %e, "spill replay cannot read the spill; retrying");
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(cfg.max_delay) => {}
                    }
                    continue 'replay;
                }
            };
            alone = alone.saturating_sub(1);
            let (ids, data) = group.into_iter().map(|r| (r.id, r.data)).unzip();
            in_flight.push_back(InFlight {
                ids,
                write: tokio::spawn(write(data)),
            });
        }
        let Some(oldest) = in_flight.front_mut() else {
            tokio::select! {
                _ = &mut stop => return,
                _ = spill.appended() => {}
                _ = tokio::time::sleep(cfg.idle_poll) => {}
            }
            continue;
        };
        let outcome = tokio::select! {
            _ = &mut stop => {
                abort_all(&mut in_flight);
                return;
            }
            o = &mut oldest.write => o.unwrap_or_else(|e| {
                Err(ReplayFailure::Outage(format!("replay write failed: {e}")))
            }),
        };
        let Some(InFlight { ids, .. }) = in_flight.pop_front() else {
            continue;
        };
        if outcome.is_err() {
            // The writes after a failed group are read again after the rewind below.
            abort_all(&mut in_flight);
        }
        match outcome {
            Ok(events) => {
                spill.metrics().events_replayed.inc_by(events);
                // Committing the group's last record commits every record delivered before it.
                let last = ids[ids.len() - 1];
                if let Err(e) = spill.commit(last).await {
                    // The write is done; a failed commit only means the
                    // records may be replayed again (de-duplicated).
                    warn!(error = %e, record = %last, "spill commit failed");
                    abort_all(&mut in_flight);
                    let _ = spill.rewind().await;
                }
            }
            Err(ReplayFailure::Undecodable { .. }) if ids.len() > 1 => {
                // Nothing of the group was written: take its records one at a time.
                let _ = spill.rewind().await;
                alone = ids.len();
            }
            Err(ReplayFailure::Undecodable { reason, data }) => {
                let record_id = ids[0];
                let bytes = data.len();
                match spill.quarantine(record_id, data).await {
                    Ok(path) => {
                        error!(
                            record = %record_id, bytes, %reason, quarantine = %path.display(),
                            "undecodable spill record moved to quarantine; see docs/spill.md"
                        );
                        if let Err(e) = spill.commit(record_id).await {
                            warn!(error = %e, record = %record_id, "spill commit failed");
                            let _ = spill.rewind().await;
                        }
                    }
                    Err(e) => {
                        // Never commit (and so delete) it without a copy:
                        // hold replay here and try again.
                        error!(
                            record = %record_id, %reason, error = %e,
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
    /// Concurrent writes a group is split into (`ingest.writers`, at most [`MAX_LANES`]).
    lanes: usize,
    /// `lanes` permits, shared by the groups in flight: a group's lanes wait for the ones of
    /// the group before it (the semaphore is fair), so replay never writes more than `lanes`
    /// batches at once.
    permits: Semaphore,
}

/// Decodes every record of a group, or hands back the first one that does not decode.
fn decode_group(records: Vec<Vec<u8>>) -> Result<Vec<SpilledBatch>, ReplayFailure> {
    let mut decoded = Vec::with_capacity(records.len());
    for data in records {
        match decode_batch(&data) {
            Ok(b) => decoded.push(b),
            Err(e) => {
                return Err(ReplayFailure::Undecodable {
                    reason: e.to_string(),
                    data,
                })
            }
        }
    }
    Ok(decoded)
}

impl Replayer {
    /// Replays a group of spilled batches and returns how many events they held: decodes them
    /// all, then stores their events in
    /// `lanes` concurrent batches through the same isolating write path as live traffic
    /// (duplicates skipped, data-error offenders dead-lettered). `Outage` (from any lane; the
    /// others may have stored theirs, which a later try finds stored) leaves the records in
    /// the spill for a later try; `Undecodable` (nothing written) has the replay loop take
    /// them one at a time and quarantine the bad one.
    async fn replay_records(self: &Arc<Self>, records: Vec<Vec<u8>>) -> Result<u64, ReplayFailure> {
        // Decoding a group takes milliseconds of CPU: off the async workers.
        let decoded = tokio::task::spawn_blocking(move || decode_group(records))
            .await
            .map_err(|e| ReplayFailure::Outage(format!("replay decoding failed: {e}")))??;
        let events: usize = decoded.iter().map(|b| b.events.len()).sum();
        let per_lane = decoded.len().div_ceil(self.lanes.max(1)).max(1);
        // Dropped (replay stopping mid-write), the set aborts its lanes: as before, an
        // unfinished write is rolled back or found stored by the next run.
        let mut lanes = tokio::task::JoinSet::new();
        let mut decoded = decoded.into_iter();
        while let Some(mut batch) = decoded.next() {
            for more in decoded.by_ref().take(per_lane - 1) {
                batch.events.extend(more.events);
                batch.entries.extend(more.entries);
            }
            let replayer = self.clone();
            lanes.spawn(async move {
                // At most `lanes` batches of all groups in flight write at once, oldest first.
                let _permit = replayer.permits.acquire().await;
                replayer.replay_batch(batch).await
            });
        }
        let mut outcome = Ok(());
        while let Some(lane) = lanes.join_next().await {
            let result = lane
                .unwrap_or_else(|e| Err(ReplayFailure::Outage(format!("replay lane failed: {e}"))));
            if outcome.is_ok() {
                outcome = result;
            }
        }
        // Counted by the replay loop once the whole group is handled: a group retried after
        // one lane's outage would otherwise count the other lanes' events twice.
        outcome.map(|()| events as u64)
    }

    /// Stores one (merged) spilled batch, dead-letters what Postgres rejects, settles.
    async fn replay_batch(&self, mut batch: SpilledBatch) -> Result<(), ReplayFailure> {
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
        Ok(())
    }
}

/// Most concurrent writes replay splits a group into, whatever `ingest.writers` says: replay
/// writes groups of up to 1,024 records, already full, and two writes kept Postgres as busy
/// as it gets (a 200,000-event catch-up replayed 38,610 events/s with two, 29,428 with four;
/// docs/benchmark.md).
const MAX_LANES: usize = 2;

/// Starts the replay task: it probes Postgres with backoff while it is down and replays
/// spilled batches, oldest first, through `commit` (in [`Mode::Replay`]) and `settle`, until
/// `stop` fires. A group is written as `writers` (`ingest.writers`) concurrent batches, at
/// most `MAX_LANES`.
pub fn spawn_replay(
    commit: Commit,
    settle: Settle,
    store: Store,
    writers: usize,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let spill = commit.spill.clone()?;
    let lanes = writers.clamp(1, MAX_LANES);
    let writer = Arc::new(Replayer {
        commit,
        settle,
        lanes,
        permits: Semaphore::new(lanes),
    });
    Some(tokio::spawn(run_replay(
        spill,
        ReplayConfig::default(),
        move || {
            let store = store.clone();
            async move { store.ping(Duration::from_secs(2)).await }
        },
        move |records| {
            let writer = writer.clone();
            async move { writer.replay_records(records).await }
        },
        stop.cancelled_owned(),
    )))
}
