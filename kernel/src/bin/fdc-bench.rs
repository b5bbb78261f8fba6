//! `fdc-bench`: measures the kernel against Postgres's own storage limit (docs/benchmark.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fdc_kernel::bench::{self, Options, RunKind};

#[derive(Parser)]
#[command(
    name = "fdc-bench",
    about = "Benchmark: storage limit, kernel drain, 2 replicas, commit latency (private servers)"
)]
struct Cli {
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
        default_value = "limit,drain,replicas,auth,latency"
    )]
    runs: Vec<RunKind>,
    /// The fdc-kernel binary; default: the one next to this binary.
    #[arg(long)]
    kernel_bin: Option<PathBuf>,
    /// Postgres fsync (the same for every run).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    fsync: bool,
    /// Offered rate of the latency run, events/s.
    #[arg(long, default_value_t = 5_000.0)]
    latency_rate: f64,
    /// Length of the latency run, seconds.
    #[arg(long, default_value_t = 30)]
    latency_secs: u64,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Longest one drain may take, seconds.
    #[arg(long, default_value_t = 900)]
    drain_timeout_secs: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
        runs: cli.runs,
        kernel_bin,
        fsync: cli.fsync,
        latency_rate: cli.latency_rate,
        latency_duration: Duration::from_secs(cli.latency_secs),
        batch_size: fdc_kernel::config::Config::default().ingest.batch_max_size,
        drain_timeout: Duration::from_secs(cli.drain_timeout_secs),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let report = runtime.block_on(bench::run(&options))?;
    print!("{}", report.table());
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&cli.json, json + "\n")
        .with_context(|| format!("writing {}", cli.json.display()))?;
    println!("JSON: {}", cli.json.display());
    Ok(())
}
