//! Commit latency at a steady offered rate: a paced producer XADDs W1-shaped events stamped
//! with the current time while the kernel runs.
//!
//! Two views: the kernel's own `kernel_commit_latency_seconds` histogram (commit time − `ts`,
//! quantiles interpolated within buckets as Prometheus does), and the benchmark's measurement
//! of acknowledgement time − `ts` per entry: an observer polls the group every few ms (one
//! atomic MULTI of XINFO GROUPS and XPENDING); an entry delivered and no longer pending was
//! acknowledged, i.e. committed, by the time of that poll. That is an upper bound on the commit
//! latency (acks follow commits), within the poll interval.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Value;
use serde::Serialize;
use tokio::sync::mpsc;

use super::drain::{GROUP, STREAM};
use super::env::BenchEnv;
use super::procfs;
use super::workload::{data_json, W1};
use super::BenchError;
use fdc_testenv::KernelProcess;
use fdc_testenv::{metric_value, now_ns};

const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Serialize, Default)]
pub struct LatencySample {
    pub offered_per_s: f64,
    pub achieved_per_s: f64,
    pub events: usize,
    /// Acknowledgement time − ts, measured by the benchmark (ms).
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    /// From the kernel's histogram (ms), interpolated within buckets.
    pub hist_p50_ms: f64,
    pub hist_p99_ms: f64,
    /// Share of events the histogram puts at ≤ 100 ms.
    pub hist_within_100ms: f64,
    pub kernel_cpu_percent: f64,
    pub peak_rss_mib: f64,
    /// Where the time goes: mean events per Postgres batch, and the batch write time
    /// (`kernel_pg_batch_seconds`: write + commit) mean and p99, ms.
    pub batch_mean_events: f64,
    pub pg_batch_mean_ms: f64,
    pub pg_batch_p99_ms: f64,
}

pub async fn run(
    env: &BenchEnv,
    kernel_bin: &Path,
    kernel_env: &[(String, String)],
    rate: f64,
    duration: Duration,
    seed: u64,
) -> Result<LatencySample, BenchError> {
    env.in_run("latency", async |db| {
        let logs = tempfile::Builder::new().prefix("fdc-bench-").tempdir()?;
        let mut kernel = KernelProcess::spawn(
            kernel_bin,
            &env.redis.url(),
            &db.url,
            "bench-latency",
            kernel_env,
            Some(logs.path()),
        )?;
        kernel.wait_ready(Duration::from_secs(30)).await?;
        let cpu_before = procfs::cpu_seconds(kernel.pid()).unwrap_or(0.0);

        let (sent_tx, sent_rx) = mpsc::unbounded_channel();
        let observer = tokio::spawn(observe(env.redis(), sent_rx));
        let started = Instant::now();
        let events = produce(env.redis(), rate, duration, seed, sent_tx).await?;
        let produced_in = started.elapsed().as_secs_f64();
        let mut acked = tokio::time::timeout(duration + Duration::from_secs(60), observer)
            .await
            .map_err(|_| BenchError::Timeout("acknowledgement of the paced events".into()))?
            .map_err(|e| BenchError::Kernel(format!("observer failed: {e}")))??;
        let cpu = procfs::cpu_seconds(kernel.pid()).unwrap_or(0.0) - cpu_before;
        let elapsed = started.elapsed().as_secs_f64();
        let metrics = kernel.metrics().await;
        let peak_rss_mib = procfs::peak_rss_kib(kernel.pid()) as f64 / 1024.0;
        kernel.stop(Duration::from_secs(30))?;

        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&db.pool)
            .await?;
        if stored != events as i64 || acked.len() != events {
            return Err(BenchError::Check(format!(
                "latency run sent {events}, stored {stored}, saw {} acknowledged",
                acked.len()
            )));
        }
        acked.sort_by(f64::total_cmp);
        let buckets = histogram(&metrics, "kernel_commit_latency_seconds");
        let batch = histogram(&metrics, "kernel_pg_batch_seconds");
        let mean = |name: &str| {
            let sum = metric_value(&metrics, &format!("{name}_sum")).unwrap_or(0.0);
            let count = metric_value(&metrics, &format!("{name}_count")).unwrap_or(0.0);
            if count > 0.0 {
                sum / count
            } else {
                0.0
            }
        };
        Ok(LatencySample {
            offered_per_s: rate,
            achieved_per_s: events as f64 / produced_in,
            events,
            ack_p50_ms: quantile_sorted(&acked, 0.50) * 1e3,
            ack_p99_ms: quantile_sorted(&acked, 0.99) * 1e3,
            ack_max_ms: acked.last().copied().unwrap_or(0.0) * 1e3,
            hist_p50_ms: histogram_quantile(&buckets, 0.50) * 1e3,
            hist_p99_ms: histogram_quantile(&buckets, 0.99) * 1e3,
            hist_within_100ms: share_within(&buckets, 0.1),
            kernel_cpu_percent: 100.0 * cpu / elapsed,
            peak_rss_mib,
            batch_mean_events: mean("kernel_pg_batch_size"),
            pg_batch_mean_ms: mean("kernel_pg_batch_seconds") * 1e3,
            pg_batch_p99_ms: histogram_quantile(&batch, 0.99) * 1e3,
        })
    })
    .await
}

