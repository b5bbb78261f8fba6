//! Crash-safe spill-to-disk store of opaque byte records.
//!
//! The store knows nothing of what a record means: it imports no kernel code
//! (only the `spill` config section of `fdc_common`). When Postgres is
//! unavailable the kernel's ingest serializes each batch into one record and
//! appends it here; the Redis entries are acknowledged only after
//! `append` returned (the record is durable). A replay task later reads the
//! records oldest first, commits each to Postgres and then commits it here;
//! fully committed segments are deleted. See `docs/spill.md` for the format,
//! the durability order and the recovery rules.
//!
//! [`SpillStore`] does blocking I/O; async code uses [`SpillHandle`], which
//! runs every call on tokio's blocking pool.

pub mod codec;
mod error;
pub mod files;
mod handle;
mod metrics;
mod recovery;
mod store;

pub use error::SpillError;
pub use files::{segment_file_name, segment_path};
pub use handle::SpillHandle;
pub use metrics::SpillMetrics;
pub use store::{Record, RecordId, RecoveryReport, SpillStats, SpillStore};
