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

    /// An error that may mean the pool's server went away or cannot take writes any more
    /// (connection lost, shut down, read-only after a failover): with several hosts in
    /// `postgres.url`, the store selects a server again. Timeouts of a statement and lock or
    /// serialization conflicts say nothing about the server and keep it.
    pub fn may_mean_another_server(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Unavailable(e) => server_gone(e),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => server_gone(e),
            _ => false,
        }
    }

    /// An error after which the connection it came from may be out of step with its server
    /// (an answer read for the wrong statement) or gone: it is closed, not reused.
    pub fn leaves_connection_in_doubt(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Unavailable(e) => connection_broken(e),
            _ => false,
        }
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

/// The connection failed or fell out of step with its server: an I/O error, an answer that
/// does not fit the statement, or `BEGIN` answered while the connection is not in a
/// transaction (its answers belong to earlier statements). A fault of the connection, never
/// of the data.
fn connection_broken(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::BeginFailed
    )
}

/// The connection or the server went away, or the server cannot take writes (a standby).
fn server_gone(e: &sqlx::Error) -> bool {
    if connection_broken(e) {
        return true;
    }
    match e {
        sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code.starts_with("08") // connection exception
                || code == "57P01" // admin shutdown
                || code == "57P02" // crash shutdown
                || code == "57P03" // cannot connect now (starting up, shutting down)
                || is_read_only(db.as_ref())
        }
        _ => false,
    }
}

/// SQLSTATE 25006 (`read_only_sql_transaction`), or its message when a code is missing: a
/// standby, or a primary fenced read-only during a failover. Never a fault of the data.
fn is_read_only(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code().unwrap_or_default();
    let message = db.message();
    code == "25006"
        || (message.starts_with("cannot execute ")
            && message.ends_with("in a read-only transaction"))
}

/// SQLSTATE classes and codes that say "the server cannot take this now" rather than
/// "this data is wrong": the server went away or turned read-only ([`server_gone`]), or it is
/// short of resources or the statement met a conflict worth retrying.
fn is_outage(e: &sqlx::Error) -> bool {
    server_gone(e)
        || match e {
            sqlx::Error::PoolClosed => true,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                code.starts_with("53") // insufficient resources: disk full, out of memory
                    || code.starts_with("57") // operator intervention: shutdown, statement timeout
                    || code.starts_with("58") // system error (I/O)
                    || code == "40001" // serialization failure: retry
                    || code == "40P01" // deadlock: retry
                    || code == "55P03" // lock not available
            }
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_out_of_step_is_an_outage_and_closed() {
        let begin = StoreError::from(sqlx::Error::BeginFailed);
        assert!(begin.is_outage(), "{begin}");
        assert!(begin.leaves_connection_in_doubt());
        let protocol = StoreError::from(sqlx::Error::Protocol("expected ParseComplete".into()));
        assert!(protocol.is_outage() && protocol.leaves_connection_in_doubt());
        // Rejected data says nothing about the connection: it is reused.
        let data = StoreError::from(sqlx::Error::RowNotFound);
        assert!(!data.is_outage() && !data.leaves_connection_in_doubt());
        let timed_out = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(timed_out.is_outage() && !timed_out.leaves_connection_in_doubt());
    }
}
