//! A Postgres primary with a streaming replica, for switchover tests: the replica is a
//! `pg_basebackup -R` copy of the primary, started on its own free port, and can be promoted.

use std::time::Duration;

use sqlx::Connection;

use super::postgres::{PostgresOptions, PostgresServer};
use super::process::{self, RunAs};
use super::{binaries, ServerError};

/// A primary and a hot-standby replica streaming from it; both killed on drop.
pub struct PostgresPair {
    pub primary: PostgresServer,
    pub replica: PostgresServer,
}

impl PostgresPair {
    /// Starts a primary, takes a base backup of it with replication settings (`-R`), and starts
    /// the copy as a streaming replica; returns once the replica accepts read-only connections.
    pub async fn start() -> Result<PostgresPair, ServerError> {
        let primary = PostgresServer::start().await?;
        let run_as = RunAs::for_postgres();
        let dir = tempfile::Builder::new()
            .prefix("fdc-pg-replica-")
            .tempdir()?;
        if let Some(user) = run_as {
            user.own(dir.path())?;
        }
        let mut backup = process::command(&binaries::find("pg_basebackup")?, run_as);
        backup
            .args(["-h", "127.0.0.1", "-p", &primary.port().to_string()])
            .args(["-U", "postgres", "-D"])
            .arg(dir.path().join("data"))
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"]);
        process::run(backup)?;
        let replica =
            PostgresServer::launch_on_free_port(dir, PostgresOptions::default(), run_as).await?;
        Ok(PostgresPair { primary, replica })
    }

    /// Both servers in one URL, as libpq takes it: clients pick the one that accepts writes.
    pub fn multi_host_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.primary.port(),
            self.replica.port()
        )
    }

    /// Waits until the replica has replayed everything the primary has written so far.
    pub async fn wait_caught_up(&self, timeout: Duration) -> Result<(), ServerError> {
        let mut primary = connect(&self.primary.url()).await?;
        let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&mut primary)
            .await
            .map_err(|e| failed("pg_current_wal_lsn", e))?;
        let replica_url = self.replica.url();
        process::wait_ready("replica replay", timeout, || {
            let (url, lsn) = (replica_url.clone(), lsn.clone());
            async move {
                let mut conn = sqlx::PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let behind: bool = sqlx::query_scalar(
                    "SELECT pg_last_wal_replay_lsn() IS NULL OR pg_last_wal_replay_lsn() < $1::pg_lsn",
                )
                .bind(&lsn)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
                if behind {
                    Err(format!("replay has not reached {lsn}"))
                } else {
                    Ok(())
                }
            }
        })
        .await
    }

    /// Promotes the replica to a primary.
    pub async fn promote(&self) -> Result<(), ServerError> {
        self.replica.promote().await
    }
}

impl PostgresServer {
    /// Promotes this standby to a primary (`pg_promote()`, which waits until it accepts writes).
    pub async fn promote(&self) -> Result<(), ServerError> {
        let mut conn = connect(&self.url()).await?;
        let promoted: bool = sqlx::query_scalar("SELECT pg_promote(true, 60)")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| failed("pg_promote", e))?;
        if promoted {
            Ok(())
        } else {
            Err(ServerError::Failed {
                program: "pg_promote".into(),
                output: "the standby was not promoted within 60 s".into(),
            })
        }
    }
}

async fn connect(url: &str) -> Result<sqlx::PgConnection, ServerError> {
    sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| failed("connect", e))
}

fn failed(what: &str, e: sqlx::Error) -> ServerError {
    ServerError::Failed {
        program: what.to_string(),
        output: e.to_string(),
    }
}
