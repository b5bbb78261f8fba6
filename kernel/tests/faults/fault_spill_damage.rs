//! Fault 5, end to end: the kernel starts on a spill directory holding real
//! spilled batches, one segment with a torn tail and one with a flipped byte.
//! Every valid batch is replayed into Postgres, the damage is counted, and a
//! spilled event Postgres rejects for its content is isolated into the DLQ.

use std::collections::HashSet;
use std::fs;

use crate::fault_support::*;
use crate::support::*;
use fdc_common::config::spill::SpillConfig;
use fdc_kernel::ingest::spill_record;
use fdc_kernel::protocol::{EntriesByRef, Event};
use fdc_kernel::service;
use fdc_spill::{codec, segment_path, SpillMetrics, SpillStore};
use uuid::Uuid;

/// A batch of `n` events as the pipeline spills it, with their entries.
fn batch_of(n: usize, tag: &str) -> (Vec<Event>, EntriesByRef) {
    spilled_batch(
        n,
        |i| format!("{}-{i}", tag.len() * 1000 + i),
        &format!("{tag}-"),
        tag,
        &[("type", b"data"), ("token", b"secret-token")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_spill_replays_every_valid_batch_and_counts_the_damage() {
    let env = fault_env().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpillConfig {
        max_bytes: 64 << 20,
        segment_bytes: 64 << 20,
        ..SpillConfig::new(dir.path().to_path_buf())
    };
    let batches: Vec<_> = ["r1", "r2", "r3", "r4", "r5"]
        .iter()
        .map(|t| batch_of(500, t))
        .collect();
    let mut records: Vec<Vec<u8>> = batches
        .iter()
        .map(|(ev, en)| spill_record::encode_batch(ev, en).unwrap())
        .collect();
    // r5 carries one event whose payload Postgres refuses (not JSON): a data
    // error on replay, to be isolated into the DLQ while the rest is stored.
    let mut r5 = batches[4].clone();
    r5.0[7].payload = "{not json".into();
    let poison = r5.0[7].clone();
    records[4] = spill_record::encode_batch(&r5.0, &r5.1).unwrap();

    // One store session per segment: [r1 r2] [r3 r4] [r5].
    let mut segs = Vec::new();
    for group in [&records[0..2], &records[2..4], &records[4..5]] {
        let (mut store, _) = SpillStore::open(cfg.clone(), SpillMetrics::new()).unwrap();
        let mut seq = 0;
        for r in group {
            seq = store.append(r).unwrap().segment();
        }
        segs.push(segment_path(dir.path(), seq));
    }
    // Torn tail: the crash hit the middle of r2.
    let len = fs::metadata(&segs[0]).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&segs[0])
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    // Bit rot inside r4's payload.
    let mut bytes = fs::read(&segs[1]).unwrap();
    let at = codec::SEGMENT_HEADER_LEN
        + codec::frame_len(records[2].len() as u64) as usize
        + codec::RECORD_HEADER_LEN
        + 1000;
    bytes[at] ^= 0x01;
    fs::write(&segs[1], &bytes).unwrap();

    let mut config = env.config();
    config.spill = Some(cfg);
    let kernel = service::start(config).await.unwrap();
    let a = kernel.http_addr;
    let pg = env.pg().await;
    let redis = env.redis_conn().await;

    let mut want: HashSet<Uuid> = HashSet::new();
    for k in [0, 2, 4] {
        want.extend(batches[k].0.iter().map(|e| e.id));
    }
    want.remove(&poison.id);
    assert_spill_replayed_exactly(&pg, a, &want).await;

    assert_metrics(
        &http_get(a, "/metrics").await.1,
        &[
            ("kernel_spill_torn_tails_total", 1.0),
            ("kernel_spill_corrupt_segments_total", 1.0),
            ("kernel_spill_records_replayed_total", 3.0),
            ("kernel_spill_events_replayed_total", 1500.0),
            ("kernel_redis_dlq_total{reason=\"rejected\"}", 1.0),
        ],
    );
    let dlq = read_stream(&redis, "events:dlq").await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0]["error"], "rejected");
    assert_eq!(dlq[0]["source_id"], *poison.source.id);
    assert!(!dlq[0].contains_key("token"));
    assert!(dir
        .path()
        .join(format!(
            "{}.corrupt",
            segs[1].file_name().unwrap().to_str().unwrap()
        ))
        .exists());
    kernel.shutdown().await;
}
