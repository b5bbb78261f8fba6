//! The `fdc-kernel` command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fdc_common::config::{Config, LogConfig, LogFormat};
use fdc_kernel::{dev::DevEnvironment, error_chain, logging, service, store::Store};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "fdc-kernel",
    version,
    about = "fdc kernel: Redis Streams to Postgres event ingest",
    long_about = "fdc kernel: Redis Streams to Postgres event ingest.\n\n\
                  First look: `fdc-kernel dev` (throwaway Redis and Postgres). Against your own \
                  servers: `fdc-kernel run --config config/kernel.yaml`.",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone, Default)]
struct ConfigArg {
    /// YAML config file; FDC_* environment variables override it (FDC_POSTGRES__URL=…).
    #[arg(long, short, env = "FDC_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
struct CheckConfigArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Also connect to Redis and Postgres (each within postgres.connect_timeout) and report
    /// whether they answer.
    #[arg(long)]
    connect: bool,
}

#[derive(clap::Args, Clone)]
struct DevArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Publish one sample event, wait until Postgres holds it, then stop and exit 0 (a check
    /// that the setup works).
    #[arg(long)]
    smoke: bool,
    /// Turn producer auth on: an issuer key and an admin token in a temp directory, the admin
    /// API on a free port, and the commands to register, approve and publish.
    #[arg(long)]
    auth: bool,
    /// Write the `export FDC_…` lines that point the CLI at these servers to this file (mode
    /// 0600) once the kernel is ready; removed again on exit. Source it in another shell.
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Run(ConfigArg),
    /// Apply database migrations and exit.
    Migrate(ConfigArg),
    /// Validate the config (and open the files it names) and print it with secrets redacted.
    /// Does not connect to Redis or Postgres unless --connect is given.
    CheckConfig(CheckConfigArgs),
    /// Start a throwaway Redis and Postgres and run the kernel against them.
    Dev(DevArgs),
    /// Generate an Ed25519 key pair (producer.key, producer.pub) in a directory.
    Keygen(fdc_kernel::auth::cli::KeygenArgs),
    /// Producer tokens (`token issue`).
    Token(fdc_kernel::auth::cli::TokenArgs),
    /// Register a producer key on the registration stream and save the issued token.
    Register(fdc_kernel::auth::cli::RegisterArgs),
    /// Publish JSON lines from stdin as protocol v1 `data` entries with a token.
    Publish(fdc_kernel::auth::cli::PublishArgs),
    /// Admin API client: registrations, approve, reject, revoke, token.
    Admin(fdc_kernel::auth::cli::AdminArgs),
    /// Payload schema registry (admin API client): add, list, show, deprecate, delete.
    Schema(fdc_kernel::auth::schema_cli::SchemaArgs),
    /// Producers (admin API client): `producer bind` sets a producer's payload schema.
    Producer(fdc_kernel::auth::schema_cli::ProducerArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let text = error_chain::render_anyhow(&e);
            if logging::active() {
                // Once, in the log's own format (JSON for `run`).
                tracing::error!(error = %text, "fdc-kernel stopped with an error");
            } else {
                eprintln!("error: {text}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Loads the config; when it is invalid, logging starts with the defaults (JSON) so that the
/// error is reported in the same format as everything the command would have logged.
fn load_logged(args: &ConfigArg) -> anyhow::Result<Config> {
    match Config::load(args.config.as_deref()) {
        Ok(config) => {
            logging::init(&config.log);
            Ok(config)
        }
        Err(e) => {
            logging::init(&LogConfig::default());
            Err(e.into())
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let config = load_logged(&args)?;
            run_until_signal(config).await
        }
        Command::Migrate(args) => {
            let config = load_logged(&args)?;
            let store = Store::connect_lazy(&config.postgres, &config.consumer_name())?;
            store.migrate().await.context("applying migrations")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::CheckConfig(args) => fdc_kernel::check_config::run(
            args.config.config.as_deref(),
            args.connect,
            &mut std::io::stdout(),
        )
        .await
        .map_err(Into::into),
        Command::Dev(args) => dev(args).await,
        Command::Keygen(args) => fdc_kernel::auth::cli::keygen(args).await,
        Command::Token(args) => fdc_kernel::auth::cli::token(args).await,
        Command::Register(args) => fdc_kernel::auth::cli::register(args).await,
        Command::Publish(args) => fdc_kernel::auth::cli::publish(args).await,
        Command::Admin(args) => fdc_kernel::auth::cli::admin(args).await,
        Command::Schema(args) => fdc_kernel::auth::schema_cli::schema(args).await,
        Command::Producer(args) => fdc_kernel::auth::schema_cli::producer(args).await,
    }
}

async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let mut base = Config::load(args.config.config.as_deref())?;
    base.log.format = LogFormat::Text;
    logging::init(&base.log);
    let mut env = DevEnvironment::start()
        .await
        .context("starting private Redis and Postgres")?;
    if args.auth {
        env.enable_auth()?;
    }
    let mut config = env.config(base);
    config.http.listen = "127.0.0.1:0".parse()?;
    let kernel = service::start(config.clone()).await?;
    let stop = kernel.stop_token();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            stop.cancel();
        });
    }
    let ready = wait_migrated(&kernel.health, &stop, Duration::from_secs(60)).await;
    let outcome = match (ready, args.smoke) {
        (false, _) if stop.is_cancelled() => Ok(()),
        (false, _) => Err(anyhow::anyhow!(
            "the kernel did not get the database ready within 60s"
        )),
        (true, true) => env
            .smoke(&config, Duration::from_secs(30))
            .await
            .map(|id| println!("smoke test passed: sample event {id} is stored in Postgres"))
            .map_err(Into::into),
        (true, false) => {
            if let Some(path) = &args.env_file {
                if let Err(e) = env.write_env_file(path) {
                    stop.cancel();
                    let _ = kernel.wait().await;
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot write --env-file {}", path.display())));
                }
            }
            println!(
                "{}",
                env.instructions(&config, kernel.http_addr, args.env_file.as_deref())
            );
            Ok(())
        }
    };
    if outcome.is_err() || args.smoke {
        stop.cancel();
    }
    let stopped = kernel.wait().await;
    if let Some(path) = &args.env_file {
        let _ = std::fs::remove_file(path);
    }
    drop(env);
    eprintln!("stopped; temporary servers removed");
    outcome?;
    Ok(stopped?)
}

/// True once migrations are applied; false after `within` or when `stop` fires first.
async fn wait_migrated(
    health: &fdc_kernel::health::Health,
    stop: &CancellationToken,
    within: Duration,
) -> bool {
    let started = std::time::Instant::now();
    while !health.migrated() {
        if started.elapsed() >= within || stop.is_cancelled() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

async fn run_until_signal(config: Config) -> anyhow::Result<()> {
    let kernel = service::start(config).await?;
    let stop: CancellationToken = kernel.stop_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    kernel.wait().await?;
    Ok(())
}

/// SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every subcommand explains itself in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" && sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &path, missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }
}
