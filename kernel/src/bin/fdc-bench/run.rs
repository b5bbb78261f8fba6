//! The whole benchmark: it starts a private Redis and Postgres, then per repeat measures the
//! storage limit (binary COPY, no kernel), the drain of a preloaded W1 backlog by the real
//! `fdc-kernel` binary, the same drain with two replicas, and the commit latency at a paced
//! rate. Each run gets a fresh database; figures are reported as medians.

use std::path::PathBuf;
use std::time::Duration;

use super::catchup::{self, CatchupSetup, CatchupSummary};
use super::cluster_run::{self, ClusterRedis};
use super::drain::{self, DrainSetup};
use super::env::BenchEnv;
use super::error::BenchError;
use super::query::{self, QuerySummary};
use super::report::{LatencySummary, Machine, Report, Sample, SchemaSummary, Summary};
use super::variant::SchemaVariant;
use super::workload::{self, W1};
use super::{auth_run, latency, limit, schema_run};

/// The runs the benchmark can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunKind {
    Limit,
    Drain,
    Replicas,
    Latency,
    Auth,
    Schema,
    /// W1 loaded by COPY, then the queries of queries.sql timed.
    Query,
    /// Paced events, Postgres stopped and restarted: the spill's catch-up.
    Catchup,
    /// The drain with three kernels in one group.
    Replicas3,
    /// The drain of W1 spread over 16 streams on a three-primary Redis Cluster
    /// (`--redis cluster` adds it).
    Cluster,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub events: usize,
    pub repeats: usize,
    pub seed: u64,
    pub runs: Vec<RunKind>,
    /// The `fdc-kernel` binary to drain with (a release build for real figures).
    pub kernel_bin: PathBuf,
    pub fsync: bool,
    /// Postgres `full_page_writes` (on in production, so on by default).
    pub full_page_writes: bool,
    pub latency_rate: f64,
    pub latency_duration: Duration,
    /// Offered rate and Postgres outage of the catch-up run.
    pub catchup_rate: f64,
    pub catchup_outage: Duration,
    /// Events per batch in the limit run: the kernel's default `ingest.batch_max_size`.
    pub batch_size: usize,
    /// Longest one drain may take.
    pub drain_timeout: Duration,
    /// Non-default kernel settings (`FDC_*` variables) for experiments; every kernel the
    /// benchmark starts gets them, and the report notes them.
    pub kernel_env: Vec<(String, String)>,
    /// The database schemas the limit, drain and query runs are made on (at least one).
    pub db_schemas: Vec<SchemaVariant>,
    /// The cluster run's primaries keep their replicas (false: killed, an experiment).
    pub cluster_replicas: bool,
    /// After each limit run, print its WAL by record type (`--wal-records`).
    pub wal_records: bool,
}