/// Publishes `rate` events per second for `duration`, in 10 ms ticks; reports each entry's
/// id and ts to the observer. Returns how many were sent.
async fn produce(
    conn: MultiplexedConnection,
    rate: f64,
    duration: Duration,
    seed: u64,
    sent: mpsc::UnboundedSender<(String, i64)>,
) -> Result<usize, BenchError> {
    let mut conn = conn;
    let total = (rate * duration.as_secs_f64()).round() as usize;
    let shapes = W1 {
        events: total,
        seed,
        first_day: 0,
    };
    let mut shapes = shapes.iter();
    let tick = Duration::from_millis(10);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut count = 0usize;
    while count < total {
        interval.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate).ceil() as usize).min(total);
        if due <= count {
            continue;
        }
        let mut pipe = redis::pipe();
        let mut stamps = Vec::with_capacity(due - count);
        for shape in shapes.by_ref().take(due - count) {
            let ts_ns = now_ns();
            let id = uuid::Uuid::now_v7();
            pipe.cmd("XADD").arg(STREAM).arg("*").arg(&[
                ("type", "data".to_string()),
                ("version", "1.0.0".to_string()),
                ("id", id.to_string()),
                ("ts", ts_ns.to_string()),
                ("data", data_json(&shape)),
            ]);
            stamps.push(ts_ns);
        }
        let ids: Vec<String> = pipe.query_async(&mut conn).await?;
        count += ids.len();
        for (id, ts) in ids.into_iter().zip(stamps) {
            let _ = sent.send((id, ts));
        }
    }
    Ok(count)
}

/// A stream entry id as a sortable pair.
fn entry_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Acknowledgement latencies (seconds) of every entry reported on `sent`, until the producer
/// is done and all are acknowledged.
async fn observe(
    conn: MultiplexedConnection,
    mut sent: mpsc::UnboundedReceiver<(String, i64)>,
) -> Result<Vec<f64>, BenchError> {
    let mut conn = conn;
    let mut waiting: BTreeMap<(u64, u64), i64> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut producing = true;
    loop {
        loop {
            match sent.try_recv() {
                Ok((id, ts)) => {
                    waiting.insert(entry_id(&id), ts);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    producing = false;
                    break;
                }
            }
        }
        if !producing && waiting.is_empty() {
            return Ok(latencies);
        }
        let (delivered, pending) = poll_group(&mut conn).await?;
        let now = now_ns();
        let done: Vec<(u64, u64)> = waiting
            .range(..=delivered)
            .filter(|(id, _)| !pending.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(ts) = waiting.remove(&id) {
                latencies.push((now - ts).max(0) as f64 / 1e9);
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The group's last delivered id and its pending ids, read atomically.
async fn poll_group(
    conn: &mut MultiplexedConnection,
) -> Result<((u64, u64), HashSet<(u64, u64)>), BenchError> {
    let (groups, pending): (Value, Value) = redis::pipe()
        .atomic()
        .cmd("XINFO")
        .arg("GROUPS")
        .arg(STREAM)
        .cmd("XPENDING")
        .arg(STREAM)
        .arg(GROUP)
        .arg("-")
        .arg("+")
        .arg(100_000)
        .query_async(conn)
        .await?;
    let mut delivered = (0, 0);
    for group in array(&groups).unwrap_or(&[]) {
        let fields: Vec<(String, &Value)> = match group {
            Value::Map(pairs) => pairs
                .iter()
                .filter_map(|(k, v)| Some((string(k).ok()?, v)))
                .collect(),
            other => array(other)
                .unwrap_or(&[])
                .chunks_exact(2)
                .filter_map(|kv| Some((string(&kv[0]).ok()?, &kv[1])))
                .collect(),
        };
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| string(v).ok())
        };
        if get("name").as_deref() == Some(GROUP) {
            delivered = entry_id(&get("last-delivered-id").unwrap_or_default());
        }
    }
    let pending = array(&pending)
        .unwrap_or(&[])
        .iter()
        .filter_map(|row| {
            let first = array(row).ok()?.first()?;
            Some(entry_id(&string(first).ok()?))
        })
        .collect();
    Ok((delivered, pending))
}

fn array(v: &Value) -> Result<&[Value], ()> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        _ => Err(()),
    }
}

fn string(v: &Value) -> Result<String, ()> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| ()),
        Value::SimpleString(s) => Ok(s.clone()),
        _ => Err(()),
    }
}

/// `(upper bound, cumulative count)` of each bucket of a Prometheus histogram.
pub fn histogram(exposition: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    exposition
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// Prometheus's `histogram_quantile`: linear interpolation within the bucket holding `q`.
pub fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0.0;
    };
    if total == 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            let width = count - lower.1;
            let into = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return lower.0 + (le - lower.0) * into;
        }
        lower = (le, count);
    }
    lower.0
}

fn share_within(buckets: &[(f64, f64)], bound: f64) -> f64 {
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let within = buckets
        .iter()
        .find(|(le, _)| (*le - bound).abs() < 1e-9)
        .map(|b| b.1)
        .unwrap_or(0.0);
    if total > 0.0 {
        within / total
    } else {
        0.0
    }
}

/// Nearest-rank quantile of sorted values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_interpolates_a_histogram() {
        let text = "x_bucket{le=\"0.01\"} 50\nx_bucket{le=\"0.1\"} 90\nx_bucket{le=\"+Inf\"} 100\nx_sum 3\n";
        let b = histogram(text, "x");
        assert_eq!(b, vec![(0.01, 50.0), (0.1, 90.0), (f64::INFINITY, 100.0)]);
        assert!((histogram_quantile(&b, 0.5) - 0.01).abs() < 1e-12);
        assert!((histogram_quantile(&b, 0.7) - 0.055).abs() < 1e-12);
        assert_eq!(histogram_quantile(&b, 0.99), 0.1);
        assert!((share_within(&b, 0.1) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile_sorted(&v, 0.5), 50.0);
        assert_eq!(quantile_sorted(&v, 0.99), 99.0);
        assert_eq!(entry_id("1700-3"), (1700, 3));
    }
}
