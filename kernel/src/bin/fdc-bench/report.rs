//! Figures of the runs: per-run samples, medians, ratios against the targets, and the
//! human-readable table.

use serde::Serialize;

use super::catchup::CatchupSummary;
use super::env::ServerFigures;
use super::latency::LatencySample;
use super::query::QuerySummary;
use super::variant::SchemaVariant;

/// One measured storage run (limit or drain).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Sample {
    pub events: usize,
    pub seconds: f64,
    pub events_per_s: f64,
    /// Postgres CPU (postmaster and backends, user + system) per event, µs.
    pub pg_cpu_us_per_event: f64,
    pub redis_cpu_us_per_event: f64,
    /// The cluster run: CPU of the primaries' replicas per event, µs (not in `redis_cpu…`).
    pub redis_replica_cpu_us_per_event: Option<f64>,
    /// The cluster run: each primary's CPU per event of its own streams, µs.
    pub redis_cpu_us_per_event_by_primary: Vec<f64>,
    pub wal_bytes_per_event: f64,
    /// Kernel process CPU per event, µs (drains only; all replicas together).
    pub kernel_cpu_us_per_event: Option<f64>,
    #[serde(skip)]
    pub kernel_cpu_seconds: Option<f64>,
    /// Peak RSS (VmHWM) of the kernel process, the largest replica's (drains only).
    pub peak_rss_mib: Option<f64>,
    /// Events each replica stored (drains only).
    pub stored_by_replica: Vec<u64>,
    /// Events the kernels found already stored (redeliveries); drains only.
    pub duplicates: Option<u64>,
    /// Cores' worth of CPU used by processes outside the benchmark (other builds on a shared
    /// machine) during the run: a figure taken under high other load is not comparable.
    pub other_load_cores: f64,
    #[serde(skip)]
    pub server: ServerFigures,
}

impl Sample {
    pub fn new(events: usize, seconds: f64, server: ServerFigures) -> Sample {
        let n = events.max(1) as f64;
        Sample {
            events,
            seconds,
            events_per_s: events as f64 / seconds,
            pg_cpu_us_per_event: server.pg_cpu_seconds * 1e6 / n,
            redis_cpu_us_per_event: server.redis_cpu_seconds * 1e6 / n,
            redis_replica_cpu_us_per_event: (server.redis_replica_cpu_seconds > 0.0)
                .then(|| server.redis_replica_cpu_seconds * 1e6 / n),
            wal_bytes_per_event: server.wal_bytes as f64 / n,
            server,
            ..Sample::default()
        }
    }

    pub fn finish(mut self) -> Sample {
        if let Some(cpu) = self.kernel_cpu_seconds {
            self.kernel_cpu_us_per_event = Some(cpu * 1e6 / self.events.max(1) as f64);
        }
        let ours = self.server.pg_cpu_seconds
            + self.server.redis_cpu_seconds
            + self.server.redis_replica_cpu_seconds
            + self.server.bench_cpu_seconds
            + self.kernel_cpu_seconds.unwrap_or(0.0);
        self.other_load_cores =
            ((self.server.machine_busy_seconds - ours) / self.seconds.max(1e-9)).max(0.0);
        self
    }
}

/// Median of the values (mean of the middle two for an even count).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn median_opt(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.into_iter().flatten().collect();
    (!v.is_empty()).then(|| median(v))
}

/// Runs of one kind and their per-figure medians.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub median: Sample,
    pub runs: Vec<Sample>,
}