/// Runs everything `options` asks for; progress goes to stderr.
pub async fn run(options: &Options) -> Result<Report, BenchError> {
    if !options.kernel_bin.is_file() {
        return Err(BenchError::Kernel(format!(
            "kernel binary {} not found (build it: cargo build --release -p fdc-kernel)",
            options.kernel_bin.display()
        )));
    }
    let mut env = BenchEnv::start(options.fsync, options.full_page_writes).await?;
    let machine = Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        redis_version: env.redis_version().await?,
        postgres_version: env.postgres_version().await?,
        postgres_fsync: options.fsync,
        postgres_full_page_writes: options.full_page_writes,
        events: options.events,
        repeats: options.repeats,
        seed: options.seed,
        batch_size: options.batch_size,
    };
    // Two whole UTC days in the past: two partitions, and no ts near the future-skew limit.
    let today = chrono::Utc::now().timestamp().div_euclid(86_400);
    let w1 = W1 {
        events: options.events,
        seed: options.seed,
        first_day: today - 3,
    };
    let wants = |k: RunKind| options.runs.contains(&k);
    let drain_setup = |replicas: usize, label: &'static str| DrainSetup {
        kernel_bin: &options.kernel_bin,
        replicas,
        extra_env: options.kernel_env.clone(),
        entries: &drain::plain_entry,
        label,
        expect_producers: false,
        schema: false,
        timeout: options.drain_timeout,
        db_schema: &options.db_schemas[0],
    };

    let cluster = if wants(RunKind::Cluster) {
        let cluster = ClusterRedis::start(options.cluster_replicas).await?;
        eprintln!(
            "Redis Cluster: 3 primaries ({}), {} streams, per primary {:?}",
            if options.cluster_replicas {
                "a replica each"
            } else {
                "replicas killed"
            },
            cluster_run::STREAMS,
            cluster.streams_per_primary()
        );
        Some(cluster)
    } else {
        None
    };
    let auth = if wants(RunKind::Auth) {
        Some(auth_run::AuthSetup::new()?)
    } else {
        None
    };
    let auth_entry = |e: &workload::W1Event| auth.as_ref().map_or_else(Vec::new, |a| a.entry(e));

    let db_schemas = options.db_schemas.len();
    let (mut limits, mut drains, mut queries) = (
        vec![vec![]; db_schemas],
        vec![vec![]; db_schemas],
        vec![vec![]; db_schemas],
    );
    let (mut replicas, mut latencies, mut auths, mut catchups) = (vec![], vec![], vec![], vec![]);
    let (mut replicas3, mut clusters) = (vec![], vec![]);
    let mut schemas = vec![];
    for repeat in 1..=options.repeats {
        let tag = format!("[{repeat}/{}]", options.repeats);
        for (i, db_schema) in options.db_schemas.iter().enumerate() {
            let tag = match db_schema.label.as_str() {
                "" => tag.clone(),
                label => format!("{tag} {label}"),
            };
            if wants(RunKind::Limit) {
                let s = limit::run(&env, w1, options.batch_size, db_schema, options.wal_records)
                    .await?;
                say(&tag, "limit", &s);
                limits[i].push(s);
            }
            if wants(RunKind::Drain) && !db_schema.kernel_can_run() {
                eprintln!(
                    "{tag} drain skipped: the kernel applies every migration on start, so it \
                     cannot drain into a schema stopped before the last one"
                );
            } else if wants(RunKind::Drain) {
                let setup = DrainSetup {
                    db_schema,
                    ..drain_setup(1, "drain")
                };
                let s = drain::run(&env, w1, &setup).await?;
                say(&tag, "drain", &s);
                drains[i].push(s);
            }
            if wants(RunKind::Query) {
                let s = query::run(&env, w1, options.batch_size, options.seed, db_schema).await?;
                eprintln!(
                    "{tag} query: loaded at {:.0} events/s, {} queries timed",
                    s.load.events_per_s,
                    s.queries.len()
                );
                queries[i].push(s);
            }
        }
        if wants(RunKind::Replicas) {
            let s = drain::run(&env, w1, &drain_setup(2, "replicas")).await?;
            eprintln!(
                "{tag} 2 replicas: {:.0} events/s ({:.2} s, stored {:?})",
                s.events_per_s, s.seconds, s.stored_by_replica
            );
            replicas.push(s);
        }
        if wants(RunKind::Replicas3) {
            let s = drain::run(&env, w1, &drain_setup(3, "replicas3")).await?;
            eprintln!(
                "{tag} 3 replicas: {:.0} events/s ({:.2} s, stored {:?})",
                s.events_per_s, s.seconds, s.stored_by_replica
            );
            replicas3.push(s);
        }
        if let Some(cluster) = &cluster {
            let s = cluster_run::run(&env, cluster, w1, &drain_setup(1, "cluster")).await?;
            say(&tag, "cluster drain", &s);
            clusters.push(s);
        }
        if let Some(auth) = &auth {
            let setup = DrainSetup {
                extra_env: [options.kernel_env.as_slice(), &auth.env].concat(),
                entries: &auth_entry,
                expect_producers: true,
                ..drain_setup(1, "auth")
            };
            let s = drain::run(&env, w1, &setup).await?;
            say(&tag, "auth drain", &s);
            auths.push(s);
        }
        if wants(RunKind::Schema) {
            let setup = DrainSetup {
                extra_env: [options.kernel_env.clone(), schema_run::env()].concat(),
                schema: true,
                ..drain_setup(1, "schema")
            };
            let s = drain::run(&env, w1, &setup).await?;
            say(&tag, "schema drain", &s);
            schemas.push(s);
        }
        if wants(RunKind::Catchup) {
            let setup = CatchupSetup {
                rate: options.catchup_rate,
                outage: options.catchup_outage,
                timeout: options.drain_timeout,
                seed: options.seed,
            };
            let s = catchup::run(&mut env, &options.kernel_bin, &options.kernel_env, setup).await?;
            eprintln!(
                "{tag} catch-up: replay {:.0} events/s, caught up {:.1} s after the restart",
                s.replay_per_s, s.recovery_seconds
            );
            catchups.push(s);
        }
        if wants(RunKind::Latency) {
            let s = latency::run(
                &env,
                &options.kernel_bin,
                &options.kernel_env,
                options.latency_rate,
                options.latency_duration,
                options.seed,
            )
            .await?;
            eprintln!(
                "{tag} latency: ack p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                s.ack_p50_ms, s.ack_p99_ms, s.ack_max_ms
            );
            latencies.push(s);
        }
    }
    let by_schema: Vec<SchemaSummary> = options
        .db_schemas
        .iter()
        .zip(limits)
        .zip(drains)
        .zip(queries)
        .map(|(((schema, limit), drain), query)| SchemaSummary {
            schema: schema.clone(),
            limit: Summary::of(limit),
            drain: Summary::of(drain),
            query: QuerySummary::of(query),
        })
        .collect();
    let first = by_schema[0].clone();
    let mut report = Report {
        machine,
        limit: first.limit,
        drain: first.drain,
        replicas: Summary::of(replicas),
        auth: Summary::of(auths),
        schema: Summary::of(schemas),
        validation_us_per_event: None,
        latency: LatencySummary::of(latencies),
        query: first.query,
        db_schemas: if by_schema.len() > 1 {
            by_schema
        } else {
            vec![]
        },
        catchup: CatchupSummary::of(catchups),
        cluster: Summary::of(clusters),
        replicas3: Summary::of(replicas3),
        targets: Vec::new(),
        figures: Vec::new(),
        notes: [
            kernel_env_notes(&options.kernel_env),
            drain_skipped_notes(&options.db_schemas, wants(RunKind::Drain)),
            if wants(RunKind::Cluster) && !options.cluster_replicas {
                vec![
                    "cluster run without replicas (killed once the cluster formed; \
                      --cluster-replicas false)"
                        .to_string(),
                ]
            } else {
                vec![]
            },
        ]
        .concat(),
    };
    report.evaluate();
    Ok(report)
}

