//! Schema migrations on a populated database: events stored under the schema before a
//! migration stay whole and findable, and the kernel's store keeps writing (and de-duplicating)
//! after it, into old and new partitions alike.

use crate::support::{store_events as events, DAY_NS};
use fdc_kernel::protocol::Event;
use fdc_kernel::store::{Store, MIGRATOR};
use fdc_testenv::{count, TestEnv};
use uuid::Uuid;

/// The last migration of the schema before the events-write changes (5 dropped the tag rows'
/// key, 6 moved the tags onto the event row).
const BEFORE: i64 = 4;
/// Stores `events` the way a kernel of migrations 1–4 did (it no longer can: its store writes
/// today's shape): the de-duplication row, the event row, one `event_tags` row per tag, each
/// in its day's partition of both tables.
async fn store_before(pool: &sqlx::PgPool, events: &[Event]) {
    for e in events {
        let day = e.ts_ns.div_euclid(DAY_NS);
        for table in ["events", "event_tags"] {
            let ddl = fdc_kernel::store::create_partition_sql(table, day);
            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
                .execute(pool)
                .await
                .unwrap();
        }
        let ts = chrono::DateTime::from_timestamp_micros(e.ts_ns.div_euclid(1_000)).unwrap();
        sqlx::query("INSERT INTO event_index (event_id, ts) VALUES ($1, $2)")
            .bind(e.id)
            .bind(ts)
            .execute(pool)
            .await
            .unwrap();
        let subject: Uuid = sqlx::query_scalar(
            "INSERT INTO subjects (subject_id, subject_key) VALUES (gen_random_uuid(), $1) \
             ON CONFLICT (subject_key) DO UPDATE SET subject_key = EXCLUDED.subject_key \
             RETURNING subject_id",
        )
        .bind(e.subject.as_deref().unwrap())
        .fetch_one(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO events (event_id, ts, ts_ns, ts_kernel, subject_id, source_stream, \
             source_id, consumer, payload) VALUES ($1, $2, $3, now(), $4, $5, $6, 'before', $7::jsonb)",
        )
        .bind(e.id)
        .bind(ts)
        .bind(e.ts_ns)
        .bind(subject)
        .bind(&e.source.stream)
        .bind(&e.source.id)
        .bind(&e.payload)
        .execute(pool)
        .await
        .unwrap();
        for (key, value) in e.tags.iter() {
            sqlx::query(
                "WITH t AS (INSERT INTO tags (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key, value) DO UPDATE SET key = EXCLUDED.key RETURNING tag_id) \
                 INSERT INTO event_tags (event_id, tag_id, ts) SELECT $3, tag_id, $4 FROM t",
            )
            .bind(key)
            .bind(value)
            .bind(e.id)
            .bind(ts)
            .execute(pool)
            .await
            .unwrap();
        }
    }
}

/// Events of `tag` found the way docs/database.md's queries find them.
fn tagged(key: &str, value: &str) -> String {
    format!(
        "SELECT count(*) FROM events \
         WHERE tag_ids @> ARRAY[(SELECT tag_id FROM tags WHERE key = '{key}' AND value = '{value}')]"
    )
}

/// Indexes of the `events` partitions whose definition contains `fragment`.
async fn partition_indexes(pool: &sqlx::PgPool, fragment: &str) -> i64 {
    count(
        pool,
        &format!(
            "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'events\\_p%' \
             AND indexdef LIKE '%{fragment}%'"
        ),
    )
    .await
}

