//! Postgres switchover: the primary is stopped while events flow and its streaming replica is
//! promoted. The kernel, given both servers in one URL with `target_session_attrs=read-write`,
//! spills while neither accepts writes (the standby's read-only refusals are an outage, never a
//! dead letter), then follows the new primary; every event is stored there exactly once.

use std::time::Duration;

use crate::fault_support::*;
use crate::support::*;
use fdc_kernel::service;
use fdc_testenv::{kernel_config, PostgresPair, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_promoted_after_primary_stops_takes_every_event_once() {
    let _serial = serial().await;
    let (redis, pair) = tokio::join!(RedisServer::start(), PostgresPair::start());
    let (redis_server, mut pair) = (redis.unwrap(), pair.unwrap());
    let spill_dir = tempfile::tempdir().unwrap();
    let mut config = kernel_config(&redis_server.url(), &pair.multi_host_url());
    spill_through_outages(&mut config, spill_dir.path());
    let kernel = service::start(config).await.unwrap();
    let redis = redis_conn_at(&redis_server.url()).await;
    let old_primary = pg_pool_at(&pair.primary.url()).await;

    let set = EventSet::new(3000, 0);
    let (first, rest) = set.entries.split_at(1000);
    publish(&redis, "events", first).await;
    assert!(wait_stored_at_least(&old_primary, 1).await >= 1);
    old_primary.close().await;

    pair.primary.stop();
    let a = kernel.http_addr;
    publish_through_outage(
        &redis,
        a,
        rest,
        "no server accepts writes (only a standby answers)",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    pair.promote().await.unwrap();
    let new_primary = pg_pool_at(&pair.replica.url()).await;
    assert_eq!(
        wait_stored(&new_primary, set.ids.len()).await,
        set.ids.len() as i64
    );
    assert_eq!(
        wait_for(WAIT, 0.0, || metric(a, "kernel_spill_pending_records")).await,
        0.0
    );
    // Stored once each on the new primary, nothing pending, nothing dead-lettered.
    assert_exact(&new_primary, &redis, &set).await;
    let written = metric(a, "kernel_spill_records_written_total").await;
    assert_eq!(
        metric(a, "kernel_spill_records_replayed_total").await,
        written
    );
    kernel.shutdown().await;
}
