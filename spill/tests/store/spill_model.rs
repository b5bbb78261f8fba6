//! Model-based property test of the spill writer/replayer with crashes.
//!
//! A random program of appends, deliveries, commits, rewinds, clean reopens
//! and crashes runs against the real store on real files. A crash happens
//! while one more record is being appended: the store is dropped and the
//! bytes past the last durable offset are cut, zeroed or scrambled at a random
//! point (what the page cache may have lost), then the store is reopened.
//!
//! Oracle: every delivered record is byte-exact and was written; deliveries
//! between two (re)starts are in write order and skip only committed records;
//! after a final drain, every record acknowledged as durable was committed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::path::Path;

use fdc_common::config::spill::SpillConfig;
use fdc_spill::{codec, segment_path, RecordId, SpillError, SpillMetrics, SpillStore};
use proptest::prelude::*;

const MAX_BYTES: u64 = 3000;
const SEGMENT_BYTES: u64 = 400;

#[derive(Debug, Clone)]
enum Tail {
    Cut,
    Zero,
    Scramble(u64),
}

#[derive(Debug, Clone)]
enum Action {
    Append(usize),
    Deliver(usize),
    CommitLast,
    CommitFirst,
    Rewind,
    Reopen,
    Crash {
        size: usize,
        at: u64,
        tail: Tail,
    },
    /// Commit the last delivered record, then die before the deletions it
    /// triggered were all durable: either before the cursor was replaced
    /// (everything comes back), or after (a subset of the unlinks is undone).
    CommitCrash {
        before_cursor: bool,
        undo: u64,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let tail = prop_oneof![
        Just(Tail::Cut),
        Just(Tail::Zero),
        any::<u64>().prop_map(Tail::Scramble)
    ];
    prop_oneof![
        6 => (0usize..260).prop_map(Action::Append),
        3 => (1usize..6).prop_map(Action::Deliver),
        2 => Just(Action::CommitLast),
        1 => Just(Action::CommitFirst),
        1 => Just(Action::Rewind),
        1 => Just(Action::Reopen),
        2 => (0usize..260, any::<u64>(), tail)
            .prop_map(|(size, at, tail)| Action::Crash { size, at, tail }),
        1 => (any::<bool>(), any::<u64>())
            .prop_map(|(before_cursor, undo)| Action::CommitCrash { before_cursor, undo }),
    ]
}

/// Record `i`: its number, then filler derived from it, so a record read back
/// identifies itself and any wrong byte is detected.
fn payload(i: u64, size: usize) -> Vec<u8> {
    let mut p = i.to_le_bytes().to_vec();
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(x as u8);
    }
    p
}

struct Model {
    /// Everything ever handed to append, by number, with its payload.
    written: BTreeMap<u64, Vec<u8>>,
    /// Appends that returned Ok outside a crash: must never be lost.
    acked: BTreeSet<u64>,
    /// Committed at least once (replayed to "Postgres").
    committed: BTreeSet<u64>,
    /// Delivered since the last (re)start or rewind, not committed: (number, id).
    delivered: Vec<(u64, RecordId)>,
    /// Last number delivered since the last (re)start or rewind.
    last_delivered: Option<u64>,
    next: u64,
}

impl Model {
    fn check_delivery(&mut self, data: &[u8], id: RecordId) -> Result<(), TestCaseError> {
        prop_assert!(data.len() >= 8, "short record");
        let n = u64::from_le_bytes(data[..8].try_into().unwrap());
        prop_assert_eq!(
            self.written.get(&n).map(|p| p.as_slice()),
            Some(data),
            "wrong record"
        );
        if let Some(last) = self.last_delivered {
            prop_assert!(n > last, "out of order: {} after {}", n, last);
        }
        // Skipping an acknowledged record is allowed only if it was committed.
        let from = self.last_delivered.map_or(0, |l| l + 1);
        for skipped in self.acked.range(from..n) {
            prop_assert!(
                self.committed.contains(skipped),
                "record {} skipped without being committed",
                skipped
            );
        }
        self.last_delivered = Some(n);
        self.delivered.push((n, id));
        Ok(())
    }

    fn restart(&mut self) {
        self.delivered.clear();
        self.last_delivered = None;
    }
}

fn config(dir: &Path) -> SpillConfig {
    SpillConfig {
        max_bytes: MAX_BYTES,
        segment_bytes: SEGMENT_BYTES,
        ..SpillConfig::new(dir.to_path_buf())
    }
}

fn open(dir: &Path) -> SpillStore {
    SpillStore::open(config(dir), SpillMetrics::new())
        .expect("recovery must succeed whatever the crash left")
        .0
}

