//! The replay loop against a real spill store: order, commit-after-write, records written in
//! groups, pause on outage with backoff probing, wake-up on append.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fdc_common::config::spill::SpillConfig;
use fdc_kernel::ingest::replay::{run_replay, ReplayConfig, ReplayFailure};
use fdc_spill::{SpillHandle, SpillMetrics};
use tokio::sync::oneshot;

use crate::fault_support::{quarantine_files, quarantine_name};

/// Groups of at most 8 records, `groups_in_flight` of them written at once.
fn cfg_in_flight(groups_in_flight: usize) -> ReplayConfig {
    ReplayConfig {
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        idle_poll: Duration::from_secs(30),
        group_records: 8,
        group_bytes: 1 << 20,
        groups_in_flight,
    }
}

fn cfg() -> ReplayConfig {
    cfg_in_flight(2)
}

async fn spill(dir: &std::path::Path) -> SpillHandle {
    let c = SpillConfig {
        max_bytes: 1 << 20,
        segment_bytes: 256,
        ..SpillConfig::new(dir.to_path_buf())
    };
    SpillHandle::open(c, SpillMetrics::new()).await.unwrap().0
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5s");
}

/// Spawns a replay loop over `h` with `cfg` that probes Postgres with `probe` and writes with
/// `write`; it stops once the returned sender sends.
fn spawn_replay<P, PF, W, WF>(
    h: &SpillHandle,
    cfg: ReplayConfig,
    probe: P,
    write: W,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>)
where
    P: FnMut() -> PF + Send + 'static,
    PF: Future<Output = bool> + Send + 'static,
    W: FnMut(Vec<Vec<u8>>) -> WF + Send + 'static,
    WF: Future<Output = Result<u64, ReplayFailure>> + Send + 'static,
{
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(run_replay(h.clone(), cfg, probe, write, async move {
        let _ = stop_rx.await;
    }));
    (stop_tx, task)
}