impl Summary {
    pub fn of(runs: Vec<Sample>) -> Option<Summary> {
        if runs.is_empty() {
            return None;
        }
        let runs: Vec<Sample> = runs.into_iter().map(Sample::finish).collect();
        let m = |f: fn(&Sample) -> f64| median(runs.iter().map(f));
        let median = Sample {
            events: runs[0].events,
            seconds: m(|s| s.seconds),
            events_per_s: m(|s| s.events_per_s),
            pg_cpu_us_per_event: m(|s| s.pg_cpu_us_per_event),
            redis_cpu_us_per_event: m(|s| s.redis_cpu_us_per_event),
            redis_replica_cpu_us_per_event: median_opt(
                runs.iter().map(|s| s.redis_replica_cpu_us_per_event),
            ),
            redis_cpu_us_per_event_by_primary: (0..runs[0].redis_cpu_us_per_event_by_primary.len())
                .map(|p| median(runs.iter().map(|s| s.redis_cpu_us_per_event_by_primary[p])))
                .collect(),
            wal_bytes_per_event: m(|s| s.wal_bytes_per_event),
            kernel_cpu_us_per_event: median_opt(runs.iter().map(|s| s.kernel_cpu_us_per_event)),
            kernel_cpu_seconds: None,
            peak_rss_mib: median_opt(runs.iter().map(|s| s.peak_rss_mib)),
            stored_by_replica: Vec::new(),
            duplicates: runs.iter().filter_map(|s| s.duplicates).max(),
            other_load_cores: m(|s| s.other_load_cores),
            server: ServerFigures::default(),
        };
        Some(Summary { median, runs })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub median: LatencySample,
    pub runs: Vec<LatencySample>,
}

impl LatencySummary {
    pub fn of(runs: Vec<LatencySample>) -> Option<LatencySummary> {
        if runs.is_empty() {
            return None;
        }
        let m = |f: fn(&LatencySample) -> f64| median(runs.iter().map(f));
        let median = LatencySample {
            offered_per_s: runs[0].offered_per_s,
            achieved_per_s: m(|s| s.achieved_per_s),
            events: runs[0].events,
            ack_p50_ms: m(|s| s.ack_p50_ms),
            ack_p99_ms: m(|s| s.ack_p99_ms),
            ack_max_ms: m(|s| s.ack_max_ms),
            hist_p50_ms: m(|s| s.hist_p50_ms),
            hist_p99_ms: m(|s| s.hist_p99_ms),
            hist_within_100ms: m(|s| s.hist_within_100ms),
            kernel_cpu_percent: m(|s| s.kernel_cpu_percent),
            peak_rss_mib: m(|s| s.peak_rss_mib),
            batch_mean_events: m(|s| s.batch_mean_events),
            pg_batch_mean_ms: m(|s| s.pg_batch_mean_ms),
            pg_batch_p99_ms: m(|s| s.pg_batch_p99_ms),
        };
        Some(LatencySummary { median, runs })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub redis_version: String,
    pub postgres_version: String,
    pub postgres_fsync: bool,
    pub postgres_full_page_writes: bool,
    pub events: usize,
    pub repeats: usize,
    pub seed: u64,
    pub batch_size: usize,
}

/// The runs made on one schema variant.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaSummary {
    pub schema: SchemaVariant,
    pub limit: Option<Summary>,
    pub drain: Option<Summary>,
    pub query: Option<QuerySummary>,
}

/// The schemas side by side: write figures, then each query's p50/p99, then sizes.
fn schema_table(schemas: &[SchemaSummary]) -> String {
    let mut out = format!(
        "
schemas side by side (ratios against {}):
{:<12} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>11}
",
        schemas[0].schema.label,
        "schema",
        "limit/s",
        "pg µs/ev",
        "WAL B/ev",
        "drain/s",
        "pg µs/ev",
        "WAL B/ev",
        "kern µs/ev"
    );
    let cell = |s: &Option<Summary>, f: fn(&Sample) -> f64, prec: usize| {
        s.as_ref()
            .map_or("-".to_string(), |s| format!("{:.prec$}", f(&s.median)))
    };
    for s in schemas {
        out.push_str(&format!(
            "{:<12} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>11}
",
            s.schema.label,
            cell(&s.limit, |m| m.events_per_s, 0),
            cell(&s.limit, |m| m.pg_cpu_us_per_event, 1),
            cell(&s.limit, |m| m.wal_bytes_per_event, 0),
            cell(&s.drain, |m| m.events_per_s, 0),
            cell(&s.drain, |m| m.pg_cpu_us_per_event, 1),
            cell(&s.drain, |m| m.wal_bytes_per_event, 0),
            cell(&s.drain, |m| m.kernel_cpu_us_per_event.unwrap_or(0.0), 1),
        ));
    }
    let reference = &schemas[0];
    for s in &schemas[1..] {
        let ratio = |a: &Option<Summary>, b: &Option<Summary>, f: fn(&Sample) -> f64| match (a, b) {
            (Some(a), Some(b)) => format!("{:.3}", f(&a.median) / f(&b.median)),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{} / {}: limit rate {}, limit pg CPU {}, limit WAL {}; drain rate {}, drain pg CPU {}, drain WAL {}
",
            s.schema.label,
            reference.schema.label,
            ratio(&s.limit, &reference.limit, |m| m.events_per_s),
            ratio(&s.limit, &reference.limit, |m| m.pg_cpu_us_per_event),
            ratio(&s.limit, &reference.limit, |m| m.wal_bytes_per_event),
            ratio(&s.drain, &reference.drain, |m| m.events_per_s),
            ratio(&s.drain, &reference.drain, |m| m.pg_cpu_us_per_event),
            ratio(&s.drain, &reference.drain, |m| m.wal_bytes_per_event),
        ));
    }
    let with_queries: Vec<(&SchemaSummary, &QuerySummary)> = schemas
        .iter()
        .filter_map(|s| s.query.as_ref().map(|q| (s, q)))
        .collect();
    if let Some((_, first)) = with_queries.first() {
        out.push_str(&format!(
            "
{:<24}",
            "query p50 / p99 ms"
        ));
        for (s, _) in &with_queries {
            out.push_str(&format!(" {:>19}", s.schema.label));
        }
        out.push('\n');
        for (i, q) in first.median.iter().enumerate() {
            out.push_str(&format!("{:<24}", q.name));
            for (_, summary) in &with_queries {
                let q = &summary.median[i];
                out.push_str(&format!(" {:>9.3} /{:>8.3}", q.p50_ms, q.p99_ms));
            }
            out.push('\n');
        }
        out.push_str(&format!("{:<24}", "table + index MiB"));
        out.push('\n');
        // A schema may lack a relation another has (event_tags is a view since migration 6).
        let mut relations: Vec<&str> = Vec::new();
        for (_, summary) in &with_queries {
            for size in &summary.runs[0].sizes {
                if !relations.contains(&size.relation.as_str()) {
                    relations.push(&size.relation);
                }
            }
        }
        for relation in relations {
            out.push_str(&format!("{relation:<24}"));
            for (_, summary) in &with_queries {
                let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
                match summary.runs[0]
                    .sizes
                    .iter()
                    .find(|s| s.relation == relation)
                {
                    Some(s) => out.push_str(&format!(
                        " {:>9.1} +{:>8.1}",
                        mib(s.table_bytes),
                        mib(s.index_bytes)
                    )),
                    None => out.push_str(&format!(" {:>19}", "-")),
                }
            }
            out.push('\n');
        }
    }
    out
}

