//! The connection for commands other than the entry reads: a redis-rs `ConnectionManager` on
//! one Redis, or a redis-rs cluster connection on a Redis Cluster (it routes each command by
//! its key's slot and follows MOVED and ASK redirections itself).

use std::sync::Arc;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Commands to Redis: one server or a cluster.
#[derive(Clone)]
pub enum Ops {
    Single(ConnectionManager),
    Cluster(LazyCluster),
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
