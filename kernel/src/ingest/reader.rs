//! Reading the consumer group: first this consumer's own pending entries (left by a crash or
//! a restart), then new ones; periodically claiming entries a dead replica left idle, and,
//! when `ingest.streams` holds patterns, looking for new streams matching them.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Chunk, Holdings};
use crate::metrics::Metrics;
use crate::protocol::Entry;
use crate::redis_io::{RedisIoError, StreamClient};
use crate::retry::{self, Backoff};
use crate::stall::StallTicket;
use fdc_common::config::{IngestConfig, Skip, StreamSources};

pub struct Reader {
    pub client: StreamClient,
    pub config: IngestConfig,
    /// The names and patterns of `ingest.streams`, and which discovered keys to skip.
    pub sources: StreamSources,
    /// The streams being read; grows as streams matching the patterns appear.
    pub streams: ReadStreams,
    pub metrics: Metrics,
    pub queue: mpsc::Sender<Chunk>,
    pub shutdown: CancellationToken,
    /// Entries handed to the writer and not yet released by it.
    pub holdings: Holdings,
    /// `limits.max_entry_bytes`: what one entry may weigh when sizing a read.
    pub max_entry_bytes: usize,
    /// When the entries in flight are next due for an idle-time refresh while the reader
    /// waits for the writer; one deadline for all waits, so that many short ones still refresh.
    pub next_refresh: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Failed reads and claims go here; `ingest.stall_after` of them without a read makes
    /// the reader stalled.
    pub stall: StallTicket,
}

/// Backoff between failed Redis sessions; a restarted Redis is picked up within a second or
/// two. The delay is not reset by a session that worked for a while.
pub const BACKOFF: Backoff = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(2));

/// The streams the reader reads: the names of `ingest.streams`, then those discovered for
/// its patterns, in the order found. Shared with the housekeeping (per-stream gauges) and the
/// shutdown (leaving the group); never shrinks.
#[derive(Clone, Default)]
pub struct ReadStreams(Arc<RwLock<Vec<String>>>);

impl ReadStreams {
    pub fn new(names: &[String]) -> ReadStreams {
        ReadStreams(Arc::new(RwLock::new(names.to_vec())))
    }

    pub fn list(&self) -> Vec<String> {
        self.0.read().expect("not poisoned").clone()
    }

    pub fn len(&self) -> usize {
        self.0.read().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn add(&self, stream: String) {
        let mut streams = self.0.write().expect("not poisoned");
        if !streams.contains(&stream) {
            streams.push(stream);
        }
    }
}

/// What one session leaves to the next.
#[derive(Default)]
struct Session {
    /// This consumer's own pending entries were re-read (once per process).
    recovered: AtomicBool,
    /// The last claim sweep failed: the next session starts with it.
    claim_failing: AtomicBool,
    /// Keys matching a pattern that are not read, logged once each.
    skipped: Mutex<HashSet<String>>,
}

impl Reader {
    /// Runs until shutdown. Dropping `self.queue` on return tells the writer to finish.
    pub async fn run(self) {
        self.metrics.streams_read.set(self.streams.len() as i64);
        let session = Session::default();
        let _ = retry::until(
            &mut BACKOFF.delays(),
            &self.shutdown,
            || self.run_once(&session),
            |e, _| {
                self.stall.failed(&e);
                self.metrics.redis_errors.inc();
                warn!(error = %e, "redis read failed; retrying");
            },
        )
        .await;
    }

    /// One session: set up groups, recover pending (once per process: after a reconnect our
    /// pending entries are the ones in flight), then read until shutdown or an error.
    /// A claim sweep that failed (`claim_failing`) is retried first, and reads do not count
    /// as progress until it succeeds: it is the same work failing again.
    async fn run_once(&self, session: &Session) -> Result<(), RedisIoError> {
        if self.shutdown.is_cancelled() {
            return Ok(());
        }
        let mut streams = self.streams.list();
        for stream in &streams {
            self.client.ensure_group(stream).await?;
        }
        if !session.recovered.load(Relaxed) {
            for stream in &streams {
                self.recover_own_pending(stream).await?;
            }
            session.recovered.store(true, Relaxed);
        } else {
            for stream in &streams {
                self.recover_orphans(stream).await?;
            }
        }
        // `>` per stream: new entries (built once, grown as streams are found).
        let mut news = vec![">".to_string(); streams.len()];
        let discovering = !self.sources.patterns().is_empty();
        // The first pass at once, so that streams that exist already are read from the start.
        let mut next_discover = Instant::now();
        let mut next_claim = if session.claim_failing.load(Relaxed) {
            Instant::now()
        } else {
            Instant::now() + self.config.claim_interval
        };
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            if discovering && Instant::now() >= next_discover {
                // A failed pass costs nothing but its streams' wait: the next one retries.
                if let Err(e) = self.discover(session).await {
                    self.metrics.redis_errors.inc();
                    warn!(error = %e, "looking for streams matching ingest.streams failed; retrying in ingest.discover_interval");
                }
                next_discover = Instant::now() + self.config.discover_interval;
                streams = self.streams.list();
                news.resize(streams.len(), ">".to_string());
                if self.shutdown.is_cancelled() {
                    return Ok(());
                }
            }
            if Instant::now() >= next_claim {
                session.claim_failing.store(true, Relaxed);
                for stream in &streams {
                    self.claim_idle(stream).await?;
                }
                session.claim_failing.store(false, Relaxed);
                next_claim = Instant::now() + self.config.claim_interval;
            }
            if streams.is_empty() {
                // Only patterns, none matched yet: nothing to read until the next pass.
                self.stall.progressed();
                tokio::select! {
                    _ = tokio::time::sleep_until(next_discover.into()) => {}
                    _ = self.shutdown.cancelled() => {}
                }
                continue;
            }
            let started = Instant::now();
            // Not cancelled on shutdown: a read cut short after Redis delivered would leave
            // its entries pending until this consumer returns. BLOCK is short anyway.
            let entries = self
                .client
                .read(
                    &streams,
                    &news,
                    self.read_count_per_stream(streams.len()),
                    Some(self.config.batch_max_wait),
                )
                .await?;
            self.stall.progressed();
            self.metrics
                .redis_batch_seconds
                .observe(started.elapsed().as_secs_f64());
            if !self.forward(entries).await {
                return Ok(());
            }
        }
    }

