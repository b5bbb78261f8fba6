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
        Ok(cluster)
    }

    /// `redis://` URLs of every node, for a cluster client's seed list.
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Waits until every running node reports `cluster_state:ok` (all slots served).
    pub async fn wait_ok(&self, timeout: Duration) -> Result<(), ServerError> {
        let urls = self.seed_urls();
        process::wait_ready("redis cluster", timeout, || {
            let urls = urls.clone();
            async move {
                for url in urls {
                    let info: String = query(&url, ::redis::cmd("CLUSTER").arg("INFO")).await?;
                    if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                        return Err(format!("{url}: cluster_state is not ok yet"));
                    }
                }
                Ok(())
            }
        })
        .await
    }
}

/// One command on a plain (non-cluster) connection to `url`.
async fn query<T: ::redis::FromRedisValue>(
    url: &str,
    cmd: &mut ::redis::Cmd,
) -> Result<T, String> {
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
