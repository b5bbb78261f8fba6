//! Fault 6: the spill fills up while Postgres is down. The kernel stops
//! reading, reports not-ready and acknowledges nothing beyond what the spill
//! (or the DLQ) holds; after Postgres returns, everything arrives.

use std::path::Path;
use std::time::Duration;

use crate::fault_support::*;
use crate::support::*;
use fdc_kernel::ingest::spill_record;
use fdc_spill::codec;

/// Events inside the spill's segment files, read straight from disk.
fn events_on_disk(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            let bytes = std::fs::read(&path).unwrap();
            let scan = codec::scan_body(&bytes[codec::SEGMENT_HEADER_LEN..]);
            for record in scan.records {
                n += spill_record::decode_batch(&record).unwrap().events.len();
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spill_stops_reading_and_acks_only_what_is_stored() {
    let mut env = fault_env().await;
    let spill_dir = tempfile::tempdir().unwrap();
    let mut config = env.config();
    config.postgres.connect_timeout = Duration::from_millis(500);
    config.ingest.batch_max_size = 50;
    config.spill = Some(spill_config(spill_dir.path(), 100_000));
    let (kernel, redis) = start_ready_with_redis(&env, config).await;
    let a = kernel.http_addr;

    let set = publish_during_outage(&mut env, &redis, EventSet::new(2000, 40)).await;
    assert!(wait_metric_at_least(a, "kernel_spill_full_total", 1.0).await >= 1.0);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let acked = metric(a, "kernel_redis_ack_total").await;
    let read = metric(a, "kernel_redis_read_total").await;
    let spilled = metric(a, "kernel_spill_events_written_total").await;
    let dlq = xlen(&redis, "events:dlq").await as f64;
    assert!(spilled > 0.0);
    // Acknowledged = durably spilled + dead-lettered; nothing else.
    assert_eq!(acked, spilled + dlq);
    assert_eq!(events_on_disk(spill_dir.path()) as f64, spilled);
    // Read but unacknowledged entries are still pending in Redis.
    assert_eq!(
        pending(&redis, "events", "kernel").await as f64,
        read - acked
    );
    // Reading stopped: the backlog stays in Redis.
    assert!(
        read < set.entries.len() as f64,
        "read {read} of {}",
        set.entries.len()
    );
    // Not-ready for the spill-full reason, not only because Postgres is down.
    let (status, body) = http_get(a, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("writer blocked") && body.contains("spill full"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(metric(a, "kernel_redis_ack_total").await, acked);
    assert_eq!(metric(a, "kernel_redis_read_total").await, read);

    end_outage(&mut env, &redis, &set).await;
    assert_eq!(
        wait_for(WAIT, 0.0, || metric(a, "kernel_spill_pending_records")).await,
        0.0
    );
    assert_eq!(
        metric(a, "kernel_spill_events_replayed_total").await,
        spilled
    );
    assert_eq!(events_on_disk(spill_dir.path()), 0);
    kernel.shutdown().await;
}
