//! The storage limit: what one Postgres session can store of W1 with nothing in between.
//!
//! Subjects and tags are inserted and their ids resolved before the clock starts, the daily
//! partitions exist, and then each batch is one transaction of three binary `COPY`s straight
//! into `event_index`, `events` and `event_tags`. The rows are encoded on another thread ahead
//! of time, so the session never waits for the client: the figure is Postgres's own.
//! A schema keeping tags as an array ([`TagShape::Array`]) gets them in `events.tag_ids`
//! and no `event_tags` COPY.

use std::collections::BTreeSet;

use sqlx::Connection;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::env::{BenchEnv, RunDb};
use super::variant::{SchemaVariant, TagShape};
use super::workload::{W1Event, TAG_VALUES, W1};
use super::{BenchError, Sample};
use fdc_kernel::store::{CopyBinary, Partitions};

/// Encoded COPY streams of one batch.
struct Batch {
    events: usize,
    index: Vec<u8>,
    rows: Vec<u8>,
    /// `event_tags` rows; `None` when the tags are in the event rows.
    tags: Option<Vec<u8>>,
}

/// Resolved ids of every subject and tag W1 can draw.
pub struct Ids {
    /// `subjects[index]` is the id of `workload::subject_key(index)`.
    pub subjects: Vec<Uuid>,
    /// `tags[key * TAG_VALUES + value]`.
    tags: Vec<i64>,
}

pub async fn run(
    env: &BenchEnv,
    w1: W1,
    batch_size: usize,
    schema: &SchemaVariant,
    wal_records: bool,
) -> Result<Sample, BenchError> {
    env.in_run_with("limit", schema, async |db| {
        let (sample, _, wal_start) = load(env, db, w1, batch_size, schema.tags).await?;
        if wal_records {
            let label = match schema.label.as_str() {
                "" => String::new(),
                label => format!("{label}: "),
            };
            super::wal_records::print(&db.pool, &wal_start, w1.events, &label).await?;
        }
        Ok(sample)
    })
    .await
}

/// Loads W1 into `db` the limit's way; the sample is the load's, the ids are those of every
/// subject and tag W1 can draw (for the query run's parameters), and the WAL position where
/// the load started (after its preparation).
pub async fn load(
    env: &BenchEnv,
    db: &RunDb,
    w1: W1,
    batch_size: usize,
    shape: TagShape,
) -> Result<(Sample, std::sync::Arc<Ids>, String), BenchError> {
    let ids = std::sync::Arc::new(prepare(db, w1).await?);
    let mut conn = sqlx::PgConnection::connect(&db.url).await?;
    // The same socket option as the kernel's pool (see store::set_nodelay): without it
    // every COPY waits for a delayed ACK and the "limit" would measure TCP, not Postgres.
    fdc_kernel::store::set_nodelay(&mut conn).await?;
    env.checkpoint().await?;

    let (tx, mut rx) = mpsc::channel::<Batch>(4);
    let encoder = {
        let ids = ids.clone();
        std::thread::spawn(move || {
            let mut events = w1.iter().peekable();
            while events.peek().is_some() {
                let batch: Vec<W1Event> = events.by_ref().take(batch_size).collect();
                if tx.blocking_send(encode(&batch, &ids, shape)).is_err() {
                    return;
                }
            }
        })
    };

    let wal_start = super::wal_records::start(&db.pool).await?;
    let meter = env.meter().await?;
    let mut stored = 0usize;
    while let Some(batch) = rx.recv().await {
        let mut tx = conn.begin().await?;
        copy(
            &mut tx,
            "COPY event_index (event_id, ts) FROM STDIN (FORMAT binary)",
            batch.index,
        )
        .await?;
        let events = match shape {
            TagShape::Rows => EVENTS_COPY,
            TagShape::Array => EVENTS_WITH_TAG_IDS_COPY,
        };
        copy(&mut tx, events, batch.rows).await?;
        if let Some(tags) = batch.tags {
            copy(
                &mut tx,
                "COPY event_tags (event_id, tag_id, ts) FROM STDIN (FORMAT binary)",
                tags,
            )
            .await?;
        }
        tx.commit().await?;
        stored += batch.events;
    }
    let seconds = meter.started.elapsed().as_secs_f64();
    // A backend reports its WAL counters to pg_stat_wal at most once a second; make this
    // session report now (it does when it goes idle after this statement, before answering),
    // so the run's last second of WAL is not left out.
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut conn)
        .await?;
    let server = env.read_meter(&meter).await?;
    let _ = encoder.join();

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await?;
    if count != w1.events as i64 || stored != w1.events {
        return Err(BenchError::Check(format!(
            "limit stored {count} events, sent {}",
            w1.events
        )));
    }
    Ok((Sample::new(w1.events, seconds, server), ids, wal_start))
}

