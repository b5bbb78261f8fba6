//! Async-friendly wrapper: the store behind a mutex, every blocking call run
//! on tokio's blocking pool so fsyncs never stall the async workers.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fdc_common::config::spill::SpillConfig;
use tokio::sync::Notify;

use crate::{Record, RecordId, RecoveryReport, SpillError, SpillMetrics, SpillStats, SpillStore};

/// Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct SpillHandle {
    store: Arc<Mutex<SpillStore>>,
    metrics: SpillMetrics,
    /// Woken on every successful append, so an idle replay loop starts at once.
    appended: Arc<Notify>,
}

impl SpillHandle {
    pub async fn open(
        cfg: SpillConfig,
        metrics: SpillMetrics,
    ) -> Result<(Self, RecoveryReport), SpillError> {
        let m = metrics.clone();
        let (store, report) = tokio::task::spawn_blocking(move || SpillStore::open(cfg, m))
            .await
            .map_err(|e| SpillError::Unavailable(e.to_string()))??;
        Ok((
            Self {
                store: Arc::new(Mutex::new(store)),
                metrics,
                appended: Arc::new(Notify::new()),
            },
            report,
        ))
    }

    async fn with<T, F>(&self, f: F) -> Result<T, SpillError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SpillStore) -> Result<T, SpillError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside the store would leave its state unknown: refuse
            // further use instead of guessing.
            let mut guard = store
                .lock()
                .map_err(|_| SpillError::Unavailable("spill store poisoned by a panic".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| SpillError::Unavailable(e.to_string()))?
    }

    /// See [`SpillStore::append`]: resolves once the record is durable.
    pub async fn append(&self, data: Vec<u8>) -> Result<RecordId, SpillError> {
        let id = self.with(move |s| s.append(&data)).await?;
        self.appended.notify_one();
        Ok(id)
    }

    /// Resolves after the next successful append (or at once if one happened
    /// since the last call returned).
    pub async fn appended(&self) {
        self.appended.notified().await
    }

    pub async fn next_record(&self) -> Result<Option<Record>, SpillError> {
        self.with(|s| s.next_record()).await
    }

    /// The next records to replay, oldest first, in one trip to the blocking pool: up to
    /// `max_records`, stopping after the record that reaches `max_bytes` (a record is never
    /// split, so one larger than `max_bytes` comes alone). Empty when every stored record has
    /// been delivered. An error after some records returns those records; the next call meets
    /// the error again.
    pub async fn next_records(
        &self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, SpillError> {
        self.with(move |s| {
            let mut records = Vec::new();
            let mut bytes = 0;
            while records.is_empty() || (records.len() < max_records && bytes < max_bytes) {
                match s.next_record() {
                    Ok(Some(r)) => {
                        bytes += r.data.len();
                        records.push(r);
                    }
                    Ok(None) => break,
                    Err(e) if records.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(records)
        })
        .await
    }

    pub async fn commit(&self, id: RecordId) -> Result<(), SpillError> {
        self.with(move |s| s.commit(id)).await
    }

    /// See [`SpillStore::quarantine`].
    pub async fn quarantine(&self, id: RecordId, data: Vec<u8>) -> Result<PathBuf, SpillError> {
        self.with(move |s| s.quarantine(id, &data)).await
    }

    /// See [`SpillStore::requeue_quarantined`].
    pub async fn requeue_quarantined(
        &self,
        decodable: fn(&[u8]) -> bool,
    ) -> Result<(u64, u64), SpillError> {
        let requeued = self.with(move |s| s.requeue_quarantined(decodable)).await;
        if matches!(requeued, Ok((n, _)) if n > 0) {
            self.appended.notify_one();
        }
        requeued
    }

    pub async fn rewind(&self) -> Result<(), SpillError> {
        self.with(|s| {
            s.rewind();
            Ok(())
        })
        .await
    }

    pub async fn stats(&self) -> Result<SpillStats, SpillError> {
        self.with(|s| Ok(s.stats())).await
    }

    /// Lock-free view for hot paths (readiness, metrics): the store keeps
    /// these gauges current after every operation.
    pub fn metrics(&self) -> &SpillMetrics {
        &self.metrics
    }
}
