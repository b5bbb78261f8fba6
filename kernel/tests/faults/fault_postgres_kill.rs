//! Fault 1: Postgres SIGKILLed while events flow, restarted seconds later.
//! Batches go to the spill meanwhile (and are acknowledged only once durable),
//! then are replayed; every event ends up stored exactly once.

use std::time::Duration;

use crate::fault_support::*;
use crate::support::*;
use fdc_kernel::service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_mid_flow_spills_then_replays() {
    let mut env = fault_env().await;
    let spill_dir = tempfile::tempdir().unwrap();
    let mut config = env.config();
    spill_through_outages(&mut config, spill_dir.path());
    let kernel = service::start(config).await.unwrap();
    let redis = env.redis_conn().await;
    let pg = env.pg().await;

    let set = EventSet::new(3000, 50);
    let (first, rest) = set.entries.split_at(1000);
    publish(&redis, "events", first).await;
    assert!(wait_stored_at_least(&pg, 1).await >= 1);

    env.postgres.kill();
    let a = kernel.http_addr;
    publish_through_outage(&redis, a, rest, "Postgres is down").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    env.postgres.restart().await.unwrap();
    let pg = env.pg().await;
    assert_eq!(wait_stored(&pg, set.ids.len()).await, set.ids.len() as i64);
    assert_eq!(
        wait_for(WAIT, 0.0, || metric(a, "kernel_spill_pending_records")).await,
        0.0
    );
    assert_exact(&pg, &redis, &set).await;

    let written = metric(a, "kernel_spill_records_written_total").await;
    assert!(written >= 1.0);
    assert_eq!(
        metric(a, "kernel_spill_records_replayed_total").await,
        written
    );
    assert_eq!(
        metric(a, "kernel_spill_events_written_total").await,
        metric(a, "kernel_spill_events_replayed_total").await
    );
    assert_eq!(metric(a, "kernel_spill_bytes").await, 0.0);
    assert_eq!(metric(a, "kernel_spill_corrupt_segments_total").await, 0.0);
    kernel.shutdown().await;
}
