//! Prometheus metrics of the kernel, all in one registry served at `/metrics`.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::protocol::Reason;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub redis_read: IntCounter,
    pub redis_ack: IntCounter,
    pub redis_dlq: IntCounterVec,
    /// Older dead letters removed by the `MAXLEN ~` cap of the dead-letter streams.
    pub redis_dlq_trimmed: IntCounter,
    pub redis_batch_seconds: Histogram,
    pub redis_claimed: IntCounter,
    pub redis_trimmed: IntCounter,
    pub redis_errors: IntCounter,
    pub pg_batch_size: Histogram,
    pub pg_batch_seconds: Histogram,
    pub pg_errors: IntCounterVec,
    pub events_stored: IntCounter,
    pub events_duplicate: IntCounter,
    pub heartbeats: IntCounter,
    pub controls: IntCounter,
    pub republished: IntCounter,
    pub commit_latency_seconds: Histogram,
    pub group_pending: IntGaugeVec,
    pub group_lag: IntGaugeVec,
    pub queue_batches: IntGauge,
    /// Streams the reader reads: the names of `ingest.streams` and the streams discovered
    /// for its patterns.
    pub streams_read: IntGauge,
    /// Bytes of the entries read and not yet done with (`ingest.max_inflight_bytes` bounds it).
    pub inflight_bytes: IntGauge,
    /// The configured bound on `inflight_bytes` (`ingest.max_inflight_bytes`), for dashboards
    /// and alerts; set at start.
    pub inflight_max_bytes: IntGauge,
    pub partitions_dropped: IntCounter,
    pub stage_seconds: HistogramVec,
    /// 1 while the reader / a writer lane has failed on the same work for `ingest.stall_after`.
    pub stalled: IntGaugeVec,
}

