//! The batch write: one statement, so one implicit transaction, per batch.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::protocol::Event;

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Ids stored by this batch (first sight of each id).
    pub stored: HashSet<Uuid>,
    /// Events whose id was already stored (redelivery) or repeated within the batch.
    pub duplicates: usize,
}

/// De-duplication, events and tags in one statement: `event_index` decides which ids are
/// new, and only those rows reach `events` and `event_tags`. Data-modifying CTEs always run
/// to completion, so the final SELECT only reports the new ids.
const INSERT_BATCH: &str = "\
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::uuid[], $5::uuid[],
                         $6::text[], $7::text[], $8::text[])
        AS i(event_id, ts, ts_ns, producer_id, subject_id, source_stream, source_id, payload)
), fresh AS (
    INSERT INTO event_index (event_id, ts)
    SELECT event_id, ts FROM input
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
), stored_events AS (
    INSERT INTO events (event_id, ts, ts_ns, ts_kernel, producer_id, subject_id, schema_id,
                        source_stream, source_id, consumer, payload)
    SELECT i.event_id, i.ts, i.ts_ns, now(), i.producer_id, i.subject_id, NULL,
           i.source_stream, i.source_id, $9, i.payload::jsonb
    FROM input i JOIN fresh f ON f.event_id = i.event_id
), stored_tags AS (
    INSERT INTO event_tags (event_id, tag_id, ts)
    SELECT t.event_id, t.tag_id, t.ts
    FROM unnest($10::uuid[], $11::bigint[], $12::timestamptz[]) AS t(event_id, tag_id, ts)
    JOIN fresh f ON f.event_id = t.event_id
)
SELECT event_id FROM fresh";

impl Store {
    /// Stores `events` exactly once each: already stored ids are counted, not written again.
    pub async fn write_batch(&self, events: &[Event]) -> Result<WriteOutcome, StoreError> {
        let mut seen = HashSet::with_capacity(events.len());
        let unique: Vec<&Event> = events.iter().filter(|e| seen.insert(e.id)).collect();
        let repeated_in_batch = events.len() - unique.len();
        if unique.is_empty() {
            return Ok(WriteOutcome {
                duplicates: repeated_in_batch,
                ..WriteOutcome::default()
            });
        }

        let days: BTreeSet<i64> = unique.iter().map(|e| e.day()).collect();
        self.partitions.ensure(&self.pool, &days).await?;

        let subject_keys: Vec<&str> = unique.iter().filter_map(|e| e.subject.as_deref()).collect();
        let mut subject_ids = self
            .ids
            .subject_ids(&self.pool, &subject_keys)
            .await?
            .into_iter();
        let tag_pairs: Vec<(&str, &str)> = unique
            .iter()
            .flat_map(|e| e.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect();
        let tag_ids = self.ids.tag_ids(&self.pool, &tag_pairs).await?;

        let n = unique.len();
        let mut ids = Vec::with_capacity(n);
        let mut ts = Vec::with_capacity(n);
        let mut ts_ns = Vec::with_capacity(n);
        let mut producers = Vec::with_capacity(n);
        let mut subjects = Vec::with_capacity(n);
        let mut streams = Vec::with_capacity(n);
        let mut source_ids = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut tag_events = Vec::with_capacity(tag_ids.len());
        let mut tag_ts = Vec::with_capacity(tag_ids.len());
        for event in &unique {
            let time = timestamp(event.ts_ns);
            ids.push(event.id);
            ts.push(time);
            ts_ns.push(event.ts_ns);
            producers.push(event.producer_id);
            subjects.push(event.subject.as_ref().and_then(|_| subject_ids.next()));
            streams.push(event.source.stream.as_str());
            source_ids.push(event.source.id.as_str());
            payloads.push(event.payload.as_str());
            for _ in &event.tags {
                tag_events.push(event.id);
                tag_ts.push(time);
            }
        }

        let fresh: Vec<Uuid> = sqlx::query_scalar(INSERT_BATCH)
            .bind(&ids)
            .bind(&ts)
            .bind(&ts_ns)
            .bind(&producers)
            .bind(&subjects)
            .bind(&streams)
            .bind(&source_ids)
            .bind(&payloads)
            .bind(&self.consumer)
            .bind(&tag_events)
            .bind(&tag_ids)
            .bind(&tag_ts)
            .fetch_all(&self.pool)
            .await?;
        let duplicates = repeated_in_batch + (n - fresh.len());
        Ok(WriteOutcome {
            stored: fresh.into_iter().collect(),
            duplicates,
        })
    }
}

/// Postgres keeps microseconds; the exact nanoseconds go to `ts_ns`.
fn timestamp(ts_ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(ts_ns.div_euclid(1_000)).unwrap_or(DateTime::UNIX_EPOCH)
}
