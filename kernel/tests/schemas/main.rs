//! Payload schemas end to end, against private Redis and Postgres: validation at ingest across
//! drafts, binding changes within the cache TTL and racing batches in flight, deprecation and
//! deletion, the admin API's refusals, pathological schemas, stream bindings with auth off, and
//! Postgres outages.
//!
//! One module per concern; a test runs as `<module>::<test>`.

#[path = "../auth_support/mod.rs"]
mod auth_support;
#[path = "../fault_support/mod.rs"]
mod fault_support;
#[path = "../support/mod.rs"]
mod support;

mod admin_api;
mod auth_off;
mod bindings;
mod outage;
mod pathological;
mod race;
mod validation;

use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth_support::{AuthKernel, Options, ADMIN_TOKEN};
use crate::support::*;

/// The cache TTL of the tests' kernels.
pub const TTL: Duration = Duration::from_secs(1);

/// A kernel with auth on and `ingest.schema_cache_ttl` = [`TTL`], migrated.
pub async fn kernel() -> AuthKernel {
    let k = AuthKernel::start_with(TestEnv::start().await.unwrap(), Options::default(), |c| {
        c.ingest.schema_cache_ttl = TTL;
    })
    .await;
    wait_migrated(&k.env.pg().await).await;
    k
}

/// [`kernel`], a client of its admin API, and connections to its Postgres and Redis.
pub async fn kernel_with_clients() -> (AuthKernel, Admin, sqlx::PgPool, MultiplexedConnection) {
    let k = kernel().await;
    let admin = Admin::at(k.admin);
    let (pg, redis) = (k.env.pg().await, k.env.redis_conn().await);
    (k, admin, pg, redis)
}

/// Config of a kernel with auth off, the admin API on (token in `dir`), stream `events` bound
/// to `binding`, and the test TTL; `configure` applied last.
pub fn auth_off_config(
    env: &TestEnv,
    dir: &std::path::Path,
    binding: &str,
    configure: impl FnOnce(&mut fdc_common::config::Config),
) -> fdc_common::config::Config {
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let mut config = env.config();
    config.auth.admin_token_file = Some(token_file);
    config.ingest.schema_cache_ttl = TTL;
    config
        .ingest
        .schemas
        .insert("events".into(), binding.into());
    configure(&mut config);
    config.validate().unwrap();
    assert!(!config.auth.enabled);
    config
}

/// Waits until the schema registry's migration is applied.
pub async fn wait_migrated(pg: &sqlx::PgPool) {
    let probe = "SELECT count(*) FROM producers WHERE schema_binding IS NOT NULL";
    assert_eq!(
        wait_for(auth_support::WAIT, 0, || count(pg, probe)).await,
        0
    );
}

/// Asserts that an admin API answer has `status` and an error that mentions `mentions`.
pub fn assert_refused((status, answer): (u16, Value), want: u16, mentions: &str) {
    assert_eq!(status, want, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains(mentions),
        "{answer}"
    );
}

/// A client of the admin API.
pub struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    pub fn at(addr: SocketAddr) -> Admin {
        Admin {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// Adds a version, expecting 201; its schema_id.
    pub async fn add(&self, name: &str, version: &str, body: Value) -> Uuid {
        let (status, answer) = self
            .post(
                fdc_common::contract::SCHEMAS_ROUTE,
                json!({"name": name, "version": version, "body": body, "reason": "test"}),
            )
            .await;
        assert_eq!(status, 201, "{answer}");
        answer["schema_id"].as_str().unwrap().parse().unwrap()
    }

    /// Binds (or with `None` unbinds) a producer: status and answer.
    pub async fn bind(&self, producer: Uuid, schema: Option<&str>) -> (u16, Value) {
        self.post(
            &fdc_common::contract::producer_schema_path(producer),
            json!({"schema": schema, "reason": "test"}),
        )
        .await
    }
}

/// Creates producer rows (unbound), as the first token of each would.
pub async fn create_producers(pg: &sqlx::PgPool, ids: &[Uuid]) {
    for id in ids {
        sqlx::query("INSERT INTO producers (producer_id, name) VALUES ($1, 'p')")
            .bind(id)
            .execute(pg)
            .await
            .unwrap();
    }
}

/// A `data` entry with `payload`, and `token` when given.
pub fn entry(token: Option<&str>, payload: Value) -> Vec<(String, String)> {
    let mut f = data_fields(Uuid::now_v7(), now_ns(), None, &[], payload);
    if let Some(t) = token {
        f.push(("token".into(), t.into()));
    }
    f
}

/// Stored events with this schema id (`None`: without one).
pub async fn stored_with(pg: &sqlx::PgPool, schema_id: Option<Uuid>) -> i64 {
    match schema_id {
        Some(id) => {
            count(
                pg,
                &format!("SELECT count(*) FROM events WHERE schema_id = '{id}'"),
            )
            .await
        }
        None => count(pg, "SELECT count(*) FROM events WHERE schema_id IS NULL").await,
    }
}

/// The `detail` of every dead letter of `events`, checking that each has reason `schema`.
pub async fn schema_dead_letters(redis: &redis::aio::MultiplexedConnection) -> Vec<String> {
    read_stream(redis, "events:dlq")
        .await
        .into_iter()
        .map(|f| {
            assert_eq!(f["error"], "schema", "{f:?}");
            f["detail"].clone()
        })
        .collect()
}

/// Waits for `events` stored events and `dead` dead letters in all; fails otherwise.
pub async fn wait_settled(k: &AuthKernel, events: i64, dead: i64) {
    let pg = k.env.pg().await;
    let redis = k.env.redis_conn().await;
    let got = wait_for(auth_support::WAIT, (events, dead), || async {
        (
            count(&pg, "SELECT count(*) FROM events").await,
            xlen(&redis, "events:dlq").await,
        )
    })
    .await;
    assert_eq!(got, (events, dead), "(stored events, dead letters)");
}

/// An order, version 1 (draft 7): an id and a positive quantity.
pub fn orders_v1() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": ["order_id", "qty"],
        "properties": {
            "order_id": {"type": "string"},
            "qty": {"type": "integer", "minimum": 1}
        }
    })
}
