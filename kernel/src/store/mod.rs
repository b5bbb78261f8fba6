//! Postgres storage: migrations, partitions, id resolution and the set-based batch write.

mod copy;
mod error;
mod ids;
mod nodelay;
mod partitions;
mod reach;
mod write;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use copy::CopyBinary;
pub use error::StoreError;
pub use ids::IdCache;
pub use nodelay::set_nodelay;
pub use partitions::{day_name, Partitions};
pub use reach::Endpoint;
pub use write::WriteOutcome;

use fdc_common::config::PostgresConfig;

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
    connect_timeout: Duration,
}

impl Store {
    /// Opens a pool lazily: the kernel starts (and reports not-ready) while Postgres is down.
    pub fn connect_lazy(config: &PostgresConfig, consumer: &str) -> Result<Store, StoreError> {
        let options: PgConnectOptions = config
            .url
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Config(redacted(&e)))?;
        let timeout_ms = config.statement_timeout.as_millis().to_string();
        let options = options
            .options([("statement_timeout", timeout_ms.as_str())])
            .application_name("fdc-kernel");
        let endpoint = Endpoint::of(&options);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.connect_timeout)
            // No ping on every acquire: it costs a round trip per statement, and a broken
            // connection fails the statement itself as an outage, which is retried anyway.
            .test_before_acquire(false)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if !set_nodelay(conn).await? {
                        tracing::debug!("TCP_NODELAY not set (Unix socket or port rewritten)");
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        let mut store = Store::with_pool(pool, consumer);
        store.endpoint = Some(endpoint);
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
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The server this store connects to (`host:port` or a socket path), when known.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.as_ref()
    }

    /// Fails at once when a new connection would be needed and nothing answers at the server's
    /// address; a silent network fails after `postgres.connect_timeout`. Costs a socket only
    /// when the pool is about to open a connection anyway.
    pub async fn reachable(&self) -> Result<(), StoreError> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(());
        };
        // Only when the pool would open a connection: none idle and room for one more (a
        // full pool waits for a connection to come back instead).
        if self.pool.num_idle() > 0 || self.pool.size() >= self.pool.options().get_max_connections()
        {
            return Ok(());
        }
        endpoint
            .probe(self.connect_timeout)
            .await
            .map_err(|source| StoreError::Unreachable {
                server: endpoint.to_string(),
                source,
            })
    }

    /// Names the server in an error that does not (sqlx's `PoolTimedOut` says neither where
    /// nor why).
    pub fn explain(&self, e: StoreError) -> StoreError {
        match (e, &self.endpoint) {
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
            Err(_) => Err(StoreError::Unreachable {
                server: self
                    .endpoint
                    .as_ref()
                    .map_or_else(|| "the server".to_string(), Endpoint::to_string),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}", humantime::format_duration(timeout)),
                ),
            }),
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