/// Bytes of the live segment files, to compare with the store's accounting.
fn disk_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Simulates losing whatever was not durable when the process died during
/// the append of the record `id`: bytes from `id.offset()` on (from 0 if that
/// append created the segment) are cut, zeroed or scrambled from a random
/// point on.
fn lose_unsynced(dir: &Path, id: RecordId, at: u64, tail: &Tail) {
    let path = segment_path(dir, id.segment());
    let mut bytes = fs::read(&path).unwrap();
    let len = bytes.len() as u64;
    let durable = if id.offset() == codec::SEGMENT_HEADER_LEN as u64 {
        0
    } else {
        id.offset()
    };
    let point = durable + at % (len - durable + 1);
    match tail {
        Tail::Cut => {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(point)
                .unwrap();
            return;
        }
        Tail::Zero => bytes[point as usize..].fill(0),
        Tail::Scramble(seed) => {
            let mut x = seed | 1;
            for b in &mut bytes[point as usize..] {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
    }
    fs::write(&path, &bytes).unwrap();
}

/// Segment files and cursor, to put back what a crash would not have removed.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg") || n == "cursor")
        .map(|n| {
            let b = fs::read(dir.join(&n)).unwrap();
            (n, b)
        })
        .collect()
}

fn run(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Model {
        written: BTreeMap::new(),
        acked: BTreeSet::new(),
        committed: BTreeSet::new(),
        delivered: Vec::new(),
        last_delivered: None,
        next: 0,
    };
    let mut store = open(dir.path());
    for a in actions {
        match a {
            Action::Append(size) => {
                let n = m.next;
                m.next += 1;
                let p = payload(n, size);
                m.written.insert(n, p.clone());
                let before = store.stats();
                match store.append(&p) {
                    Ok(_) => {
                        m.acked.insert(n);
                        prop_assert!(store.stats().bytes <= MAX_BYTES);
                    }
                    Err(SpillError::Full { needed, used, max }) => {
                        let frame = codec::frame_len(p.len() as u64);
                        prop_assert_eq!(used, before.bytes);
                        prop_assert_eq!(max, MAX_BYTES);
                        prop_assert!(needed == frame || needed == frame + 24);
                        prop_assert!(used + needed > max);
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("append: {e}"))),
                }
            }
            Action::Deliver(k) => {
                for _ in 0..k {
                    match store.next_record().unwrap() {
                        Some(r) => m.check_delivery(&r.data, r.id)?,
                        None => break,
                    }
                }
            }
            Action::CommitLast | Action::CommitFirst => {
                let pick = if matches!(a, Action::CommitLast) {
                    m.delivered.len().checked_sub(1)
                } else if m.delivered.is_empty() {
                    None
                } else {
                    Some(0)
                };
                if let Some(k) = pick {
                    store.commit(m.delivered[k].1).unwrap();
                    for (n, _) in m.delivered.drain(..=k) {
                        m.committed.insert(n);
                    }
                }
            }
            Action::Rewind => {
                store.rewind();
                m.restart();
            }
            Action::Reopen => {
                drop(store);
                store = open(dir.path());
                m.restart();
            }
            Action::Crash { size, at, tail } => {
                let n = m.next;
                m.next += 1;
                let p = payload(n, size);
                m.written.insert(n, p.clone());
                // Not acknowledged: the process dies before append returns.
                let in_flight = store.append(&p);
                drop(store);
                if let Ok(id) = in_flight {
                    lose_unsynced(dir.path(), id, at, &tail);
                }
                store = open(dir.path());
                m.restart();
            }
            Action::CommitCrash {
                before_cursor,
                undo,
            } => {
                let Some(&(_, id)) = m.delivered.last() else {
                    continue;
                };
                let before = snapshot(dir.path());
                store.commit(id).unwrap();
                for (n, _) in m.delivered.drain(..) {
                    m.committed.insert(n);
                }
                drop(store);
                let after = snapshot(dir.path());
                let gone: Vec<&String> = before
                    .keys()
                    .filter(|n| n.ends_with(".seg") && !after.contains_key(*n))
                    .collect();
                for (k, name) in gone.iter().enumerate() {
                    if before_cursor || undo & (1 << (k % 64)) != 0 {
                        fs::write(dir.path().join(name), &before[*name]).unwrap();
                    }
                }
                if before_cursor {
                    match before.get("cursor") {
                        Some(c) => fs::write(dir.path().join("cursor"), c).unwrap(),
                        None => {
                            let _ = fs::remove_file(dir.path().join("cursor"));
                        }
                    }
                }
                store = open(dir.path());
                m.restart();
            }
        }
        prop_assert_eq!(store.stats().bytes, disk_bytes(dir.path()));
    }

    // Final drain after a clean restart: everything acknowledged and not yet
    // committed must come out now.
    drop(store);
    let mut store = open(dir.path());
    m.restart();
    let pending = store.stats().pending_records;
    let mut drained = 0;
    while let Some(r) = store.next_record().unwrap() {
        drained += 1;
        m.check_delivery(&r.data, r.id)?;
        store.commit(r.id).unwrap();
        let n = m.delivered.pop().unwrap().0;
        m.committed.insert(n);
    }
    prop_assert_eq!(
        drained,
        pending,
        "pending_records disagrees with the replay"
    );
    let lost: Vec<_> = m.acked.difference(&m.committed).collect();
    prop_assert!(lost.is_empty(), "acknowledged records lost: {:?}", lost);
    prop_assert!(store.is_empty());
    prop_assert_eq!(store.stats().bytes, 0);
    prop_assert_eq!(disk_bytes(dir.path()), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_records_survive_crashes(actions in prop::collection::vec(action(), 1..80)) {
        run(actions)?;
    }
}