#[tokio::test]
async fn replays_in_order_pauses_on_outage_and_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let h = spill(dir.path()).await;
    for i in 0..20u32 {
        h.append(i.to_le_bytes().to_vec()).await.unwrap();
    }
    // "Postgres": stored records, and an outage while `down` is set.
    let stored = Arc::new(Mutex::new(Vec::<u32>::new()));
    let down = Arc::new(Mutex::new(true));
    let attempts = Arc::new(Mutex::new(0u32));
    let probes = Arc::new(Mutex::new(0u32));

    let (stop_tx, task) = {
        let (stored, down, attempts, probes) = (
            stored.clone(),
            down.clone(),
            attempts.clone(),
            probes.clone(),
        );
        let probe_down = down.clone();
        // One group at a time: the attempt counts below are exact.
        spawn_replay(
            &h,
            cfg_in_flight(1),
            move || {
                let (down, probes) = (probe_down.clone(), probes.clone());
                async move {
                    *probes.lock().unwrap() += 1;
                    !*down.lock().unwrap()
                }
            },
            move |group: Vec<Vec<u8>>| {
                let (stored, down, attempts) = (stored.clone(), down.clone(), attempts.clone());
                async move {
                    *attempts.lock().unwrap() += 1;
                    if *down.lock().unwrap() {
                        return Err(ReplayFailure::Outage("connection refused".into()));
                    }
                    let events = group.len() as u64;
                    for data in group {
                        let n = u32::from_le_bytes(data.try_into().unwrap());
                        stored.lock().unwrap().push(n);
                    }
                    Ok(events)
                }
            },
        )
    };

    // While down: one write attempt, then probes only (backoff), nothing committed.
    wait_until(|| *probes.lock().unwrap() >= 3).await;
    assert_eq!(*attempts.lock().unwrap(), 1);
    assert_eq!(h.metrics().records_replayed.get(), 0);
    assert_eq!(h.metrics().pending_records.get(), 20);

    *down.lock().unwrap() = false;
    wait_until(|| h.metrics().pending_records.get() == 0).await;
    assert_eq!(*stored.lock().unwrap(), (0..20).collect::<Vec<_>>());
    assert_eq!(h.metrics().records_replayed.get(), 20);
    // The failed attempt, then the 20 records in groups of at most 8: 8, 8, 4.
    assert_eq!(*attempts.lock().unwrap(), 1 + 3);
    assert_eq!(h.metrics().events_replayed.get(), 20);
    assert_eq!(h.metrics().bytes.get(), 0);

    // Idle with a 30 s poll: an append must wake the loop at once.
    h.append(99u32.to_le_bytes().to_vec()).await.unwrap();
    wait_until(|| h.metrics().pending_records.get() == 0).await;
    assert_eq!(stored.lock().unwrap().last(), Some(&99));

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_next_group_is_written_meanwhile_but_committed_only_after_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let h = spill(dir.path()).await;
    for i in 0..16u32 {
        h.append(i.to_le_bytes().to_vec()).await.unwrap();
    }
    let stored = Arc::new(Mutex::new(Vec::<u32>::new()));
    let started = Arc::new(Mutex::new(0u32));
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = Arc::new(Mutex::new(Some(release_rx)));
    let (stop_tx, task) = {
        let (stored, started) = (stored.clone(), started.clone());
        spawn_replay(
            &h,
            cfg(),
            || async { true },
            move |group: Vec<Vec<u8>>| {
                let (stored, started, release) = (stored.clone(), started.clone(), release.clone());
                async move {
                    *started.lock().unwrap() += 1;
                    let numbers: Vec<u32> = group
                        .into_iter()
                        .map(|d| u32::from_le_bytes(d.try_into().unwrap()))
                        .collect();
                    if numbers[0] == 0 {
                        // The first group is slow.
                        let rx = release.lock().unwrap().take().unwrap();
                        rx.await.unwrap();
                    }
                    let events = numbers.len() as u64;
                    stored.lock().unwrap().extend(numbers);
                    Ok(events)
                }
            },
        )
    };
    // The second group was read and written while the first was still being written...
    wait_until(|| *stored.lock().unwrap() == (8..16).collect::<Vec<_>>()).await;
    assert_eq!(*started.lock().unwrap(), 2);
    // ...but nothing is committed before the first group is done.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.metrics().records_replayed.get(), 0);
    assert_eq!(h.metrics().events_replayed.get(), 0);
    assert_eq!(h.metrics().pending_records.get(), 16);

    release_tx.send(()).unwrap();
    wait_until(|| h.metrics().pending_records.get() == 0).await;
    assert_eq!(h.metrics().records_replayed.get(), 16);
    assert_eq!(h.metrics().events_replayed.get(), 16);
    assert_eq!(
        *stored.lock().unwrap(),
        (8..16).chain(0..8).collect::<Vec<_>>()
    );
    assert_eq!(*started.lock().unwrap(), 2);

    stop_tx.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_group_written_while_the_one_before_it_failed_is_read_again_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = spill(dir.path()).await;
    for i in 0..16u32 {
        h.append(i.to_le_bytes().to_vec()).await.unwrap();
    }
    let attempts = Arc::new(Mutex::new(Vec::<u32>::new()));
    let (fail_tx, fail_rx) = oneshot::channel::<()>();
    let fail = Arc::new(Mutex::new(Some(fail_rx)));
    let (stop_tx, task) = {
        let attempts = attempts.clone();
        spawn_replay(
            &h,
            cfg(),
            || async { true },
            move |group: Vec<Vec<u8>>| {
                let (attempts, fail) = (attempts.clone(), fail.clone());
                async move {
                    let first = u32::from_le_bytes(group[0].clone().try_into().unwrap());
                    attempts.lock().unwrap().push(first);
                    let waiting = fail.lock().unwrap().take();
                    if let Some(rx) = waiting.filter(|_| first == 0) {
                        // The first group's first try: an outage, once the second is done.
                        rx.await.unwrap();
                        return Err(ReplayFailure::Outage("connection reset".into()));
                    }
                    Ok(group.len() as u64)
                }
            },
        )
    };
    // Both groups' writes started (in either order: each is a task of its own).
    let sorted = |a: &[u32]| {
        let mut a = a.to_vec();
        a.sort();
        a
    };
    wait_until(|| sorted(&attempts.lock().unwrap()) == [0, 8]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    fail_tx.send(()).unwrap();
    wait_until(|| h.metrics().pending_records.get() == 0).await;
    // Both groups were written again after the outage, and counted once.
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    assert_eq!(sorted(&attempts[2..]), [0, 8], "{attempts:?}");
    assert_eq!(h.metrics().records_replayed.get(), 16);
    assert_eq!(h.metrics().events_replayed.get(), 16);

    stop_tx.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn stopping_mid_write_leaves_the_record_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let h = spill(dir.path()).await;
    h.append(b"only".to_vec()).await.unwrap();
    let (entered_tx, entered_rx) = oneshot::channel::<()>();
    let entered = Arc::new(Mutex::new(Some(entered_tx)));
    let (stop_tx, task) = spawn_replay(
        &h,
        cfg(),
        || async { true },
        move |_group: Vec<Vec<u8>>| {
            let entered = entered.clone();
            async move {
                if let Some(tx) = entered.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                std::future::pending::<Result<u64, ReplayFailure>>().await
            }
        },
    );
    entered_rx.await.unwrap();
    stop_tx.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(h.metrics().pending_records.get(), 1);
    // A new loop gets the same record again.
    let r = {
        h.rewind().await.unwrap();
        h.next_record().await.unwrap().unwrap()
    };
    assert_eq!(r.data, b"only");
}

