//! Behaviour of the spill store through its public API, on real files.

use std::fs;
use std::path::Path;

use fdc_common::config::spill::SpillConfig;
use fdc_spill::{codec, segment_path, Record, SpillError, SpillHandle, SpillMetrics, SpillStore};

const HEADER: u64 = codec::SEGMENT_HEADER_LEN as u64;

fn cfg(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpillConfig {
    SpillConfig {
        max_bytes,
        segment_bytes,
        ..SpillConfig::new(dir.to_path_buf())
    }
}

fn open(c: &SpillConfig) -> (SpillStore, SpillMetrics) {
    let m = SpillMetrics::new();
    let (s, _) = SpillStore::open(c.clone(), m.clone()).unwrap();
    (s, m)
}

fn drain(s: &mut SpillStore) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(r) = s.next_record().unwrap() {
        out.push(r);
    }
    out
}

fn seg_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

fn disk_bytes(dir: &Path) -> u64 {
    seg_files(dir)
        .iter()
        .map(|n| fs::metadata(dir.join(n)).unwrap().len())
        .sum()
}

#[test]
fn append_replay_commit_deletes_segments() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), 1 << 20, 100);
    let (mut s, m) = open(&c);
    let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 30 + i as usize]).collect();
    let ids: Vec<_> = payloads.iter().map(|p| s.append(p).unwrap()).collect();
    // 100-byte segments hold two 42+ byte frames at most: rollover happened.
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let nseg = seg_files(dir.path()).len() as u64;
    assert!(nseg >= 5, "expected rollover, got {nseg} segments");
    assert_eq!(m.records_written.get(), 10);
    assert_eq!(m.pending_records.get(), 10);
    assert_eq!(m.segments.get() as u64, nseg);
    assert_eq!(m.bytes.get() as u64, disk_bytes(dir.path()));
    assert_eq!(s.stats().bytes, disk_bytes(dir.path()));

    let got = drain(&mut s);
    assert_eq!(
        got.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
        payloads
    );
    assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), ids);

    // Commit the first half: the segments wholly before it disappear.
    s.commit(got[4].id).unwrap();
    assert_eq!(m.records_replayed.get(), 5);
    assert_eq!(m.pending_records.get(), 5);
    assert!(!segment_path(dir.path(), ids[0].segment()).exists());
    assert_eq!(s.stats().bytes, disk_bytes(dir.path()));

    s.commit(got[9].id).unwrap();
    assert_eq!(m.records_replayed.get(), 10);
    assert!(s.is_empty());
    assert_eq!(seg_files(dir.path()), Vec::<String>::new());
    assert_eq!(m.bytes.get(), 0);
    assert_eq!(m.segments.get(), 0);

    // Appending after a full drain starts a fresh segment with a higher number.
    let id = s.append(b"later").unwrap();
    assert!(id.segment() > ids[9].segment());
}

#[test]
fn full_is_distinct_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    // header + two frames of 12+20 bytes = 24 + 64 = 88.
    let c = cfg(dir.path(), 88, 1 << 20);
    let (mut s, m) = open(&c);
    // The bound is exported next to the bytes it bounds.
    assert_eq!(m.max_bytes.get(), 88);
    s.append(&[1; 20]).unwrap();
    s.append(&[2; 20]).unwrap();
    assert_eq!(s.stats().bytes, 88);
    match s.append(&[3; 1]) {
        Err(SpillError::Full { needed, used, max }) => {
            assert_eq!((needed, used, max), (13, 88, 88));
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(s.append(&[3; 1]).unwrap_err().is_full());
    assert_eq!(m.full_rejections.get(), 2);
    assert_eq!(m.records_written.get(), 2);
    // Can never fit, even empty: not Full, so the pipeline does not wait for it.
    match s.append(&[0; 53]) {
        Err(SpillError::RecordTooLarge { len: 53, limit: 52 }) => {}
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    // Replaying frees room again.
    let r = s.next_record().unwrap().unwrap();
    let r2 = s.next_record().unwrap().unwrap();
    assert_eq!(r.data, vec![1; 20]);
    s.commit(r2.id).unwrap();
    assert_eq!(s.stats().bytes, 0);
    s.append(&[4; 20]).unwrap();
}

#[test]
fn records_survive_reopen_and_committed_segments_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), 1 << 20, 64);
    let last_seq;
    {
        let (mut s, _) = open(&c);
        for i in 0..6u8 {
            s.append(&[i; 30]).unwrap(); // one 42-byte frame per 64-byte segment
        }
        let a = s.next_record().unwrap().unwrap();
        let b = s.next_record().unwrap().unwrap();
        s.commit(b.id).unwrap();
        assert_eq!(a.data, vec![0; 30]);
        // Delivered but uncommitted: must come back after the reopen.
        let c3 = s.next_record().unwrap().unwrap();
        assert_eq!(c3.data, vec![2; 30]);
        last_seq = s.append(b"tail").unwrap().segment();
    }
    let (mut s, m) = open(&c);
    assert_eq!(m.pending_records.get(), 5);
    let got: Vec<Vec<u8>> = drain(&mut s).into_iter().map(|r| r.data).collect();
    assert_eq!(
        got,
        vec![
            vec![2; 30],
            vec![3; 30],
            vec![4; 30],
            vec![5; 30],
            b"tail".to_vec()
        ]
    );
    // A new run never writes into an old segment nor reuses a number.
    assert!(s.append(b"new").unwrap().segment() > last_seq);
}

