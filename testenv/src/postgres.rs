//! A private `postgres` cluster: initdb in a temp dir, run as the `postgres` user when root.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use sqlx::Connection;
use tempfile::TempDir;

use super::process::{self, RunAs};
use super::{binaries, ports, ServerError};

/// Options for a private Postgres.
#[derive(Clone, Debug, Default)]
pub struct PostgresOptions {
    /// `fsync=off` (the default) makes tests fast; a killed *process* still loses nothing (the
    /// WAL is written to the OS at commit), only an OS crash would. `synchronous_commit` stays
    /// on: with it off a killed server loses acknowledged commits. The benchmark turns fsync on
    /// to measure honest commit costs.
    pub fsync: bool,
    /// `full_page_writes=off` (the default) saves tests WAL; Postgres's own default, and
    /// production's, is on (the benchmark's default too: it costs WAL after each checkpoint).
    pub full_page_writes: bool,
}

/// A Postgres cluster on a free loopback port in its own temp dir; killed on drop.
pub struct PostgresServer {
    dir: TempDir,
    port: u16,
    options: PostgresOptions,
    run_as: Option<RunAs>,
    child: Option<Child>,
}

impl PostgresServer {
    pub async fn start() -> Result<PostgresServer, ServerError> {
        Self::start_with(PostgresOptions::default()).await
    }

    pub async fn start_with(options: PostgresOptions) -> Result<PostgresServer, ServerError> {
        let dir = tempfile::Builder::new().prefix("fdc-pg-").tempdir()?;
        let run_as = RunAs::for_postgres();
        if let Some(user) = run_as {
            user.own(dir.path())?;
        }
        let data = dir.path().join("data");
        let mut initdb = process::command(&binaries::find("initdb")?, run_as);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale", "C"]);
        process::run(initdb)?;
        Self::launch_on_free_port(dir, options, run_as).await
    }

    /// Starts a server on the data directory `dir/data`, already prepared (by initdb or a base
    /// backup), on a free port.
    pub(crate) async fn launch_on_free_port(
        dir: TempDir,
        options: PostgresOptions,
        run_as: Option<RunAs>,
    ) -> Result<PostgresServer, ServerError> {
        let mut server = PostgresServer {
            dir,
            port: 0,
            options,
            run_as,
            child: None,
        };
        process::retry_launch(&mut server, |server| {
            Box::pin(async move {
                server.port = ports::free_port()?;
                server.launch().await
            })
        })
        .await?;
        Ok(server)
    }

    /// Connection URL for the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// SIGKILLs the postmaster: in-flight transactions are lost, connections reset.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
        }
    }

    /// Fast shutdown (SIGINT would be "fast"; SIGTERM is "smart" and waits for clients, so
    /// we ask for a fast one with pg_ctl semantics by sending SIGINT).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and data directory. Retries while orphaned backends of a
    /// killed postmaster still hold the old shared memory.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        let mut last = None;
        for _ in 0..20 {
            match self.launch().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn launch(&mut self) -> Result<(), ServerError> {
        let socket_dir = self.dir.path().to_path_buf();
        let mut cmd = process::command(&binaries::find("postgres")?, self.run_as);
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&socket_dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("fsync={}", on_off(self.options.fsync))])
            .args([
                "-c",
                &format!("full_page_writes={}", on_off(self.options.full_page_writes)),
            ])
            .args(["-c", "max_connections=200"]);
        let log = self.log_path();
        if let Some(user) = self.run_as {
            std::fs::File::create(&log)?;
            user.own(&log)?;
        }
        self.child = Some(process::spawn(cmd, &log)?);
        let url = self.url();
        let ready = process::wait_ready("postgres", Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                let conn = sqlx::PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            }
        })
        .await;
        if let Err(e) = ready {
            let log_text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            self.kill();
            return Err(ServerError::Failed {
                program: format!("postgres ({e})"),
                output: log_text,
            });
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        Path::new(self.dir.path()).join("postgres.log")
    }
}

fn on_off(flag: bool) -> &'static str {
    if flag {
        "on"
    } else {
        "off"
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.kill();
    }
}
