//! Shared pieces of the fault-injection tests: known event sets, the
//! exact-outcome oracle, and a kernel run as a real process (to SIGKILL it).
#![allow(dead_code)] // each fault test uses a different subset

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::support::*;
use fdc_common::config::spill::SpillConfig;
use fdc_kernel::protocol::{EntriesByRef, Entry, EntryRef, Event};
use fdc_spill::RecordId;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(90);

/// The fault tests share one test binary but run one at a time: each takes this lock first
/// (most through [`fault_env`]). They kill servers and processes and wait on claim and retry
/// timeouts, which on a small machine must not compete with another fault test (as separate
/// binaries they never did).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// A fresh [`TestEnv`] held under the fault tests' lock ([`serial`]) until it is dropped.
pub struct FaultEnv {
    env: TestEnv,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

pub async fn fault_env() -> FaultEnv {
    let serial = serial().await;
    FaultEnv {
        env: TestEnv::start().await.unwrap(),
        _serial: serial,
    }
}

impl std::ops::Deref for FaultEnv {
    type Target = TestEnv;
    fn deref(&self) -> &TestEnv {
        &self.env
    }
}

impl std::ops::DerefMut for FaultEnv {
    fn deref_mut(&mut self) -> &mut TestEnv {
        &mut self.env
    }
}

/// A known set of entries: `valid` data events (ids kept) and `invalid` ones
/// (bad protocol version) that must end in the DLQ.
pub struct EventSet {
    pub ids: Vec<Uuid>,
    pub entries: Vec<Vec<(String, String)>>,
    pub invalid: usize,
}

impl EventSet {
    /// Every `every`-th entry is invalid (0: none).
    pub fn new(valid: usize, every: usize) -> EventSet {
        let now = now_ns();
        let mut set = EventSet {
            ids: Vec::new(),
            entries: Vec::new(),
            invalid: 0,
        };
        for i in 0..valid {
            let id = Uuid::now_v7();
            set.ids.push(id);
            set.entries.push(data_fields(
                id,
                now - i as i64,
                Some(&format!("subject-{}", i % 20)),
                &[("k", &format!("v{}", i % 5))],
                json!({ "n": i }),
            ));
            if every > 0 && i % every == 0 {
                let mut bad = data_fields(Uuid::now_v7(), now, None, &[], json!({ "bad": i }));
                bad[1].1 = "2.0.0".into();
                set.entries.push(bad);
                set.invalid += 1;
            }
        }
        set
    }
}

/// The oracle of every fault test: each sent id stored exactly once, nothing
/// else stored, nothing pending in the group, the DLQ holds exactly the
/// invalid entries.
pub async fn assert_exact(pg: &PgPool, redis: &MultiplexedConnection, set: &EventSet) {
    let rows: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(pg)
        .await
        .unwrap();
    let distinct: HashSet<Uuid> = rows.iter().copied().collect();
    assert_eq!(rows.len(), distinct.len(), "an event id is stored twice");
    let sent: HashSet<Uuid> = set.ids.iter().copied().collect();
    assert_eq!(distinct.len(), sent.len(), "stored vs sent");
    assert_eq!(distinct, sent, "stored ids differ from sent ids");
    assert_eq!(
        count(pg, "SELECT count(*) FROM event_index").await,
        sent.len() as i64
    );
    assert_eq!(
        wait_for(WAIT, 0, || pending(redis, "events", "kernel")).await,
        0,
        "entries left pending"
    );
    let dlq = read_stream(redis, "events:dlq").await;
    assert_eq!(dlq.len(), set.invalid, "DLQ size");
    assert!(dlq
        .iter()
        .all(|f| f.get("error").map(String::as_str) == Some("bad_version")));
}

/// Waits until every event of `set` is stored, then checks the exact outcome
/// ([`assert_exact`]).
pub async fn assert_all_stored_exactly(pg: &PgPool, redis: &MultiplexedConnection, set: &EventSet) {
    assert_eq!(wait_stored(pg, set.ids.len()).await, set.ids.len() as i64);
    assert_exact(pg, redis, set).await;
}

/// Waits until every id of `sent` is stored, then checks each is stored once and nothing else
/// (for events sent with ids of their own rather than an [`EventSet`]).
pub async fn assert_stored_once(pg: &PgPool, sent: &[Uuid]) {
    assert_eq!(wait_stored(pg, sent.len()).await, sent.len() as i64);
    let stored: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(pg)
        .await
        .unwrap();
    assert_eq!(stored.len(), sent.len(), "an event is stored twice");
    assert_eq!(
        stored.into_iter().collect::<HashSet<_>>(),
        sent.iter().copied().collect::<HashSet<_>>()
    );
}

/// Waits until at least `n` distinct events are stored; returns the count.
pub async fn wait_stored_at_least(pg: &PgPool, n: i64) -> i64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = count(pg, "SELECT count(DISTINCT event_id) FROM events").await;
        if got >= n || std::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until exactly `n` distinct events are stored; returns the last count.
pub async fn wait_stored(pg: &PgPool, n: usize) -> i64 {
    wait_for(WAIT, n as i64, || {
        count(pg, "SELECT count(DISTINCT event_id) FROM events")
    })
    .await
}

pub fn spill_config(dir: &Path, max_bytes: u64) -> SpillConfig {
    SpillConfig {
        max_bytes,
        segment_bytes: 256 * 1024,
        ..SpillConfig::new(dir.to_path_buf())
    }
}

/// Sets `config` up to ride out a Postgres outage on its spill: connections to Postgres give
/// up after 1 s, batches hold at most 200 events, and they spill to `spill_dir` (64 MiB).
pub fn spill_through_outages(config: &mut fdc_common::config::Config, spill_dir: &Path) {
    config.postgres.connect_timeout = Duration::from_secs(1);
    config.ingest.batch_max_size = 200;
    config.spill = Some(spill_config(spill_dir, 64 << 20));
}

/// Publishes `entries` to `events` during a Postgres outage (`outage` says which), in chunks
/// like live traffic, then checks that the kernel serving metrics on `addr` spills the batches
/// (nothing stays pending) and is not ready.
pub async fn publish_through_outage(
    redis: &MultiplexedConnection,
    addr: SocketAddr,
    entries: &[Vec<(String, String)>],
    outage: &str,
) {
    for chunk in entries.chunks(250) {
        publish(redis, "events", chunk).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(wait_metric_at_least(addr, "kernel_spill_records_written_total", 1.0).await >= 1.0);
    assert_eq!(
        wait_for(WAIT, 0, || pending(redis, "events", "kernel")).await,
        0,
        "the spill takes the batches while {outage}"
    );
    let (status, _) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "not ready while {outage}");
}

/// The kernel in-process with `config`, once `/readyz` answers 200.
pub async fn start_ready(config: fdc_common::config::Config) -> fdc_kernel::service::RunningKernel {
    let kernel = fdc_kernel::service::start(config).await.unwrap();
    let a = kernel.http_addr;
    assert_eq!(
        wait_for(WAIT, 200, || async { http_get(a, "/readyz").await.0 }).await,
        200,
        "kernel never became ready"
    );
    kernel
}

/// [`start_ready`], and a connection to `env`'s Redis for the test's own commands.
pub async fn start_ready_with_redis(
    env: &TestEnv,
    config: fdc_common::config::Config,
) -> (fdc_kernel::service::RunningKernel, MultiplexedConnection) {
    let kernel = start_ready(config).await;
    (kernel, env.redis_conn().await)
}

/// Kills Postgres, then publishes the entries of `set`: a backlog that arrives during the
/// outage. Returns `set`.
pub async fn publish_during_outage(
    env: &mut TestEnv,
    redis: &MultiplexedConnection,
    set: EventSet,
) -> EventSet {
    env.postgres.kill();
    publish(redis, "events", &set.entries).await;
    set
}

/// Ends the outage of [`publish_during_outage`]: restarts Postgres, waits until every event of
/// `set` is stored and checks the exact outcome ([`assert_all_stored_exactly`]). Returns a
/// pool for the test's own queries.
pub async fn end_outage(
    env: &mut TestEnv,
    redis: &MultiplexedConnection,
    set: &EventSet,
) -> PgPool {
    env.postgres.restart().await.unwrap();
    let pg = env.pg().await;
    assert_all_stored_exactly(&pg, redis, set).await;
    pg
}

/// One sample of the kernel's `/metrics` at `addr` (-1 when absent).
pub async fn metric(addr: SocketAddr, series: &str) -> f64 {
    metric_at(addr, series).await.unwrap_or(-1.0)
}

pub async fn wait_metric_at_least(addr: SocketAddr, series: &str, min: f64) -> f64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = metric(addr, series).await;
        if v >= min || std::time::Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `fdc-kernel` binary as a child process (to SIGKILL it), configured through `FDC_*`:
/// short batch waits, warnings only, plus `extra`.
pub fn start_kernel(env: &TestEnv, consumer: &str, extra: &[(&str, &str)]) -> KernelProcess {
    let mut vars = vec![
        ("FDC_INGEST__BATCH_MAX_WAIT".to_string(), "20ms".to_string()),
        ("FDC_LOG__LEVEL".to_string(), "warn".to_string()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    KernelProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_fdc-kernel")),
        &env.redis.url(),
        &env.postgres.url(),
        consumer,
        &vars,
        None,
    )
    .expect("spawn fdc-kernel")
}

/// Entries pending on one consumer of group `kernel` on stream `events`.
pub async fn pending_of(redis: &MultiplexedConnection, consumer: &str) -> usize {
    let mut conn = redis.clone();
    let reply: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg("events")
        .arg("kernel")
        .arg("-")
        .arg("+")
        .arg(100_000)
        .arg(consumer)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    reply.len()
}

/// Freezes the process at a moment it holds pending entries, then SIGKILLs
/// it: a replica that died with work in hand. Returns how many it held.
pub async fn kill_holding_pending(
    kernel: &mut KernelProcess,
    redis: &MultiplexedConnection,
) -> usize {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        kernel.signal(libc::SIGSTOP);
        // Let the stop take effect and commands already sent reach Redis.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let held = pending_of(redis, &kernel.consumer).await;
        if held > 0 {
            kernel.kill();
            return held;
        }
        kernel.signal(libc::SIGCONT);
        assert!(
            std::time::Instant::now() < deadline,
            "{} never held pending entries",
            kernel.consumer
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `n` events as the pipeline spills them, with their entries: event `i` has the entry id
/// `id(i)`, the subject `<subject_prefix><i % 3>`, the tag `batch=<tag>` and the stream
/// fields `fields`.
pub fn spilled_batch(
    n: usize,
    id: impl Fn(usize) -> String,
    subject_prefix: &str,
    tag: &str,
    fields: &[(&str, &[u8])],
) -> (Vec<Event>, EntriesByRef) {
    let now = now_ns();
    let mut events = Vec::new();
    let mut entries = EntriesByRef::default();
    for i in 0..n {
        let source = EntryRef {
            stream: "events".into(),
            id: id(i).into(),
        };
        events.push(Event {
            id: Uuid::now_v7(),
            ts_ns: now - i as i64,
            subject: Some(format!("{subject_prefix}{}", i % 3)),
            tags: [("batch", tag)].into_iter().collect(),
            payload: format!("{{\"n\":{i}}}"),
            source: source.clone(),
            producer_id: None,
            schema_id: None,
        });
        entries.insert(
            source.clone(),
            Entry {
                at: source,
                fields: Some(fields.iter().map(|(k, v)| (*k, v.to_vec())).collect()),
                deliveries: 1,
                flaw: None,
            },
        );
    }
    (events, entries)
}

/// A consumer that reads `count` new entries and dies without acknowledging them.
pub async fn read_without_ack(redis: &MultiplexedConnection, consumer: &str, count: usize) {
    create_group(redis, "events", "kernel").await;
    let mut conn = redis.clone();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("kernel")
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg("events")
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Waits until the spill of the kernel serving metrics on `addr` is replayed, then asserts
/// that `events` holds exactly the events `want`, each once.
pub async fn assert_spill_replayed_exactly(pg: &PgPool, addr: SocketAddr, want: &HashSet<Uuid>) {
    assert_eq!(wait_stored(pg, want.len()).await, want.len() as i64);
    assert_eq!(
        wait_for(WAIT, 0.0, || metric(addr, "kernel_spill_pending_records")).await,
        0.0
    );
    let rows: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(pg)
        .await
        .unwrap();
    assert_eq!(rows.len(), want.len(), "an event stored twice");
    assert_eq!(&rows.into_iter().collect::<HashSet<_>>(), want);
}

/// Quarantine files in the spill directory `dir`: name and content, in name order.
pub fn quarantine_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            name.starts_with("quarantine-")
                .then(|| (name, std::fs::read(&p).unwrap()))
        })
        .collect();
    found.sort();
    found
}

/// The name of the quarantine file of the record at `at`: `quarantine-<segment>-<offset>.rec`.
pub fn quarantine_name(at: RecordId) -> String {
    format!("quarantine-{:020}-{:012}.rec", at.segment(), at.offset())
}
