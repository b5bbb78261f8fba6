//! What `/readyz` reports besides live probes: start-up progress, shutdown, blocked ingest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Flags>,
}

#[derive(Default)]
struct Flags {
    migrated: AtomicBool,
    shutting_down: AtomicBool,
    /// The writer cannot store (Postgres down and nowhere else to put batches).
    writer_blocked: AtomicBool,
}

impl Health {
    pub fn set_migrated(&self) {
        self.inner.migrated.store(true, Ordering::SeqCst);
    }

    pub fn migrated(&self) -> bool {
        self.inner.migrated.load(Ordering::SeqCst)
    }

    pub fn set_shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    pub fn set_writer_blocked(&self, blocked: bool) {
        self.inner.writer_blocked.store(blocked, Ordering::SeqCst);
    }

    pub fn writer_blocked(&self) -> bool {
        self.inner.writer_blocked.load(Ordering::SeqCst)
    }
}
