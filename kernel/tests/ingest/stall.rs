//! A stalled reader or writer lane is visible: `/readyz` answers 503 naming the stage and its
//! last error, `kernel_stalled{stage}` reads 1, and both clear once the work progresses.
//!
//! The failure is a full Redis (`maxmemory` reached, the default `noeviction` policy): it
//! refuses commands that add data (XGROUP CREATE, XADD to the dead-letter stream) while it
//! still answers PING, reads and acks, so nothing but the stall says that ingest is stuck.

use std::time::Duration;

use crate::fault_support::*;
use crate::support::*;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use uuid::Uuid;

const READER: &str = "kernel_stalled{stage=\"reader\"}";
const WRITER: &str = "kernel_stalled{stage=\"writer\"}";

async fn set_maxmemory(conn: &MultiplexedConnection, bytes: u64) {
    let mut conn = conn.clone();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(bytes)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Waits for `/readyz` to answer `status` with a body holding `needle`; returns the last
/// status and body.
async fn wait_readyz(addr: std::net::SocketAddr, status: u16, needle: &str) -> (u16, String) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (got, body) = http_get(addr, "/readyz").await;
        if (got == status && body.contains(needle)) || std::time::Instant::now() >= deadline {
            return (got, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events(n: usize) -> (Vec<Uuid>, Vec<Vec<(String, String)>>) {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let entries = ids
        .iter()
        .map(|id| data_fields(*id, now_ns(), None, &[], json!({ "n": 1 })))
        .collect();
    (ids, entries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_lane_failing_on_its_dead_letters_is_a_visible_stall() {
    let env = TestEnv::start().await.unwrap();
    let mut config = env.config();
    config.ingest.stall_after = Duration::from_secs(2);
    let kernel = start_ready(config).await;
    let addr = kernel.http_addr;
    let redis = env.redis_conn().await;
    let pg = env.pg().await;
    assert_eq!(metric(addr, WRITER).await, 0.0);

    // Three events and one bad entry arrive together with Redis filling up: the events are
    // stored, the dead letter is refused (OOM) on every retry.
    let (ids, mut entries) = events(3);
    let mut bad = data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({}));
    bad[1].1 = "2.0.0".into();
    entries.push(bad);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for fields in &entries {
        pipe.cmd("XADD").arg("events").arg("*").arg(fields).ignore();
    }
    pipe.cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(1)
        .ignore();
    let _: () = pipe.query_async(&mut redis.clone()).await.unwrap();
    assert_eq!(wait_stored(&pg, ids.len()).await, ids.len() as i64);

    let (status, body) = wait_readyz(addr, 503, "stalled for").await;
    assert_eq!(status, 503, "a stalled writer looks ready: {body}");
    assert!(body.contains("writer stalled for"), "{body}");
    assert!(body.contains("Redis dead-letter failed"), "{body}");
    assert!(body.contains("OOM"), "{body}");
    assert_eq!(wait_metric_at_least(addr, WRITER, 1.0).await, 1.0);
    assert_eq!(metric(addr, READER).await, 0.0);
    assert_eq!(pending(&redis, "events", "kernel").await, 4);

    // Room again: the letter goes out, everything is acknowledged, the stall clears.
    set_maxmemory(&redis, 0).await;
    let (status, body) = wait_readyz(addr, 200, "ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_for(WAIT, 0.0, || metric(addr, WRITER)).await, 0.0);
    assert_eq!(xlen(&redis, "events:dlq").await, 1);
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_cannot_join_its_group_is_a_visible_stall() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let pg = env.pg().await;
    let (ids, entries) = events(5);
    publish(&redis, "events", &entries).await;
    // Full before the kernel starts: creating the consumer group is refused (OOM).
    set_maxmemory(&redis, 1).await;

    let mut config = env.config();
    config.ingest.stall_after = Duration::from_secs(2);
    let kernel = fdc_kernel::service::start(config).await.unwrap();
    let addr = kernel.http_addr;
    let (status, body) = wait_readyz(addr, 503, "stalled for").await;
    assert_eq!(status, 503, "a stalled reader looks ready: {body}");
    assert!(body.contains("reader stalled for"), "{body}");
    assert!(body.contains("OOM"), "{body}");
    assert_eq!(wait_metric_at_least(addr, READER, 1.0).await, 1.0);
    assert_eq!(metric(addr, WRITER).await, 0.0);
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 0);

    set_maxmemory(&redis, 0).await;
    assert_eq!(wait_stored(&pg, ids.len()).await, ids.len() as i64);
    let (status, body) = wait_readyz(addr, 200, "ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_for(WAIT, 0.0, || metric(addr, READER)).await, 0.0);
    kernel.shutdown().await;
}
