//! The spill record of one pipeline batch: its validated events plus, for the
//! dead-letter stream, the original entry fields (without `token`: secrets
//! never reach the disk).
//!
//! A record is a JSON object whose `v` field names its layout version. Each
//! version has its own frozen record types (`v1.rs`), independent of the serde
//! derives of `protocol::Event`, so changing the protocol types can neither
//! change what is written under a version nor make spilled records unreadable.
//! The reader accepts every version in [`KNOWN_VERSIONS`]; anything else is an
//! error that replay answers by quarantining the record, never by dropping it.
//! Upgrade and rollback rules: `docs/spill.md`.

use crate::entry::Fields;
use crate::protocol::{EntriesByRef, Entry, Event};

mod layout;
mod v1;
mod v2;

/// The newest version this build writes: for batches with a schema-validated event. A batch
/// without one is written as version 1, so a kernel that predates version 2 still replays it
/// after a rollback.
pub const CURRENT_VERSION: u64 = 2;
/// Every version this build reads. Never drop a version from this list while
/// a kernel that wrote it may have left records in a spill directory.
pub const KNOWN_VERSIONS: &[u64] = &[1, 2];

#[derive(Debug, thiserror::Error)]
pub enum BatchCodecError {
    #[error("cannot encode batch: {0}")]
    Encode(#[source] serde_json::Error),
    /// Not a JSON object with an unsigned integer `v`.
    #[error("spill record is not a batch record: {0}")]
    NotABatch(#[source] serde_json::Error),
    /// Written by a kernel that knows more versions (a rollback), or damaged.
    #[error("spill record has batch version {0}; this build reads versions {KNOWN_VERSIONS:?}")]
    UnknownVersion(u64),
    #[error(
        "spill record of batch version {version} does not match that version's layout: {source}"
    )]
    Malformed {
        version: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// A batch as read back from the spill.
#[derive(Debug, Default)]
pub struct SpilledBatch {
    pub events: Vec<Event>,
    /// Entry of each event (fields without `token`), for dead-lettering it
    /// should Postgres reject the event on replay.
    pub entries: EntriesByRef,
}

/// Only the version; every other field is left to the version's decoder.
#[derive(serde::Deserialize)]
struct VersionOnly {
    v: u64,
}

/// Serializes `events` with the fields of their entries (looked up in
/// `entries`): version 1 when no event has a schema id, else [`CURRENT_VERSION`].
pub fn encode_batch(events: &[Event], entries: &EntriesByRef) -> Result<Vec<u8>, BatchCodecError> {
    if events.iter().all(|e| e.schema_id.is_none()) {
        v1::encode(events, entries)
    } else {
        v2::encode(events, entries)
    }
    .map_err(BatchCodecError::Encode)
}

/// Decodes a record of any version in [`KNOWN_VERSIONS`]. Never guesses: a
/// record that does not match its version's layout exactly is an error.
pub fn decode_batch(bytes: &[u8]) -> Result<SpilledBatch, BatchCodecError> {
    let v = version_of(bytes)?;
    let malformed = |source| BatchCodecError::Malformed { version: v, source };
    match v {
        1 => v1::decode(bytes).map_err(malformed),
        2 => v2::decode(bytes).map_err(malformed),
        other => Err(BatchCodecError::UnknownVersion(other)),
    }
}

/// The record's version: from its first bytes when it starts as every writer starts it
/// (`{"v":N,`), else by reading the whole record (which a second full parse would repeat).
fn version_of(bytes: &[u8]) -> Result<u64, BatchCodecError> {
    if let Some(rest) = bytes.strip_prefix(br#"{"v":"#) {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if (1..=19).contains(&digits) && rest.get(digits) == Some(&b',') {
            let v = rest[..digits]
                .iter()
                .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
            return Ok(v);
        }
    }
    let VersionOnly { v } = serde_json::from_slice(bytes).map_err(BatchCodecError::NotABatch)?;
    Ok(v)
}

/// Entry fields as spilled: `token` removed.
fn spilled_fields(entry: &Entry) -> Option<Vec<(String, Vec<u8>)>> {
    entry.fields.as_ref().map(|fields| {
        fields
            .iter()
            .filter(|(name, _)| *name != "token")
            .map(|(name, value)| (name.to_string(), value.to_vec()))
            .collect()
    })
}

/// The entry rebuilt for a dead letter (its delivery count is not kept).
fn entry_of(event: &Event, fields: Fields) -> Entry {
    Entry {
        at: event.source.clone(),
        fields: Some(fields),
        deliveries: 1,
        flaw: None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::protocol::{EntryRef, Tags};
    use uuid::Uuid;

    /// The events of every version's golden record; only the first one's schema differs.
    pub fn golden_events(first_schema: Option<Uuid>) -> Vec<Event> {
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
                tags: [("region", "eu")].into_iter().collect(),
                payload: r#"{"n":1}"#.into(),
                source: source("1700000000000-0"),
                producer_id: None,
                schema_id: first_schema,
            },
            Event {
                id: uuid("0190b6a2-7c1e-7000-8000-000000000002"),
                ts_ns: -5,
                subject: None,
                tags: Tags::default(),
                payload: "{}".into(),
                source: source("1700000000000-1"),
                producer_id: Some(uuid("0190b6a2-7c1e-7000-8000-0000000000ff")),
                schema_id: None,
            },
        ]
    }