#[tokio::test]
async fn migrating_a_populated_database_keeps_its_events_and_the_write_path() {
    let env = TestEnv::start().await.unwrap();
    let pool = env.pg().await;
    MIGRATOR.run_to(BEFORE, &pool).await.unwrap();
    let today = chrono::Utc::now().timestamp().div_euclid(86_400);
    let old = events(today - 3, 2, 300);
    store_before(&pool, &old).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM event_tags").await, 900);

    MIGRATOR.run(&pool).await.unwrap();
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap();
    assert!(latest > BEFORE, "a migration after {BEFORE} exists");
    assert_eq!(
        count(&pool, "SELECT max(version) FROM _sqlx_migrations").await,
        latest
    );

    // What was stored before is all there: every event carries its three tags on its row,
    // the tag rows are gone (event_tags is a view over the arrays now), the subjects stay.
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 300);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM events WHERE cardinality(tag_ids) = 3"
        )
        .await,
        300
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'event\\_tags%' AND relkind <> 'v'"
        )
        .await,
        0,
        "no event_tags table or partition is left"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM event_tags").await, 900);
    assert_eq!(count(&pool, &tagged("k0", "v1")).await, 75);
    let through_view = "SELECT count(*) FROM event_tags t JOIN tags g USING (tag_id) \
                        WHERE g.key = 'k0' AND g.value = 'v1'";
    assert_eq!(count(&pool, through_view).await, 75);
    let subject = "SELECT count(*) FROM events e JOIN subjects s USING (subject_id) \
                   WHERE s.subject_key = 'subject-2'";
    assert_eq!(count(&pool, subject).await, 60);

    // A store (a restarted kernel) after the migration: redelivered old events are recognised
    // as stored, new ones land in old and new partitions (a new day among them).
    let store = Store::with_pool(pool.clone(), "test-after");
    let again = store.write_batch(&old[..100]).await.unwrap();
    assert_eq!((again.stored.len(), again.duplicates), (0, 100));
    let new = events(today - 2, 3, 90);
    let outcome = store.write_batch(&new).await.unwrap();
    assert_eq!(outcome.stored.len(), 90);
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 390);
    assert_eq!(count(&pool, "SELECT count(*) FROM event_tags").await, 1170);
    assert_eq!(count(&pool, &tagged("k0", "v1")).await, 75 + 23);
    assert_eq!(count(&pool, subject).await, 60 + 18);
    // Every partition, old and new (today's is new), has the tag index and the time index.
    let partitions = count(
        &pool,
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'events\\_p%'",
    )
    .await;
    assert_eq!(partitions, 4, "days today-3 ..= today");
    assert_eq!(partition_indexes(&pool, "USING gin (tag_ids)").await, 4);
    assert_eq!(partition_indexes(&pool, "USING brin (ts)").await, 4);
    // The tags of one old and one new event, from their rows.
    for id in [old[7].id, new[7].id] {
        let tags_of_one =
            format!("SELECT count(*) FROM events e, unnest(e.tag_ids) t WHERE e.event_id = '{id}'");
        assert_eq!(count(&pool, &tags_of_one).await, 3);
    }

    // Migration 7: every partition's key is led by `ts`, `event_index (ts)` is a BRIN index.
    assert_eq!(
        partition_indexes(&pool, "UNIQUE INDEX % USING btree (ts, event_id)").await,
        4
    );
    assert_eq!(partition_indexes(&pool, "btree (event_id").await, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'event_index_ts' \
             AND indexdef LIKE '%USING brin (ts)%'"
        )
        .await,
        1
    );
    // docs/database.md's newest-100 query reads the partitions' keys, newest first: the 100
    // newest of the old and new events, in order, without a sort.
    const NEWEST: &str = "SELECT e.event_id FROM events e ORDER BY e.ts DESC LIMIT 100";
    const EXPLAIN_NEWEST: &str =
        "EXPLAIN SELECT e.event_id FROM events e ORDER BY e.ts DESC LIMIT 100";
    let got: Vec<Uuid> = sqlx::query_scalar(NEWEST).fetch_all(&pool).await.unwrap();
    let mut all: Vec<&Event> = old.iter().chain(&new).collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.ts_ns.div_euclid(1_000)));
    let want: Vec<Uuid> = all.iter().take(100).map(|e| e.id).collect();
    assert_eq!(got, want);
    let plan: Vec<String> = sqlx::query_scalar(EXPLAIN_NEWEST)
        .fetch_all(&pool)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(!plan.contains("Sort"), "{plan}");
    assert!(plan.contains("Scan Backward using events_p"), "{plan}");
    // An old and a new event by id (docs/database.md's query), and retention's range delete
    // through the BRIN index.
    for e in [&old[7], &new[7]] {
        let by_id = format!(
            "SELECT count(*) FROM events e WHERE e.event_id = '{id}' \
             AND e.ts = (SELECT i.ts FROM event_index i WHERE i.event_id = '{id}')",
            id = e.id
        );
        assert_eq!(count(&pool, &by_id).await, 1);
    }
    let dropped = fdc_kernel::store::Partitions::default()
        .drop_older_than(&pool, 2)
        .await
        .unwrap();
    assert_eq!(dropped, [today - 3]);
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 390 - 150);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM event_index").await,
        390 - 150
    );
}

/// The upkeep of the indexes migration 6 added: the tag index's pending list of the partition
/// being written is merged and its new time ranges summarized, so queries on fresh events read
/// neither.
#[tokio::test]
async fn index_upkeep_merges_the_pending_list_and_summarizes_new_ranges() {
    let env = TestEnv::start().await.unwrap();
    let pool = env.pg().await;
    MIGRATOR.run(&pool).await.unwrap();
    sqlx::query("CREATE EXTENSION pgstattuple")
        .execute(&pool)
        .await
        .unwrap();
    let today = chrono::Utc::now().timestamp().div_euclid(86_400);
    let store = Store::with_pool(pool.clone(), "test-upkeep");
    let outcome = store.write_batch(&events(today, 1, 2_000)).await.unwrap();
    assert_eq!(outcome.stored.len(), 2_000);
    let partition = format!("events_p{}", fdc_kernel::store::day_name(today));
    let pending = format!(
        "WITH gin AS MATERIALIZED (SELECT i.indexrelid FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
         WHERE i.indrelid = '{partition}'::regclass AND am.amname = 'gin') \
         SELECT sum((pgstatginindex(indexrelid)).pending_tuples)::bigint FROM gin"
    );
    assert_eq!(
        count(&pool, &pending).await,
        2_000,
        "one pending tuple per event"
    );

    // Today's partition has both indexes; yesterday's does not exist.
    assert_eq!(store.partitions().tidy_indexes(&pool).await.unwrap(), 2);
    assert_eq!(count(&pool, &pending).await, 0);
    let unsummarized = format!(
        "SELECT brin_summarize_new_values(i.indexrelid)::bigint FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
         WHERE i.indrelid = '{partition}'::regclass AND am.amname = 'brin'"
    );
    assert_eq!(
        count(&pool, &unsummarized).await,
        0,
        "nothing left to summarize"
    );
    // The events are found through the tidied indexes.
    assert_eq!(count(&pool, &tagged("k0", "v1")).await, 500);
}
