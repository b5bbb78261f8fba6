//! Async-friendly wrapper: the store behind a mutex, every blocking call run
//! on tokio's blocking pool so fsyncs never stall the async workers.

use std::sync::{Arc, Mutex};

use super::{
    Record, RecordId, RecoveryReport, SpillConfig, SpillError, SpillMetrics, SpillStats, SpillStore,
};

/// Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct SpillHandle {
    store: Arc<Mutex<SpillStore>>,
    metrics: SpillMetrics,
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
        self.with(move |s| s.append(&data)).await
    }

    pub async fn next_record(&self) -> Result<Option<Record>, SpillError> {
        self.with(|s| s.next_record()).await
    }

    pub async fn commit(&self, id: RecordId) -> Result<(), SpillError> {
        self.with(move |s| s.commit(id)).await
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
