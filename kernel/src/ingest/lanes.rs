//! The writer lanes: each takes a batch off the reader's queue and carries it through the
//! stages, admit (auth, validation), commit (store, or spill), settle (dead letters, acks),
//! then releases its entries from the holdings. Nothing is acknowledged that is not stored,
//! spilled or dead-lettered.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{error, warn};

use super::admit::{Admit, Batch};
use super::commit::{Commit, Committed, Mode};
use super::settle::Settle;
use super::{Chunk, Holdings};
use crate::entry::EntryRef;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::retry::Halt;
use crate::store::StoreError;
use fdc_common::config::IngestConfig;

pub struct Lanes {
    /// `writers` (lanes) and `batch_max_size`.
    pub config: IngestConfig,
    pub metrics: Metrics,
    pub health: Health,
    /// Shared with the reader: entries of a batch are released when the batch is done.
    pub holdings: Holdings,
    /// Auth and validation of each batch.
    pub admit: Admit,
    /// Stores each batch (or spills it during an outage).
    pub commit: Commit,
    /// Metrics, re-publish, dead letters and acks of each batch.
    pub settle: Settle,
}

impl Lanes {
    /// Processes chunks until the reader closes the queue, with `ingest.writers` lanes.
    ///
    /// Each lane takes a batch off the shared queue and carries it through auth, validation,
    /// the Postgres transaction, dead letters and the acknowledgement on its own. While one
    /// lane waits for its commit, another parses and writes the next batch, so Postgres and
    /// the kernel work at the same time and Postgres gets a session per lane. Every
    /// guarantee is per batch (ack after commit, DLQ before ack), so lanes need no
    /// coordination; concurrent writes of one id are settled by `event_index` exactly as
    /// between replicas.
    pub async fn run(self, queue: mpsc::Receiver<Chunk>) {
        let lanes = self.config.writers.max(1);
        let writer = Arc::new(self);
        let queue = Arc::new(tokio::sync::Mutex::new(LaneQueue {
            chunks: queue,
            leftover: Chunk::new(),
        }));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..lanes {
            tasks.spawn(lane(writer.clone(), queue.clone()));
        }
        if let Err(e) = crate::supervise::join_lanes(tasks).await {
            // Ends the writer task: the kernel's supervision stops the process.
            error!(error = %e, "stopping the writer");
        }
    }

    /// Adds the chunks already queued to `batch`, up to `batch_max_size`, without waiting:
    /// a lane that is free writes at once (low latency at low rates), and while lanes are
    /// busy chunks pile up in the queue and make the next batches full (throughput under
    /// load). What does not fit is kept, in order, for the next batch.
    fn take_queued(&self, mut batch: Chunk, queue: &mut LaneQueue) -> Chunk {
        let max = self.config.batch_max_size;
        while batch.len() < max {
            match queue.chunks.try_recv() {
                Ok(more) => {
                    self.metrics.queue_batches.dec();
                    batch.extend(more);
                }
                Err(_) => break,
            }
        }
        if batch.len() > max {
            queue.leftover = batch.split_off(max);
        }
        batch
    }

    /// Carries one batch through; an error leaves its entries pending: the shutdown timeout
    /// (`give_up`) passed ([`Halt::Stopped`]).
    async fn process(&self, batch: Chunk) -> Result<(), Halt<StoreError>> {
        let refs: Vec<EntryRef> = batch.iter().map(|e| e.at.clone()).collect();
        let done = self.process_batch(batch).await;
        // Acknowledged, or left pending for redelivery: either way no longer ours to hold.
        self.holdings.release(&refs);
        done
    }

    async fn process_batch(&self, batch: Chunk) -> Result<(), Halt<StoreError>> {
        let started = Instant::now();
        let mut sorted: Batch = self.admit.admit(batch).await;

        let events = std::mem::take(&mut sorted.events);
        let Committed {
            stored: outcome,
            rejected,
        } = self
            .commit
            .commit(&events, Mode::Live(&sorted.entries))
            .await?;
        for (event, why) in rejected {
            if let Some(entry) = sorted.entries.remove(&event.source) {
                sorted.dead.push((entry, why));
            }
        }
        self.settle.record_stored(&events, &outcome);
        self.settle.republish(&events, &outcome).await;

        self.settle.dead_letter(&sorted.dead, true).await?;

        let mut acks = sorted.settled;
        acks.reserve(sorted.dead.len() + sorted.entries.len());
        acks.extend(sorted.dead.into_iter().map(|(e, _)| e.at));
        acks.extend(sorted.entries.into_keys());
        self.settle.ack(&acks).await?;
        self.metrics
            .stage_seconds
            .with_label_values(&["batch"])
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// The lanes' end of the reader's queue (one lane at a time holds it).
struct LaneQueue {
    chunks: mpsc::Receiver<Chunk>,
    /// The part of a chunk that did not fit the last batch: the next batch starts with it.
    leftover: Chunk,
}

/// One writer lane: batches off the shared queue until it closes or shutdown gives up.
async fn lane(writer: Arc<Lanes>, queue: Arc<tokio::sync::Mutex<LaneQueue>>) {
    // Failed writes, dead letters and acks of the lane's batch are reported here.
    let stall = Arc::new(writer.health.stalls().ticket(crate::stall::Stage::Writer));
    loop {
        let batch = {
            // One idle lane waits on the queue at a time; the others wait for this lock.
            let mut queue = queue.lock().await;
            let first = if queue.leftover.is_empty() {
                let Some(chunk) = queue.chunks.recv().await else {
                    return;
                };
                writer.metrics.queue_batches.dec();
                chunk
            } else {
                std::mem::take(&mut queue.leftover)
            };
            writer.take_queued(first, &mut queue)
        };
        let done = crate::stall::with_ticket(stall.clone(), writer.process(batch)).await;
        if done.is_err() {
            warn!("shutdown timeout reached; unfinished entries stay pending for redelivery");
            return;
        }
        stall.progressed();
    }
}
