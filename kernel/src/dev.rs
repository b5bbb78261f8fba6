//! `fdc-kernel dev`: a throwaway Redis and Postgres on free ports, for a first look.

use crate::config::Config;
use crate::testsupport::{PostgresServer, RedisServer, ServerError};

/// Private servers that live as long as this value; their temp dirs go with it.
pub struct DevEnvironment {
    pub redis: RedisServer,
    pub postgres: PostgresServer,
}

impl DevEnvironment {
    pub async fn start() -> Result<DevEnvironment, ServerError> {
        let (redis, postgres) = tokio::join!(RedisServer::start(), PostgresServer::start());
        Ok(DevEnvironment {
            redis: redis?,
            postgres: postgres?,
        })
    }

    /// `base` pointed at the private servers.
    pub fn config(&self, mut base: Config) -> Config {
        base.redis.url = self.redis.url();
        base.postgres.url = self.postgres.url();
        base
    }

    /// What a newcomer types to see an event land.
    pub fn instructions(&self, config: &Config, http: std::net::SocketAddr) -> String {
        let stream = &config.ingest.streams[0];
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let id = uuid::Uuid::now_v7();
        format!(
            "fdc dev environment is up.\n\n\
             Publish an event:\n  \
             redis-cli -p {rport} XADD {stream} '*' type data version 1.0.0 id {id} ts {now_ns} \
             data '{{\"subject\":\"sensor-1\",\"tags\":{{\"site\":\"lab\"}},\"payload\":{{\"temp\":21.5}}}}'\n\n\
             See it stored:\n  \
             psql {pg} -c 'SELECT event_id, ts, payload FROM events'\n\n\
             Metrics: curl http://{http}/metrics   Ready: curl http://{http}/readyz\n\
             Dead letters: redis-cli -p {rport} XRANGE {dlq} - +\n\n\
             Ctrl-C stops everything and removes the temporary servers.\n",
            rport = self.redis.port(),
            pg = self.postgres.url(),
            dlq = config.dlq_stream(stream),
        )
    }
}
