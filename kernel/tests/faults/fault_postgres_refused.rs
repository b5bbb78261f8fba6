//! Fault: Postgres refuses connections (killed, port closed). Batches spill at once instead
//! of each waiting `postgres.connect_timeout` for an answer that already came; the timeout is
//! for silent networks only. Here it is longer than the whole test may wait, so a batch that
//! waited for it would fail the test.

use std::time::{Duration, Instant};

use crate::fault_support::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_postgres_spills_each_batch_without_waiting_the_connect_timeout() {
    let mut env = fault_env().await;
    let spill_dir = tempfile::tempdir().unwrap();
    let mut config = env.config();
    config.postgres.connect_timeout = WAIT + Duration::from_secs(60);
    config.ingest.batch_max_size = 100;
    config.spill = Some(spill_config(spill_dir.path(), 64 << 20));
    let (kernel, redis) = start_ready_with_redis(&env, config).await;
    let a = kernel.http_addr;

    let set = EventSet::new(2000, 0);
    let (before, during) = set.entries.split_at(500);
    publish(&redis, "events", before).await;
    let pg = env.pg().await;
    assert_eq!(wait_stored(&pg, 500).await, 500);
    drop(pg);

    env.postgres.kill();
    let killed = Instant::now();
    // Live traffic during the outage: the backlog is what was published and not yet
    // acknowledged (spilled).
    let mut max_backlog = 0.0f64;
    for (n, chunk) in during.chunks(100).enumerate() {
        publish(&redis, "events", chunk).await;
        let acked = metric(a, "kernel_redis_ack_total").await;
        max_backlog = max_backlog.max((500 + (n + 1) * chunk.len()) as f64 - acked);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0,
        "every batch of the outage spilled"
    );
    assert_eq!(
        metric(a, "kernel_spill_events_written_total").await,
        during.len() as f64
    );
    eprintln!(
        "outage: {} events spilled {:?} after the kill; largest backlog {max_backlog}",
        during.len(),
        killed.elapsed()
    );

    end_outage(&mut env, &redis, &set).await;
    kernel.shutdown().await;
}
