//! What `/readyz` reports besides live probes: start-up progress, shutdown, blocked ingest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::stall::StallBoard;

#[derive(Clone)]
pub struct Health {
    inner: Arc<Flags>,
    /// The kernel's stop token: readiness drops the moment shutdown is asked for.
    stop: CancellationToken,
    /// Workers failing on the same work: past `ingest.stall_after` they make `/readyz` fail.
    stalls: StallBoard,
}

#[derive(Default)]
struct Flags {
    migrated: AtomicBool,
    /// A part of the kernel died: `/healthz` fails so the process is restarted.
    failed: AtomicBool,
    /// The writer cannot store (Postgres down and nowhere else to put batches).
    writer_blocked: AtomicBool,
    /// The last spill append was refused for `spill.max_bytes`: why the writer is blocked.
    spill_full: AtomicBool,
}

impl Health {
    pub fn new(stop: CancellationToken) -> Health {
        Health {
            inner: Arc::default(),
            stop,
            stalls: StallBoard::default(),
        }
    }

    pub fn set_migrated(&self) {
        self.inner.migrated.store(true, Ordering::SeqCst);
    }

    pub fn migrated(&self) -> bool {
        self.inner.migrated.load(Ordering::SeqCst)
    }

    pub fn set_failed(&self) {
        self.inner.failed.store(true, Ordering::SeqCst);
    }

    pub fn failed(&self) -> bool {
        self.inner.failed.load(Ordering::SeqCst)
    }

    pub fn shutting_down(&self) -> bool {
        self.stop.is_cancelled()
    }

    pub fn set_writer_blocked(&self, blocked: bool) {
        self.inner.writer_blocked.store(blocked, Ordering::SeqCst);
    }

    pub fn writer_blocked(&self) -> bool {
        self.inner.writer_blocked.load(Ordering::SeqCst)
    }

    pub fn set_spill_full(&self, full: bool) {
        self.inner.spill_full.store(full, Ordering::SeqCst);
    }

    pub fn spill_full(&self) -> bool {
        self.inner.spill_full.load(Ordering::SeqCst)
    }

    /// The reader's and writer lanes' failing state (see [`crate::stall`]).
    pub fn stalls(&self) -> &StallBoard {
        &self.stalls
    }
}
