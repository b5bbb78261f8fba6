//! The drain: W1 preloaded into the stream as a backlog, then kernel processes started; the
//! clock runs from their start until every entry is committed and acknowledged.

use std::path::Path;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::env::{BenchEnv, RunDb, ServerFigures};
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
    observer_at(&env.redis.url())
}

/// [`observer`] on the Redis at `url` (`redis+cluster://` for a cluster).
pub fn observer_at(url: &str) -> Result<StreamClient, BenchError> {
    StreamClient::new(url, GROUP, "bench-observer", Duration::from_secs(1))
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
        let mut kernels = Kernels::spawn(setup, &env.redis.url(), &db.url, &[], logs.path())?;
        kernels
            .wait_drained(&observer, &[STREAM.to_string()], setup.timeout)
            .await?;
        let seconds = meter.started.elapsed().as_secs_f64();
        let figures = kernels.figures().await;
        let server = env.read_meter(&meter).await?;
        kernels.stop()?;
        verify(db, w1.events, &figures.stored_by, setup.expect_producers).await?;
        check_no_dead_letters(&conn, STREAM).await?;
        if setup.schema {
            super::schema_run::verify(db, w1.events).await?;
        }
        Ok(figures.sample(w1.events, seconds, server))
    })
    .await
}

/// The kernel processes of one drain, from their spawn.
pub struct Kernels {
    kernels: Vec<KernelProcess>,
    started: Instant,
}

/// What the kernels of a drain report at its end.
pub struct KernelFigures {
    cpu_seconds: f64,
    peak_rss_kib: u64,
    pub stored_by: Vec<u64>,
    duplicates: f64,
}

impl KernelFigures {
    /// The drain's sample: `events` drained in `seconds`, with the servers' figures.
    pub fn sample(self, events: usize, seconds: f64, server: ServerFigures) -> Sample {
        let mut sample = Sample::new(events, seconds, server);
        sample.kernel_cpu_seconds = Some(self.cpu_seconds);
        sample.peak_rss_mib = Some(self.peak_rss_kib as f64 / 1024.0);
        sample.stored_by_replica = self.stored_by;
        sample.duplicates = Some(self.duplicates as u64);
        sample
    }
}

impl Kernels {
    /// Starts `setup.replicas` kernels on `redis_url` and `db_url` with `setup.extra_env` plus
    /// `env`; their logs go to `logs`.
    pub fn spawn(
        setup: &DrainSetup<'_>,
        redis_url: &str,
        db_url: &str,
        env: &[(String, String)],
        logs: &Path,
    ) -> Result<Kernels, BenchError> {
        let env = [setup.extra_env.as_slice(), env].concat();
        let mut kernels = Vec::with_capacity(setup.replicas);
        for i in 0..setup.replicas {
            kernels.push(KernelProcess::spawn(
                setup.kernel_bin,
                redis_url,
                db_url,
                &format!("bench-{}-{i}", setup.label),
                &env,
                Some(logs),
            )?);
        }
        Ok(Kernels {
            kernels,
            started: Instant::now(),
        })
    }

    /// Waits until the group has nothing pending and nothing undelivered on every stream of
    /// `streams`. The backlog was loaded before the kernels started, so a stream found drained
    /// stays drained and is not asked about again. Fails at once if a kernel exits or is not
    /// ready within [`READY_TIMEOUT`], and after `timeout`.
    pub async fn wait_drained(
        &mut self,
        observer: &StreamClient,
        streams: &[String],
        timeout: Duration,
    ) -> Result<(), BenchError> {
        let deadline = self.started + timeout;
        let mut ready = vec![false; self.kernels.len()];
        let mut left: Vec<&String> = streams.iter().collect();
        loop {
            let mut last = None;
            let mut still = Vec::with_capacity(left.len());
            for stream in left {
                let info = observer
                    .group_info(stream)
                    .await
                    .map_err(|e| BenchError::Kernel(e.to_string()))?;
                if info.pending != 0 || info.lag != Some(0) {
                    still.push(stream);
                    last = Some((stream, info));
                }
            }
            left = still;
            let Some((stream, info)) = last else {
                return Ok(());
            };
            for (kernel, ready) in self.kernels.iter_mut().zip(ready.iter_mut()) {
                kernel.check_alive()?;
                if !*ready {
                    *ready = kernel.is_ready().await;
                    if !*ready && self.started.elapsed() >= READY_TIMEOUT {
                        return Err(kernel.not_ready(READY_TIMEOUT).into());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(format!(
                    "drain not finished after {timeout:?}: {} stream(s) left, {stream}: \
                     pending {}, lag {:?}",
                    left.len(),
                    info.pending,
                    info.lag
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// CPU, peak RSS and the counters of every kernel, read while they still run.
    pub async fn figures(&self) -> KernelFigures {
        let mut figures = KernelFigures {
            cpu_seconds: 0.0,
            peak_rss_kib: 0,
            stored_by: Vec::with_capacity(self.kernels.len()),
            duplicates: 0.0,
        };
        for kernel in &self.kernels {
            figures.cpu_seconds += procfs::cpu_seconds(kernel.pid()).unwrap_or(0.0);
            figures.peak_rss_kib = figures.peak_rss_kib.max(procfs::peak_rss_kib(kernel.pid()));
            figures
                .stored_by
                .push(kernel.metric("kernel_events_stored_total").await as u64);
            figures.duplicates += kernel.metric("kernel_events_duplicate_total").await;
        }
        figures
    }

    pub fn stop(self) -> Result<(), BenchError> {
        for kernel in self.kernels {
            kernel.stop(Duration::from_secs(30))?;
        }
        Ok(())
    }
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

/// The guarantees a drain must keep: every event stored exactly once, counted by the kernels
/// (the caller checks the dead letters, [`check_no_dead_letters`]).
pub async fn verify(
    db: &RunDb,
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
    Ok(())
}

/// How many entries of `stream` were dead-lettered (the length of `<stream>:dlq`); `conn`
/// serves its slot.
pub async fn dead_letters(conn: &MultiplexedConnection, stream: &str) -> Result<i64, BenchError> {
    let mut conn = conn.clone();
    Ok(redis::cmd("XLEN")
        .arg(format!("{stream}:dlq"))
        .query_async(&mut conn)
        .await?)
}

/// Nothing of `stream` was dead-lettered (`<stream>:dlq` is empty); `conn` serves its slot.
pub async fn check_no_dead_letters(
    conn: &MultiplexedConnection,
    stream: &str,
) -> Result<(), BenchError> {
    let dead = dead_letters(conn, stream).await?;
    if dead != 0 {
        return Err(BenchError::Check(format!(
            "{dead} entries of {stream} dead-lettered"
        )));
    }
    Ok(())
}