#[test]
fn sequence_numbers_never_fall_below_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), 1 << 20, 1 << 20);
    let first;
    {
        let (mut s, _) = open(&c);
        first = s.append(b"x").unwrap().segment();
        let r = s.next_record().unwrap().unwrap();
        s.commit(r.id).unwrap();
        assert!(seg_files(dir.path()).is_empty());
    }
    // The directory holds no segment, only the cursor: the next number must
    // still be above the committed one, or it would be deleted as committed.
    let (mut s, _) = open(&c);
    let id = s.append(b"y").unwrap();
    assert!(id.segment() > first);
    drop(s);
    let (mut s, _) = open(&c);
    assert_eq!(drain(&mut s)[0].data, b"y");
}

#[test]
fn interrupted_deletion_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), 1 << 20, 50);
    let (mut s, _) = open(&c);
    let a = s.append(&[1; 20]).unwrap();
    s.append(&[2; 20]).unwrap();
    let seg_a = segment_path(dir.path(), a.segment());
    let saved = fs::read(&seg_a).unwrap();
    let r = s.next_record().unwrap().unwrap();
    s.commit(r.id).unwrap();
    assert!(!seg_a.exists());
    drop(s);
    // As if the crash came after the cursor write but before the unlink.
    fs::write(&seg_a, saved).unwrap();
    let m = SpillMetrics::new();
    let (mut s, report) = SpillStore::open(c.clone(), m).unwrap();
    assert_eq!(report.removed_committed, 1);
    assert!(!seg_a.exists());
    let got = drain(&mut s);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, vec![2; 20]);
}

#[test]
fn rewind_redelivers_uncommitted_and_commit_checks_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, m) = open(&cfg(dir.path(), 1 << 20, 1 << 20));
    for i in 0..4u8 {
        s.append(&[i]).unwrap();
    }
    let r0 = s.next_record().unwrap().unwrap();
    let r1 = s.next_record().unwrap().unwrap();
    s.commit(r0.id).unwrap();
    // Already committed, then never delivered: both refused.
    assert!(matches!(s.commit(r0.id), Err(SpillError::UnknownRecord(_))));
    let _r2 = s.next_record().unwrap().unwrap();
    s.rewind();
    assert!(matches!(s.commit(r1.id), Err(SpillError::UnknownRecord(_))));
    let again: Vec<Vec<u8>> = drain(&mut s).into_iter().map(|r| r.data).collect();
    assert_eq!(again, vec![vec![1], vec![2], vec![3]]);
    assert_eq!(m.records_replayed.get(), 1);
}

#[test]
fn replay_reads_the_active_segment_while_appending() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(&cfg(dir.path(), 1 << 20, 1 << 20));
    s.append(b"a").unwrap();
    let a = s.next_record().unwrap().unwrap();
    assert!(s.next_record().unwrap().is_none());
    s.append(b"b").unwrap();
    let b = s.next_record().unwrap().unwrap();
    assert_eq!(b.data, b"b");
    s.commit(a.id).unwrap();
    assert_eq!(seg_files(dir.path()).len(), 1);
    s.commit(b.id).unwrap();
    // Fully committed active segment is sealed and deleted.
    assert!(seg_files(dir.path()).is_empty());
    s.append(b"c").unwrap();
    assert_eq!(s.next_record().unwrap().unwrap().data, b"c");
}

/// A config on `dir` whose stores wait up to `lock_wait` for the directory's lock, and a first
/// store opened with it, which holds the lock.
fn first_store(dir: &Path, lock_wait: std::time::Duration) -> (SpillConfig, SpillStore) {
    let c = SpillConfig {
        lock_wait,
        ..cfg(dir, 1 << 20, 1 << 20)
    };
    let (s, _) = open(&c);
    (c, s)
}

#[test]
fn second_store_on_same_dir_is_refused_after_lock_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _s) = first_store(dir.path(), std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    match SpillStore::open(c.clone(), SpillMetrics::new()) {
        Err(e @ SpillError::Locked { .. }) => {
            assert!(e.to_string().contains("spill.lock_wait"), "{e}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, got a store"),
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[test]
fn a_store_waits_for_the_lock_its_predecessor_releases() {
    let dir = tempfile::tempdir().unwrap();
    let (c, mut old) = first_store(dir.path(), std::time::Duration::from_secs(20));
    old.append(b"left by the old store").unwrap();
    // The old store (a replaced kernel still stopping) lets go a moment later.
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(old);
    });
    let started = std::time::Instant::now();
    let (mut new, report) = SpillStore::open(c, SpillMetrics::new()).unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(400));
    release.join().unwrap();
    assert_eq!(report.records, 1);
    assert_eq!(
        new.next_record().unwrap().unwrap().data,
        b"left by the old store"
    );
}