    /// One discovery pass: the streams matching the patterns of `ingest.streams` that are not
    /// read yet and are sources (not the kernel's own dead-letter, re-publish or registration
    /// streams) get the group (from their first entry), this consumer's pending entries on
    /// them re-read (a restarted replica), and join the reads.
    async fn discover(&self, session: &Session) -> Result<(), RedisIoError> {
        let mut found = BTreeSet::new();
        for pattern in self.sources.patterns() {
            found.extend(self.client.streams_matching(pattern).await?);
        }
        let known: HashSet<String> = self.streams.list().into_iter().collect();
        for stream in found.into_iter().filter(|s| !known.contains(s)) {
            if let Err(why) = self.sources.check(&stream) {
                if session
                    .skipped
                    .lock()
                    .expect("not poisoned")
                    .insert(stream.clone())
                {
                    let why = match why {
                        Skip::DeadLetters => "a dead-letter stream",
                        Skip::KernelOwn => "a stream the kernel writes (re-publish or registration)",
                        Skip::NoHashTag => "no hash tag: on a Redis Cluster its dead letters could not go to its slot",
                    };
                    info!(stream, why, "a stream matching ingest.streams is not read");
                }
                continue;
            }
            self.client.ensure_group(&stream).await?;
            self.recover_own_pending(&stream).await?;
            self.streams.add(stream.clone());
            self.metrics.streams_read.set(self.streams.len() as i64);
            info!(stream, "reading a stream discovered for ingest.streams");
        }
        Ok(())
    }

    /// Re-reads entries delivered to this consumer name but never acknowledged.
    async fn recover_own_pending(&self, stream: &str) -> Result<(), RedisIoError> {
        let mut cursor = "0".to_string();
        let mut recovered = 0usize;
        loop {
            let mut entries = self
                .client
                .read(
                    &[stream.to_string()],
                    std::slice::from_ref(&cursor),
                    self.read_count(),
                    None,
                )
                .await?;
            let Some(last) = entries.last() else { break };
            cursor = last.at.id.to_string();
            self.fill_delivery_counts(stream, &mut entries).await?;
            recovered += entries.len();
            if !self.forward(entries).await {
                return Ok(());
            }
        }
        if recovered > 0 {
            info!(stream, recovered, "re-read own pending entries");
        }
        Ok(())
    }

    /// After a reconnect: entries pending on us that the writer does not hold were delivered
    /// by a read whose reply was lost. Take them now rather than after `claim_idle`.
    async fn recover_orphans(&self, stream: &str) -> Result<(), RedisIoError> {
        let held: std::collections::HashSet<String> =
            self.holdings.ids(stream).into_iter().collect();
        let limit = held.len() + self.config.batch_max_size;
        let orphans: Vec<String> = self
            .client
            .own_pending_ids(stream, limit)
            .await?
            .into_iter()
            .filter(|id| !held.contains(id))
            .collect();
        if orphans.is_empty() {
            return Ok(());
        }
        let mut entries = self.client.claim(stream, &orphans).await?;
        self.fill_delivery_counts(stream, &mut entries).await?;
        info!(
            stream,
            count = entries.len(),
            "recovered entries a lost read reply left pending"
        );
        self.forward(entries).await;
        Ok(())
    }

