//! A batch write cancelled part-way (its task aborted, as spill replay aborts the writes after
//! a failed group) leaves the store's pool usable: the next batch on the same connection
//! slot is stored, not refused with an error that looks like the data's fault.

use crate::support::{store_events, DAY_NS};
use fdc_kernel::protocol::Event;
use fdc_kernel::store::{Store, MIGRATOR};
use fdc_testenv::{count, now_ns, PostgresServer};
use sqlx::postgres::PgPoolOptions;

/// `n` events of today.
fn events(n: usize) -> Vec<Event> {
    store_events(now_ns().div_euclid(DAY_NS), 1, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_aborted_mid_copy_does_not_spoil_the_next_one() {
    let postgres = PostgresServer::start().await.unwrap();
    // One connection: every write after an aborted one runs on the connection it used. Not
    // tested before use, as the kernel's pool is not (`Store::connect_lazy`).
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&postgres.url())
        .await
        .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let store = Store::with_pool(pool.clone(), "test");
    // Subjects, tags and today's partition known: the big writes go straight to their COPY.
    store.write_batch(&events(20)).await.unwrap();
    // How long a big write takes here, whole: the aborts are spread over that time.
    let started = std::time::Instant::now();
    store.write_batch(&events(10_000)).await.unwrap();
    let whole = started.elapsed();

    let rounds = 24u32;
    let mut cancelled = 0;
    let mut smalls = Vec::new();
    for round in 0..rounds {
        let big = events(10_000);
        let writer = store.clone();
        let task = tokio::spawn(async move { writer.write_batch(&big).await });
        // Spread over the big write's whole course, from before its COPY to after its commit.
        tokio::time::sleep(whole * round / (rounds - 4)).await;
        task.abort();
        if task.await.is_err() {
            cancelled += 1;
        }
        let small = events(1);
        let outcome = store
            .write_batch(&small)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the write after an aborted one: {e}"));
        assert_eq!(outcome.stored.len(), 1, "round {round}");
        smalls.push(small[0].id);
    }
    // The test means something only if writes were cut off mid-way.
    assert!(
        cancelled >= 5,
        "only {cancelled} of {rounds} writes were cancelled"
    );
    let ids: Vec<String> = smalls.iter().map(|id| format!("'{id}'")).collect();
    let stored = format!(
        "SELECT count(*) FROM events WHERE event_id IN ({})",
        ids.join(",")
    );
    assert_eq!(count(&pool, &stored).await, rounds as i64);
}