#[test]
fn bad_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for c in [
        cfg(dir.path(), 0, 10),
        cfg(dir.path(), 10, 0),
        cfg(Path::new(""), 10, 10),
    ] {
        assert!(matches!(
            SpillStore::open(c, SpillMetrics::new()),
            Err(SpillError::Config(_))
        ));
    }
}

#[test]
fn metrics_register_under_kernel_prefix() {
    let reg = prometheus::Registry::new();
    let m = SpillMetrics::new();
    m.register(&reg).unwrap();
    let names: Vec<String> = reg.gather().iter().map(|f| f.name().to_string()).collect();
    assert_eq!(names.len(), 13);
    assert!(names.iter().all(|n| n.starts_with("kernel_spill_")));
    assert!(names.contains(&"kernel_spill_corrupt_segments_total".to_string()));
    assert!(names.contains(&"kernel_spill_max_bytes".to_string()));
}

#[test]
fn empty_header_only_segments_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), 1 << 20, 1 << 20);
    fs::create_dir_all(dir.path()).unwrap();
    fs::write(segment_path(dir.path(), 3), codec::encode_segment_header(3)).unwrap();
    let (mut s, m) = open(&c);
    assert!(seg_files(dir.path()).is_empty());
    assert_eq!(m.torn_tails.get() + m.corrupt_segments.get(), 0);
    assert!(s.append(b"z").unwrap().segment() > 3);
    assert_eq!(disk_bytes(dir.path()), HEADER + 13);
}

#[tokio::test]
async fn handle_runs_the_store_off_the_async_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (h, report) = SpillHandle::open(cfg(dir.path(), 1 << 20, 1 << 20), SpillMetrics::new())
        .await
        .unwrap();
    assert_eq!(report.records, 0);
    let h2 = h.clone();
    let id = h2.append(b"async".to_vec()).await.unwrap();
    let r = h.next_record().await.unwrap().unwrap();
    assert_eq!((r.id, r.data.as_slice()), (id, &b"async"[..]));
    h.commit(r.id).await.unwrap();
    assert_eq!(h.stats().await.unwrap().pending_records, 0);
    assert_eq!(h.metrics().records_replayed.get(), 1);
    assert!(h.next_record().await.unwrap().is_none());
}

fn quarantined(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("quarantine-") && n.ends_with(".rec"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| fs::read(dir.join(n)).unwrap())
        .collect()
}

#[test]
fn quarantined_records_survive_and_are_requeued_once_decodable() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), 1 << 20, 1 << 20);
    {
        let (mut s, m) = open(&c);
        let a = s.append(b"v2-a").unwrap();
        s.append(b"v9-b").unwrap();
        // Only a delivered record can be quarantined.
        assert!(matches!(
            s.quarantine(a, b"v2-a"),
            Err(SpillError::UnknownRecord(_))
        ));
        for r in drain(&mut s) {
            s.quarantine(r.id, &r.data).unwrap();
            s.commit(r.id).unwrap();
        }
        assert_eq!(m.quarantined_records.get(), 2);
        assert_eq!(m.quarantine_files.get(), 2);
        assert_eq!(s.stats().pending_records, 0);
        assert!(seg_files(dir.path()).is_empty());
    }
    // A leftover of an interrupted quarantine write is removed at open.
    let tmp = dir
        .path()
        .join("quarantine-00000000000000000099-000000000024.rec.tmp");
    fs::write(&tmp, b"partial").unwrap();
    let (mut s, m) = open(&c);
    assert!(!tmp.exists());
    assert_eq!(m.quarantine_files.get(), 2);
    assert_eq!(
        quarantined(dir.path()),
        vec![b"v2-a".to_vec(), b"v9-b".to_vec()]
    );

    // This build reads "v2" but not "v9": one goes back, one stays.
    assert_eq!(
        s.requeue_quarantined(|d| d.starts_with(b"v2")).unwrap(),
        (1, 1)
    );
    assert_eq!(m.quarantine_files.get(), 1);
    assert_eq!(quarantined(dir.path()), vec![b"v9-b".to_vec()]);
    let back = drain(&mut s);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].data, b"v2-a");
    drop(s);
    // Durable: after a reopen the requeued record is still in the spill.
    let (mut s, _) = open(&c);
    assert_eq!(drain(&mut s).len(), 1);
    assert_eq!(s.requeue_quarantined(|_| false).unwrap(), (0, 1));
}
