//! Entries the writer is still working on are not delivered to it a second time: not after a
//! Redis reconnect, not by the claim sweep while Postgres is slow.

use std::time::Duration;

use crate::support::*;
use fdc_kernel::service;
use serde_json::json;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// 5 invalid and 50 valid entries.
fn workload() -> Vec<Vec<(String, String)>> {
    let mut entries: Vec<_> = (0..50)
        .map(|i| data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({ "i": i })))
        .collect();
    for _ in 0..5 {
        let mut bad = data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({}));
        bad[0].1 = "bogus".into();
        entries.push(bad);
    }
    entries
}

/// Publishes one event, waits until it is stored, then deletes it: afterwards the partitions
/// and the consumer group exist and `events` is empty.
async fn store_one_then_clear(env: &TestEnv) {
    let redis = env.redis_conn().await;
    let pg = env.pg().await;
    publish(
        &redis,
        "events",
        &[data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({}))],
    )
    .await;
    assert_eq!(
        wait_for(WAIT, 1, || count(&pg, "SELECT count(*) FROM events")).await,
        1
    );
    sqlx::query("DELETE FROM events")
        .execute(&pg)
        .await
        .unwrap();
}

/// Holds an exclusive lock on `events` until dropped: the writer's insert waits.
async fn lock_events(env: &TestEnv) -> sqlx::PgConnection {
    pg_conn_after(
        &env.postgres.url(),
        "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE",
    )
    .await
}

async fn assert_processed_once(env: &TestEnv, kernel: &service::RunningKernel) {
    let redis = env.redis_conn().await;
    let pg = env.pg().await;
    assert_eq!(
        wait_for(WAIT, 50, || count(&pg, "SELECT count(*) FROM events")).await,
        50
    );
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    // One warm-up entry and the 55 of the workload were handed to the writer, no more.
    assert_eq!(
        metric_at(kernel.http_addr, "kernel_redis_read_total").await,
        Some(56.0)
    );
    assert_eq!(
        xlen(&redis, "events:dlq").await,
        5,
        "each invalid entry dead-lettered once"
    );
    assert_eq!(
        metric_at(kernel.http_addr, "kernel_events_duplicate_total").await,
        Some(0.0)
    );
    let dead = "kernel_redis_dlq_total{reason=\"max_deliveries\"}";
    assert_eq!(metric_at(kernel.http_addr, dead).await, Some(0.0));
}

#[tokio::test]
async fn a_redis_reconnect_does_not_redeliver_entries_in_flight() {
    let mut env = TestEnv {
        redis: RedisServer::start_with(RedisOptions { appendonly: true })
            .await
            .unwrap(),
        postgres: PostgresServer::start().await.unwrap(),
    };
    let kernel = service::start(env.config()).await.unwrap();
    let redis = env.redis_conn().await;
    // Partitions and the group exist before the lock is taken.
    store_one_then_clear(&env).await;

    let lock = lock_events(&env).await;
    publish(&redis, "events", &workload()).await;
    // The writer now holds the batch; Redis restarts (its pending list kept in the AOF) and
    // the reader reconnects.
    assert_eq!(
        wait_for(WAIT, 55, || pending(&redis, "events", "kernel")).await,
        55
    );
    env.redis.restart().await.unwrap();
    // Give the reader time to reconnect and resume reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(lock);
    assert_processed_once(&env, &kernel).await;
    kernel.shutdown().await;
}

#[tokio::test]
async fn the_claim_sweep_leaves_slow_entries_of_a_live_writer_alone() {
    let env = TestEnv::start().await.unwrap();
    let mut config = env.config();
    config.postgres.statement_timeout = Duration::from_millis(500);
    config.shutdown.timeout = Duration::from_millis(600);
    config.ingest.claim_idle = Duration::from_millis(800);
    config.ingest.claim_interval = Duration::from_millis(100);
    config.ingest.max_deliveries = 2;
    let kernel = service::start(config).await.unwrap();
    let redis = env.redis_conn().await;
    store_one_then_clear(&env).await;

    let lock = lock_events(&env).await;
    publish(&redis, "events", &workload()).await;
    // Far longer than claim_idle: the writer keeps retrying (statement timeouts).
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(lock);
    assert_processed_once(&env, &kernel).await;
    assert_eq!(
        metric_at(kernel.http_addr, "kernel_redis_claimed_total").await,
        Some(0.0)
    );
    kernel.shutdown().await;
}
