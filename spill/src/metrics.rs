//! Prometheus metrics of the spill store. The store updates them directly;
//! they double as the store's stats getters (`.get()`).

use fdc_common::contract;
use std::cell::RefCell;

use prometheus::core::Collector;
use prometheus::{IntCounter, IntGauge, Registry};

/// Cloning shares the underlying values (prometheus metrics are handles).
#[derive(Clone)]
pub struct SpillMetrics {
    /// Bytes in live segment files (headers included; `*.corrupt` excluded).
    pub bytes: IntGauge,
    /// Live segment files.
    pub segments: IntGauge,
    /// Records stored and not yet committed by replay.
    pub pending_records: IntGauge,
    pub records_written: IntCounter,
    /// Records committed by the replay consumer.
    pub records_replayed: IntCounter,
    /// Segments (or their damaged tail) moved aside as `*.corrupt`.
    pub corrupt_segments: IntCounter,
    /// Torn writes truncated at recovery (crash mid-append).
    pub torn_tails: IntCounter,
    /// Appends refused with `SpillError::Full`.
    pub full_rejections: IntCounter,
    /// Events inside spilled batches (maintained by the pipeline glue).
    pub events_written: IntCounter,
    /// Events of spilled batches handled by replay (stored, duplicate or dead-lettered).
    pub events_replayed: IntCounter,
    /// Records that passed their checksum but that this kernel cannot decode,
    /// moved to a quarantine file in the spill directory (never deleted).
    pub quarantined_records: IntCounter,
    /// Quarantine files in the spill directory: records waiting for an operator.
    pub quarantine_files: IntGauge,
    /// The configured bound on `bytes` (`spill.max_bytes`), for dashboards and alerts.
    pub max_bytes: IntGauge,
    /// Each metric above once, for [`SpillMetrics::register`].
    all: Vec<Handle>,
}

/// A second handle on one of the metrics, to register it.
#[derive(Clone)]
enum Handle {
    Counter(IntCounter),
    Gauge(IntGauge),
}

impl Handle {
    fn boxed(&self) -> Box<dyn Collector> {
        match self {
            Handle::Counter(c) => Box::new(c.clone()),
            Handle::Gauge(g) => Box::new(g.clone()),
        }
    }
}

impl Default for SpillMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SpillMetrics {
    /// Unregistered metrics; call [`SpillMetrics::register`] to expose them.
    pub fn new() -> Self {
        let all = RefCell::new(Vec::new());
        let g = |n: &str, h: &str| {
            let g = IntGauge::new(n, h).expect("static metric name is valid");
            all.borrow_mut().push(Handle::Gauge(g.clone()));
            g
        };
        let c = |n: &str, h: &str| {
            let c = IntCounter::new(n, h).expect("static metric name is valid");
            all.borrow_mut().push(Handle::Counter(c.clone()));
            c
        };
        let mut metrics = Self {
            bytes: g("kernel_spill_bytes", "Bytes in live spill segment files"),
            segments: g("kernel_spill_segments", "Live spill segment files"),
            pending_records: g(
                contract::SPILL_PENDING_METRIC,
                "Spilled records not yet replayed to Postgres",
            ),
            records_written: c(
                "kernel_spill_records_written_total",
                "Records durably written to the spill",
            ),
            records_replayed: c(
                "kernel_spill_records_replayed_total",
                "Spilled records replayed and committed to Postgres",
            ),
            corrupt_segments: c(
                "kernel_spill_corrupt_segments_total",
                "Spill segments moved aside as *.corrupt",
            ),
            torn_tails: c(
                "kernel_spill_torn_tails_total",
                "Torn spill writes truncated during recovery",
            ),
            full_rejections: c(
                "kernel_spill_full_total",
                "Spill appends refused because max_bytes was reached",
            ),
            events_written: c(
                "kernel_spill_events_written_total",
                "Events in batches written to the spill",
            ),
            events_replayed: c(
                "kernel_spill_events_replayed_total",
                "Spilled events replayed to Postgres",
            ),
            quarantined_records: c(
                "kernel_spill_quarantined_records_total",
                "Undecodable spill records moved to a quarantine file for an operator",
            ),
            quarantine_files: g(
                contract::SPILL_QUARANTINE_METRIC,
                "Quarantined spill records in the spill directory, waiting for an operator",
            ),
            max_bytes: g(
                "kernel_spill_max_bytes",
                "The configured bound on the spill's bytes (spill.max_bytes)",
            ),
            all: Vec::new(),
        };
        metrics.all = all.into_inner();
        metrics
    }

    /// Registers every spill metric in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        for metric in &self.all {
            registry.register(metric.boxed())?;
        }
        Ok(())
    }
}
