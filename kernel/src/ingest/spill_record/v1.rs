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
//! change freely. The envelope, the source and the fields are `layout.rs`'s, shared by
//! every version and frozen likewise.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::layout::{self, Source};
use super::SpilledBatch;
use crate::protocol::{EntriesByRef, EntryRef, Event};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventV1 {
    id: Uuid,
    ts_ns: i64,
    subject: Option<String>,
    tags: Vec<(String, String)>,
    payload: String,
    source: Source,
    producer_id: Option<Uuid>,
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
            tags: tags.to_pairs(),
            payload: payload.clone(),
            source: Source {
                stream: source.stream.to_string(),
                id: source.id.to_string(),
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
            tags: e.tags.into_iter().collect(),
            payload: e.payload,
            source: EntryRef {
                stream: e.source.stream.into(),
                id: e.source.id.into(),
            },
            producer_id: e.producer_id,
            schema_id: None,
        }
    }
}

pub(super) fn encode(events: &[Event], entries: &EntriesByRef) -> serde_json::Result<Vec<u8>> {
    layout::encode::<EventV1>(1, events, entries)
}

pub(super) fn decode(bytes: &[u8]) -> serde_json::Result<SpilledBatch> {
    layout::decode::<EventV1>(bytes)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ingest::spill_record::tests::{entries_with_token, golden_events};

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

    #[test]
    fn golden_record_decodes_to_its_events_and_entries() {
        let batch = decode(GOLDEN.as_bytes()).unwrap();
        assert_eq!(batch.events, golden_events(None));
        assert_eq!(batch.entries.len(), 1);
        let entry = &batch.entries[&batch.events[0].source];
        assert_eq!(entry.at, batch.events[0].source);
        assert_eq!(
            entry.fields.as_ref().unwrap().to_pairs(),
            [
                ("type".to_string(), b"data".to_vec()),
                ("bin".to_string(), vec![0, 255, 10])
            ]
        );
    }

    #[test]
    fn encoding_the_golden_events_gives_the_golden_bytes() {
        let events = golden_events(None);
        let bytes = encode(&events, &entries_with_token(&events[..1])).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), GOLDEN);
    }
}
