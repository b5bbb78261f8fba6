//! Building blocks for end-to-end tests: an environment of private servers, protocol v1
//! entries, and polling helpers with exact counts.

use std::path::Path;
use std::time::{Duration, Instant};

use fdc_common::config::Config;
use fdc_common::keys::{self, KeyPairFiles};
use redis::aio::MultiplexedConnection;
use sqlx::PgPool;
use uuid::Uuid;

use super::{PostgresServer, RedisServer, ServerError};

/// A private Redis and Postgres, plus a kernel config pointing at them with test-friendly timings.
pub struct TestEnv {
    pub redis: RedisServer,
    pub postgres: PostgresServer,
}

impl TestEnv {
    pub async fn start() -> Result<TestEnv, ServerError> {
        let (redis, postgres) = tokio::join!(RedisServer::start(), PostgresServer::start());
        Ok(TestEnv {
            redis: redis?,
            postgres: postgres?,
        })
    }

    /// Defaults, pointed at the private servers, HTTP on a free port, a consumer name of its
    /// own, short waits.
    pub fn config(&self) -> Config {
        kernel_config(&self.redis.url(), &self.postgres.url())
    }

    /// [`config`](Self::config) with auth on ([`enable_auth`], keys under `dir`), and the
    /// issuer's key files.
    pub fn auth_config(&self, dir: &Path) -> (Config, KeyPairFiles) {
        let mut config = self.config();
        let files = enable_auth(&mut config, dir);
        (config, files)
    }

    /// A connection for the test's own commands. Replies may take seconds on a loaded machine
    /// (a pipeline of a thousand 64 KiB entries while other builds run): redis-rs's default
    /// 500 ms reply timeout failed such publishes, so it waits up to 30 s.
    pub async fn redis_conn(&self) -> MultiplexedConnection {
        redis_conn_at(&self.redis.url()).await
    }

    pub async fn pg(&self) -> PgPool {
        pg_pool_at(&self.postgres.url()).await
    }
}

/// A connection to the Redis at `url` (a server or one cluster node) for the test's own
/// commands, waiting up to 30 s for a reply (see [`TestEnv::redis_conn`]).
pub async fn redis_conn_at(url: &str) -> MultiplexedConnection {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("redis connection")
}

/// A small pool (two connections) for the test's own queries to the Postgres at `url`.
pub async fn pg_pool_at(url: &str) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("postgres connection")
}

/// A connection to the Postgres at `url` on which `sql` (one or more statements) has run.
pub async fn pg_conn_after(url: &str, sql: &'static str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("postgres connection");
    sqlx::raw_sql(sql).execute(&mut conn).await.expect("SQL");
    conn
}

/// A kernel config for these servers with test-friendly timings: HTTP and admin API ports of
/// their own (port 0: the system picks them as the kernel binds them, so no other test can
/// take them meanwhile; `RunningKernel::http_addr` and `admin_addr` say which), a unique
/// consumer name, short batch waits.
pub fn kernel_config(redis_url: &str, postgres_url: &str) -> Config {
    let mut config = Config::default();
    config.redis.url = redis_url.to_string();
    config.postgres.url = postgres_url.to_string();
    config.http.listen = "127.0.0.1:0".parse().expect("static address");
    config.auth.admin_listen = "127.0.0.1:0".parse().expect("static address");
    config.ingest.consumer = Some(format!("test-{}", Uuid::new_v4().simple()));
    config.ingest.batch_max_wait = Duration::from_millis(20);
    config.shutdown.timeout = Duration::from_secs(10);
    config
}

/// The issuer and the audience of the tokens in tests.
pub const TEST_ISSUER: &str = "fdc-test";
pub const TEST_AUDIENCE: &str = "fdc-kernel-test";

/// Turns auth on in `config` with a new issuer key pair written to `dir/issuer`: tokens of
/// [`TEST_ISSUER`] for [`TEST_AUDIENCE`], verified with the public key file and signed with the
/// private one. Returns the key files.
pub fn enable_auth(config: &mut Config, dir: &Path) -> KeyPairFiles {
    let files = keys::keygen(&dir.join("issuer"), false).expect("issuer key pair");
    config.auth.enabled = true;
    config.auth.issuer = TEST_ISSUER.into();
    config.auth.audience = TEST_AUDIENCE.into();
    config.auth.verify_keys = vec![files.public_key.clone()];
    config.auth.signing_key = Some(files.private_key.clone());
    files
}