    /// The entries of `events`, each with a `token` field that must never be spilled.
    pub fn entries_with_token(events: &[Event]) -> EntriesByRef {
        let mut entries = EntriesByRef::default();
        for e in events {
            entries.insert(
                e.source.clone(),
                Entry {
                    at: e.source.clone(),
                    fields: Some(
                        [
                            ("type", &b"data"[..]),
                            ("token", b"secret-jwt"),
                            ("bin", &[0, 255, 10]),
                        ]
                        .into_iter()
                        .collect(),
                    ),
                    deliveries: 2,
                    flaw: None,
                },
            );
        }
        entries
    }

    fn event(i: u32) -> Event {
        Event {
            id: Uuid::now_v7(),
            ts_ns: 1_700_000_000_000_000_000 + i as i64,
            subject: Some(format!("s{i}")),
            tags: [("k".to_string(), format!("v{i}"))].into_iter().collect(),
            payload: format!("{{\"n\":{i}}}"),
            source: EntryRef {
                stream: "events".into(),
                id: format!("1-{i}").into(),
            },
            producer_id: (i % 2 == 1).then(Uuid::now_v7),
            schema_id: (i == 1).then(Uuid::now_v7),
        }
    }

    #[test]
    fn round_trip_of_the_current_version_keeps_events_and_drops_the_token() {
        let events: Vec<Event> = (0..3).map(event).collect();
        let entries = entries_with_token(&events[..2]);
        let bytes = encode_batch(&events, &entries).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("secret-jwt"));
        let probe: VersionOnly = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(probe.v, CURRENT_VERSION);
        let back = decode_batch(&bytes).unwrap();
        assert_eq!(back.events, events);
        assert_eq!(back.entries.len(), 2);
        let without_schema: Vec<Event> = events
            .iter()
            .map(|e| Event {
                schema_id: None,
                ..e.clone()
            })
            .collect();
        let v1 = encode_batch(&without_schema, &entries).unwrap();
        let probe: VersionOnly = serde_json::from_slice(&v1).unwrap();
        assert_eq!(
            probe.v, 1,
            "a batch without schema ids stays readable by older kernels"
        );
        assert_eq!(decode_batch(&v1).unwrap().events, without_schema);
        let e0 = &back.entries[&events[0].source];
        assert_eq!(
            e0.fields.as_ref().unwrap().to_pairs(),
            [
                ("type".to_string(), b"data".to_vec()),
                ("bin".to_string(), vec![0, 255, 10])
            ]
        );
        assert!(!back.entries.contains_key(&events[2].source));
    }

    #[test]
    fn every_known_version_has_a_golden_record_that_decodes() {
        for &v in KNOWN_VERSIONS {
            let golden = match v {
                1 => v1::tests::GOLDEN,
                2 => v2::tests::GOLDEN,
                other => panic!("version {other} has no golden record; add one"),
            };
            let batch = decode_batch(golden.as_bytes()).unwrap();
            assert_eq!(batch.events.len(), 2, "version {v}");
        }
        assert!(KNOWN_VERSIONS.contains(&CURRENT_VERSION));
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors_not_guesses() {
        // A future version, even one that looks like version 2 otherwise.
        let future = v2::tests::GOLDEN.replacen(r#""v":2"#, r#""v":3"#, 1);
        assert!(matches!(
            decode_batch(future.as_bytes()),
            Err(BatchCodecError::UnknownVersion(3))
        ));
        assert!(matches!(
            decode_batch(br#"{"v":4294967296,"events":[]}"#),
            Err(BatchCodecError::UnknownVersion(4294967296))
        ));
        // Version 1 with a field it does not have: written by a kernel that
        // changed the layout without a new version. Refused, not half-read.
        let extra = v1::tests::GOLDEN.replacen(r#""ts_ns":"#, r#""ts_us":1,"ts_ns":"#, 1);
        assert!(matches!(
            decode_batch(extra.as_bytes()),
            Err(BatchCodecError::Malformed { version: 1, .. })
        ));
        // The version read from the first bytes: what follows is that version's to refuse.
        assert!(matches!(
            decode_batch(br#"{"v":1,"events":[{]}"#),
            Err(BatchCodecError::Malformed { version: 1, .. })
        ));
        for garbage in [
            &b"\x00\x01"[..],
            b"{}",
            br#"{"v":"1"}"#,
            br#"{"v":-1}"#,
            b"[]",
        ] {
            assert!(
                matches!(decode_batch(garbage), Err(BatchCodecError::NotABatch(_))),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
    }
}
