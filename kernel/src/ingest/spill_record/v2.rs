//! Batch record version 2. FROZEN once released, like `v1.rs`: version 1 plus the
//! event's `schema_id` (the payload schema version it was validated against).
//!
//! ```text
//! {"v":2,"events":[{"event":{"id":"<uuid>","ts_ns":<i64>,"subject":<string|null>,
//!   "tags":[[k,v],…],"payload":"<JSON text>","source":{"stream":s,"id":entry-id},
//!   "producer_id":<uuid|null>,"schema_id":<uuid|null>},"fields":[[name,"<base64>"],…]|null},…]}
//! ```
//!
//! The source and field types are version 1's (unchanged layouts). Unknown fields are
//! refused, as in version 1.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::v1::{Field, SourceV1};
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
    event: EventV2,
    /// `None` when the entry was not at hand (then no DLQ copy is possible).
    fields: Option<Vec<Field>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventV2 {
    id: Uuid,
    ts_ns: i64,
    subject: Option<String>,
    tags: Vec<(String, String)>,
    payload: String,
    source: SourceV1,
    producer_id: Option<Uuid>,
    schema_id: Option<Uuid>,
}

impl From<&Event> for EventV2 {
    fn from(e: &Event) -> Self {
        // Destructured on purpose, as in version 1.
        let Event {
            id,
            ts_ns,
            subject,
            tags,
            payload,
            source,
            producer_id,
            schema_id,
        } = e;
        EventV2 {
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
            schema_id: *schema_id,
        }
    }
}

impl From<EventV2> for Event {
    fn from(e: EventV2) -> Self {
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
            schema_id: e.schema_id,
        }
    }
}

pub(super) fn encode(events: &[Event], entries: &EntriesByRef) -> serde_json::Result<Vec<u8>> {
    let events = events
        .iter()
        .map(|e| SpilledEvent {
            event: e.into(),
            fields: entries
                .get(&e.source)
                .and_then(spilled_fields)
                .map(|f| f.into_iter().map(|(n, v)| Field(n, v)).collect()),
        })
        .collect();
    serde_json::to_vec(&Record { v: 2, events })
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

    /// A version-2 record exactly as kernels write it. Must keep decoding,
    /// and encoding its events must keep producing exactly these bytes.
    pub const GOLDEN: &str = concat!(
        r#"{"v":2,"events":["#,
        r#"{"event":{"id":"0190b6a2-7c1e-7000-8000-000000000001","ts_ns":1700000000000000000,"#,
        r#""subject":"orders","tags":[["region","eu"]],"payload":"{\"n\":1}","#,
        r#""source":{"stream":"events","id":"1700000000000-0"},"producer_id":null,"#,
        r#""schema_id":"0190b6a2-7c1e-7000-8000-0000000000aa"},"#,
        r#""fields":[["type","ZGF0YQ=="],["bin","AP8K"]]},"#,
        r#"{"event":{"id":"0190b6a2-7c1e-7000-8000-000000000002","ts_ns":-5,"#,
        r#""subject":null,"tags":[],"payload":"{}","#,
        r#""source":{"stream":"events","id":"1700000000000-1"},"#,
        r#""producer_id":"0190b6a2-7c1e-7000-8000-0000000000ff","schema_id":null},"fields":null}"#,
        r#"]}"#
    );

    fn golden_events() -> Vec<Event> {
        let uuid = |s: &str| Uuid::parse_str(s).unwrap();
        let source = |id: &str| EntryRef {
            stream: "events".into(),
            id: id.into(),
        };
        vec![
            Event {
                id: uuid("0190b6a2-7c1e-7000-8000-000000000001"),
                ts_ns: 1_700_000_000_000_000_000,
                subject: Some("orders".into()),
                tags: vec![("region".into(), "eu".into())],
                payload: r#"{"n":1}"#.into(),
                source: source("1700000000000-0"),
                producer_id: None,
                schema_id: Some(uuid("0190b6a2-7c1e-7000-8000-0000000000aa")),
            },
            Event {
                id: uuid("0190b6a2-7c1e-7000-8000-000000000002"),
                ts_ns: -5,
                subject: None,
                tags: vec![],
                payload: "{}".into(),
                source: source("1700000000000-1"),
                producer_id: Some(uuid("0190b6a2-7c1e-7000-8000-0000000000ff")),
                schema_id: None,
            },
        ]
    }

    #[test]
    fn golden_record_round_trips_byte_for_byte() {
        let batch = decode(GOLDEN.as_bytes()).unwrap();
        assert_eq!(batch.events, golden_events());
        assert_eq!(batch.entries.len(), 1);
        let mut entries = EntriesByRef::default();
        let at = batch.events[0].source.clone();
        entries.insert(
            at.clone(),
            Entry {
                at,
                fields: Some(vec![
                    ("type".into(), b"data".to_vec()),
                    ("token".into(), b"secret".to_vec()),
                    ("bin".into(), vec![0, 255, 10]),
                ]),
                deliveries: 2,
                flaw: None,
            },
        );
        let bytes = encode(&golden_events(), &entries).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), GOLDEN);
    }
}
