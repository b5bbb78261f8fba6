//! Wiring the kernel together: store, Redis client, pipeline, HTTP, housekeeping, shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::health::Health;
use crate::http::{self, HttpState};
use crate::ingest::{Admit, Commit, Holdings, Lanes, ReadStreams, Reader, Settle};
use crate::metrics::Metrics;
use crate::redis_io::{RedisIoError, StreamClient};
use crate::store::{Store, StoreError};
use crate::supervise::Supervised;
use fdc_common::config::Config;
use fdc_spill::{SpillError, SpillHandle};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisIoError),
    #[error("spill: {0}")]
    Spill(#[from] SpillError),
    #[error(transparent)]
    Auth(#[from] crate::auth::runtime::AuthStartError),
    #[error("the {0} task ended unexpectedly; the kernel stopped so that it can be restarted")]
    TaskEnded(&'static str),
    #[error("cannot listen on http.listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running kernel. Dropping it does not stop it: call [`RunningKernel::shutdown`].
pub struct RunningKernel {
    pub metrics: Metrics,
    pub health: Health,
    pub http_addr: SocketAddr,
    /// Where the admin API listens, when it runs (`auth.admin_token_file` set).
    pub admin_addr: Option<SocketAddr>,
    pub consumer: String,
    stop: CancellationToken,
    done: JoinHandle<Result<(), KernelError>>,
}

impl RunningKernel {
    /// Stops reading, finishes the batch in flight (bounded by `shutdown.timeout`), returns.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.done.await;
    }

    /// A token that triggers the same graceful shutdown as [`RunningKernel::shutdown`].
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until the kernel has stopped (after the stop token fired).
    /// Returns an error when the kernel stopped because a part of it failed (the process
    /// should exit non-zero so that it is restarted).
    pub async fn wait(self) -> Result<(), KernelError> {
        match self.done.await {
            Ok(result) => result,
            Err(_) => Err(KernelError::TaskEnded("kernel")),
        }
    }
}

/// Starts the kernel: it serves HTTP at once and ingests as soon as Redis and Postgres answer.
pub async fn start(config: Config) -> Result<RunningKernel, KernelError> {
    for warning in config.warnings() {
        warn!(%warning, "config works, but likely not as meant");
    }
    let consumer = config.consumer_name();
    let metrics = Metrics::new();
    metrics
        .inflight_max_bytes
        .set(i64::try_from(config.ingest.max_inflight_bytes).unwrap_or(i64::MAX));
    let stop = CancellationToken::new();
    let health = Health::new(stop.clone());
    health.stalls().set_after(config.ingest.stall_after);
    let store = Store::connect_lazy(&config.postgres, &consumer)?;
    let client = StreamClient::new(
        &config.redis.url,
        &config.ingest.group,
        &consumer,
        config.ingest.batch_max_wait,
    )?
    .with_entry_bounds(crate::redis_io::EntryBounds {
        max_entry_bytes: config.limits.max_entry_bytes,
        prefix_bytes: config.ingest.dlq_field_bytes,
    });

    let spill = crate::ingest::replay::open(&config, &metrics).await?;

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| KernelError::Listen {
            addr: config.http.listen,
            source,
        })?;
    let http_addr = listener
        .local_addr()
        .map_err(|source| KernelError::Listen {
            addr: config.http.listen,
            source,
        })?;

    let auth = crate::auth::runtime::start(
        &config.auth,
        store.pool().clone(),
        &config.redis.url,
        &metrics.registry,
        &config.ingest.group,
        &consumer,
        stop.clone(),
        health.wait_migrated(),
        &config.ingest.schemas,
    )
    .await?;
    let app = http::router(HttpState {
        metrics: metrics.clone(),
        health: health.clone(),
    });
    tokio::spawn(crate::readiness::probe_dependencies(
        health.clone(),
        store.clone(),
        client.clone(),
        fdc_common::config::redact_url(&config.redis.url),
        stop.clone(),
    ));
    let http_stop = CancellationToken::new();
    let http_task = {
        let http_stop = http_stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(http_stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                warn!(error = %e, "HTTP server failed");
            }
        })
    };

    let done = tokio::spawn(run(Parts {
        config,
        store,
        client,
        metrics: metrics.clone(),
        health: health.clone(),
        stop: stop.clone(),
        http_stop,
        http_task,
        spill,
        auth: auth.gate,
    }));
    info!(%http_addr, %consumer, "kernel started");
    Ok(RunningKernel {
        metrics,
        health,
        http_addr,
        admin_addr: auth.admin_addr,
        consumer,
        stop,
        done,
    })
}