const EVENTS_COPY: &str = "COPY events (event_id, ts, ts_ns, ts_kernel, producer_id, \
     subject_id, schema_id, source_stream, source_id, consumer, payload) FROM STDIN (FORMAT binary)";
const EVENTS_WITH_TAG_IDS_COPY: &str = "COPY events (event_id, ts, ts_ns, ts_kernel, \
     producer_id, subject_id, schema_id, source_stream, source_id, consumer, payload, tag_ids) \
     FROM STDIN (FORMAT binary)";

async fn copy(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    data: Vec<u8>,
) -> Result<(), BenchError> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await?;
    Ok(())
}

/// Inserts every subject and tag and both days' partitions; returns the ids.
async fn prepare(db: &RunDb, w1: W1) -> Result<Ids, BenchError> {
    let keys: Vec<String> = W1::all_subjects().collect();
    let subjects: Vec<Uuid> = keys.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO subjects (subject_id, subject_key) SELECT * FROM unnest($1::uuid[], $2::text[])",
    )
    .bind(&subjects)
    .bind(&keys)
    .execute(&db.pool)
    .await?;
    let (tag_keys, tag_values): (Vec<String>, Vec<String>) = W1::all_tags().unzip();
    // `WITH ORDINALITY` keeps the vocabulary order, so index = key * TAG_VALUES + value.
    let tags: Vec<i64> = sqlx::query_scalar(
        "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS i(k, v, n)), \
         ins AS (INSERT INTO tags (key, value) SELECT k, v FROM input ORDER BY n RETURNING tag_id, key, value) \
         SELECT ins.tag_id FROM ins JOIN input ON ins.key = input.k::citext AND ins.value = input.v::citext \
         ORDER BY input.n",
    )
    .bind(&tag_keys)
    .bind(&tag_values)
    .fetch_all(&db.pool)
    .await?;
    if tags.len() != tag_keys.len() {
        return Err(BenchError::Check("tag vocabulary not resolved".into()));
    }
    let days: BTreeSet<i64> = [w1.first_day, w1.first_day + 1].into();
    Partitions::default().ensure(&db.pool, &days).await?;
    // A schema before migration 6 has a partitioned event_tags too; the kernel no longer
    // makes its partitions.
    let tag_table: Option<String> = sqlx::query_scalar(
        "SELECT relkind::text FROM pg_class WHERE oid = to_regclass('event_tags')",
    )
    .fetch_optional(&db.pool)
    .await?;
    if tag_table.as_deref() == Some("p") {
        for &day in &days {
            let ddl = fdc_kernel::store::create_partition_sql("event_tags", day);
            // Safe: a constant table name, a day number and its dates.
            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
                .execute(&db.pool)
                .await?;
        }
    }
    Ok(Ids { subjects, tags })
}

fn encode(batch: &[W1Event], ids: &Ids, shape: TagShape) -> Batch {
    let now_us = chrono::Utc::now().timestamp_micros();
    let mut index = CopyBinary::with_capacity(batch.len() * 40);
    let mut rows = CopyBinary::with_capacity(batch.len() * 480);
    let mut tags = CopyBinary::with_capacity(batch.len() * 3 * 40);
    for event in batch {
        let ts_us = event.ts_ns.div_euclid(1_000);
        index.row(2);
        index.uuid(&event.id);
        index.timestamptz_unix_micros(ts_us);

        let tag_ids = event
            .tags
            .map(|(key, value)| ids.tags[key as usize * TAG_VALUES as usize + value as usize]);
        rows.row(match shape {
            TagShape::Rows => 11,
            TagShape::Array => 12,
        });
        rows.uuid(&event.id);
        rows.timestamptz_unix_micros(ts_us);
        rows.int8(event.ts_ns);
        rows.timestamptz_unix_micros(now_us);
        rows.null();
        rows.uuid(&ids.subjects[event.subject as usize]);
        rows.null();
        rows.text("events");
        // A stream-entry-like id of the same length as Redis's.
        rows.text(&format!("{}-0", event.ts_ns / 1_000_000));
        rows.text("bench-limit");
        rows.jsonb(&event.payload);
        match shape {
            TagShape::Array => rows.int8_array(&tag_ids),
            TagShape::Rows => {
                for tag_id in tag_ids {
                    tags.row(3);
                    tags.uuid(&event.id);
                    tags.int8(tag_id);
                    tags.timestamptz_unix_micros(ts_us);
                }
            }
        }
    }
    Batch {
        events: batch.len(),
        index: index.finish(),
        rows: rows.finish(),
        tags: (shape == TagShape::Rows).then(|| tags.finish()),
    }
}
