//! Operator metrics: reconciles, errors and their duration per controller.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Metrics of the controllers, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: HistogramVec,
    pub leader: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "fdc_operator_reconciliations_total",
                "Reconciliations started",
            ),
            &["controller"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "fdc_operator_reconcile_errors_total",
                "Reconciliations that failed",
            ),
            &["controller", "error"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "fdc_operator_reconcile_duration_seconds",
                "Reconcile duration",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )?;
        let leader = IntGauge::new(
            "fdc_operator_leader",
            "1 while this replica holds the leader lease",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        // CPU seconds, resident memory, open fds and start time of the operator process
        // (`process_*`; Linux only).
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            reconciles,
            errors,
            duration,
            leader,
        })
    }

    /// Counts a reconcile start; the returned guard records its duration when dropped.
    pub fn start(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciles.with_label_values(&[controller]).inc();
        ReconcileTimer {
            histogram: self.duration.clone(),
            controller,
            started: Instant::now(),
        }
    }

    /// Counts a failed reconcile; `error` is a short, secret-free kind label.
    pub fn failed(&self, controller: &'static str, error: &str) {
        self.errors.with_label_values(&[controller, error]).inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// Records a reconcile's duration on drop.
pub struct ReconcileTimer {
    histogram: HistogramVec,
    controller: &'static str,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram
            .with_label_values(&[self.controller])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_metrics_are_exported() {
        let text = super::Metrics::new().unwrap().render();
        let rss: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("process_resident_memory_bytes ")?
                    .parse()
                    .ok()
            })
            .expect("process_resident_memory_bytes");
        assert!(rss > 0.0);
        assert!(text.contains("\nprocess_cpu_seconds_total "));
    }
}