/// What [`start`] built and [`run`] wires into tasks.
struct Parts {
    config: Config,
    store: Store,
    client: StreamClient,
    metrics: Metrics,
    health: Health,
    stop: CancellationToken,
    /// Stops the HTTP server, the last thing to go.
    http_stop: CancellationToken,
    http_task: JoinHandle<()>,
    spill: Option<SpillHandle>,
    auth: Option<crate::auth::gate::AuthGate>,
}

async fn run(parts: Parts) -> Result<(), KernelError> {
    let Parts {
        config,
        store,
        client,
        metrics,
        health,
        stop,
        http_stop,
        http_task,
        spill,
        auth,
    } = parts;
    if !prepare_database(&config, &store, &health, &stop).await {
        http_stop.cancel();
        let _ = http_task.await;
        return Ok(());
    }
    let sources = config.stream_sources();
    let streams = ReadStreams::new(sources.names());
    let housekeeping = tokio::spawn(housekeeping(
        config.clone(),
        streams.clone(),
        store.clone(),
        client.clone(),
        metrics.clone(),
        stop.clone(),
    ));

    let stall_gauge = tokio::spawn(crate::stall::publish(
        health.stalls().clone(),
        metrics.stalled.clone(),
        stop.clone(),
    ));
    let (queue_tx, queue_rx) = mpsc::channel(config.ingest.queue_batches);
    let give_up = CancellationToken::new();
    let holdings = Holdings::with_gauge(metrics.inflight_bytes.clone());
    let settle = Settle {
        client: client.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
        give_up: give_up.clone(),
    };
    let commit = Commit {
        store: store.clone(),
        spill,
        health: health.clone(),
        metrics: metrics.clone(),
        give_up: give_up.clone(),
    };
    let replay = crate::ingest::replay::spawn_replay(
        commit.clone(),
        settle.clone(),
        store.clone(),
        config.ingest.writers,
        stop.clone(),
    );
    let reader = tokio::spawn(
        Reader {
            client: client.clone(),
            config: config.ingest.clone(),
            sources,
            streams: streams.clone(),
            metrics: metrics.clone(),
            queue: queue_tx,
            shutdown: stop.clone(),
            holdings: holdings.clone(),
            max_entry_bytes: config.limits.max_entry_bytes,
            next_refresh: Default::default(),
            stall: health.stalls().ticket(crate::stall::Stage::Reader),
        }
        .run(),
    );
    let writer = tokio::spawn(
        Lanes {
            config: config.ingest.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            holdings: holdings.clone(),
            admit: Admit {
                auth,
                holdings,
                limits: config.limits.clone(),
                max_deliveries: config.ingest.max_deliveries,
                metrics,
                schemas: Some(crate::schemas::Schemas::new(
                    store.pool().clone(),
                    config.ingest.schema_cache_ttl,
                    &config.ingest.schemas,
                )),
            },
            commit,
            settle,
        }
        .run(queue_rx),
    );
    let mut tasks = Supervised::default();
    tasks.add("reader", reader);
    tasks.add("writer", writer);
    if let Some(replay) = replay {
        tasks.add("spill replay", replay);
    }

    let failed = tasks.first_to_end(&stop).await;
    if failed.is_some() {
        // Probes fail and the process exits non-zero, so it is restarted.
        health.set_failed();
        stop.cancel();
    }
    info!(
        timeout_s = config.shutdown.timeout.as_secs(),
        "shutting down: finishing the batch in flight"
    );
    let failed = match tokio::time::timeout(config.shutdown.timeout, tasks.join_unfinished()).await
    {
        Ok(panicked) => failed.or(panicked),
        Err(_) => {
            give_up.cancel();
            warn!("shutdown timeout passed; unacknowledged entries stay pending for redelivery");
            failed
        }
    };
    housekeeping.abort();
    stall_gauge.abort();
    match client.leave_group_if_idle(&streams.list()).await {
        Ok(true) => info!("left the consumer group (nothing pending)"),
        Ok(false) => info!("staying in the consumer group: entries still pending"),
        Err(e) => warn!(error = %e, "could not check pending entries at shutdown"),
    }
    http_stop.cancel();
    let _ = http_task.await;
    info!("kernel stopped");
    match failed {
        Some(task) => Err(KernelError::TaskEnded(task)),
        None => Ok(()),
    }
}

