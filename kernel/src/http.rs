//! The HTTP endpoints: `/metrics`, `/healthz` (the process is alive), `/readyz` (it can do its
//! job: Redis and Postgres answer, migrations are applied, ingest is not blocked or stalled,
//! not shutting down). Both answer from memory: the servers are probed in the background
//! ([`crate::readiness`]), so a silent server never makes a probe of the kernel time out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use fdc_common::contract;

use crate::health::Health;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Metrics,
    pub health: Health,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route(contract::METRICS_PATH, get(metrics))
        .route(contract::HEALTHZ_PATH, get(healthz))
        .route(contract::READYZ_PATH, get(readyz))
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
    let mut problems: Vec<String> = Vec::new();
    if state.health.shutting_down() {
        problems.push("shutting down".into());
    }
    if !state.health.migrated() {
        problems.push("migrations not applied yet".into());
    }
    if state.health.writer_blocked() {
        problems.push(if state.health.spill_full() {
            "writer blocked: Postgres unavailable and spill full (spill.max_bytes reached)".into()
        } else {
            "writer blocked: Postgres unavailable".into()
        });
    }
    problems.extend(state.health.dependency_problems());
    for stall in state.health.stalls().stalled() {
        problems.push(stall.to_string());
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
