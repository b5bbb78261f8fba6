//! A private Redis Cluster: three primaries and three replicas, each a `redis-server
//! --cluster-enabled yes` with an append-only file fsynced on every write, joined by
//! `redis-cli --cluster create … --cluster-replicas 1`.

use std::time::Duration;

use super::redis::{RedisOptions, RedisServer};
use super::{binaries, process, ServerError};

/// Six cluster nodes on free loopback ports; killed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster (three primaries, one replica each), and returns
    /// once every node reports `cluster_state:ok`.
    pub async fn start() -> Result<RedisCluster, ServerError> {
        let starts =
            (0..6).map(|_| RedisServer::start_cluster_node(RedisOptions { appendonly: true }));
        let nodes = futures_all(starts).await?;
        let cluster = RedisCluster { nodes };
        let mut create = process::command(&binaries::find("redis-cli")?, None);
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        process::run(create)?;
        cluster.wait_ok(Duration::from_secs(30)).await?;
        cluster
            .wait_replicas_online(Duration::from_secs(30))
            .await?;
        Ok(cluster)
    }

    /// Waits until every running primary has a replica that finished its initial sync, so a
    /// `WAIT 1` can be answered.
    async fn wait_replicas_online(&self, timeout: Duration) -> Result<(), ServerError> {
        self.wait_each_node(
            "redis cluster replicas",
            timeout,
            ["INFO", "replication"],
            |info| {
                let primary = info.lines().any(|l| l.trim() == "role:master");
                let online = info
                    .lines()
                    .any(|l| l.starts_with("slave0:") && l.contains("state=online"));
                (primary && !online).then_some("no replica online yet")
            },
        )
        .await
    }

    /// `redis+cluster://` URL with every node as a seed, as the kernel's `redis.url` takes it.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}/", nodes.join(","))
    }

    /// `redis://` URLs of every node, for a cluster client's seed list.
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Waits until every running node reports `cluster_state:ok` (all slots served).
    pub async fn wait_ok(&self, timeout: Duration) -> Result<(), ServerError> {
        self.wait_each_node("redis cluster", timeout, ["CLUSTER", "INFO"], |info| {
            let ok = info.lines().any(|l| l.trim() == "cluster_state:ok");
            (!ok).then_some("cluster_state is not ok yet")
        })
        .await
    }

    /// Waits until every running node's answer to `command` (a command and its argument) passes
    /// `pending`, which says what is not so yet, or `None`.
    async fn wait_each_node(
        &self,
        server: &'static str,
        timeout: Duration,
        [command, arg]: [&'static str; 2],
        pending: fn(&str) -> Option<&'static str>,
    ) -> Result<(), ServerError> {
        let urls = self.running_urls();
        process::wait_ready(server, timeout, || {
            let urls = urls.clone();
            async move {
                for url in urls {
                    let answer: String = query(&url, ::redis::cmd(command).arg(arg)).await?;
                    if let Some(not_yet) = pending(&answer) {
                        return Err(format!("{url}: {not_yet}"));
                    }
                }
                Ok(())
            }
        })
        .await
    }

    /// The index in [`RedisCluster::nodes`] of the running primary serving `key`'s slot, as
    /// the running nodes see it (`CLUSTER SHARDS`).
    pub async fn primary_of(&self, key: &str) -> Result<usize, ServerError> {
        let url = self
            .running_urls()
            .into_iter()
            .next()
            .ok_or_else(|| not_ok("no node runs"))?;
        let slot: u16 = query(&url, ::redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .await
            .map_err(not_ok)?;
        let nodes: String = query(&url, ::redis::cmd("CLUSTER").arg("NODES"))
            .await
            .map_err(not_ok)?;
        // `<id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch> <link> <slot ranges…>`
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((from, to)) => {
                    from.parse::<u16>().is_ok_and(|f| f <= slot)
                        && to.parse::<u16>().is_ok_and(|t| slot <= t)
                }
                None => range.parse::<u16>() == Ok(slot),
            });
            let port = fields[1]
                .split('@')
                .next()
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok());
            if serves {
                if let Some(i) = self.nodes.iter().position(|n| Some(n.port()) == port) {
                    return Ok(i);
                }
            }
        }
        Err(not_ok(format!("no running primary serves slot {slot}")))
    }

    /// A plain connection to the running primary serving `key`, for a test's own commands on
    /// keys of that slot.
    pub async fn owner_conn(
        &self,
        key: &str,
    ) -> Result<::redis::aio::MultiplexedConnection, ServerError> {
        let owner = &self.nodes[self.primary_of(key).await?];
        ::redis::Client::open(owner.url())
            .map_err(not_ok)?
            .get_multiplexed_async_connection()
            .await
            .map_err(not_ok)
    }

    /// SIGKILLs node `index` (no clean shutdown); its replica takes over after
    /// `cluster-node-timeout` (2 s), see [`RedisCluster::wait_failover`].
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Waits until a running node serves `key`'s slot as primary and the running nodes report
    /// `cluster_state:ok`; returns that node's index.
    pub async fn wait_failover(&self, key: &str, timeout: Duration) -> Result<usize, ServerError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(i) = self.primary_of(key).await {
                if self.nodes[i].is_running()
                    && self.wait_ok(Duration::from_millis(100)).await.is_ok()
                {
                    return Ok(i);
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(ServerError::NotReady {
                    server: "redis cluster failover",
                    seconds: timeout.as_secs(),
                    last_error: format!("no running primary serves {key}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn running_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(RedisServer::url)
            .collect()
    }
}

fn not_ok(detail: impl ToString) -> ServerError {
    ServerError::Failed {
        program: "redis cluster".into(),
        output: detail.to_string(),
    }
}

/// One command on a plain (non-cluster) connection to `url`.
async fn query<T: ::redis::FromRedisValue>(url: &str, cmd: &mut ::redis::Cmd) -> Result<T, String> {
    let client = ::redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    cmd.query_async(&mut conn).await.map_err(|e| e.to_string())
}

/// Awaits all futures concurrently, failing with the first error.
async fn futures_all<F, T>(futures: impl Iterator<Item = F>) -> Result<Vec<T>, ServerError>
where
    F: std::future::Future<Output = Result<T, ServerError>> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.map_err(|e| ServerError::Failed {
            program: "redis-server".into(),
            output: e.to_string(),
        })??);
    }
    Ok(out)
}