/// Backoff of [`prepare_database`]: every error is retried, whatever its class.
const PREPARE_BACKOFF: crate::retry::Backoff =
    crate::retry::Backoff::doubling(Duration::from_millis(200), Duration::from_secs(5));

/// Migrates (when configured) and creates today's partitions, retrying while Postgres is
/// down. Returns false when shutdown came first.
async fn prepare_database(
    config: &Config,
    store: &Store,
    health: &Health,
    stop: &CancellationToken,
) -> bool {
    let attempt = || async {
        if config.postgres.migrate_on_start {
            store.migrate().await?;
        } else if !store.migrations_applied().await? {
            return Err(StoreError::Config(
                "migrations are not applied and postgres.migrate_on_start is false; run `fdc-kernel migrate`".into(),
            ));
        }
        store
            .partitions()
            .ensure_ahead(store.pool(), config.partitions.ahead_days)
            .await
    };
    let ready = crate::retry::until(
        &mut PREPARE_BACKOFF.delays(),
        stop,
        attempt,
        |e: StoreError, _| warn!(error = %e, "database not ready; retrying"),
    )
    .await;
    if ready.is_ok() {
        health.set_migrated();
    }
    ready.is_ok()
}

/// Periodic work off the hot path: group lag/pending gauges, partitions ahead, retention, the
/// upkeep of the fresh partitions' tag and time indexes.
async fn housekeeping(
    config: Config,
    streams: ReadStreams,
    store: Store,
    client: StreamClient,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut gauges = tokio::time::interval(Duration::from_secs(5));
    let mut partitions = tokio::time::interval(config.partitions.maintenance_interval);
    let mut indexes = tokio::time::interval(config.partitions.index_upkeep_interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = gauges.tick() => {
                for stream in &streams.list() {
                    if let Ok(info) = client.group_info(stream).await {
                        metrics.group_pending.with_label_values(&[stream]).set(info.pending);
                        metrics.group_lag.with_label_values(&[stream]).set(info.lag.unwrap_or(0));
                    }
                }
            }
            _ = indexes.tick() => {
                match store.partitions().tidy_indexes(store.pool()).await {
                    Ok(tidied) => debug!(tidied, "index upkeep"),
                    Err(e) => warn!(error = %e, "index upkeep failed"),
                }
            }
            _ = partitions.tick() => {
                if let Err(e) = store.partitions().ensure_ahead(store.pool(), config.partitions.ahead_days).await {
                    warn!(error = %e, "creating partitions ahead failed");
                }
                if let Some(days) = config.partitions.retention_days {
                    match store.partitions().drop_older_than(store.pool(), days).await {
                        Ok(dropped) => {
                            metrics.partitions_dropped.inc_by(dropped.len() as u64);
                            for day in dropped {
                                info!(partition = %crate::store::day_name(day), "dropped partition past retention");
                            }
                        }
                        Err(e) => warn!(error = %e, "retention failed"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_preparation_waits_200ms_doubling_to_5s() {
        assert_eq!(
            PREPARE_BACKOFF.first_millis(7),
            [200, 400, 800, 1600, 3200, 5000, 5000]
        );
    }
}
