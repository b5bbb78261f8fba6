//! The `fdc-kernel` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fdc_kernel::config::{Config, LogFormat};
use fdc_kernel::{dev::DevEnvironment, logging, service, store::Store};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "fdc-kernel",
    version,
    about = "fdc kernel: Redis Streams to Postgres event ingest"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Clone, Default)]
struct ConfigArg {
    /// YAML config file; FDC_* environment variables override it (FDC_POSTGRES__URL=…).
    #[arg(long, short, env = "FDC_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Run(ConfigArg),
    /// Apply database migrations and exit.
    Migrate(ConfigArg),
    /// Validate the config and print it with secrets redacted.
    CheckConfig(ConfigArg),
    /// Start a throwaway Redis and Postgres and run the kernel against them.
    Dev(ConfigArg),
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(
        cli.command.unwrap_or(Command::Run(ConfigArg::default())),
    )) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let config = Config::load(args.config.as_deref())?;
            logging::init(&config.log);
            run_until_signal(config).await
        }
        Command::Migrate(args) => {
            let config = Config::load(args.config.as_deref())?;
            logging::init(&config.log);
            let store = Store::connect_lazy(&config.postgres, &config.consumer_name())?;
            store.migrate().await.context("applying migrations")?;
            println!("migrations applied");
            Ok(())
        }
        Command::CheckConfig(args) => {
            let config = Config::load(args.config.as_deref())?;
            fdc_kernel::config::check_referenced_files(&config)?;
            print!("{}", config.to_redacted_yaml());
            Ok(())
        }
        Command::Dev(args) => {
            let mut base = Config::load(args.config.as_deref())?;
            base.log.format = LogFormat::Text;
            logging::init(&base.log);
            let env = DevEnvironment::start()
                .await
                .context("starting private Redis and Postgres")?;
            let mut config = env.config(base);
            config.http.listen = "127.0.0.1:0".parse()?;
            let kernel = service::start(config.clone()).await?;
            println!("{}", env.instructions(&config, kernel.http_addr));
            let stop = kernel.stop_token();
            tokio::spawn(async move {
                wait_for_signal().await;
                stop.cancel();
            });
            let stopped = kernel.wait().await;
            drop(env);
            println!("stopped; temporary servers removed");
            Ok(stopped?)
        }
        Command::Keygen(args) => fdc_kernel::auth::cli::keygen(args).await,
        Command::Token(args) => fdc_kernel::auth::cli::token(args).await,
        Command::Register(args) => fdc_kernel::auth::cli::register(args).await,
        Command::Publish(args) => fdc_kernel::auth::cli::publish(args).await,
        Command::Admin(args) => fdc_kernel::auth::cli::admin(args).await,
    }
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