/// Schemas the drain skipped (see [`SchemaVariant::kernel_can_run`]).
/// Prints one run's rate and time on stderr, as progress.
fn say(tag: &str, run: &str, s: &Sample) {
    eprintln!(
        "{tag} {run}: {:.0} events/s ({:.2} s)",
        s.events_per_s, s.seconds
    );
}

fn drain_skipped_notes(schemas: &[SchemaVariant], drain: bool) -> Vec<String> {
    schemas
        .iter()
        .filter(|s| drain && !s.kernel_can_run())
        .map(|s| {
            format!(
                "schema {}: no drain (the kernel would apply the migrations after {})",
                s.label,
                s.upto.unwrap_or(0)
            )
        })
        .collect()
}

/// The report says when the kernel did not run its default config, so such figures are never
/// mistaken for the standard ones. Values of settings that may hold a secret are not repeated.
fn kernel_env_notes(kernel_env: &[(String, String)]) -> Vec<String> {
    kernel_env
        .iter()
        .map(|(key, value)| {
            let upper = key.to_ascii_uppercase();
            let secret = ["KEY", "TOKEN", "SECRET", "PASSWORD", "URL"]
                .iter()
                .any(|word| upper.contains(word));
            let shown = if secret { "(value not shown)" } else { value };
            format!("non-default kernel setting {key}={shown} (--kernel-env)")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_env_notes_name_the_setting_and_hide_secret_values() {
        let env = vec![
            ("FDC_INGEST__BATCH_MAX_SIZE".to_string(), "500".to_string()),
            ("FDC_AUTH__SIGNING_KEY".to_string(), "c2VjcmV0".to_string()),
        ];
        assert_eq!(
            kernel_env_notes(&env),
            vec![
                "non-default kernel setting FDC_INGEST__BATCH_MAX_SIZE=500 (--kernel-env)",
                "non-default kernel setting FDC_AUTH__SIGNING_KEY=(value not shown) (--kernel-env)",
            ]
        );
    }
}
