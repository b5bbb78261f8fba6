//! Raw stream entries as read from Redis.

use serde::{Deserialize, Serialize};

/// Where an entry lives in Redis: what XACK and the DLQ need.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntryRef {
    pub stream: String,
    pub id: String,
}

/// The entry behind each event of a batch (for a dead letter or a spill record). foldhash, not
/// SipHash: a lookup per event on the hot path, and the ids come from our own Redis.
pub type EntriesByRef = foldhash::HashMap<EntryRef, Entry>;

/// One stream entry: its fields in order. `fields` is `None` when the entry was trimmed from
/// the stream while still pending (Redis returns the id with no body).
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: EntryRef,
    pub fields: Option<Vec<(String, Vec<u8>)>>,
    /// How often Redis has delivered this entry, including this time.
    pub deliveries: u64,
}

impl Entry {
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Bytes of all field names and values: what the entry-size limit counts.
    pub fn size(&self) -> usize {
        self.fields
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
}

/// A producer's access token. Its `Debug` never shows the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(value: String) -> Token {
        Token(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}