/// Fields of a valid `data` entry.
pub fn data_fields(
    id: Uuid,
    ts_ns: i64,
    subject: Option<&str>,
    tags: &[(&str, &str)],
    payload: serde_json::Value,
) -> Vec<(String, String)> {
    let mut data = serde_json::json!({ "payload": payload });
    if let Some(subject) = subject {
        data["subject"] = subject.into();
    }
    if !tags.is_empty() {
        data["tags"] = tags
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    vec![
        ("type".into(), "data".into()),
        ("version".into(), "1.0.0".into()),
        ("id".into(), id.to_string()),
        ("ts".into(), ts_ns.to_string()),
        ("data".into(), data.to_string()),
    ]
}

/// Nanoseconds in a day: event timestamps (`ts`, ns) on either side of a partition boundary.
pub const DAY_NS: i64 = 86_400_000_000_000;

pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// XADDs every entry in one pipelined round trip; returns the entry ids.
pub async fn publish<K: redis::ToRedisArgs, V: redis::ToRedisArgs>(
    conn: &MultiplexedConnection,
    stream: &str,
    entries: &[Vec<(K, V)>],
) -> Vec<String> {
    let mut conn = conn.clone();
    let mut ids = Vec::with_capacity(entries.len());
    for chunk in entries.chunks(1000) {
        let mut pipe = redis::pipe();
        for fields in chunk {
            pipe.cmd("XADD").arg(stream).arg("*").arg(fields);
        }
        let got: Vec<String> = pipe.query_async(&mut conn).await.expect("XADD");
        ids.extend(got);
    }
    ids
}

/// Polls `probe` until it returns `want` or `timeout` passes; returns the last value seen.
pub async fn wait_for<T, F, Fut>(timeout: Duration, want: T, mut probe: F) -> T
where
    T: PartialEq + Clone,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let got = probe().await;
        if got == want || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

/// `XLEN` of a stream (0 when missing).
pub async fn xlen(conn: &MultiplexedConnection, stream: &str) -> i64 {
    let mut conn = conn.clone();
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut conn)
        .await
        .unwrap_or(0)
}

/// Puts the string `value` at `key`: a key of the wrong type makes every XADD to it fail
/// (WRONGTYPE), as a producer's or an admin's mistake would.
pub async fn occupy_key(conn: &MultiplexedConnection, key: &str, value: &str) {
    let mut conn = conn.clone();
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut conn)
        .await
        .expect("SET");
}

/// Deletes `key`.
pub async fn delete_key(conn: &MultiplexedConnection, key: &str) {
    let mut conn = conn.clone();
    let _: () = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("DEL");
}

/// Creates the consumer group `group` on `stream` (and the stream), reading from the start;
/// a group that already exists is left as it is.
pub async fn create_group(conn: &MultiplexedConnection, stream: &str, group: &str) {
    let mut conn = conn.clone();
    let _: redis::Value = redis::cmd("XGROUP")
        .arg(&["CREATE", stream, group, "0", "MKSTREAM"])
        .query_async(&mut conn)
        .await
        .unwrap_or(redis::Value::Nil);
}

/// The last-delivered-id of the (only) consumer group on `stream` and the lag Redis reports
/// for it (`XINFO GROUPS`); the lag is `None` when Redis cannot tell.
pub async fn group_state(conn: &MultiplexedConnection, stream: &str) -> (String, Option<i64>) {
    let mut conn = conn.clone();
    let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(&mut conn)
        .await
        .expect("XINFO GROUPS");
    let group = &groups[0];
    let last = redis::from_redis_value(group["last-delivered-id"].clone()).expect("an id");
    let lag = redis::from_redis_value(group["lag"].clone()).ok();
    (last, lag)
}

/// Entries of the group still pending (delivered, not acknowledged) on `stream`.
pub async fn pending(conn: &MultiplexedConnection, stream: &str, group: &str) -> i64 {
    let mut conn = conn.clone();
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(&mut conn)
        .await
        .unwrap_or(redis::Value::Nil);
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

/// Every entry of a stream as (field → value) maps, oldest first.
pub async fn read_stream(
    conn: &MultiplexedConnection,
    stream: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let mut conn = conn.clone();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|entry| {
            entry
                .map
                .into_iter()
                .map(|(k, v)| {
                    let v: String = redis::from_redis_value(v).unwrap_or_default();
                    (k, v)
                })
                .collect()
        })
        .collect()
}

/// A bare HTTP/1.0 GET: status code and body. Enough for `/metrics` and the probes.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one sample (`series`, labels included) of the `/metrics` page at `addr`, if
/// the page has it.
pub async fn metric_at(addr: std::net::SocketAddr, series: &str) -> Option<f64> {
    metric_value(&http_get(addr, "/metrics").await.1, series)
}

/// Asserts that the `/metrics` page `exposition` has every sample of `want` (`series`, labels
/// included) at its value.
pub fn assert_metrics(exposition: &str, want: &[(&str, f64)]) {
    for &(series, value) in want {
        assert_eq!(metric_value(exposition, series), Some(value), "{series}");
    }
}

/// The value of an unlabelled (or exactly labelled, e.g. `name{reason="x"}`) sample.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}