/// One performance target (docs/benchmark.md) and whether the medians meet it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub value: f64,
    pub target: &'static str,
    pub met: bool,
}

impl Target {
    fn at_least(name: &'static str, value: f64, min: f64, target: &'static str) -> Target {
        let met = value >= min;
        Target {
            name,
            value,
            target,
            met,
        }
    }

    fn at_most(name: &'static str, value: f64, max: f64, target: &'static str) -> Target {
        let met = value <= max;
        Target {
            name,
            value,
            target,
            met,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub limit: Option<Summary>,
    pub drain: Option<Summary>,
    pub replicas: Option<Summary>,
    pub auth: Option<Summary>,
    /// The drain with every payload validated against a JSON Schema.
    pub schema: Option<Summary>,
    /// Kernel CPU of payload validation: the schema run's kernel µs/event minus the drain's.
    pub validation_us_per_event: Option<f64>,
    pub latency: Option<LatencySummary>,
    pub query: Option<QuerySummary>,
    pub catchup: Option<CatchupSummary>,
    /// With `--db-schema`: the limit, drain and query runs per database schema (the first is
    /// also above).
    pub db_schemas: Vec<SchemaSummary>,
    /// The drain on a three-primary Redis Cluster, 16 streams (`--redis cluster`).
    pub cluster: Option<Summary>,
    /// The drain with three kernels in one group.
    pub replicas3: Option<Summary>,
    pub targets: Vec<Target>,
    /// Ratios reported as figures, with no target (e.g. cluster drain / drain).
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

/// A ratio of two runs of the same invocation that has no target: reported, never judged.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: &'static str,
    pub value: f64,
}

/// A ratio target `a / b >= min` as (name, a, b, min, target text).
type Ratio = (&'static str, Option<f64>, Option<f64>, f64, &'static str);

/// The targets of `list` whose two rates were both measured.
fn ratios(list: &[Ratio]) -> Vec<Target> {
    list.iter()
        .filter_map(|&(name, a, b, min, target)| Some(Target::at_least(name, a? / b?, min, target)))
        .collect()
}

fn rate(s: &Option<Summary>) -> Option<f64> {
    s.as_ref().map(|s| s.median.events_per_s)
}

impl Report {
    /// Compares the medians with the performance targets (docs/benchmark.md).
    pub fn evaluate(&mut self) {
        let kernel_us =
            |s: &Option<Summary>| s.as_ref().and_then(|s| s.median.kernel_cpu_us_per_event);
        self.validation_us_per_event = kernel_us(&self.schema)
            .zip(kernel_us(&self.drain))
            .map(|(schema, drain)| schema - drain);
        let drain = rate(&self.drain);
        let mut t = ratios(&[(
            "drain / limit",
            drain,
            rate(&self.limit),
            0.8,
            ">= 0.8 (aim > 1.0)",
        )]);
        if let Some(l) = &self.latency {
            let p99 = l.median.ack_p99_ms;
            t.push(Target::at_most(
                "p99 ack latency ms (5k/s)",
                p99,
                100.0,
                "<= 100",
            ));
        }
        if let Some(rss) = self.drain.as_ref().and_then(|d| d.median.peak_rss_mib) {
            t.push(Target::at_most("drain peak RSS MiB", rss, 150.0, "<= 150"));
        }
        let catchup = self.catchup.as_ref().map(|c| c.median.catchup_per_s);
        t.extend(ratios(&[
            ("auth / drain", rate(&self.auth), drain, 0.9, ">= 0.9"),
            ("schema / drain", rate(&self.schema), drain, 0.85, ">= 0.85"),
            (
                "2 replicas / 1 replica",
                rate(&self.replicas),
                drain,
                1.0,
                ">= 1.0",
            ),
            ("catch-up / drain", catchup, drain, 0.8, ">= 0.8"),
        ]));
        self.targets = t;
        self.figures = [
            ("cluster drain / drain", rate(&self.cluster), drain),
            ("3 replicas / 1 replica", rate(&self.replicas3), drain),
            (
                "3 replicas / 2 replicas",
                rate(&self.replicas3),
                rate(&self.replicas),
            ),
        ]
        .into_iter()
        .filter_map(|(name, a, b)| {
            Some(Figure {
                name,
                value: a? / b?,
            })
        })
        .collect();
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "fdc-bench: {} events (W1, seed {}), batch {}, medians of {} repeat(s)\n\
             machine: {} cores; Redis {}; Postgres {} (fsync={}, full_page_writes={})\n\n",
            m.events,
            m.seed,
            m.batch_size,
            m.repeats,
            m.cores,
            m.redis_version,
            m.postgres_version,
            on_off(m.postgres_fsync),
            on_off(m.postgres_full_page_writes),
        );
        out.push_str(&format!(
            "{:<10} {:>10} {:>8} {:>11} {:>11} {:>11} {:>10} {:>9} {:>11}\n",
            "run",
            "events/s",
            "seconds",
            "pg µs/ev",
            "kern µs/ev",
            "redis µs/ev",
            "WAL B/ev",
            "RSS MiB",
            "other load"
        ));
        let opt =
            |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |v| format!("{v:.prec$}"));
        for (name, summary) in [
            ("limit", &self.limit),
            ("drain", &self.drain),
            ("replicas2", &self.replicas),
            ("replicas3", &self.replicas3),
            ("auth", &self.auth),
            ("schema", &self.schema),
            ("cluster", &self.cluster),
        ] {
            let Some(s) = summary else { continue };
            let s = &s.median;
            out.push_str(&format!(
                "{:<10} {:>10.0} {:>8.2} {:>11.1} {:>11} {:>11.1} {:>10.0} {:>9} {:>11.2}\n",
                name,
                s.events_per_s,
                s.seconds,
                s.pg_cpu_us_per_event,
                opt(s.kernel_cpu_us_per_event, 1),
                s.redis_cpu_us_per_event,
                s.wal_bytes_per_event,
                opt(s.peak_rss_mib, 1),
                s.other_load_cores,
            ));
        }
        if let Some(c) = &self.cluster {
            let by_primary: Vec<String> = c
                .median
                .redis_cpu_us_per_event_by_primary
                .iter()
                .map(|us| format!("{us:.1}"))
                .collect();
            out.push_str(&format!(
                "cluster: redis µs/ev is the primaries' together; per primary, per event of its \
                 own streams: {}; their replicas: {} µs/ev more\n",
                by_primary.join(" / "),
                opt(c.median.redis_replica_cpu_us_per_event, 1)
            ));
        }
        if let Some(l) = &self.latency {
            let l = &l.median;
            out.push_str(&format!(
                "\nlatency at {:.0}/s offered ({:.0}/s achieved, {} events): ack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
                 kernel histogram p50 {:.1} ms, p99 {:.1} ms, {:.2}% ≤ 100 ms; kernel CPU {:.0}%, RSS {:.1} MiB;\n\
                 batches of {:.0} events on average, Postgres write+commit {:.1} ms mean, p99 {:.1} ms\n",
                l.offered_per_s,
                l.achieved_per_s,
                l.events,
                l.ack_p50_ms,
                l.ack_p99_ms,
                l.ack_max_ms,
                l.hist_p50_ms,
                l.hist_p99_ms,
                l.hist_within_100ms * 100.0,
                l.kernel_cpu_percent,
                l.peak_rss_mib,
                l.batch_mean_events,
                l.pg_batch_mean_ms,
                l.pg_batch_p99_ms,
            ));
        }
        if let Some(us) = self.validation_us_per_event {
            out.push_str(&format!(
                "\nschema validation: {us:.1} µs of kernel CPU per event (schema run minus drain)\n"
            ));
        }
        if let Some(q) = &self.query {
            out.push_str(&q.table());
        }
        if self.db_schemas.len() > 1 {
            out.push_str(&schema_table(&self.db_schemas));
        }
        if let Some(c) = &self.catchup {
            out.push_str(&c.line(rate(&self.drain)));
        }
        if !self.targets.is_empty() {
            out.push_str("\ntargets:\n");
            for t in &self.targets {
                out.push_str(&format!(
                    "  {:<28} {:>9.3}  target {:<18} {}\n",
                    t.name,
                    t.value,
                    t.target,
                    if t.met { "met" } else { "NOT met" }
                ));
            }
        }
        if !self.figures.is_empty() {
            out.push_str("\nratios (figures, no target):\n");
            for f in &self.figures {
                out.push_str(&format!("  {:<28} {:>9.3}\n", f.name, f.value));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }
}

fn on_off(flag: bool) -> &'static str {
    if flag {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median([]), 0.0);
    }
}
