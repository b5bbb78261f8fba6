//! `fdc-bench`: measures the kernel against Postgres's own storage limit (docs/benchmark.md).
//!
//! This file is the command line; the benchmark's modules sit beside it, outside the kernel
//! library: `run` (the runs in order), `workload`, `limit`, `drain`, `cluster_run`, `auth_run`, `latency`, `catchup`,
//! `query`, `variant`, `env` (the private servers), `procfs`, `report`, `plot` (the SVG figure), `error`.

mod auth_run;
mod catchup;
mod cluster_run;
mod drain;
mod env;
mod error;
mod latency;
mod limit;
mod plot;
mod procfs;
mod query;
mod report;
mod run;
mod schema_run;
mod variant;
mod wal_records;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use error::BenchError;
use report::Sample;
use run::{Options, RunKind};

#[derive(Parser)]
#[command(
    name = "fdc-bench",
    about = "Benchmark: storage limit, kernel drain, 2 replicas, commit latency (private servers)"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// W1 events per storage run.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Repeats of every run; figures are medians.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Seed of the W1 generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs to make (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "limit,drain,replicas,auth,schema,latency"
    )]
    runs: Vec<RunKind>,
    /// `cluster`: also make the cluster drain run (W1 over 16 streams on a three-primary
    /// Redis Cluster), as `--runs …,cluster` does; the other runs use one Redis either way.
    #[arg(long, value_enum, default_value = "single")]
    redis: RedisMode,
    /// Experiments: false kills the cluster's replicas once it formed, so the cluster run's
    /// primaries feed none.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    cluster_replicas: bool,
    /// The fdc-kernel binary; default: the one next to this binary.
    #[arg(long)]
    kernel_bin: Option<PathBuf>,
    /// Postgres fsync (the same for every run).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    fsync: bool,
    /// Postgres full_page_writes (the same for every run; on, as in production).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    full_page_writes: bool,
    /// Offered rate of the latency run, events/s.
    #[arg(long, default_value_t = 5_000.0)]
    latency_rate: f64,
    /// Length of the latency run, seconds.
    #[arg(long, default_value_t = 30)]
    latency_secs: u64,
    /// Offered rate of the catch-up run, events/s.
    #[arg(long, default_value_t = 5_000.0)]
    catchup_rate: f64,
    /// How long the catch-up run keeps Postgres stopped, seconds.
    #[arg(long, default_value_t = 60)]
    catchup_outage_secs: u64,
    /// Where the JSON report goes (the SVG figure goes beside it, `.svg`).
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Longest one drain may take, seconds.
    #[arg(long, default_value_t = 900)]
    drain_timeout_secs: u64,
    /// Experiments only: a non-default kernel setting for every kernel started, as
    /// `FDC_SECTION__KEY=VALUE` (repeatable); the report notes it.
    #[arg(long = "kernel-env", value_name = "FDC_K=V", value_parser = parse_kernel_env)]
    kernel_env: Vec<(String, String)>,
    /// Experiments: repeat the limit, drain and query runs on this database schema too, as
    /// `LABEL=VERSION[+FILE]` (the migrations up to VERSION, then FILE's SQL; repeatable; the
    /// first one is the reference). Default: every migration.
    #[arg(long = "db-schema", value_name = "LABEL=VERSION[+FILE]", value_parser = variant::parse)]
    db_schemas: Vec<variant::SchemaVariant>,
    /// After each limit run, print its WAL by record type and per event (pg_walinspect):
    /// heap rows, each index's insertions, page splits, full-page images.
    #[arg(long)]
    wal_records: bool,
}

/// `--redis`: whether the cluster drain is made too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RedisMode {
    Single,
    Cluster,
}

/// The runs to make: `--runs`, plus the cluster drain with `--redis cluster`.
fn runs_of(mut runs: Vec<RunKind>, redis: RedisMode) -> Vec<RunKind> {
    if redis == RedisMode::Cluster && !runs.contains(&RunKind::Cluster) {
        runs.push(RunKind::Cluster);
    }
    runs
}

