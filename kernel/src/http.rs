//! The HTTP endpoints: `/metrics`, `/healthz` (the process is alive), `/readyz` (it can do its
//! job: Redis and Postgres answer, migrations are applied, ingest is not blocked or stalled,
//! not shutting down).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::redis_io::StreamClient;
use crate::store::Store;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Metrics,
    pub health: Health,
    pub store: Store,
    pub redis: StreamClient,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn healthz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.health.failed() {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed: an ingest task ended\n",
        )
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, String) {
    let mut problems: Vec<std::borrow::Cow<'static, str>> = Vec::new();
    if state.health.shutting_down() {
        problems.push("shutting down".into());
    }
    if !state.health.migrated() {
        problems.push("migrations not applied yet".into());
    }
    if state.health.writer_blocked() {
        problems.push(
            if state.health.spill_full() {
                "writer blocked: Postgres unavailable and spill full (spill.max_bytes reached)"
            } else {
                "writer blocked: Postgres unavailable"
            }
            .into(),
        );
    }
    for stall in state.health.stalls().stalled() {
        problems.push(stall.to_string().into());
    }
    let (pg_ok, redis_ok) = tokio::join!(
        state.store.ping(PROBE_TIMEOUT),
        tokio::time::timeout(PROBE_TIMEOUT, state.redis.ping())
    );
    if !pg_ok {
        problems.push("Postgres unreachable".into());
    }
    if !matches!(redis_ok, Ok(true)) {
        problems.push("Redis unreachable".into());
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
    }
}
