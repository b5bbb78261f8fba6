//! Stall detection: the reader or a writer lane that keeps failing on the same work.
//!
//! Each worker (the reader, each writer lane) holds a [`StallTicket`]. It reports every failed
//! attempt (`failed`) and every step of progress (`progressed`). A worker whose failures have
//! gone on without progress for `ingest.stall_after` is stalled: `/readyz` names it with its
//! last error and the `kernel_stalled{stage}` gauge reads 1, until the worker progresses.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGaugeVec;
use tokio_util::sync::CancellationToken;

/// The part of the pipeline a worker belongs to (the `stage` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Reader,
    Writer,
}

impl Stage {
    pub const ALL: [Stage; 2] = [Stage::Reader, Stage::Writer];

    pub fn label(self) -> &'static str {
        match self {
            Stage::Reader => "reader",
            Stage::Writer => "writer",
        }
    }
}

/// Longest error text kept for `/readyz`: a reason, not a dump.
const MAX_ERROR_CHARS: usize = 300;

#[derive(Default)]
struct Slot {
    stage: Option<Stage>,
    /// When the current run of failures began; `None` while the worker progresses.
    failing_since: Option<Instant>,
    last_error: String,
}

/// The failing state of every worker, shared by the workers and the readiness check.
#[derive(Clone)]
pub struct StallBoard {
    inner: Arc<Mutex<Board>>,
}

struct Board {
    after: Duration,
    slots: Vec<Slot>,
}

/// A worker that has been failing for `stall_after` or longer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    pub stage: Stage,
    pub for_secs: u64,
    pub last_error: String,
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} stalled for {}s (ingest.stall_after exceeded): {}",
            self.stage.label(),
            self.for_secs,
            self.last_error
        )
    }
}

impl Default for StallBoard {
    fn default() -> Self {
        StallBoard::new(Duration::from_secs(60))
    }
}

impl StallBoard {
    pub fn new(after: Duration) -> StallBoard {
        StallBoard {
            inner: Arc::new(Mutex::new(Board {
                after,
                slots: Vec::new(),
            })),
        }
    }

    /// Sets `ingest.stall_after`.
    pub fn set_after(&self, after: Duration) {
        self.lock().after = after;
    }

    /// A ticket for one worker of `stage`; its slot is freed when the ticket is dropped.
    pub fn ticket(&self, stage: Stage) -> StallTicket {
        let mut board = self.lock();
        let index = match board.slots.iter().position(|s| s.stage.is_none()) {
            Some(free) => free,
            None => {
                board.slots.push(Slot::default());
                board.slots.len() - 1
            }
        };
        board.slots[index] = Slot {
            stage: Some(stage),
            ..Slot::default()
        };
        StallTicket {
            board: self.clone(),
            index,
        }
    }

    /// The workers stalled now, longest first.
    pub fn stalled(&self) -> Vec<Stall> {
        let board = self.lock();
        let now = Instant::now();
        let mut stalls: Vec<Stall> = board
            .slots
            .iter()
            .filter_map(|slot| {
                let since = now.duration_since(slot.failing_since?);
                let stage = slot.stage?;
                (since >= board.after).then(|| Stall {
                    stage,
                    for_secs: since.as_secs(),
                    last_error: slot.last_error.clone(),
                })
            })
            .collect();
        stalls.sort_by_key(|s| std::cmp::Reverse(s.for_secs));
        stalls
    }

    /// Whether any worker of `stage` is stalled now.
    pub fn is_stalled(&self, stage: Stage) -> bool {
        self.stalled().iter().any(|s| s.stage == stage)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One worker's handle on the board.
pub struct StallTicket {
    board: StallBoard,
    index: usize,
}

impl StallTicket {
    /// An attempt failed; the run of failures starts now unless it already has.
    pub fn failed(&self, error: &dyn fmt::Display) {
        let mut text = error.to_string();
        if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
            text.truncate(cut);
            text.push('…');
        }
        let mut board = self.board.lock();
        let slot = &mut board.slots[self.index];
        slot.failing_since.get_or_insert_with(Instant::now);
        slot.last_error = text;
    }

    /// The worker moved on: no longer failing.
    pub fn progressed(&self) {
        let mut board = self.board.lock();
        let slot = &mut board.slots[self.index];
        slot.failing_since = None;
        slot.last_error.clear();
    }
}

impl Drop for StallTicket {
    fn drop(&mut self) {
        self.board.lock().slots[self.index] = Slot::default();
    }
}

tokio::task_local! {
    /// The ticket of the writer lane running this task's batch (see [`report_failure`]).
    static CURRENT: Arc<StallTicket>;
}

/// Runs `work` with `ticket` as the current worker's ticket, for [`report_failure`] and
/// [`report_progress`] called deep inside it.
pub async fn with_ticket<F: std::future::Future>(ticket: Arc<StallTicket>, work: F) -> F::Output {
    CURRENT.scope(ticket, work).await
}

/// Reports a failed attempt on the current ticket; nothing outside [`with_ticket`].
pub fn report_failure(error: &dyn fmt::Display) {
    let _ = CURRENT.try_with(|t| t.failed(error));
}

/// Reports progress on the current ticket; nothing outside [`with_ticket`].
pub fn report_progress() {
    let _ = CURRENT.try_with(|t| t.progressed());
}

/// Keeps `kernel_stalled{stage}` up to date (every 250 ms) until `stop`.
pub async fn publish(board: StallBoard, gauge: IntGaugeVec, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let stalled = board.stalled();
        for stage in Stage::ALL {
            let on = stalled.iter().any(|s| s.stage == stage);
            gauge.with_label_values(&[stage.label()]).set(i64::from(on));
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_failing_past_the_threshold_is_stalled_until_it_progresses() {
        let board = StallBoard::new(Duration::ZERO);
        let reader = board.ticket(Stage::Reader);
        let writer = board.ticket(Stage::Writer);
        assert!(board.stalled().is_empty());
        writer.failed(&"Postgres said no");
        let stalls = board.stalled();
        assert_eq!(stalls.len(), 1);
        assert_eq!(stalls[0].stage, Stage::Writer);
        assert_eq!(stalls[0].last_error, "Postgres said no");
        assert!(!board.is_stalled(Stage::Reader));
        writer.progressed();
        assert!(board.stalled().is_empty());
        reader.failed(&"x".repeat(1000));
        assert_eq!(
            board.stalled()[0].last_error.chars().count(),
            MAX_ERROR_CHARS + 1
        );
        drop(reader);
        assert!(board.stalled().is_empty());
    }

    #[test]
    fn failures_shorter_than_the_threshold_are_not_a_stall() {
        let board = StallBoard::new(Duration::from_secs(3600));
        let t = board.ticket(Stage::Reader);
        t.failed(&"once");
        assert!(board.stalled().is_empty());
    }
}
