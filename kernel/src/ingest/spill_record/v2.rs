//! Batch record version 2. FROZEN once released, like `v1.rs`: version 1 plus the
//! event's `schema_id` (the payload schema version it was validated against).
//!
//! ```text
//! {"v":2,"events":[{"event":{"id":"<uuid>","ts_ns":<i64>,"subject":<string|null>,
//!   "tags":[[k,v],…],"payload":"<JSON text>","source":{"stream":s,"id":entry-id},
//!   "producer_id":<uuid|null>,"schema_id":<uuid|null>},"fields":[[name,"<base64>"],…]|null},…]}
//! ```
//!
//! The envelope, the source and the fields are `layout.rs`'s, as in version 1.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::layout::{self, Source};
use super::SpilledBatch;
use crate::protocol::{EntriesByRef, EntryRef, Event};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventV2 {
    id: Uuid,
    ts_ns: i64,
    subject: Option<String>,
    tags: Vec<(String, String)>,
    payload: String,
    source: Source,
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
            tags: tags.to_pairs(),
            payload: payload.clone(),
            source: Source {
                stream: source.stream.to_string(),
                id: source.id.to_string(),
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
            tags: e.tags.into_iter().collect(),
            payload: e.payload,
            source: EntryRef {
                stream: e.source.stream.into(),
                id: e.source.id.into(),
            },
            producer_id: e.producer_id,
            schema_id: e.schema_id,
        }
    }
}

pub(super) fn encode(events: &[Event], entries: &EntriesByRef) -> serde_json::Result<Vec<u8>> {
    layout::encode::<EventV2>(2, events, entries)
}

pub(super) fn decode(bytes: &[u8]) -> serde_json::Result<SpilledBatch> {
    layout::decode::<EventV2>(bytes)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ingest::spill_record::tests::{entries_with_token, golden_events};

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

    #[test]
    fn golden_record_round_trips_byte_for_byte() {
        let schema = Uuid::parse_str("0190b6a2-7c1e-7000-8000-0000000000aa").unwrap();
        let batch = decode(GOLDEN.as_bytes()).unwrap();
        assert_eq!(batch.events, golden_events(Some(schema)));
        assert_eq!(batch.entries.len(), 1);
        let bytes = encode(&batch.events, &entries_with_token(&batch.events[..1])).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), GOLDEN);
    }
}