/// Registers the new `metric` in `registry` and hands it back; fails on an invalid or a
/// duplicate name.
pub fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> prometheus::Result<M> {
    let metric = metric?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// [`registered`] for the kernel's own metrics, whose names are constants.
fn must<M: Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<M>) -> M {
    registered(registry, metric).expect("valid and unique metric")
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    must(registry, IntCounter::new(name, help))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    must(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    must(registry, IntGauge::new(name, help))
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    must(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    must(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
    )
}

fn seconds_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let redis_dlq = counter_vec(
            r,
            "kernel_redis_dlq_total",
            "Entries sent to the dead-letter stream, by reason code.",
            &["reason"],
        );
        // Every reason appears from the start, so a dashboard shows 0 rather than nothing.
        for reason in Reason::ALL {
            redis_dlq.with_label_values(&[reason.code()]);
        }
        let pg_errors = counter_vec(
            r,
            "kernel_pg_errors_total",
            "Failed Postgres batch writes, by kind (unavailable, data).",
            &["kind"],
        );
        for kind in ["unavailable", "data"] {
            pg_errors.with_label_values(&[kind]);
        }
        let stage_seconds = must(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "kernel_stage_seconds",
                    "Time per batch spent in each pipeline stage.",
                )
                .buckets(seconds_buckets()),
                &["stage"],
            ),
        );
        let queue_batches = gauge(
            r,
            "kernel_queue_batches",
            "Batches read from Redis and waiting for the Postgres writer.",
        );
        let streams_read = gauge(
            r,
            "kernel_streams_read",
            "Streams being read: the names of ingest.streams and the streams discovered for its patterns.",
        );
        let inflight_bytes = gauge(
            r,
            "kernel_inflight_bytes",
            "Bytes of the entries read from Redis and not yet stored, dead-lettered or given back.",
        );
        let inflight_max_bytes = gauge(
            r,
            "kernel_inflight_max_bytes",
            "The configured bound on kernel_inflight_bytes (ingest.max_inflight_bytes).",
        );
        // CPU seconds, resident memory, open fds and start time of the kernel process
        // (`process_*`; Linux only).
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
        let stalled = gauge_vec(
            r,
            fdc_common::contract::STALLED_METRIC,
            "1 while the stage (reader, writer) keeps failing on the same work for longer than ingest.stall_after.",
            &["stage"],
        );
        for stage in crate::stall::Stage::ALL {
            stalled.with_label_values(&[stage.label()]);
        }
        Metrics {
            stalled,
            redis_read: counter(r, "kernel_redis_read_total", "Entries read from Redis."),
            redis_ack: counter(r, fdc_common::contract::ACKED_METRIC, "Entries acknowledged (XACK)."),
            redis_dlq,
            redis_dlq_trimmed: counter(
                r,
                "kernel_redis_dlq_trimmed_total",
                "Dead letters removed from dead-letter streams by their ingest.dlq_max_len cap.",
            ),
            redis_batch_seconds: histogram(
                r,
                "kernel_redis_batch_seconds",
                "Time of one XREADGROUP/XAUTOCLAIM round trip.",
                seconds_buckets(),
            ),
            redis_claimed: counter(
                r,
                "kernel_redis_claimed_total",
                "Entries claimed from other consumers after claim_idle.",
            ),
            redis_trimmed: counter(
                r,
                "kernel_redis_trimmed_total",
                "Pending entries found deleted from the stream (trimmed) and dropped from the pending list.",
            ),
            redis_errors: counter(
                r,
                "kernel_redis_errors_total",
                "Failed Redis commands (the kernel reconnects and retries).",
            ),
            pg_batch_size: histogram(
                r,
                "kernel_pg_batch_size",
                "Events per Postgres batch.",
                vec![1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0],
            ),
            pg_batch_seconds: histogram(
                r,
                "kernel_pg_batch_seconds",
                "Time to write and commit one batch in Postgres.",
                seconds_buckets(),
            ),
            pg_errors,
            events_stored: counter(
                r,
                fdc_common::contract::EVENTS_STORED_METRIC,
                "Events stored in Postgres (first sight of their id).",
            ),
            events_duplicate: counter(
                r,
                "kernel_events_duplicate_total",
                "Events whose id was already stored (at-least-once redelivery); not stored again.",
            ),
            heartbeats: counter(r, "kernel_heartbeats_total", "Heartbeat messages received."),
            controls: counter(r, "kernel_control_total", "Control messages received."),
            republished: counter(
                r,
                "kernel_republished_total",
                "Stored events re-published to republish.stream.",
            ),
            commit_latency_seconds: histogram(
                r,
                "kernel_commit_latency_seconds",
                "Commit time minus the event's ts (sender time).",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ],
            ),
            group_pending: gauge_vec(
                r,
                fdc_common::contract::GROUP_PENDING_METRIC,
                "Entries delivered to the group but not yet acknowledged, per stream.",
                &["stream"],
            ),
            group_lag: gauge_vec(
                r,
                fdc_common::contract::GROUP_LAG_METRIC,
                "Entries in the stream not yet delivered to the group, per stream.",
                &["stream"],
            ),
            queue_batches,
            streams_read,
            inflight_bytes,
            inflight_max_bytes,
            partitions_dropped: counter(
                r,
                "kernel_partitions_dropped_total",
                "Daily partitions dropped by retention.",
            ),
            stage_seconds,
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the unlabelled sample `name` in `text`.
    fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the exposition"))
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_metrics_and_the_inflight_bound_are_exported() {
        let m = Metrics::new();
        m.inflight_max_bytes.set(64 << 20);
        let text = m.render();
        assert!(sample(&text, "process_resident_memory_bytes") > 0.0);
        assert!(sample(&text, "process_cpu_seconds_total") >= 0.0);
        assert!(sample(&text, "process_start_time_seconds") > 1.7e9);
        assert_eq!(sample(&text, "kernel_inflight_max_bytes"), 67_108_864.0);
    }
}