#[derive(clap::Subcommand)]
enum Command {
    /// Draws the SVG figure of a saved JSON report, without running anything.
    Plot {
        /// The JSON report.
        #[arg(long)]
        from: PathBuf,
        /// The SVG to write; default: beside the report, `.svg`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `FDC_INGEST__BATCH_MAX_SIZE=500` → (key, value); only kernel settings are accepted, so a
/// typo cannot silently change nothing or leak into another variable.
fn parse_kernel_env(arg: &str) -> Result<(String, String), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected FDC_SECTION__KEY=VALUE, got {arg:?}"))?;
    // The kernel reads only FDC_* variables with a `__` (section__key); anything else would be
    // ignored by it and the experiment would measure the default config.
    if !key.starts_with("FDC_") || !key.contains("__") {
        return Err(format!(
            "{key:?} is not a kernel setting: kernel settings are FDC_SECTION__KEY variables \
             (e.g. FDC_INGEST__BATCH_MAX_SIZE=500; see config/kernel.yaml)"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Plot { from, out }) = cli.command {
        let out = out.unwrap_or_else(|| plot::svg_path(&from));
        plot::write_from(&from, &out)?;
        println!("SVG: {}", out.display());
        return Ok(());
    }
    let kernel_bin = match cli.kernel_bin {
        Some(path) => path,
        None => std::env::current_exe()
            .context("locating fdc-bench")?
            .with_file_name("fdc-kernel"),
    };
    let options = Options {
        events: cli.events,
        repeats: cli.repeats.max(1),
        seed: cli.seed,
        runs: runs_of(cli.runs, cli.redis),
        cluster_replicas: cli.cluster_replicas,
        wal_records: cli.wal_records,
        kernel_bin,
        fsync: cli.fsync,
        full_page_writes: cli.full_page_writes,
        latency_rate: cli.latency_rate,
        latency_duration: Duration::from_secs(cli.latency_secs),
        catchup_rate: cli.catchup_rate,
        catchup_outage: Duration::from_secs(cli.catchup_outage_secs),
        batch_size: limit_batch_size(&cli.kernel_env)?,
        drain_timeout: Duration::from_secs(cli.drain_timeout_secs),
        kernel_env: cli.kernel_env,
        db_schemas: if cli.db_schemas.is_empty() {
            vec![variant::SchemaVariant::current()]
        } else {
            cli.db_schemas
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let report = runtime.block_on(run::run(&options))?;
    print!("{}", report.table());
    let json = serde_json::to_value(&report)?;
    std::fs::write(&cli.json, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", cli.json.display()))?;
    println!("JSON: {}", cli.json.display());
    let svg = plot::svg_path(&cli.json);
    match plot::write(&json, &svg) {
        Ok(()) => println!("SVG: {}", svg.display()),
        // A query-only run has no throughput or latency to draw: the table says it all.
        Err(plot::PlotError::Empty) => println!("SVG: none (no throughput or latency run)"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The limit run writes batches of the kernels' size: the default `ingest.batch_max_size`, or
/// the one `--kernel-env` gives them.
fn limit_batch_size(kernel_env: &[(String, String)]) -> anyhow::Result<usize> {
    match kernel_env
        .iter()
        .rfind(|(key, _)| key == "FDC_INGEST__BATCH_MAX_SIZE")
    {
        Some((key, value)) => value
            .parse()
            .with_context(|| format!("--kernel-env {key}={value}: not a whole number")),
        None => Ok(fdc_common::config::Config::default().ingest.batch_max_size),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_kernel_env, runs_of, Cli, RedisMode, RunKind};
    use clap::Parser;

    #[test]
    fn redis_cluster_adds_the_cluster_drain_once() {
        let cli = Cli::parse_from(["fdc-bench", "--runs", "drain", "--redis", "cluster"]);
        assert_eq!(
            runs_of(cli.runs, cli.redis),
            [RunKind::Drain, RunKind::Cluster]
        );
        let cli = Cli::parse_from(["fdc-bench", "--runs", "drain,cluster", "--redis", "cluster"]);
        assert_eq!(
            runs_of(cli.runs, cli.redis),
            [RunKind::Drain, RunKind::Cluster]
        );
        let cli = Cli::parse_from(["fdc-bench", "--runs", "drain"]);
        assert_eq!(cli.redis, RedisMode::Single);
        assert_eq!(runs_of(cli.runs, cli.redis), [RunKind::Drain]);
    }

    #[test]
    fn kernel_env_takes_kernel_settings_only() {
        assert_eq!(
            parse_kernel_env("FDC_INGEST__BATCH_MAX_SIZE=500"),
            Ok(("FDC_INGEST__BATCH_MAX_SIZE".into(), "500".into()))
        );
        assert_eq!(
            parse_kernel_env("FDC_HTTP__LISTEN=a=b"),
            Ok(("FDC_HTTP__LISTEN".into(), "a=b".into()))
        );
        let no_value = parse_kernel_env("FDC_INGEST__BATCH_MAX_SIZE").unwrap_err();
        assert!(no_value.contains("FDC_SECTION__KEY=VALUE"), "{no_value}");
        let not_ours = parse_kernel_env("RUST_LOG=debug").unwrap_err();
        assert!(
            not_ours.contains("\"RUST_LOG\" is not a kernel setting"),
            "{not_ours}"
        );
        assert!(parse_kernel_env("FDC_CONFIG=x.yaml").is_err());
    }
}
