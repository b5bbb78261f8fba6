//! Postgres storage: migrations, partitions, id resolution and the set-based batch write.

mod copy;
mod error;
mod ids;
mod nodelay;
mod partitions;
mod write;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use copy::CopyBinary;
pub use error::StoreError;
pub use ids::IdCache;
pub use nodelay::set_nodelay;
pub use partitions::{day_name, Partitions};
pub use write::WriteOutcome;

use crate::config::PostgresConfig;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A handle on the database: a pool plus the caches that spare round trips.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    ids: IdCache,
    partitions: Partitions,
    consumer: String,
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
        Ok(Store::with_pool(pool, consumer))
    }

    pub fn with_pool(pool: PgPool, consumer: &str) -> Store {
        Store {
            pool,
            ids: IdCache::default(),
            partitions: Partitions::default(),
            consumer: consumer.to_string(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations. sqlx holds a Postgres advisory lock meanwhile, so replicas
    /// starting together apply each migration once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(StoreError::from)
    }

    /// True when every embedded migration is applied.
    pub async fn migrations_applied(&self) -> Result<bool, StoreError> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
        Ok(MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .all(|m| applied.contains(&m.version)))
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self, timeout: Duration) -> bool {
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(tokio::time::timeout(timeout, probe).await, Ok(Ok(_)))
    }

    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }
}

fn redacted(e: &sqlx::Error) -> String {
    // sqlx's URL parse errors do not echo the URL, but keep passwords out for certain.
    crate::config::redact_url(&e.to_string())
}
