//! The ingest pipeline: a reader task fills a bounded queue from Redis, a writer task stores
//! batches in Postgres and acknowledges them. A full queue stops the reader, so a slow
//! Postgres leaves the backlog in Redis and memory stays bounded.

mod commit;
mod holdings;
mod reader;
mod settle;
mod writer;

pub use commit::{spill_batch, Commit, Committed, Mode};
pub use holdings::{Holdings, Parked, PARKED_MAX};
pub use reader::Reader;
pub use settle::dlq::dead_letter_fields;
pub use settle::Settle;
pub use writer::Writer;

use crate::protocol::Entry;

/// A chunk of entries as read from Redis, in stream order.
pub type Chunk = Vec<Entry>;
