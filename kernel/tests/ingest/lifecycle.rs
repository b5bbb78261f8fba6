//! Readiness follows the dependencies; retention drops whole old partitions.

use std::time::Duration;

use crate::support::*;
use fdc_kernel::service;
use fdc_kernel::store::{day_name, Store};
use serde_json::json;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn readyz_reports_postgres_outage_and_recovery() {
    let mut env = TestEnv::start().await.unwrap();
    let kernel = service::start(env.config()).await.unwrap();
    let ready = |addr| async move { http_get(addr, "/readyz").await };
    assert_eq!(
        wait_for(WAIT, 200, || async { ready(kernel.http_addr).await.0 }).await,
        200
    );
    env.postgres.kill();
    // Readiness is probed in the background: it turns within a probe period.
    assert_eq!(
        wait_for(WAIT, 503, || async { ready(kernel.http_addr).await.0 }).await,
        503
    );
    let (_, body) = ready(kernel.http_addr).await;
    assert!(body.contains("Postgres"), "{body}");
    assert_eq!(http_get(kernel.http_addr, "/healthz").await.0, 200);
    env.postgres.restart().await.unwrap();
    assert_eq!(
        wait_for(WAIT, 200, || async { ready(kernel.http_addr).await.0 }).await,
        200
    );
    let stop = kernel.stop_token();
    stop.cancel();
    // While shutting down the kernel says so (or is already gone).
    let status = ready(kernel.http_addr).await.0;
    assert_ne!(status, 200);
    kernel.wait().await.unwrap();
}

#[tokio::test]
async fn group_gauges_show_the_backlog_drained() {
    let (env, kernel, redis) = env_with_kernel().await;
    let entries: Vec<_> = (0..50)
        .map(|_| data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({})))
        .collect();
    publish(&redis, "events", &entries).await;
    let pg = env.pg().await;
    assert_eq!(
        wait_for(WAIT, 50, || count(&pg, "SELECT count(*) FROM events")).await,
        50
    );
    for series in [
        "kernel_group_pending{stream=\"events\"}",
        "kernel_group_lag{stream=\"events\"}",
    ] {
        let value = wait_for(Duration::from_secs(15), Some(0.0), || async {
            let (_, body) = http_get(kernel.http_addr, "/metrics").await;
            metric_value(&body, series)
        })
        .await;
        assert_eq!(value, Some(0.0), "{series}");
    }
    kernel.shutdown().await;
}

#[tokio::test]
async fn retention_drops_old_partitions_and_their_dedup_rows() {
    let (env, kernel, redis) = env_with_kernel().await;
    let today = now_ns().div_euclid(DAY_NS);
    let entries: Vec<_> = [10, 9, 1, 0]
        .iter()
        .map(|age| {
            let ts = (today - age) * DAY_NS + 1_000;
            data_fields(Uuid::now_v7(), ts, None, &[("k", "v")], json!({}))
        })
        .collect();
    publish(&redis, "events", &entries).await;
    let pg = env.pg().await;
    assert_eq!(
        wait_for(WAIT, 4, || count(&pg, "SELECT count(*) FROM events")).await,
        4
    );
    kernel.shutdown().await;

    let store = Store::with_pool(pg.clone(), "retention-test");
    let dropped = store.partitions().drop_older_than(&pg, 5).await.unwrap();
    assert_eq!(dropped, vec![today - 10, today - 9]);
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 2);
    assert_eq!(count(&pg, "SELECT count(*) FROM event_tags").await, 2);
    assert_eq!(count(&pg, "SELECT count(*) FROM event_index").await, 2);
    let gone = format!(
        "SELECT count(*) FROM pg_class WHERE relname = 'events_p{0}'",
        day_name(today - 10)
    );
    assert_eq!(count(&pg, &gone).await, 0);
}
