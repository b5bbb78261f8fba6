//! The batch write: one transaction per batch, de-duplicated by `event_index`.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use foldhash::{HashSet, HashSetExt};
use uuid::Uuid;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, Postgres};

use super::{CopyBinary, Store, StoreError};
use crate::protocol::Event;

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Ids stored by this batch (first sight of each id).
    pub stored: HashSet<Uuid>,
    /// Events whose id was already stored (redelivery) or repeated within the batch.
    pub duplicates: usize,
}

/// De-duplication first: `event_index` decides which ids are new (a concurrent replica's
/// uncommitted insert of the same id makes this wait for its outcome, so exactly one wins).
/// Ids are inserted in sorted order, so two writers claiming overlapping ids wait for each
/// other in one direction and never deadlock. The new ids come back as one array (NULL when
/// none: every id was stored before), with the transaction time, which becomes `ts_kernel`:
/// one row to decode instead of one per event.
const CLAIM_IDS: &str = "\
WITH fresh AS (
    INSERT INTO event_index (event_id, ts)
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS i(event_id, ts) ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
)
SELECT array_agg(event_id), now() FROM fresh";

/// Only the new events' rows are copied, so the partitioned table never sees a duplicate.
/// `COPY` into the partitioned parent uses Postgres's multi-insert path: fewer WAL records
/// and less executor work per row than `INSERT … SELECT`. An event's tags travel on its row
/// (`tag_ids`, migration 0006).
const COPY_EVENTS: &str = "COPY events (event_id, ts, ts_ns, ts_kernel, producer_id, \
    subject_id, schema_id, source_stream, source_id, consumer, payload, tag_ids) \
    FROM STDIN (FORMAT binary)";

impl Store {
    /// Stores `events` exactly once each: already stored ids are counted, not written again.
    /// One transaction: claim the ids in `event_index`, then `COPY` the new events with their
    /// tag ids; nothing is visible (or acknowledged by the caller) before the commit.
    /// A refused connection fails at once (see [`Store::reachable`]); an error names the
    /// server when sqlx does not.
    pub async fn write_batch(&self, events: &[Event]) -> Result<WriteOutcome, StoreError> {
        self.reachable().await?;
        self.write_batch_unchecked(events)
            .await
            .map_err(|e| self.explain(e))
    }

    async fn write_batch_unchecked(&self, events: &[Event]) -> Result<WriteOutcome, StoreError> {
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
        let subject_ids = self
            .ids
            .subject_ids(&self.pool, &subject_keys)
            .await?
            .into_iter();
        let tag_pairs: Vec<(&str, &str)> = unique.iter().flat_map(|e| e.tags.iter()).collect();
        let tag_ids = self.ids.tag_ids(&self.pool, &tag_pairs).await?.into_iter();

        let n = unique.len();
        // Only a write that ran to its end, whatever its outcome, gives its connection back.
        let mut conn = WriteConn(Some(self.pool.acquire().await?));
        let written = self
            .claim_and_copy(conn.get(), &unique, subject_ids, tag_ids)
            .await;
        conn.release(written.as_ref().err());
        let new = written?;
        let duplicates = repeated_in_batch + (n - new.len());
        Ok(WriteOutcome {
            stored: new,
            duplicates,
        })
    }

    /// The batch's transaction: claims the ids in `event_index`, copies the rows of the new
    /// ones (each with its subject and tag ids, in `unique`'s order), commits. Returns the
    /// new ids.
    async fn claim_and_copy(
        &self,
        conn: &mut PgConnection,
        unique: &[&Event],
        mut subject_ids: impl Iterator<Item = Uuid>,
        mut tag_ids: impl Iterator<Item = i64>,
    ) -> Result<HashSet<Uuid>, StoreError> {
        let ids: Vec<Uuid> = unique.iter().map(|e| e.id).collect();
        let ts: Vec<DateTime<Utc>> = unique.iter().map(|e| timestamp(e.ts_ns)).collect();
        let mut tx = conn.begin().await?;
        let (fresh, now): (Option<Vec<Uuid>>, DateTime<Utc>) = sqlx::query_as(CLAIM_IDS)
            .bind(&ids)
            .bind(&ts)
            .fetch_one(&mut *tx)
            .await?;
        let new: HashSet<Uuid> = fresh.unwrap_or_default().into_iter().collect();
        if !new.is_empty() {
            let now_us = now.timestamp_micros();
            let mut rows = CopyBinary::with_capacity(new.len() * 512);
            let mut tags: Vec<i64> = Vec::new();
            for event in unique {
                let subject = event.subject.as_ref().and_then(|_| subject_ids.next());
                tags.clear();
                tags.extend(tag_ids.by_ref().take(event.tags.len()));
                if !new.contains(&event.id) {
                    continue;
                }
                let ts_us = event.ts_ns.div_euclid(1_000);
                rows.row(12);
                rows.uuid(&event.id);
                rows.timestamptz_unix_micros(ts_us);
                rows.int8(event.ts_ns);
                rows.timestamptz_unix_micros(now_us);
                rows.opt_uuid(event.producer_id.as_ref());
                rows.opt_uuid(subject.as_ref());
                rows.opt_uuid(event.schema_id.as_ref());
                rows.text(&event.source.stream);
                rows.text(&event.source.id);
                rows.text(&self.consumer);
                rows.jsonb(&event.payload);
                rows.int8_array(&tags);
            }
            copy(&mut tx, COPY_EVENTS, rows.finish()).await?;
        }
        tx.commit().await?;
        Ok(new)
    }
}

/// The pooled connection of one batch write. sqlx cannot bring a connection left inside a
/// `COPY` back in step: a write dropped mid-`COPY` (its task aborted, as replay does with the
/// writes after a failed group) would hand the next batch on that connection answers meant
/// for the statements before (`BeginFailed`, "expected ParseComplete, got CommandComplete"),
/// for good. So the connection goes back to the pool only through [`WriteConn::release`],
/// and not even then after an error that says its protocol state is in doubt; otherwise it
/// is closed.
struct WriteConn(Option<PoolConnection<Postgres>>);

impl WriteConn {
    fn get(&mut self) -> &mut PgConnection {
        self.0
            .as_mut()
            .expect("taken only by release, which consumes it")
    }

    /// The write ran to its end (`error` if it failed): the connection goes back to the pool
    /// unless `error` puts its state in doubt.
    fn release(mut self, error: Option<&StoreError>) {
        if let Some(mut conn) = self.0.take() {
            if error.is_some_and(StoreError::leaves_connection_in_doubt) {
                conn.close_on_drop();
            }
        }
    }
}

impl Drop for WriteConn {
    /// Dropped before [`WriteConn::release`]: the write was cancelled mid-way.
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// One `COPY … FROM STDIN` of already encoded binary data.
async fn copy(conn: &mut PgConnection, statement: &str, data: Vec<u8>) -> Result<(), StoreError> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await?;
    Ok(())
}

/// Postgres keeps microseconds; the exact nanoseconds go to `ts_ns`.
fn timestamp(ts_ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(ts_ns.div_euclid(1_000)).unwrap_or(DateTime::UNIX_EPOCH)
}
