//! A private `redis-server`.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use tempfile::TempDir;

use super::{binaries, ports, process, ServerError};

/// Options for a private Redis.
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    /// Turn on the append-only file, so that a restart keeps the data (fault tests).
    pub appendonly: bool,
}

/// A `redis-server` on a free loopback port in its own temp dir; killed on drop.
pub struct RedisServer {
    dir: TempDir,
    port: u16,
    options: RedisOptions,
    /// As a Redis Cluster node: its cluster bus port (must be free too; the default,
    /// port + 10000, may not exist).
    cluster_bus_port: Option<u16>,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Result<RedisServer, ServerError> {
        Self::start_with(RedisOptions::default()).await
    }

    pub async fn start_with(options: RedisOptions) -> Result<RedisServer, ServerError> {
        Self::start_node(options, false).await
    }

    /// A node for a Redis Cluster (`--cluster-enabled yes`), not yet part of one.
    pub(crate) async fn start_cluster_node(
        options: RedisOptions,
    ) -> Result<RedisServer, ServerError> {
        Self::start_node(options, true).await
    }

    async fn start_node(
        mut options: RedisOptions,
        cluster: bool,
    ) -> Result<RedisServer, ServerError> {
        process::retry_launch(&mut options, move |options| {
            Box::pin(async move {
                let mut server = RedisServer {
                    dir: tempfile::Builder::new().prefix("fdc-redis-").tempdir()?,
                    port: ports::free_port()?,
                    options: options.clone(),
                    cluster_bus_port: if cluster {
                        Some(ports::free_port()?)
                    } else {
                        None
                    },
                    child: None,
                };
                server.launch().await.map(|()| server)
            })
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// False once killed (until restarted).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILLs the server (no clean shutdown, no final save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
        }
    }

    /// Starts the server again on the same port and directory.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        self.launch().await
    }

    async fn launch(&mut self) -> Result<(), ServerError> {
        let program = binaries::find("redis-server")?;
        let mut cmd = process::command(&program, None);
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args([
                "--appendonly",
                if self.options.appendonly { "yes" } else { "no" },
            ])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(bus_port) = self.cluster_bus_port {
            cmd.args(["--cluster-enabled", "yes"])
                .args(["--cluster-port", &bus_port.to_string()])
                .args(["--cluster-config-file", "nodes.conf"])
                // Short, so a killed primary's replica takes over within seconds in tests.
                .args(["--cluster-node-timeout", "2000"]);
        }
        let log: PathBuf = self.dir.path().join("redis.log");
        let child = process::spawn(cmd, &log)?;
        self.child = Some(child);
        let url = self.url();
        let ready = process::wait_ready("redis-server", Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                let client = ::redis::Client::open(url).map_err(|e| e.to_string())?;
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                ::redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        if ready.is_err() {
            self.kill();
        }
        ready
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
