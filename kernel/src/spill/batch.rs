//! The spill record of one pipeline batch: its validated events plus, for the
//! dead-letter stream, the original entry fields (without `token`: secrets
//! never reach the disk). JSON, versioned by a `v` field.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::{Entry, EntryRef, Event};

const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BatchCodecError {
    #[error("spill record is not a batch: {0}")]
    Json(#[from] serde_json::Error),
    #[error("spill record has batch version {0}, this kernel reads {VERSION}")]
    Version(u32),
}

/// A batch as read back from the spill.
#[derive(Debug, Default)]
pub struct SpilledBatch {
    pub events: Vec<Event>,
    /// Entry of each event (fields without `token`), for dead-lettering it
    /// should Postgres reject the event on replay.
    pub entries: HashMap<EntryRef, Entry>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    v: u32,
    events: Vec<SpilledEvent>,
}

#[derive(Serialize, Deserialize)]
struct SpilledEvent {
    event: Event,
    /// `None` when the entry was not at hand (then no DLQ copy is possible).
    fields: Option<Vec<Field>>,
}

#[derive(Serialize, Deserialize)]
struct Field(String, #[serde(with = "b64")] Vec<u8>);

mod b64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Serializes `events` with the fields of their entries (looked up in `entries`).
pub fn encode_batch(
    events: &[Event],
    entries: &HashMap<EntryRef, Entry>,
) -> Result<Vec<u8>, BatchCodecError> {
    let events = events
        .iter()
        .map(|e| SpilledEvent {
            event: e.clone(),
            fields: entries
                .get(&e.source)
                .and_then(|entry| entry.fields.as_ref())
                .map(|fields| {
                    fields
                        .iter()
                        .filter(|(name, _)| name != "token")
                        .map(|(n, v)| Field(n.clone(), v.clone()))
                        .collect()
                }),
        })
        .collect();
    Ok(serde_json::to_vec(&Record { v: VERSION, events })?)
}

pub fn decode_batch(bytes: &[u8]) -> Result<SpilledBatch, BatchCodecError> {
    let record: Record = serde_json::from_slice(bytes)?;
    if record.v != VERSION {
        return Err(BatchCodecError::Version(record.v));
    }
    let mut batch = SpilledBatch::default();
    for s in record.events {
        if let Some(fields) = s.fields {
            batch.entries.insert(
                s.event.source.clone(),
                Entry {
                    at: s.event.source.clone(),
                    fields: Some(fields.into_iter().map(|Field(n, v)| (n, v)).collect()),
                    deliveries: 1,
                },
            );
        }
        batch.events.push(s.event);
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn event(i: u32) -> Event {
        Event {
            id: Uuid::now_v7(),
            ts_ns: 1_700_000_000_000_000_000 + i as i64,
            subject: Some(format!("s{i}")),
            tags: vec![("k".into(), format!("v{i}"))],
            payload: format!("{{\"n\":{i}}}"),
            source: EntryRef {
                stream: "events".into(),
                id: format!("1-{i}"),
            },
            producer_id: None,
        }
    }

    #[test]
    fn round_trip_keeps_events_and_drops_the_token() {
        let events: Vec<Event> = (0..3).map(event).collect();
        let mut entries = HashMap::new();
        for e in &events[..2] {
            entries.insert(
                e.source.clone(),
                Entry {
                    at: e.source.clone(),
                    fields: Some(vec![
                        ("type".into(), b"data".to_vec()),
                        ("token".into(), b"secret-jwt".to_vec()),
                        ("bin".into(), vec![0, 255, 10]),
                    ]),
                    deliveries: 3,
                },
            );
        }
        let bytes = encode_batch(&events, &entries).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("secret-jwt"));
        let back = decode_batch(&bytes).unwrap();
        assert_eq!(back.events, events);
        assert_eq!(back.entries.len(), 2);
        let e0 = &back.entries[&events[0].source];
        assert_eq!(
            e0.fields.as_deref().unwrap(),
            &[
                ("type".to_string(), b"data".to_vec()),
                ("bin".to_string(), vec![0, 255, 10])
            ]
        );
    }

    #[test]
    fn other_versions_and_garbage_are_errors() {
        assert!(matches!(
            decode_batch(br#"{"v":2,"events":[]}"#),
            Err(BatchCodecError::Version(2))
        ));
        assert!(matches!(
            decode_batch(b"\x00\x01"),
            Err(BatchCodecError::Json(_))
        ));
    }
}
