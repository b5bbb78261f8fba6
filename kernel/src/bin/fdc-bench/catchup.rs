//! The catch-up run: a kernel with a spill directory takes W1-shaped events at a steady offered
//! rate; Postgres is stopped for a while and started again. Measured: the spill replay rate,
//! how long until the spill and the stream lag are back to zero, the peak backlog, and the rate
//! at which Postgres took events from the restart until then (the catch-up rate).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use serde::Serialize;

use super::drain::STREAM;
use super::env::{BenchEnv, RunDb};
use super::report::median;
use super::workload::{data_json, W1};
use super::BenchError;
use fdc_kernel::redis_io::StreamClient;
use fdc_testenv::{now_ns, KernelProcess};

/// Steady state before the outage.
const BEFORE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// The shape of one catch-up run.
#[derive(Debug, Clone, Copy)]
pub struct CatchupSetup {
    pub rate: f64,
    pub outage: Duration,
    /// Longest the recovery may take before the run fails.
    pub timeout: Duration,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct CatchupSample {
    pub offered_per_s: f64,
    pub outage_seconds: f64,
    /// Events produced in the whole run (all stored, checked).
    pub events: usize,
    /// Events written to the spill while Postgres was down.
    pub spilled_events: f64,
    /// Largest backlog seen: events in the spill plus entries pending or undelivered in Redis.
    pub peak_backlog: f64,
    /// From the restart until the spill was empty: replayed events / seconds.
    pub replay_per_s: f64,
    /// From the restart until the spill was empty and the stream lag 0.
    pub recovery_seconds: f64,
    /// Events stored from the restart until caught up / those seconds.
    pub catchup_per_s: f64,
}

pub async fn run(
    env: &mut BenchEnv,
    kernel_bin: &Path,
    kernel_env: &[(String, String)],
    setup: CatchupSetup,
) -> Result<CatchupSample, BenchError> {
    let db = env.start_run("catchup").await?;
    let result = measure(env, &db, kernel_bin, kernel_env, setup).await;
    if result.is_err() {
        // A failed run may have left Postgres stopped; the next run needs it.
        env.postgres.restart().await?;
    }
    env.finish_run(db).await?;
    result
}

async fn measure(
    env: &mut BenchEnv,
    db: &RunDb,
    kernel_bin: &Path,
    kernel_env: &[(String, String)],
    setup: CatchupSetup,
) -> Result<CatchupSample, BenchError> {
    let logs = tempfile::Builder::new().prefix("fdc-bench-").tempdir()?;
    let spill = tempfile::Builder::new()
        .prefix("fdc-bench-spill-")
        .tempdir()?;
    let mut kernel_env = kernel_env.to_vec();
    kernel_env.push((
        "FDC_SPILL__DIR".into(),
        spill.path().to_string_lossy().into_owned(),
    ));
    let mut kernel = KernelProcess::spawn(
        kernel_bin,
        &env.redis.url(),
        &db.url,
        "bench-catchup",
        &kernel_env,
        Some(logs.path()),
    )?;
    kernel.wait_ready(Duration::from_secs(30)).await?;
    let observer = super::drain::observer(env)?;

    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicUsize::new(0));
    let producer = tokio::spawn(produce(
        env.redis(),
        setup.rate,
        setup.seed,
        stop.clone(),
        produced.clone(),
    ));
    tokio::time::sleep(BEFORE).await;
    let stored_before: i64 = count_events(db).await?;
    env.postgres.stop();
    let down = Instant::now();
    let mut peak = 0.0f64;
    while down.elapsed() < setup.outage {
        kernel.check_alive()?;
        let (spill, redis, _) = backlog(&kernel, &observer).await?;
        peak = peak.max(spill.events + redis);
        tokio::time::sleep(POLL).await;
    }
    env.postgres.restart().await?;
    let restarted = Instant::now();
    let outage_seconds = (restarted - down).as_secs_f64();
    let replayed_before = kernel.metric("kernel_spill_events_replayed_total").await;
    let spilled_events = kernel.metric("kernel_spill_events_written_total").await;

