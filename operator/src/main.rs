//! `fdc-operator`: `run` (the controllers), `crd` (print CRDs), `check-manifests`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use fdc_operator::controller::{run, Context};
use fdc_operator::kernel_api::{Endpoints, KernelApi};
use fdc_operator::metrics::Metrics;
use fdc_operator::{crd, leader, manifests, server};
use futures::future::join_all;

#[derive(Parser)]
#[command(
    name = "fdc-operator",
    version,
    about = "Kubernetes operator for fdc kernels and producers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers.
    Run(RunArgs),
    /// Print the CRDs as YAML (or write one file per CRD into --out-dir).
    Crd {
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Check rendered manifests (multi-document YAML, file or stdin) against the API types.
    CheckManifests {
        /// File to read; stdin when absent or `-`.
        file: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; all when empty.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    watch_namespaces: Vec<String>,
    /// Take a Lease before reconciling (needed when more than one replica runs).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "fdc-operator-leader")]
    lease_name: String,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Identity in the Lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Address of /metrics, /healthz, /readyz.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// How the operator reaches kernel pods: `service` (the kernel Service's cluster DNS name
    /// for admin calls, pod IPs for /metrics and /readyz: in the cluster) or `pod-ip` (pod
    /// IPs for everything: outside the cluster, on a network that routes pod IPs).
    #[arg(long, env = "KERNEL_ACCESS", default_value = "service")]
    kernel_access: Endpoints,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir } => print_crds(out_dir),
        Command::CheckManifests { file } => check_manifests(file),
        Command::Run(args) => run_operator(args).await,
    }
}

fn print_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = crd::crds();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for c in &crds {
                let path = dir.join(crd::crd_file_name(c));
                std::fs::write(&path, crd::crd_yaml(c)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            let docs: Vec<String> = crds.iter().map(crd::crd_yaml).collect::<Result<_, _>>()?;
            print!("{}", docs.join("---\n"));
        }
    }
    Ok(())
}

fn check_manifests(file: Option<PathBuf>) -> anyhow::Result<()> {
    let mut text = String::new();
    match file.filter(|f| f.as_os_str() != "-") {
        Some(f) => {
            text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?
        }
        None => {
            std::io::stdin().read_to_string(&mut text)?;
        }
    }
    match manifests::check_documents(&text) {
        Ok(checked) if checked.is_empty() => bail!("no documents to check"),
        Ok(checked) => {
            for c in &checked {
                println!("ok {} {}", c.kind, c.name);
            }
            println!("{} documents match their API types", checked.len());
            Ok(())
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            bail!("{} problem(s) in rendered manifests", problems.len())
        }
    }
}

async fn run_operator(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).context("bad log filter")?,
        )
        .init();

    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client config")?;
    let metrics = Arc::new(Metrics::new()?);
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let http = tokio::spawn(server::serve(args.listen, metrics.clone(), ready_rx));

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("fdc-operator-{}", uuid::Uuid::new_v4()));
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        KernelApi::new(args.kernel_access.clone()),
        Some(identity.clone()),
    ));
    let namespaces: Vec<Option<String>> = {
        let listed: Vec<String> = args
            .watch_namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if listed.is_empty() {
            vec![None]
        } else {
            listed.into_iter().map(Some).collect()
        }
    };

    // A standby replica is ready (it serves its purpose by waiting); liveness stays green.
    let _ = ready_tx.send(true);
    let mut leadership = if args.leader_election {
        tracing::info!(lease = %args.lease_name, %identity, "waiting for leadership");
        let l = leader::acquire(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
        )
        .await?;
        tracing::info!("leading");
        Some(l)
    } else {
        None
    };
    metrics.leader.set(1);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controllers = join_all(
        namespaces
            .into_iter()
            .map(|ns| run::run(ctx.clone(), ns, stop_rx.clone())),
    );
    tokio::pin!(controllers);

    let lost = async {
        match leadership.as_mut() {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = &mut controllers => Ok(()),
        _ = lost => {
            metrics.leader.set(0);
            // Exit so the pod restarts clean and queues for the lease again.
            Err(anyhow::anyhow!("lost leadership"))
        }
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        r = http => match r {
            Ok(Ok(())) => Err(anyhow::anyhow!("metrics server stopped")),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("metrics server")),
            Err(e) => Err(anyhow::Error::new(e).context("metrics server task")),
        },
    };
    // Let in-flight reconciles finish, then give the Lease up (dropping it releases it)
    // so a standby takes over at once instead of after the lease duration.
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), &mut controllers).await;
    drop(leadership);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    outcome
}

/// SIGTERM (what the kubelet sends) or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
