//! The connection for commands other than the entry reads: a redis-rs `ConnectionManager` on
//! one Redis, or a redis-rs cluster connection on a Redis Cluster (it routes each command by
//! its key's slot and follows MOVED and ASK redirections itself).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::{cluster, RedisIoError};

/// Commands to Redis: one server or a cluster.
#[derive(Clone)]
pub enum Ops {
    Single(ConnectionManager),
    Cluster(LazyCluster),
}

impl Ops {
    /// Commands to the Redis of `url`, connected on first use (so a Redis that is down fails
    /// commands, not this call): one server, or for a `redis+cluster://` URL the Redis
    /// Cluster of its seed nodes. `response_timeout`: the longest wait for a reply, `BLOCK`
    /// included.
    pub fn open(url: &str, response_timeout: Duration) -> Result<Ops, RedisIoError> {
        match cluster::seeds(url) {
            Some(seeds) => {
                let client = ClusterClient::builder(seeds)
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(response_timeout)
                    .retries(3)
                    .build()
                    .map_err(bad_url)?;
                Ok(Ops::Cluster(LazyCluster::new(client)))
            }
            None => {
                let client = redis::Client::open(url).map_err(bad_url)?;
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(response_timeout))
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(2));
                Ok(Ops::Single(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
        }
    }
}

impl Ops {
    /// `cmd` on the cluster node `node` (`host:port`, as `CLUSTER SLOTS` names it), over the
    /// cluster connection: for commands about one node's own keys (SCAN).
    pub(super) async fn on_node(&self, node: &str, cmd: Cmd) -> Result<Value, RedisIoError> {
        let Ops::Cluster(lazy) = self else {
            return Err(RedisIoError::Cluster(format!(
                "a command for node {node} on a single Redis"
            )));
        };
        let (host, port) = node
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .ok_or_else(|| RedisIoError::Cluster(format!("bad node address {node:?}")))?;
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.to_string(),
            port,
        });
        let mut conn = lazy.get().await?;
        Ok(conn.route_command(cmd, routing).await?)
    }
}

/// A URL redis-rs refused, without its password.
pub(super) fn bad_url(e: redis::RedisError) -> RedisIoError {
    RedisIoError::Url(fdc_common::config::redact_url(&e.to_string()))
}

/// A cluster connection made on first use, so the kernel starts (not ready) while the
/// cluster is down; a failed connect is tried again by the next command.
#[derive(Clone)]
pub struct LazyCluster {
    client: Arc<ClusterClient>,
    conn: Arc<tokio::sync::Mutex<Option<ClusterConnection>>>,
}

impl LazyCluster {
    pub fn new(client: ClusterClient) -> LazyCluster {
        LazyCluster {
            client: Arc::new(client),
            conn: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    async fn get(&self) -> redis::RedisResult<ClusterConnection> {
        let mut conn = self.conn.lock().await;
        if let Some(conn) = conn.as_ref() {
            return Ok(conn.clone());
        }
        let made = self.client.get_async_connection().await?;
        *conn = Some(made.clone());
        Ok(made)
    }
}

impl ConnectionLike for Ops {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Ops::Single(conn) => conn.req_packed_command(cmd),
            Ops::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Ops::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Ops::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Ops::Single(conn) => conn.get_db(),
            Ops::Cluster(_) => 0,
        }
    }
}
