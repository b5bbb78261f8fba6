//! Recovery of a damaged spill directory: torn tails, flipped bytes, bad
//! headers, garbage files. Includes scenario 5 of the durability issue.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use fdc_common::config::spill::SpillConfig;
use fdc_spill::{codec, segment_path, SpillMetrics, SpillStore};
use proptest::prelude::*;

fn cfg(dir: &Path) -> SpillConfig {
    SpillConfig {
        max_bytes: 1 << 20,
        segment_bytes: 1 << 20,
        ..SpillConfig::new(dir.to_path_buf())
    }
}

fn payload(i: u32) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    p.extend(std::iter::repeat_n((i % 251) as u8, 40 + (i % 17) as usize));
    p
}

/// Writes `per_segment` records into each of `segments` segments (one store
/// run per segment: every open starts a new segment). Returns the segment
/// paths and the payloads per segment.
fn write_segments(dir: &Path, segments: u32, per_segment: u32) -> Vec<(PathBuf, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    for s in 0..segments {
        let (mut store, _) = SpillStore::open(cfg(dir), SpillMetrics::new()).unwrap();
        let mut recs = Vec::new();
        let mut seq = 0;
        for r in 0..per_segment {
            let p = payload(s * 1000 + r);
            seq = store.append(&p).unwrap().segment();
            recs.push(p);
        }
        out.push((segment_path(dir, seq), recs));
    }
    out
}

fn drain_all(store: &mut SpillStore) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut last = None;
    while let Some(r) = store.next_record().unwrap() {
        got.push(r.data);
        last = Some(r.id);
    }
    if let Some(id) = last {
        store.commit(id).unwrap();
    }
    got
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Offset of record `k` (0-based) in a segment holding `recs`.
fn record_offset(recs: &[Vec<u8>], k: usize) -> u64 {
    codec::SEGMENT_HEADER_LEN as u64
        + recs[..k]
            .iter()
            .map(|p| codec::frame_len(p.len() as u64))
            .sum::<u64>()
}

#[test]
fn torn_tail_and_flipped_byte_keep_every_valid_record() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_segments(dir.path(), 3, 5);
    let (torn_path, torn_recs) = &segs[0];
    let (flip_path, flip_recs) = &segs[1];
    let (_, clean_recs) = &segs[2];

    // Segment 1: crash in the middle of its last record.
    let len = fs::metadata(torn_path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(torn_path)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    // Segment 2: one flipped bit inside the payload of its third record.
    let mut bytes = fs::read(flip_path).unwrap();
    let at = record_offset(flip_recs, 2) as usize + codec::RECORD_HEADER_LEN + 5;
    bytes[at] ^= 0x10;
    let damaged = bytes.clone();
    fs::write(flip_path, &bytes).unwrap();

    let m = SpillMetrics::new();
    let (mut store, report) = SpillStore::open(cfg(dir.path()), m.clone()).unwrap();
    assert_eq!(report.torn_tails, 1);
    assert_eq!(report.corrupt_segments, 1);
    assert_eq!(m.torn_tails.get(), 1);
    assert_eq!(m.corrupt_segments.get(), 1);
    assert_eq!(report.records, 4 + 2 + 5);
    assert_eq!(m.pending_records.get(), 11);

    // The damaged segment is kept, byte for byte, beside the spill.
    let aside = format!(
        "{}.corrupt",
        flip_path.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(report.quarantined, vec![dir.path().join(&aside)]);
    assert_eq!(fs::read(dir.path().join(&aside)).unwrap(), damaged);

    let got = drain_all(&mut store);
    let mut want = torn_recs[..4].to_vec();
    want.extend_from_slice(&flip_recs[..2]);
    want.extend_from_slice(clean_recs);
    assert_eq!(got, want);
    assert_eq!(m.records_replayed.get(), 11);
    assert_eq!(m.pending_records.get(), 0);
    // Everything replayed is gone; only the evidence, cursor and lock remain.
    assert_eq!(
        names(dir.path()),
        vec![aside, "LOCK".into(), "cursor".into()]
    );

    // Recovery is done once: a second open finds nothing new to count.
    drop(store);
    let m2 = SpillMetrics::new();
    let (_, report2) = SpillStore::open(cfg(dir.path()), m2.clone()).unwrap();
    assert_eq!(
        (
            report2.torn_tails,
            report2.corrupt_segments,
            report2.records
        ),
        (0, 0, 0)
    );
}

#[test]
fn bad_headers_and_foreign_files_never_stop_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_segments(dir.path(), 2, 3);
    // Header of the first segment damaged: nothing in it can be trusted.
    let mut bytes = fs::read(&segs[0].0).unwrap();
    bytes[3] ^= 0xff;
    fs::write(&segs[0].0, &bytes).unwrap();
    // Segment files created by a crash mid-creation: empty and zeroed header.
    fs::write(segment_path(dir.path(), 100), b"").unwrap();
    fs::write(segment_path(dir.path(), 101), [0u8; 30]).unwrap();
    // A segment whose header names another segment (copied by hand).
    let mut other = fs::read(&segs[1].0).unwrap();
    other.truncate(codec::SEGMENT_HEADER_LEN);
    fs::write(segment_path(dir.path(), 102), &other).unwrap();
    // Garbage that is not a segment, and a garbage cursor.
    fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    fs::write(dir.path().join("cursor"), b"\xff\xfe").unwrap();

    let m = SpillMetrics::new();
    let (mut store, report) = SpillStore::open(cfg(dir.path()), m.clone()).unwrap();
    assert_eq!(report.corrupt_segments, 2, "{report:?}");
    assert_eq!(report.torn_tails, 2, "{report:?}");
    assert_eq!(drain_all(&mut store), segs[1].1);
    // New segments are numbered past everything seen, quarantined included.
    assert!(store.append(b"x").unwrap().segment() > 102);
    assert!(names(dir.path()).contains(&"notes.txt".to_string()));
}