    let mut spill_empty_at = None;
    let caught_up_at = loop {
        kernel.check_alive()?;
        let (spill, redis, lag) = backlog(&kernel, &observer).await?;
        peak = peak.max(spill.events + redis);
        let spill_empty = spill.records == 0.0;
        if spill_empty && spill_empty_at.is_none() {
            spill_empty_at = Some(restarted.elapsed());
        }
        if spill_empty && lag == 0 {
            break restarted.elapsed();
        }
        if restarted.elapsed() > setup.timeout {
            return Err(BenchError::Timeout(format!(
                "catch-up not done {:?} after the restart: {} events in the spill, lag {lag}",
                setup.timeout, spill.events
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    let stored_caught_up: i64 = count_events(db).await?;
    let replayed = kernel.metric("kernel_spill_events_replayed_total").await - replayed_before;
    stop.store(true, Ordering::Relaxed);
    producer
        .await
        .map_err(|e| BenchError::Kernel(format!("producer failed: {e}")))??;
    let events = produced.load(Ordering::Relaxed);
    // Everything produced is stored once the group has nothing pending.
    let settle = Instant::now();
    loop {
        let info = observer
            .group_info(STREAM)
            .await
            .map_err(|e| BenchError::Kernel(e.to_string()))?;
        if info.pending == 0 && info.lag == Some(0) && spill_left(&kernel).await.records == 0.0 {
            break;
        }
        if settle.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Timeout(
                "last events of the catch-up run".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let still_spilled = spill_left(&kernel).await;
    kernel.stop(Duration::from_secs(30))?;
    let stored = count_events(db).await?;
    if stored != events as i64 {
        // Say where the others are: dead-lettered, still in the spill, or nowhere; and keep
        // the kernel's log for reading.
        let dead = super::drain::dead_letters(&env.redis(), STREAM).await?;
        let log = logs.keep();
        return Err(BenchError::Check(format!(
            "catch-up run produced {events} events, stored {stored}; {dead} dead-lettered, \
             {:.0} spill records left at the stop; the kernel's log is kept in {}",
            still_spilled.records,
            log.display()
        )));
    }
    let spill_secs = spill_empty_at.unwrap_or(caught_up_at).as_secs_f64();
    let recovery_seconds = caught_up_at.as_secs_f64();
    Ok(CatchupSample {
        offered_per_s: setup.rate,
        outage_seconds,
        events,
        spilled_events,
        peak_backlog: peak,
        replay_per_s: replayed / spill_secs.max(1e-9),
        recovery_seconds,
        catchup_per_s: (stored_caught_up - stored_before) as f64 / recovery_seconds.max(1e-9),
    })
}

/// What is left in the spill, entries pending or undelivered in Redis, and the undelivered
/// alone.
async fn backlog(
    kernel: &KernelProcess,
    observer: &StreamClient,
) -> Result<(SpillLeft, f64, i64), BenchError> {
    let info = observer
        .group_info(STREAM)
        .await
        .map_err(|e| BenchError::Kernel(e.to_string()))?;
    let lag = info.lag.unwrap_or(0);
    Ok((spill_left(kernel).await, (info.pending + lag) as f64, lag))
}

/// What the spill holds not yet replayed, from one read of the kernel's metrics.
struct SpillLeft {
    /// Events written and not yet replayed (the backlog's part; never below 0, should an event
    /// be counted as replayed twice).
    events: f64,
    /// Records, as the store counts them: whether the spill is empty.
    records: f64,
}

async fn spill_left(kernel: &KernelProcess) -> SpillLeft {
    let metrics = kernel.metrics().await;
    let get = |name: &str| fdc_testenv::metric_value(&metrics, name).unwrap_or(0.0);
    SpillLeft {
        events: (get("kernel_spill_events_written_total")
            - get("kernel_spill_events_replayed_total"))
        .max(0.0),
        records: get("kernel_spill_pending_records"),
    }
}

async fn count_events(db: &RunDb) -> Result<i64, BenchError> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await?)
}

/// XADDs W1-shaped events stamped with the current time at `rate` per second in 10 ms ticks
/// until `stop`; counts them in `produced`.
async fn produce(
    mut conn: MultiplexedConnection,
    rate: f64,
    seed: u64,
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicUsize>,
) -> Result<(), BenchError> {
    // Shapes (subject, tags, payload) only; ids and ts are made at send time.
    let shapes = W1 {
        events: usize::MAX / 2,
        seed,
        first_day: 0,
    };
    let mut shapes = shapes.iter();
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut count = 0usize;
    while !stop.load(Ordering::Relaxed) {
        interval.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate).ceil() as usize;
        if due <= count {
            continue;
        }
        let mut pipe = redis::pipe();
        for shape in shapes.by_ref().take(due - count) {
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg(&[
                    ("type", "data".to_string()),
                    ("version", "1.0.0".to_string()),
                    ("id", uuid::Uuid::now_v7().to_string()),
                    ("ts", now_ns().to_string()),
                    ("data", data_json(&shape)),
                ])
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        count = due;
        produced.store(count, Ordering::Relaxed);
    }
    Ok(())
}

/// Catch-up runs and their medians.
#[derive(Debug, Clone, Serialize)]
pub struct CatchupSummary {
    pub median: CatchupSample,
    pub runs: Vec<CatchupSample>,
}

impl CatchupSummary {
    pub fn of(runs: Vec<CatchupSample>) -> Option<CatchupSummary> {
        let first = runs.first()?;
        let m = |f: fn(&CatchupSample) -> f64| median(runs.iter().map(f));
        let median = CatchupSample {
            offered_per_s: first.offered_per_s,
            outage_seconds: m(|s| s.outage_seconds),
            events: first.events,
            spilled_events: m(|s| s.spilled_events),
            peak_backlog: m(|s| s.peak_backlog),
            replay_per_s: m(|s| s.replay_per_s),
            recovery_seconds: m(|s| s.recovery_seconds),
            catchup_per_s: m(|s| s.catchup_per_s),
        };
        Some(CatchupSummary { median, runs })
    }

    /// One paragraph; with the plain drain's rate of the same invocation, the ratio to it.
    pub fn line(&self, drain_per_s: Option<f64>) -> String {
        let c = &self.median;
        let ratio = drain_per_s.map_or(String::new(), |d| {
            format!(" = {:.2} × the drain", c.catchup_per_s / d)
        });
        format!(
            "\ncatch-up at {:.0}/s offered, Postgres stopped {:.0} s: {:.0} events spilled, peak \
             backlog {:.0}; after the restart the spill replayed at {:.0} events/s, spill and lag \
             back to zero in {:.1} s, Postgres took {:.0} events/s meanwhile{}\n",
            c.offered_per_s,
            c.outage_seconds,
            c.spilled_events,
            c.peak_backlog,
            c.replay_per_s,
            c.recovery_seconds,
            c.catchup_per_s,
            ratio
        )
    }
}
