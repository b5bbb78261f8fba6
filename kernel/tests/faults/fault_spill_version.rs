//! Upgrade/rollback of the spill's batch record, end to end: a kernel finds a
//! spill holding a record of a batch version it does not know (written by a
//! newer kernel before a rollback) between records it does know. The unknown
//! record is moved to a quarantine file byte for byte, none of its events is
//! stored, and every other record is replayed. A quarantined record this
//! build can decode (left by an older build) is put back and replayed.

use std::collections::HashSet;
use std::fs;

use crate::fault_support::*;
use crate::support::*;
use fdc_common::config::spill::SpillConfig;
use fdc_kernel::ingest::spill_record;
use fdc_kernel::protocol::{EntriesByRef, Event};
use fdc_kernel::service;
use fdc_spill::{SpillMetrics, SpillStore};
use uuid::Uuid;

/// `n` events as the pipeline spills them, entry ids `<base>-<i>`.
fn batch_of(n: usize, base: u64) -> (Vec<Event>, EntriesByRef) {
    spilled_batch(
        n,
        |i| format!("{base}-{i}"),
        "s",
        &base.to_string(),
        &[("type", b"data")],
    )
}

fn ids(events: &[Event]) -> HashSet<Uuid> {
    events.iter().map(|e| e.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_batch_version_is_quarantined_and_the_rest_replayed() {
    let env = fault_env().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpillConfig::new(dir.path());

    let a = batch_of(400, 1);
    let b = batch_of(400, 2);
    let future = batch_of(50, 3);
    let old_quarantined = batch_of(300, 4);
    // What a newer kernel writing a batch version this build does not know might leave behind.
    let unknown = spill_record::CURRENT_VERSION + 1;
    assert!(!spill_record::KNOWN_VERSIONS.contains(&unknown));
    let v1 = spill_record::encode_batch(&future.0, &future.1).unwrap();
    let newer = String::from_utf8(v1)
        .unwrap()
        .replacen(r#"{"v":1,"#, &format!(r#"{{"v":{unknown},"#), 1)
        .into_bytes();
    assert!(newer.starts_with(format!(r#"{{"v":{unknown},"#).as_bytes()));
    let future_at = {
        let (mut store, _) = SpillStore::open(cfg.clone(), SpillMetrics::new()).unwrap();
        store
            .append(&spill_record::encode_batch(&a.0, &a.1).unwrap())
            .unwrap();
        let at = store.append(&newer).unwrap();
        store
            .append(&spill_record::encode_batch(&b.0, &b.1).unwrap())
            .unwrap();
        at
    };
    // A version-1 record an older build had quarantined: this build reads it.
    let requeue_name = "quarantine-00000000000000000000-000000000007.rec";
    fs::write(
        dir.path().join(requeue_name),
        spill_record::encode_batch(&old_quarantined.0, &old_quarantined.1).unwrap(),
    )
    .unwrap();

    let mut config = env.config();
    config.spill = Some(cfg.clone());
    let kernel = service::start(config).await.unwrap();
    let addr = kernel.http_addr;
    let pg = env.pg().await;
    let redis = env.redis_conn().await;

    let mut want = ids(&a.0);
    want.extend(ids(&b.0));
    want.extend(ids(&old_quarantined.0));
    // Exactly the known records; not one event of the unknown version.
    assert_spill_replayed_exactly(&pg, addr, &want).await;

    assert_metrics(
        &http_get(addr, "/metrics").await.1,
        &[
            ("kernel_spill_quarantined_records_total", 1.0),
            ("kernel_spill_quarantine_files", 1.0),
            ("kernel_spill_records_replayed_total", 4.0),
            ("kernel_spill_events_replayed_total", want.len() as f64),
        ],
    );
    assert_eq!(xlen(&redis, "events:dlq").await, 0);
    // The unknown record is on disk byte for byte; the requeued file is gone;
    // every segment is replayed and deleted.
    let name = quarantine_name(future_at);
    assert_eq!(
        quarantine_files(dir.path()),
        vec![(name.clone(), newer.clone())]
    );
    assert_eq!(metric(addr, "kernel_spill_segments").await, 0.0);
    kernel.shutdown().await;

    // A restart of the same build leaves the quarantined record alone.
    let mut config = env.config();
    config.spill = Some(cfg);
    let kernel = service::start(config).await.unwrap();
    let addr = kernel.http_addr;
    assert_eq!(metric(addr, "kernel_spill_quarantine_files").await, 1.0);
    assert_eq!(
        metric(addr, "kernel_spill_quarantined_records_total").await,
        0.0
    );
    assert_eq!(quarantine_files(dir.path()), vec![(name, newer)]);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM events").await,
        want.len() as i64
    );
    kernel.shutdown().await;
}
