//! Raw stream entries as Redis gave them: where each lives, its fields, how often it was
//! delivered, and, for an entry read only as a bounded summary, why. Imports no other module
//! of the kernel: the Redis adapter produces these, the protocol and the pipeline read them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod fields;

pub use fields::Fields;

/// Where an entry lives in Redis: what XACK and the DLQ need. Shared strings: a reference
/// is copied several times on the way (the event's source, the batch's entry map, the
/// in-flight set), and a copy is then a count, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntryRef {
    pub stream: Arc<str>,
    pub id: Arc<str>,
}

/// The entry behind each event of a batch (for a dead letter or a spill record). foldhash, not
/// SipHash: a lookup per event on the hot path, and the ids come from our own Redis.
pub type EntriesByRef = foldhash::HashMap<EntryRef, Entry>;

/// One stream entry: its fields in order. `fields` is `None` when the entry was trimmed from
/// the stream while still pending (Redis returns the id with no body).
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: EntryRef,
    pub fields: Option<Fields>,
    /// How often Redis has delivered this entry, including this time.
    pub deliveries: u64,
    /// Set when the entry cannot be stored whatever it says (then `fields` is empty): it goes
    /// to the dead-letter stream as this summary.
    pub flaw: Option<Box<Flaw>>,
}

/// An entry read only as a bounded summary: a field name that is not UTF-8, an odd field
/// list, or more bytes than `limits.max_entry_bytes` (such an entry is never held whole).
#[derive(Debug, Clone)]
pub struct Flaw {
    pub why: FlawWhy,
    /// The original fields in order, each cut to the dead-letter prefix.
    pub fields: Vec<Clipped>,
    /// Fields left out of `fields` so that the summary stays within its bound.
    pub omitted: usize,
}

/// Why an entry was read only as a summary; its dead letter carries the matching reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlawWhy {
    pub reason: FlawReason,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlawReason {
    /// More bytes than `limits.max_entry_bytes`, or too many fields.
    TooLarge,
    /// A field name that is not UTF-8, or an odd field list.
    BadEncoding,
}

impl FlawWhy {
    pub fn new(reason: FlawReason, detail: impl Into<String>) -> FlawWhy {
        FlawWhy {
            reason,
            detail: detail.into(),
        }
    }
}

/// A field as a dead letter keeps it: at most a prefix of its name and of its value, with the
/// value's full length and SHA-256 when the prefix is not all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clipped {
    pub name: Vec<u8>,
    pub name_len: usize,
    pub value: Vec<u8>,
    pub value_len: usize,
    /// SHA-256 of the whole value; `None` when `value` is all of it.
    pub value_sha256: Option<[u8; 32]>,
}

impl Clipped {
    /// The clipped form of a field held whole.
    pub fn of(name: &[u8], value: &[u8], prefix: usize) -> Clipped {
        Clipped {
            name: name[..name.len().min(prefix)].to_vec(),
            name_len: name.len(),
            value: value[..value.len().min(prefix)].to_vec(),
            value_len: value.len(),
            value_sha256: (value.len() > prefix).then(|| Sha256::digest(value).into()),
        }
    }

    /// Bytes this summary holds (what the in-flight byte bound counts for it).
    pub fn kept_bytes(&self) -> usize {
        self.name.len() + self.value.len() + if self.value_sha256.is_some() { 32 } else { 0 }
    }
}

impl Entry {
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields.as_ref()?.get(name)
    }

    /// An entry with readable fields (the usual case).
    pub fn new(at: EntryRef, fields: Option<Fields>) -> Entry {
        Entry {
            at,
            fields,
            deliveries: 1,
            flaw: None,
        }
    }

    /// Bytes of all field names and values: what the entry-size limit counts. For a flawed
    /// entry, the bytes of its summary (what the kernel holds of it).
    pub fn size(&self) -> usize {
        let fields: usize = self.fields.as_ref().map_or(0, Fields::bytes);
        let summary: usize = self
            .flaw
            .iter()
            .flat_map(|f| &f.fields)
            .map(Clipped::kept_bytes)
            .sum();
        fields + summary
    }
}
