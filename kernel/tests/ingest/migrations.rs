//! Schema migrations on a populated database: events stored under the schema before a
//! migration stay whole and findable, and the kernel's store keeps writing (and de-duplicating)
//! after it, into old and new partitions alike.

use fdc_kernel::entry::EntryRef;
use fdc_kernel::protocol::Event;
use fdc_kernel::store::{Store, MIGRATOR};
use fdc_testenv::{count, TestEnv};
use uuid::Uuid;

/// The last migration of the schema before the events-write changes.
const BEFORE: i64 = 4;
const DAY_NS: i64 = 86_400 * 1_000_000_000;

fn events(first_day: i64, days: i64, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let ts_ns = first_day * DAY_NS + (i as i64 % days) * DAY_NS + i as i64 * 1_000_000;
            Event {
                id: Uuid::now_v7(),
                ts_ns,
                subject: Some(format!("subject-{}", i % 5)),
                tags: (0..3)
                    .map(|k| (format!("k{k}"), format!("v{}", (i + k) % 4)))
                    .collect(),
                payload: format!(r#"{{"n":{i}}}"#),
                source: EntryRef {
                    stream: "events".into(),
                    id: format!("{i}-0"),
                },
                producer_id: None,
                schema_id: None,
            }
        })
        .collect()
}

async fn primary_keys_of_tag_tables(pool: &sqlx::PgPool) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid \
         WHERE c.contype = 'p' AND r.relname LIKE 'event\\_tags%'",
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
    let store = Store::with_pool(pool.clone(), "test-before");
    let outcome = store.write_batch(&old).await.unwrap();
    assert_eq!(outcome.stored.len(), 300);
    // Today's schema: both tag partitions and the parent have their primary key.
    assert_eq!(primary_keys_of_tag_tables(&pool).await, 3);

    MIGRATOR.run(&pool).await.unwrap();
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap();
    assert!(latest > BEFORE, "a migration after {BEFORE} exists");
    assert_eq!(
        count(&pool, "SELECT max(version) FROM _sqlx_migrations").await,
        latest
    );
    assert_eq!(primary_keys_of_tag_tables(&pool).await, 0);

    // What was stored before is all there and found by the tag and subject indexes.
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 300);
    assert_eq!(count(&pool, "SELECT count(*) FROM event_tags").await, 900);
    let tagged = "SELECT count(*) FROM event_tags t JOIN tags g USING (tag_id) \
                  WHERE g.key = 'k0' AND g.value = 'v1'";
    assert_eq!(count(&pool, tagged).await, 75);

    // A new store (a restarted kernel) after the migration: redelivered old events are
    // recognised as stored, new ones land in old and new partitions (a new day among them).
    let store = Store::with_pool(pool.clone(), "test-after");
    let again = store.write_batch(&old[..100]).await.unwrap();
    assert_eq!((again.stored.len(), again.duplicates), (0, 100));
    let new = events(today - 2, 3, 90);
    let outcome = store.write_batch(&new).await.unwrap();
    assert_eq!(outcome.stored.len(), 90);
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 390);
    assert_eq!(count(&pool, "SELECT count(*) FROM event_tags").await, 1170);
    assert_eq!(
        count(
            &pool,
            "SELECT count(DISTINCT (event_id, tag_id)) FROM event_tags"
        )
        .await,
        1170
    );
    assert_eq!(count(&pool, tagged).await, 75 + 23);
    // Every partition, old and new (a new day among them), has the new shape: no key, the
    // index on event_id beside the query index.
    assert_eq!(primary_keys_of_tag_tables(&pool).await, 0);
    let day = fdc_kernel::store::day_name(today);
    for (index, want) in [("(event_id)", 4), ("(tag_id, ts)", 4)] {
        let n = count(
            &pool,
            &format!(
                "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'event\\_tags\\_p%' \
                 AND indexdef LIKE '%{index}'"
            ),
        )
        .await;
        assert_eq!(n, want, "partitions indexed on {index}");
    }
    let new_day = count(
        &pool,
        &format!("SELECT count(*) FROM pg_indexes WHERE tablename = 'event_tags_p{day}'"),
    )
    .await;
    assert_eq!(new_day, 2, "today's partition: event_id and (tag_id, ts)");
    // The tags of one old event, through the new index.
    let tags_of_one = format!(
        "SELECT count(*) FROM event_tags WHERE event_id = '{}'",
        old[7].id
    );
    assert_eq!(count(&pool, &tags_of_one).await, 3);
}
