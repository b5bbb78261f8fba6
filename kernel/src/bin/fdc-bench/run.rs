//! The whole benchmark: it starts a private Redis and Postgres, then per repeat measures the
//! storage limit (binary COPY, no kernel), the drain of a preloaded W1 backlog by the real
//! `fdc-kernel` binary, the same drain with two replicas, and the commit latency at a paced
//! rate. Each run gets a fresh database; figures are reported as medians.

use std::path::PathBuf;
use std::time::Duration;

use super::drain::{self, DrainSetup};
use super::env::BenchEnv;
use super::error::BenchError;
use super::report::{LatencySummary, Machine, Report, Summary};
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
    pub latency_rate: f64,
    pub latency_duration: Duration,
    /// Events per batch in the limit run: the kernel's default `ingest.batch_max_size`.
    pub batch_size: usize,
    /// Longest one drain may take.
    pub drain_timeout: Duration,
    /// Non-default kernel settings (`FDC_*` variables) for experiments; every kernel the
    /// benchmark starts gets them, and the report notes them.
    pub kernel_env: Vec<(String, String)>,
}

/// Runs everything `options` asks for; progress goes to stderr.
pub async fn run(options: &Options) -> Result<Report, BenchError> {
    if !options.kernel_bin.is_file() {
        return Err(BenchError::Kernel(format!(
            "kernel binary {} not found (build it: cargo build --release -p fdc-kernel)",
            options.kernel_bin.display()
        )));
    }
    let env = BenchEnv::start(options.fsync).await?;
    let machine = Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        redis_version: env.redis_version().await?,
        postgres_version: env.postgres_version().await?,
        postgres_fsync: options.fsync,
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
    };

    let auth = if wants(RunKind::Auth) {
        Some(auth_run::AuthSetup::new()?)
    } else {
        None
    };
    let auth_entry = |e: &workload::W1Event| auth.as_ref().map_or_else(Vec::new, |a| a.entry(e));

    let (mut limits, mut drains, mut replicas, mut latencies) = (vec![], vec![], vec![], vec![]);
    let (mut auths, mut schemas) = (vec![], vec![]);
    for repeat in 1..=options.repeats {
        let tag = format!("[{repeat}/{}]", options.repeats);
        if wants(RunKind::Limit) {
            let s = limit::run(&env, w1, options.batch_size).await?;
            eprintln!(
                "{tag} limit: {:.0} events/s ({:.2} s)",
                s.events_per_s, s.seconds
            );
            limits.push(s);
        }
        if wants(RunKind::Drain) {
            let s = drain::run(&env, w1, &drain_setup(1, "drain")).await?;
            eprintln!(
                "{tag} drain: {:.0} events/s ({:.2} s)",
                s.events_per_s, s.seconds
            );
            drains.push(s);
        }
        if wants(RunKind::Replicas) {
            let s = drain::run(&env, w1, &drain_setup(2, "replicas")).await?;
            eprintln!(
                "{tag} 2 replicas: {:.0} events/s ({:.2} s, stored {:?})",
                s.events_per_s, s.seconds, s.stored_by_replica
            );
            replicas.push(s);
        }
        if let Some(auth) = &auth {
            let setup = DrainSetup {
                extra_env: [options.kernel_env.as_slice(), &auth.env].concat(),
                entries: &auth_entry,
                expect_producers: true,
                ..drain_setup(1, "auth")
            };
            let s = drain::run(&env, w1, &setup).await?;
            eprintln!(
                "{tag} auth drain: {:.0} events/s ({:.2} s)",
                s.events_per_s, s.seconds
            );
            auths.push(s);
        }
        if wants(RunKind::Schema) {
            let setup = DrainSetup {
                extra_env: [options.kernel_env.clone(), schema_run::env()].concat(),
                schema: true,
                ..drain_setup(1, "schema")
            };
            let s = drain::run(&env, w1, &setup).await?;
            eprintln!(
                "{tag} schema drain: {:.0} events/s ({:.2} s)",
                s.events_per_s, s.seconds
            );
            schemas.push(s);
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
    let mut report = Report {
        machine,
        limit: Summary::of(limits),
        drain: Summary::of(drains),
        replicas: Summary::of(replicas),
        auth: Summary::of(auths),
        schema: Summary::of(schemas),
        validation_us_per_event: None,
        latency: LatencySummary::of(latencies),
        targets: Vec::new(),
        notes: kernel_env_notes(&options.kernel_env),
    };
    report.evaluate();
    Ok(report)
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
