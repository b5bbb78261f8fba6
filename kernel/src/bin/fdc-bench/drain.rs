//! The drain: W1 preloaded into the stream as a backlog, then kernel processes started; the
//! clock runs from their start until every entry is committed and acknowledged.

use std::path::Path;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::env::{BenchEnv, RunDb};
use super::procfs;
use super::variant::SchemaVariant;
use super::workload::{entry_fields, W1};
use super::{BenchError, Sample};
use fdc_kernel::redis_io::StreamClient;
use fdc_testenv::KernelProcess;

/// The kernel's default stream and group.
pub const STREAM: &str = "events";
pub const GROUP: &str = "kernel";

/// A kernel that has not answered `/readyz` by then will not drain anything: fail fast with its
/// log rather than wait for the whole drain timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How one drain is set up.
pub struct DrainSetup<'a> {
    pub kernel_bin: &'a Path,
    pub replicas: usize,
    /// Extra `FDC_*` settings (e.g. auth); empty for the default config.
    pub extra_env: Vec<(String, String)>,
    /// Turns W1 events into stream entries (e.g. adds a token).
    pub entries: &'a (dyn Fn(&super::workload::W1Event) -> Vec<(&'static str, String)> + Sync),
    pub label: &'a str,
    /// Auth is on: every stored event must carry its producer id.
    pub expect_producers: bool,
    /// The stream is bound to the bench schema (`schema_run`): it is registered before the
    /// kernel starts, and every stored event must carry its id.
    pub schema: bool,
    /// Longest a drain may take before the run fails.
    pub timeout: Duration,
    /// The database schema (every migration unless `--db-schema` asks for others).
    pub db_schema: &'a SchemaVariant,
}

pub fn plain_entry(event: &super::workload::W1Event) -> Vec<(&'static str, String)> {
    entry_fields(event).to_vec()
}

/// A client of the kernel's group that only looks (`XINFO GROUPS`), for the benchmark.
pub fn observer(env: &BenchEnv) -> Result<StreamClient, BenchError> {
    StreamClient::new(
        &env.redis.url(),
        GROUP,
        "bench-observer",
        Duration::from_secs(1),
    )
    .map_err(|e| BenchError::Kernel(e.to_string()))
}

pub async fn run(env: &BenchEnv, w1: W1, setup: &DrainSetup<'_>) -> Result<Sample, BenchError> {
    env.in_run_with(setup.label, setup.db_schema, async |db| {
        let conn = env.redis();
        preload(&conn, w1, setup.entries).await?;
        if setup.schema {
            super::schema_run::register(db).await?;
        }
        env.checkpoint().await?;
        let observer = observer(env)?;
        let logs = tempfile::Builder::new().prefix("fdc-bench-").tempdir()?;

        let meter = env.meter().await?;
        let mut kernels = Vec::with_capacity(setup.replicas);
        for i in 0..setup.replicas {
            kernels.push(KernelProcess::spawn(
                setup.kernel_bin,
                &env.redis.url(),
                &db.url,
                &format!("bench-{}-{i}", setup.label),
                &setup.extra_env,
                Some(logs.path()),
            )?);
        }
        let started = Instant::now();
        let deadline = started + setup.timeout;
        let mut ready = vec![false; kernels.len()];
        loop {
            let info = observer
                .group_info(STREAM)
                .await
                .map_err(|e| BenchError::Kernel(e.to_string()))?;
            if info.pending == 0 && info.lag == Some(0) {
                break;
            }
            for (kernel, ready) in kernels.iter_mut().zip(ready.iter_mut()) {
                kernel.check_alive()?;
                if !*ready {
                    *ready = kernel.is_ready().await;
                    if !*ready && started.elapsed() >= READY_TIMEOUT {
                        return Err(kernel.not_ready(READY_TIMEOUT).into());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(format!(
                    "drain not finished after {:?}: pending {}, lag {:?}",
                    setup.timeout, info.pending, info.lag
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seconds = meter.started.elapsed().as_secs_f64();
        let mut kernel_cpu = 0.0;
        let mut peak_rss_kib = 0;
        let mut stored_by = Vec::new();
        let mut duplicates = 0.0;
        for kernel in &kernels {
            kernel_cpu += procfs::cpu_seconds(kernel.pid()).unwrap_or(0.0);
            peak_rss_kib = peak_rss_kib.max(procfs::peak_rss_kib(kernel.pid()));
            stored_by.push(kernel.metric("kernel_events_stored_total").await as u64);
            duplicates += kernel.metric("kernel_events_duplicate_total").await;
        }
        let server = env.read_meter(&meter).await?;
        for kernel in kernels {
            kernel.stop(Duration::from_secs(30))?;
        }
        verify(db, &conn, w1.events, &stored_by, setup.expect_producers).await?;
        if setup.schema {
            super::schema_run::verify(db, w1.events).await?;
        }

        let mut sample = Sample::new(w1.events, seconds, server);
        sample.kernel_cpu_seconds = Some(kernel_cpu);
        sample.peak_rss_mib = Some(peak_rss_kib as f64 / 1024.0);
        sample.stored_by_replica = stored_by;
        sample.duplicates = Some(duplicates as u64);
        Ok(sample)
    })
    .await
}

/// XADDs the whole workload, pipelined; the kernel is not running yet.
pub async fn preload(
    conn: &MultiplexedConnection,
    w1: W1,
    entries: &(dyn Fn(&super::workload::W1Event) -> Vec<(&'static str, String)> + Sync),
) -> Result<(), BenchError> {
    let mut conn = conn.clone();
    let mut events = w1.iter().peekable();
    while events.peek().is_some() {
        let mut pipe = redis::pipe();
        for event in events.by_ref().take(2_000) {
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg(entries(&event))
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    Ok(())
}

/// The guarantees a drain must keep: every event stored exactly once, nothing dead-lettered.
async fn verify(
    db: &RunDb,
    conn: &MultiplexedConnection,
    sent: usize,
    stored_by: &[u64],
    expect_producers: bool,
) -> Result<(), BenchError> {
    let (events, distinct, index, tags, with_producer): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events), (SELECT count(DISTINCT event_id) FROM events), \
                (SELECT count(*) FROM event_index), (SELECT count(*) FROM event_tags), \
                (SELECT count(producer_id) FROM events)",
    )
    .fetch_one(&db.pool)
    .await?;
    let sent = sent as i64;
    if events != sent || distinct != sent || index != sent {
        return Err(BenchError::Check(format!(
            "sent {sent}, stored {events} rows ({distinct} distinct ids, {index} in event_index)"
        )));
    }
    let want_producers = if expect_producers { sent } else { 0 };
    if with_producer != want_producers {
        return Err(BenchError::Check(format!(
            "{with_producer} events carry a producer id, want {want_producers}"
        )));
    }
    let want_tags = sent * super::workload::TAGS_PER_EVENT as i64;
    if tags != want_tags {
        return Err(BenchError::Check(format!(
            "{tags} tag rows, want {want_tags}"
        )));
    }
    let stored: u64 = stored_by.iter().sum();
    if stored != sent as u64 {
        return Err(BenchError::Check(format!(
            "kernels report {stored} events stored ({stored_by:?}), sent {sent}"
        )));
    }
    let mut conn = conn.clone();
    let dead: i64 = redis::cmd("XLEN")
        .arg(format!("{STREAM}:dlq"))
        .query_async(&mut conn)
        .await?;
    if dead != 0 {
        return Err(BenchError::Check(format!("{dead} entries dead-lettered")));
    }
    Ok(())
}