    /// XAUTOCLAIM sweep: entries idle past `claim_idle` on any consumer become ours.
    async fn claim_idle(&self, stream: &str) -> Result<(), RedisIoError> {
        // Our own entries still in flight are busy, not idle: reset their idle time first so
        // that neither we nor another replica claims them.
        self.client
            .keep_alive(stream, &self.holdings.ids(stream))
            .await?;
        let mut cursor = "0-0".to_string();
        loop {
            let page = self
                .client
                .autoclaim(stream, self.config.claim_idle, &cursor, self.read_count())
                .await?;
            if !page.deleted.is_empty() {
                // Trimmed while pending: Redis has dropped them from the pending list already.
                warn!(
                    stream,
                    count = page.deleted.len(),
                    "claimed entries were trimmed from the stream"
                );
                self.metrics.redis_trimmed.inc_by(page.deleted.len() as u64);
            }
            let mut entries = page.entries;
            if !entries.is_empty() {
                self.fill_delivery_counts(stream, &mut entries).await?;
                self.metrics.redis_claimed.inc_by(entries.len() as u64);
                info!(stream, count = entries.len(), "claimed idle entries");
                if !self.forward(entries).await {
                    return Ok(());
                }
            }
            if page.next == "0-0" {
                return Ok(());
            }
            cursor = page.next;
        }
    }

    async fn fill_delivery_counts(
        &self,
        stream: &str,
        entries: &mut [Entry],
    ) -> Result<(), RedisIoError> {
        let ids: Vec<&str> = entries.iter().map(|e| &*e.at.id).collect();
        let counts = self.client.delivery_counts(stream, &ids).await?;
        for entry in entries {
            entry.deliveries = counts.get(&*entry.at.id).copied().unwrap_or(1);
        }
        Ok(())
    }

    /// Hands entries to the writer, waiting while the queue is full, then until another
    /// entry of `limits.max_entry_bytes` fits under `ingest.max_inflight_bytes` (backpressure:
    /// the backlog stays in Redis). Returns false when reading must stop: the writer is gone,
    /// or shutdown was asked for (no more pages of pending or idle entries either).
    async fn forward(&self, entries: Vec<Entry>) -> bool {
        let entries = self.holdings.admit(entries);
        if !entries.is_empty() {
            self.metrics.redis_read.inc_by(entries.len() as u64);
            self.metrics.queue_batches.inc();
            if self.keeping_alive(self.queue.send(entries)).await.is_err() {
                self.metrics.queue_batches.dec();
                return false;
            }
        }
        let room = self.holdings.wait_for_room(
            self.config
                .max_inflight_bytes
                .saturating_sub(self.max_entry_bytes),
        );
        tokio::select! {
            _ = self.keeping_alive(room) => {}
            // Nothing more will be read: no need to wait for room.
            _ = self.shutdown.cancelled() => {}
        }
        !self.shutdown.is_cancelled()
    }

    /// Entries to ask Redis for: as many as fit in the room left under
    /// `ingest.max_inflight_bytes` were each as big as allowed, so that entries within
    /// `limits.max_entry_bytes` never take the total over it; at least one (`forward` waits
    /// until one fits), at most `batch_max_size`.
    fn read_count(&self) -> usize {
        let room = self
            .config
            .max_inflight_bytes
            .saturating_sub(self.holdings.bytes());
        (room / self.max_entry_bytes.max(1)).clamp(1, self.config.batch_max_size)
    }

    /// [`Self::read_count`] shared out over `streams` streams: XREADGROUP's COUNT is per
    /// stream, so one read over several streams could otherwise return that many from each.
    /// At least one per stream (at most `streams - 1` entries over the room).
    fn read_count_per_stream(&self, streams: usize) -> usize {
        (self.read_count() / streams.max(1)).max(1)
    }

    /// Runs `work` (a wait for the writer) while refreshing the idle time of the entries in
    /// flight, so that a slow or blocked writer (Postgres down, no spill) does not make them
    /// look abandoned to the other replicas' claim sweep.
    async fn keeping_alive<F: std::future::Future>(&self, work: F) -> F::Output {
        let period = (self.config.claim_idle / 3).max(Duration::from_millis(100));
        let due = || {
            *self
                .next_refresh
                .lock()
                .expect("refresh deadline lock")
                .get_or_insert_with(|| tokio::time::Instant::now() + period)
        };
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tokio::time::sleep_until(due()) => {
                    for stream in &self.streams.list() {
                        let ids = self.holdings.ids(stream);
                        if let Err(e) = self.client.keep_alive(stream, &ids).await {
                            warn!(stream, error = %e, "cannot refresh the idle time of entries in flight");
                        }
                    }
                    *self.next_refresh.lock().expect("refresh deadline lock") =
                        Some(tokio::time::Instant::now() + period);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_read_once_however_often_it_is_found() {
        let streams = ReadStreams::new(&["events".to_string()]);
        streams.add("events:{a}".into());
        streams.add("events".into());
        streams.add("events:{a}".into());
        assert_eq!(streams.list(), ["events", "events:{a}"]);
        assert_eq!(streams.len(), 2);
    }

    #[test]
    fn failed_sessions_wait_100ms_doubling_to_2s() {
        assert_eq!(
            BACKOFF.first_millis(7),
            [100, 200, 400, 800, 1600, 2000, 2000]
        );
    }
}
