//! A validated `data` message: what the store writes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{EntryRef, Tags};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Uuid,
    /// Sender time, nanoseconds since the Unix epoch (Postgres keeps microseconds in
    /// `timestamptz`, so the exact value is stored as well).
    pub ts_ns: i64,
    pub subject: Option<String>,
    /// Tag (key, value) pairs, keys unique.
    pub tags: Tags,
    /// The payload JSON object, as sent (validated, not re-serialized).
    pub payload: String,
    pub source: EntryRef,
    /// Set by the auth layer from the token's `sub`; `None` while auth is off.
    pub producer_id: Option<Uuid>,
    /// The payload schema version the payload was validated against; `None` when the
    /// producer (or, with auth off, the stream) is bound to no schema.
    pub schema_id: Option<Uuid>,
}

impl Event {
    /// The UTC day (days since the epoch) of the event's partition.
    pub fn day(&self) -> i64 {
        self.ts_ns.div_euclid(86_400 * 1_000_000_000)
    }
}
