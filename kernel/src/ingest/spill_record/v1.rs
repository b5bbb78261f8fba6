//! Batch record version 1. FROZEN: records of this layout may sit in spill
//! directories of any kernel that ever wrote them, so never change these types
//! or their serde attributes. A new layout gets a new file (`v2.rs`), a new
//! number in `KNOWN_VERSIONS`, and this file stays for reading old records.
//!
//! ```text
//! {"v":1,"events":[{"event":{"id":"<uuid>","ts_ns":<i64>,"subject":<string|null>,
//!   "tags":[[k,v],…],"payload":"<JSON text>","source":{"stream":s,"id":entry-id},
//!   "producer_id":<uuid|null>},"fields":[[name,"<base64>"],…]|null},…]}
//! ```
//!
//! This is byte for byte what the first spill-capable kernel wrote through
//! `protocol::Event`'s serde derive; here it is spelled out so that derive can
//! change freely. Unknown fields are refused: a writer that changed the layout
//! without a new version must not have its records half-read.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::{entry_of, spilled_fields, SpilledBatch};
use crate::protocol::{EntriesByRef, EntryRef, Event};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    v: u64,
    events: Vec<SpilledEvent>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpilledEvent {
    event: EventV1,
    /// `None` when the entry was not at hand (then no DLQ copy is possible).
    fields: Option<Vec<Field>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventV1 {
    id: Uuid,
    ts_ns: i64,
    subject: Option<String>,
    tags: Vec<(String, String)>,
    payload: String,
    source: SourceV1,
    producer_id: Option<Uuid>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceV1 {
    pub stream: String,
    pub id: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Field(pub String, #[serde(with = "b64")] pub Vec<u8>);

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

impl From<&Event> for EventV1 {
    fn from(e: &Event) -> Self {
        // Destructured on purpose: a new `Event` field fails to compile here,
        // and whoever adds it decides whether the spill needs a new version.
        // `schema_id` did: version 1 is written only for batches where every
        // event has none (`encode_batch`), version 2 otherwise.
        let Event {
            id,
            ts_ns,
            subject,
            tags,
            payload,
            source,
            producer_id,
            schema_id: _,
        } = e;
        EventV1 {
            id: *id,
            ts_ns: *ts_ns,
            subject: subject.clone(),
            tags: tags.clone(),
            payload: payload.clone(),
            source: SourceV1 {
                stream: source.stream.clone(),
                id: source.id.clone(),
            },
            producer_id: *producer_id,
        }
    }
}

impl From<EventV1> for Event {
    fn from(e: EventV1) -> Self {
        Event {
            id: e.id,
            ts_ns: e.ts_ns,
            subject: e.subject,
            tags: e.tags,
            payload: e.payload,
            source: EntryRef {
                stream: e.source.stream,
                id: e.source.id,
            },
            producer_id: e.producer_id,
            schema_id: None,
        }
    }
}

pub(super) fn encode(events: &[Event], entries: &EntriesByRef) -> serde_json::Result<Vec<u8>> {
    let events = events
        .iter()
        .map(|e| SpilledEvent {
            event: e.into(),
            fields: entries.get(&e.source).and_then(spilled_fields).map(|f| {
                f.into_iter()
                    .map(|(name, value)| Field(name, value))
                    .collect()
            }),
        })
        .collect();
    serde_json::to_vec(&Record { v: 1, events })
}

pub(super) fn decode(bytes: &[u8]) -> serde_json::Result<SpilledBatch> {
    let record: Record = serde_json::from_slice(bytes)?;
    let mut batch = SpilledBatch::default();
    for s in record.events {
        let event = Event::from(s.event);
        if let Some(fields) = s.fields {
            let fields = fields.into_iter().map(|Field(n, v)| (n, v)).collect();
            batch
                .entries
                .insert(event.source.clone(), entry_of(&event, fields));
        }
        batch.events.push(event);
    }
    Ok(batch)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::protocol::Entry;

    /// A version-1 record exactly as kernels write it. Must keep decoding,
    /// and encoding its events must keep producing exactly these bytes.
    pub const GOLDEN: &str = concat!(
        r#"{"v":1,"events":["#,
        r#"{"event":{"id":"0190b6a2-7c1e-7000-8000-000000000001","ts_ns":1700000000000000000,"#,
        r#""subject":"orders","tags":[["region","eu"]],"payload":"{\"n\":1}","#,
        r#""source":{"stream":"events","id":"1700000000000-0"},"producer_id":null},"#,
        r#""fields":[["type","ZGF0YQ=="],["bin","AP8K"]]},"#,
        r#"{"event":{"id":"0190b6a2-7c1e-7000-8000-000000000002","ts_ns":-5,"#,
        r#""subject":null,"tags":[],"payload":"{}","#,
        r#""source":{"stream":"events","id":"1700000000000-1"},"#,
        r#""producer_id":"0190b6a2-7c1e-7000-8000-0000000000ff"},"fields":null}"#,
        r#"]}"#
    );

    fn golden_events() -> Vec<Event> {
        let uuid = |s: &str| Uuid::parse_str(s).unwrap();
        vec![
            Event {
                id: uuid("0190b6a2-7c1e-7000-8000-000000000001"),
                ts_ns: 1_700_000_000_000_000_000,
                subject: Some("orders".into()),
                tags: vec![("region".into(), "eu".into())],
                payload: r#"{"n":1}"#.into(),
                source: EntryRef {
                    stream: "events".into(),
                    id: "1700000000000-0".into(),
                },
                producer_id: None,
                schema_id: None,
            },
            Event {
                id: uuid("0190b6a2-7c1e-7000-8000-000000000002"),
                ts_ns: -5,
                subject: None,
                tags: vec![],
                payload: "{}".into(),
                source: EntryRef {
                    stream: "events".into(),
                    id: "1700000000000-1".into(),
                },
                producer_id: Some(uuid("0190b6a2-7c1e-7000-8000-0000000000ff")),
                schema_id: None,
            },
        ]
    }

    #[test]
    fn golden_record_decodes_to_its_events_and_entries() {
        let batch = decode(GOLDEN.as_bytes()).unwrap();
        assert_eq!(batch.events, golden_events());
        assert_eq!(batch.entries.len(), 1);
        let entry = &batch.entries[&batch.events[0].source];
        assert_eq!(entry.at, batch.events[0].source);
        assert_eq!(
            entry.fields.as_deref().unwrap(),
            &[
                ("type".to_string(), b"data".to_vec()),
                ("bin".to_string(), vec![0, 255, 10])
            ]
        );
    }

    #[test]
    fn encoding_the_golden_events_gives_the_golden_bytes() {
        let events = golden_events();
        let mut entries = EntriesByRef::default();
        entries.insert(
            events[0].source.clone(),
            Entry {
                at: events[0].source.clone(),
                fields: Some(vec![
                    ("type".into(), b"data".to_vec()),
                    ("token".into(), b"secret".to_vec()),
                    ("bin".into(), vec![0, 255, 10]),
                ]),
                deliveries: 2,
                flaw: None,
            },
        );
        let bytes = encode(&events, &entries).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), GOLDEN);
    }
}
