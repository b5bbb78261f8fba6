//! The ingest pipeline: a reader task fills a bounded queue from Redis, a writer task stores
//! batches in Postgres and acknowledges them. A full queue stops the reader, so a slow
//! Postgres leaves the backlog in Redis and memory stays bounded.

mod admit;
mod commit;
mod holdings;
mod lanes;
mod reader;
pub mod replay;
mod settle;
pub mod spill_record;

pub use admit::{Admit, Batch};
pub use commit::{spill_batch, Commit, Committed, Mode};
pub use holdings::{Holdings, Parked, PARKED_MAX};
pub use lanes::Lanes;
pub use reader::{ReadStreams, Reader};
pub use settle::dlq::dead_letter_fields;
pub use settle::Settle;

use crate::protocol::Entry;

/// A chunk of entries as read from Redis, in stream order.
pub type Chunk = Vec<Entry>;
