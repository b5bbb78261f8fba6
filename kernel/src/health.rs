//! What `/readyz` reports: start-up progress, shutdown, blocked ingest, and the last answer of
//! each server the kernel needs (kept up to date by [`crate::readiness`], so that `/readyz`
//! answers from memory, at once, in every state).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
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

struct Flags {
    /// Migrations applied (and today's partitions made): background work may start.
    migrated: watch::Sender<bool>,
    /// Per server (`Redis`, `Postgres`): why it is not usable, as last probed; absent when it
    /// answered.
    dependencies: Mutex<BTreeMap<&'static str, String>>,
    /// A part of the kernel died: `/healthz` fails so the process is restarted.
    failed: AtomicBool,
    /// The writer cannot store (Postgres down and nowhere else to put batches).
    writer_blocked: AtomicBool,
    /// The last spill append was refused for `spill.max_bytes`: why the writer is blocked.
    spill_full: AtomicBool,
}

/// The servers the kernel needs, reported not ready until their first probe.
pub const DEPENDENCIES: [&str; 2] = ["Redis", "Postgres"];

impl Health {
    pub fn new(stop: CancellationToken) -> Health {
        let dependencies = DEPENDENCIES
            .iter()
            .map(|name| (*name, format!("{name} not checked yet")))
            .collect();
        Health {
            inner: Arc::new(Flags {
                migrated: watch::Sender::new(false),
                dependencies: Mutex::new(dependencies),
                failed: AtomicBool::default(),
                writer_blocked: AtomicBool::default(),
                spill_full: AtomicBool::default(),
            }),
            stop,
            stalls: StallBoard::default(),
        }
    }

    pub fn set_migrated(&self) {
        self.inner.migrated.send_replace(true);
    }

    pub fn migrated(&self) -> bool {
        *self.inner.migrated.borrow()
    }

    /// Resolves once migrations are applied (at once if they are): background tasks that need
    /// the schema wait for it.
    pub fn wait_migrated(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut migrated = self.inner.migrated.subscribe();
        async move {
            // Err: the sender is gone with the kernel; nothing to wait for any more.
            let _ = migrated.wait_for(|done| *done).await;
        }
    }

    /// Records the last probe of a server: `None` when it answered, else why not.
    pub fn set_dependency(&self, name: &'static str, problem: Option<String>) {
        let mut deps = self
            .inner
            .dependencies
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(problem) => deps.insert(name, problem),
            None => deps.remove(name),
        };
    }

    /// What the last probes found wrong, one line per server.
    pub fn dependency_problems(&self) -> Vec<String> {
        self.inner
            .dependencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
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