/// Spawns a loop whose write stores a group of records unless one starts with `future`,
/// which it reports undecodable (as a batch of an unknown version is), writing nothing.
fn spawn_decoding(
    h: &SpillHandle,
    stored: Arc<Mutex<Vec<Vec<u8>>>>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    spawn_replay(
        h,
        cfg(),
        || async { true },
        move |group: Vec<Vec<u8>>| {
            let stored = stored.clone();
            async move {
                if let Some(data) = group.iter().find(|d| d.starts_with(b"future")) {
                    return Err(ReplayFailure::Undecodable {
                        reason: "unknown version".into(),
                        data: data.clone(),
                    });
                }
                let events = group.len() as u64;
                stored.lock().unwrap().extend(group);
                Ok(events)
            }
        },
    )
}

#[tokio::test]
async fn an_undecodable_record_is_quarantined_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let h = spill(dir.path()).await;
    h.append(b"ok-0".to_vec()).await.unwrap();
    let future = h.append(b"future-record".to_vec()).await.unwrap();
    h.append(b"ok-2".to_vec()).await.unwrap();
    let stored = Arc::new(Mutex::new(Vec::new()));
    let (stop, task) = spawn_decoding(&h, stored.clone());

    wait_until(|| h.metrics().pending_records.get() == 0).await;
    // Replayed past it, in order; the undecodable record was not "stored".
    assert_eq!(
        *stored.lock().unwrap(),
        vec![b"ok-0".to_vec(), b"ok-2".to_vec()]
    );
    assert_eq!(h.metrics().quarantined_records.get(), 1);
    assert_eq!(h.metrics().quarantine_files.get(), 1);
    assert_eq!(h.metrics().records_replayed.get(), 3);
    // Its exact bytes are kept, named after where it was; the segments are gone.
    let name = quarantine_name(future);
    assert_eq!(
        quarantine_files(dir.path()),
        vec![(name, b"future-record".to_vec())]
    );
    assert_eq!(h.metrics().segments.get(), 0);

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_record_that_cannot_be_quarantined_is_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    let h = spill(dir.path()).await;
    let future = h.append(b"future-record".to_vec()).await.unwrap();
    h.append(b"ok-1".to_vec()).await.unwrap();
    // A directory where the quarantine's temp file must go: its write fails.
    let blocker = dir.path().join(format!("{}.tmp", quarantine_name(future)));
    std::fs::create_dir(&blocker).unwrap();
    let stored = Arc::new(Mutex::new(Vec::new()));
    let (stop, task) = spawn_decoding(&h, stored.clone());

    tokio::time::sleep(Duration::from_millis(300)).await;
    // Replay holds at the record instead of deleting it or skipping ahead.
    assert_eq!(h.metrics().pending_records.get(), 2);
    assert_eq!(h.metrics().quarantined_records.get(), 0);
    assert!(stored.lock().unwrap().is_empty());

    std::fs::remove_dir(&blocker).unwrap();
    wait_until(|| h.metrics().pending_records.get() == 0).await;
    assert_eq!(*stored.lock().unwrap(), vec![b"ok-1".to_vec()]);
    assert_eq!(quarantine_files(dir.path()).len(), 1);
    assert_eq!(quarantine_files(dir.path())[0].1, b"future-record");

    stop.send(()).unwrap();
    task.await.unwrap();
}
