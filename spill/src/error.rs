//! Errors of the spill store. `Full` is distinct so the pipeline can stop
//! reading and report not-ready instead of treating it as a fault.

use std::io;
use std::path::PathBuf;

use crate::RecordId;

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// The record would push the spill over `max_bytes`. Transient: replay
    /// frees space. Nothing was written.
    #[error("spill full: record needs {needed} bytes, {used} of {max} used")]
    Full { needed: u64, used: u64, max: u64 },
    /// The record can never fit, even into an empty spill. Nothing was written.
    #[error("record of {len} bytes can never fit the spill (limit {limit})")]
    RecordTooLarge { len: u64, limit: u64 },
    /// Another process (or store in this process) still owned the directory after
    /// `spill.lock_wait`.
    #[error("spill directory {dir} is still locked by another store after waiting {}s (spill.lock_wait); is another kernel using it?", waited.as_secs())]
    Locked {
        dir: PathBuf,
        waited: std::time::Duration,
    },
    #[error("spill i/o failed ({op} {path}): {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `commit` was given an id that was not delivered by `next_record` since
    /// the last rewind, or that is already committed.
    #[error("record {0} was not delivered or is already committed")]
    UnknownRecord(RecordId),
    #[error("invalid spill config: {0}")]
    Config(String),
    /// A previous operation panicked or the blocking task was cancelled.
    #[error("spill store unavailable: {0}")]
    Unavailable(String),
}

impl SpillError {
    pub fn is_full(&self) -> bool {
        matches!(self, SpillError::Full { .. })
    }
}

/// Attaches the operation and path to an `io::Error`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> SpillError {
    let path = path.into();
    move |source| SpillError::Io { op, path, source }
}
