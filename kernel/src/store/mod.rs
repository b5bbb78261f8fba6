//! Postgres storage: migrations, partitions, id resolution and the set-based batch write.

mod copy;
mod error;
mod hosts;
mod ids;
mod nodelay;
mod partitions;
mod reach;
mod write;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use copy::CopyBinary;
pub use error::StoreError;
pub use hosts::{split_hosts, HostUrls, SessionAttrs};
pub use ids::IdCache;
pub use nodelay::set_nodelay;
pub use partitions::{create_partition_sql, day_name, Partitions};
pub use reach::Endpoint;
pub use write::WriteOutcome;

use fdc_common::config::PostgresConfig;

use hosts::Hosts;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A handle on the database: a pool plus the caches that spare round trips.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    ids: IdCache,
    partitions: Partitions,
    consumer: String,
    /// Where the pool connects, probed before a new connection (see [`reach`]); `None` for a
    /// pool made elsewhere.
    endpoint: Option<Endpoint>,
    /// The servers of a multi-host `postgres.url` (or one with `target_session_attrs`), and the
    /// one the pool connects to (see [`hosts`]).
    hosts: Option<Arc<Hosts>>,
    connect_timeout: Duration,
}

impl Store {
    /// Opens a pool lazily: the kernel starts (and reports not-ready) while Postgres is down.
    pub fn connect_lazy(config: &PostgresConfig, consumer: &str) -> Result<Store, StoreError> {
        let split = split_hosts(&config.url).map_err(StoreError::Config)?;
        let timeout_ms = config.statement_timeout.as_millis().to_string();
        let mut candidates = Vec::with_capacity(split.urls.len());
        for url in &split.urls {
            let options: PgConnectOptions = url
                .parse()
                .map_err(|e: sqlx::Error| StoreError::Config(redacted(&e)))?;
            candidates.push(
                options
                    .options([("statement_timeout", timeout_ms.as_str())])
                    .application_name("fdc-kernel"),
            );
        }
        let hosts = (candidates.len() > 1 || split.attrs != SessionAttrs::Any)
            .then(|| Hosts::new(candidates.clone(), split.attrs));
        let options = candidates.swap_remove(0);
        let endpoint = Endpoint::of(&options);
        let checked = hosts.clone();
        let current = hosts.clone();
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.connect_timeout)
            // No ping on every acquire: it costs a round trip per statement, and a broken
            // connection fails the statement itself as an outage, which is retried anyway.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                let hosts = checked.clone();
                Box::pin(async move {
                    if !set_nodelay(conn).await? {
                        tracing::debug!("TCP_NODELAY not set (Unix socket or port rewritten)");
                    }
                    if let Some(hosts) = hosts {
                        if !hosts.accepts(conn).await? {
                            hosts.mark_stale();
                            return Err(sqlx::Error::Protocol(
                                "the server is read-only (target_session_attrs=read-write)".into(),
                            ));
                        }
                    }
                    Ok(())
                })
            })
            // Connections opened before a switch to another server are closed, not reused.
            .before_acquire(move |_conn, meta| {
                let keep = current.as_ref().is_none_or(|h| h.is_current(meta.age));
                Box::pin(async move { Ok(keep) })
            })
            .connect_lazy_with(options);
        let mut store = Store::with_pool(pool, consumer);
        store.endpoint = Some(endpoint);
        store.hosts = hosts;
        store.connect_timeout = config.connect_timeout;
        Ok(store)
    }

    pub fn with_pool(pool: PgPool, consumer: &str) -> Store {
        Store {
            pool,
            ids: IdCache::default(),
            partitions: Partitions::default(),
            consumer: consumer.to_string(),
            endpoint: None,
            hosts: None,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The server this store connects to (`host:port` or a socket path), when known.
    pub fn endpoint(&self) -> Option<Endpoint> {
        match &self.hosts {
            Some(hosts) => Some(hosts.current()),
            None => self.endpoint.clone(),
        }
    }

    /// Fails at once when a new connection would be needed and nothing answers at the server's
    /// address; a silent network fails after `postgres.connect_timeout`. Costs a socket only
    /// when the pool is about to open a connection anyway. With several servers in
    /// `postgres.url`, selects one first when the last choice went stale, and again when the
    /// chosen one does not answer.
    pub async fn reachable(&self) -> Result<(), StoreError> {
        if let Some(hosts) = &self.hosts {
            if hosts.is_stale() {
                self.select(hosts).await?;
            }
        }
        let Some(endpoint) = self.endpoint() else {
            return Ok(());
        };
        // Only when the pool would open a connection: none idle and room for one more (a
        // full pool waits for a connection to come back instead).
        if self.pool.num_idle() > 0 || self.pool.size() >= self.pool.options().get_max_connections()
        {
            return Ok(());
        }
        match endpoint.probe(self.connect_timeout).await {
            Ok(()) => Ok(()),
            Err(_) if self.hosts.is_some() => {
                let hosts = self.hosts.as_ref().expect("checked");
                hosts.mark_stale();
                self.select(hosts).await
            }
            Err(source) => Err(StoreError::Unreachable {
                server: endpoint.to_string(),
                source,
            }),
        }
    }

    /// Points the pool at the first server that fits `target_session_attrs`; an outage
    /// naming every server when none does.
    async fn select(&self, hosts: &Hosts) -> Result<(), StoreError> {
        match hosts.select(&self.pool, self.connect_timeout).await {
            Ok(moved) => {
                if moved {
                    // The new server may lack the newest rows of the old one.
                    self.ids.clear();
                    self.partitions.clear();
                }
                Ok(())
            }
            Err(passed_over) => Err(StoreError::Unreachable {
                server: hosts.all(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    format!("no server fits: {passed_over}"),
                ),
            }),
        }
    }

    /// Names the server in an error that does not (sqlx's `PoolTimedOut` says neither where
    /// nor why).
    /// With several servers, an error that may mean the server went away makes the next
    /// operation select again.
    pub fn explain(&self, e: StoreError) -> StoreError {
        if let Some(hosts) = &self.hosts {
            if e.may_mean_another_server() {
                hosts.mark_stale();
            }
        }
        match (e, self.endpoint()) {
            (StoreError::Unavailable(sqlx::Error::PoolTimedOut), Some(endpoint)) => {
                StoreError::Unreachable {
                    server: endpoint.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no connection within {} (postgres.connect_timeout)",
                            humantime::format_duration(self.connect_timeout)
                        ),
                    ),
                }
            }
            (StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)), Some(_))
                if matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) =>
            {
                self.explain(StoreError::from(e))
            }
            (StoreError::Unavailable(sqlx::Error::Io(source)), Some(endpoint)) => {
                StoreError::Unreachable {
                    server: endpoint.to_string(),
                    source,
                }
            }
            (e, _) => e,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations. sqlx holds a Postgres advisory lock meanwhile, so replicas
    /// starting together apply each migration once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.reachable().await?;
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| self.explain(StoreError::from(e)))
    }

    /// True when every embedded migration is applied.
    pub async fn migrations_applied(&self) -> Result<bool, StoreError> {
        self.reachable().await?;
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.explain(e.into()))?;
        Ok(MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .all(|m| applied.contains(&m.version)))
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self, timeout: Duration) -> bool {
        self.check(timeout).await.is_ok()
    }

    /// A round trip within `timeout`; the error names the server and the cause.
    pub async fn check(&self, timeout: Duration) -> Result<(), StoreError> {
        let round_trip = async {
            self.reachable().await?;
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(|e| self.explain(e.into()))
        };
        match tokio::time::timeout(timeout, round_trip).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(self.explain(StoreError::Unreachable {
                server: self
                    .endpoint()
                    .map_or_else(|| "the server".to_string(), |e| e.to_string()),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}", humantime::format_duration(timeout)),
                ),
            })),
        }
    }

    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }
}

fn redacted(e: &sqlx::Error) -> String {
    // sqlx's URL parse errors do not echo the URL, but keep passwords out for certain.
    fdc_common::config::redact_url(&e.to_string())
}
