//! The background replay loop: feeds spilled records, oldest first, to a
//! write function (the pipeline's normal Postgres write path) and commits
//! each one in the spill once the write succeeded. While Postgres is out, it
//! probes with exponential backoff and jitter (crate `backon`) instead of
//! hammering a recovering server.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tracing::{error, info, warn};

use super::SpillHandle;

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
    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .without_max_times()
            .build()
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
                    let delay = delays.next().unwrap_or(cfg.max_delay);
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