#[test]
fn damage_appearing_during_replay_is_quarantined_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let m = SpillMetrics::new();
    let (mut store, _) = SpillStore::open(cfg(dir.path()), m.clone()).unwrap();
    let recs: Vec<Vec<u8>> = (0..4).map(payload).collect();
    let mut seq = 0;
    for p in &recs {
        seq = store.append(p).unwrap().segment();
    }
    // Bit rot after the store validated (here: wrote) the segment.
    let path = segment_path(dir.path(), seq);
    let mut bytes = fs::read(&path).unwrap();
    let at = record_offset(&recs, 2) as usize + codec::RECORD_HEADER_LEN;
    bytes[at] ^= 1;
    fs::write(&path, &bytes).unwrap();

    assert_eq!(drain_all(&mut store), recs[..2].to_vec());
    assert_eq!(m.corrupt_segments.get(), 1);
    assert_eq!(m.pending_records.get(), 0);
    assert_eq!(m.bytes.get(), 0);
    // The store keeps working after the damage.
    store.append(b"after").unwrap();
    assert_eq!(store.next_record().unwrap().unwrap().data, b"after");
}

#[derive(Debug, Clone)]
enum Harm {
    Truncate(u64),
    Flip { at: u64, mask: u8 },
    Overwrite { at: u64, bytes: Vec<u8> },
    AppendGarbage(Vec<u8>),
}

fn harm() -> impl Strategy<Value = (usize, Harm)> {
    let h = prop_oneof![
        any::<u64>().prop_map(Harm::Truncate),
        (any::<u64>(), 1u8..).prop_map(|(at, mask)| Harm::Flip { at, mask }),
        (any::<u64>(), prop::collection::vec(any::<u8>(), 1..40))
            .prop_map(|(at, bytes)| Harm::Overwrite { at, bytes }),
        prop::collection::vec(any::<u8>(), 1..80).prop_map(Harm::AppendGarbage),
    ];
    (0usize..4, h)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any damage to any segment: open never fails or panics, and what is
    /// replayed is, in order, a subsequence of what was written, and every
    /// record of an undamaged segment is among it.
    #[test]
    fn arbitrary_file_damage_never_yields_a_wrong_record(
        harms in prop::collection::vec(harm(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let segs = write_segments(dir.path(), 4, 4);
        let mut touched = [false; 4];
        for (which, h) in &harms {
            touched[*which] = true;
            let path = &segs[*which].0;
            let mut bytes = fs::read(path).unwrap();
            let n = bytes.len() as u64;
            match h {
                Harm::Truncate(at) => bytes.truncate((at % (n + 1)) as usize),
                Harm::Flip { at, mask } => {
                    if n > 0 {
                        bytes[(at % n) as usize] ^= mask;
                    }
                }
                Harm::Overwrite { at, bytes: b } => {
                    if n > 0 {
                        let start = (at % n) as usize;
                        for (i, v) in b.iter().enumerate() {
                            if let Some(slot) = bytes.get_mut(start + i) {
                                *slot = *v;
                            }
                        }
                    }
                }
                Harm::AppendGarbage(g) => bytes.extend_from_slice(g),
            }
            fs::write(path, &bytes).unwrap();
        }
        let (mut store, _) = SpillStore::open(cfg(dir.path()), SpillMetrics::new()).unwrap();
        let got = drain_all(&mut store);
        let all: Vec<Vec<u8>> = segs.iter().flat_map(|(_, r)| r.clone()).collect();
        let mut it = all.iter();
        for g in &got {
            prop_assert!(it.any(|w| w == g), "replayed a record not written, or out of order");
        }
        for (k, (_, recs)) in segs.iter().enumerate() {
            if !touched[k] {
                for r in recs {
                    prop_assert!(got.contains(r), "lost a record of an undamaged segment");
                }
            }
        }
    }
}
