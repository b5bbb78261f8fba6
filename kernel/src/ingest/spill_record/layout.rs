//! The record envelope every version shares: `{"v":N,"events":[{"event":E,"fields":…},…]}`,
//! generic over the version's frozen event type `E`. Only the event layout differs between
//! versions; the envelope, the source and the base64 fields are the same bytes in each.
//! Unknown fields are refused: a writer that changed the layout without a new version must
//! not have its records half-read.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{entry_of, spilled_fields, SpilledBatch};
use crate::protocol::{EntriesByRef, Event};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record<E> {
    v: u64,
    events: Vec<SpilledEvent<E>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpilledEvent<E> {
    event: E,
    /// `None` when the entry was not at hand (then no DLQ copy is possible).
    fields: Option<Vec<Field>>,
}

/// An event's source entry, as every version writes it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Source {
    pub stream: String,
    pub id: String,
}

/// One entry field: its name and its bytes in base64.
#[derive(Serialize, Deserialize)]
struct Field(String, #[serde(with = "b64")] Vec<u8>);

mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    /// Decoded from the text where it lies (no copy of the base64 into a `String` first).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Base64;
        impl serde::de::Visitor<'_> for Base64 {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a base64 string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
                STANDARD.decode(text).map_err(E::custom)
            }
        }
        d.deserialize_str(Base64)
    }
}

/// Writes `events` as a record of version `v` with event layout `E`.
pub(super) fn encode<E>(
    v: u64,
    events: &[Event],
    entries: &EntriesByRef,
) -> serde_json::Result<Vec<u8>>
where
    E: Serialize + for<'a> From<&'a Event>,
{
    let events = events
        .iter()
        .map(|e| SpilledEvent {
            event: E::from(e),
            fields: entries
                .get(&e.source)
                .and_then(spilled_fields)
                .map(|f| f.into_iter().map(|(n, v)| Field(n, v)).collect()),
        })
        .collect();
    serde_json::to_vec(&Record { v, events })
}

/// Reads a record whose events have layout `E`.
pub(super) fn decode<E>(bytes: &[u8]) -> serde_json::Result<SpilledBatch>
where
    E: DeserializeOwned + Into<Event>,
{
    let record: Record<E> = serde_json::from_slice(bytes)?;
    let mut batch = SpilledBatch::default();
    for s in record.events {
        let event: Event = s.event.into();
        if let Some(fields) = s.fields {
            let fields = fields.iter().map(|Field(n, v)| (n, v)).collect();
            batch
                .entries
                .insert(event.source.clone(), entry_of(&event, fields));
        }
        batch.events.push(event);
    }
    Ok(batch)
}
