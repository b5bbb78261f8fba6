//! Pending entries of a dead consumer: claimed, poison entries dead-lettered, trimmed ones
//! counted, and re-publish of stored events.

use std::time::Duration;

use crate::fault_support::read_without_ack;
use crate::support::*;
use fdc_common::config::Config;
use fdc_kernel::service;
use serde_json::json;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// Claims after 1.5 s idle, checked every 200 ms.
fn fast_claims(env: &TestEnv) -> Config {
    let mut config = env.config();
    config.postgres.statement_timeout = Duration::from_secs(1);
    config.shutdown.timeout = Duration::from_millis(1000);
    config.ingest.claim_idle = Duration::from_millis(1500);
    config.ingest.claim_interval = Duration::from_millis(200);
    config
}

#[tokio::test]
async fn a_dead_consumers_pending_entries_are_claimed_and_stored() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let now = now_ns();
    let entries: Vec<_> = (0..300)
        .map(|i| data_fields(Uuid::now_v7(), now, None, &[], json!({ "i": i })))
        .collect();
    publish(&redis, "events", &entries).await;
    read_without_ack(&redis, "ghost", 300).await;
    assert_eq!(pending(&redis, "events", "kernel").await, 300);

    let kernel = service::start(fast_claims(&env)).await.unwrap();
    let pg = env.pg().await;
    assert_eq!(
        wait_for(WAIT, 300, || count(&pg, "SELECT count(*) FROM events")).await,
        300
    );
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    assert_eq!(
        metric_at(kernel.http_addr, "kernel_redis_claimed_total").await,
        Some(300.0)
    );
    assert_eq!(xlen(&redis, "events:dlq").await, 0);
    kernel.shutdown().await;
}

#[tokio::test]
async fn an_entry_delivered_too_often_goes_to_the_dlq() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let poison = data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({}));
    let ids = publish(&redis, "events", &[poison]).await;
    read_without_ack(&redis, "ghost", 1).await;
    let mut config = fast_claims(&env);
    // The ghost's delivery was the first; the kernel's claim is the second.
    config.ingest.max_deliveries = 1;
    let kernel = service::start(config).await.unwrap();
    assert_eq!(wait_for(WAIT, 1, || xlen(&redis, "events:dlq")).await, 1);
    let letters = read_stream(&redis, "events:dlq").await;
    assert_eq!(letters[0]["error"], "max_deliveries");
    assert_eq!(letters[0]["source_id"], ids[0]);
    let pg = env.pg().await;
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 0);
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    let dead = "kernel_redis_dlq_total{reason=\"max_deliveries\"}";
    assert_eq!(metric_at(kernel.http_addr, dead).await, Some(1.0));
    kernel.shutdown().await;
}

#[tokio::test]
async fn entries_trimmed_while_pending_are_counted_not_fatal() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let entries: Vec<_> = (0..20)
        .map(|_| data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({})))
        .collect();
    publish(&redis, "events", &entries).await;
    read_without_ack(&redis, "ghost", 20).await;
    let mut conn = redis.clone();
    let _: i64 = redis::cmd("XTRIM")
        .arg("events")
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    let kernel = service::start(fast_claims(&env)).await.unwrap();
    let trimmed = || metric_at(kernel.http_addr, "kernel_redis_trimmed_total");
    assert_eq!(wait_for(WAIT, Some(20.0), trimmed).await, Some(20.0));
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    // The kernel keeps working afterwards.
    publish(
        &redis,
        "events",
        &[data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({}))],
    )
    .await;
    let pg = env.pg().await;
    assert_eq!(
        wait_for(WAIT, 1, || count(&pg, "SELECT count(*) FROM events")).await,
        1
    );
    kernel.shutdown().await;
}

#[tokio::test]
async fn stored_events_are_republished_once() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let mut config = env.config();
    config.republish.enabled = true;
    config.republish.stream = "events:stored".into();
    let kernel = service::start(config).await.unwrap();
    let id = Uuid::now_v7();
    let event = data_fields(
        id,
        now_ns(),
        Some("dev-9"),
        &[("site", "lab")],
        json!({"t": 1}),
    );
    publish(&redis, "events", &[event.clone(), event]).await;
    assert_eq!(wait_for(WAIT, 1, || xlen(&redis, "events:stored")).await, 1);
    let pg = env.pg().await;
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 1);
    let out = read_stream(&redis, "events:stored").await;
    assert_eq!(out[0]["id"], id.to_string());
    assert_eq!(out[0]["subject"], "dev-9");
    assert_eq!(out[0]["tags"], r#"{"site":"lab"}"#);
    assert_eq!(out[0]["payload"], r#"{"t":1}"#);
    // The duplicate is not re-published.
    let duplicates = || metric_at(kernel.http_addr, "kernel_events_duplicate_total");
    assert_eq!(wait_for(WAIT, Some(1.0), duplicates).await, Some(1.0));
    assert_eq!(xlen(&redis, "events:stored").await, 1);
    kernel.shutdown().await;
}
