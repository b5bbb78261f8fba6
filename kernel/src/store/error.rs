//! Store errors, split by what the caller should do: retry/spill (outage) or isolate (data).

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("postgres.url is invalid: {0}")]
    Config(String),
    #[error("Postgres unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Nothing answers at the server's address (refused, unresolvable, silent).
    #[error("Postgres at {server} unreachable: {source}")]
    Unreachable {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Postgres rejected the data: {0}")]
    Data(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// An outage (connection lost, server shutting down, read-only, out of disk, timeout):
    /// the batch is fine and can be retried or spilled.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Unreachable { .. }
        )
    }

    /// A short label for the `kernel_pg_errors_total{kind}` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Config(_) => "config",
            StoreError::Unavailable(_) | StoreError::Unreachable { .. } => "unavailable",
            StoreError::Data(_) => "data",
            StoreError::Migrate(_) => "migrate",
        }
    }
}

impl crate::retry::Classify for StoreError {
    /// Outages are retried or spilled, rejected data is isolated, configuration and
    /// migration errors stop the caller.
    fn classify(&self) -> crate::retry::Failure {
        use crate::retry::Failure;
        match self {
            StoreError::Unavailable(_) | StoreError::Unreachable { .. } => Failure::Outage,
            StoreError::Data(_) => Failure::Poison,
            StoreError::Config(_) | StoreError::Migrate(_) => Failure::Fatal,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        if is_outage(&e) {
            StoreError::Unavailable(e)
        } else {
            StoreError::Data(e)
        }
    }
}

/// SQLSTATE classes and codes that say "the server cannot take this now" rather than
/// "this data is wrong".
fn is_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources: disk full, out of memory
                || code.starts_with("57") // operator intervention: shutdown, statement timeout
                || code.starts_with("58") // system error (I/O)
                || code == "25006" // read-only transaction (failover, standby)
                || code == "40001" // serialization failure: retry
                || code == "40P01" // deadlock: retry
                || code == "55P03" // lock not available
        }
        _ => false,
    }
}
