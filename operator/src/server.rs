//! The operator's own HTTP endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{extract::State, http::StatusCode, routing::get, Router};
use tokio::sync::watch;

use crate::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    /// Ready once the controllers run (or the replica waits as a healthy standby).
    ready: watch::Receiver<bool>,
}

/// The router (separate from `serve` for tests).
pub fn router(metrics: Arc<Metrics>, ready: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, ready })
}

/// Serves until the process exits.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(metrics, ready)).await
}

async fn metrics_handler(State(state): State<AppState>) -> String {
    state.metrics.render()
}

async fn ready_handler(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if *state.ready.borrow() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    async fn get(base: &str, path: &str) -> (u16, String) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let response = client
            .get(format!("{base}{path}").parse().unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let metrics = Arc::new(Metrics::new().unwrap());
        drop(metrics.start("fdckernel"));
        metrics.failed("fdckernel", "kube");
        let (ready_tx, ready_rx) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router(metrics, ready_rx);
        tokio::spawn(async move { axum::serve(listener, app).await });

        assert_eq!(get(&base, "/healthz").await, (200, "ok".into()));
        assert_eq!(get(&base, "/readyz").await.0, 503);
        ready_tx.send(true).unwrap();
        assert_eq!(get(&base, "/readyz").await.0, 200);
        let (status, text) = get(&base, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            text.contains("fdc_operator_reconciliations_total{controller=\"fdckernel\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "fdc_operator_reconcile_errors_total{controller=\"fdckernel\",error=\"kube\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "fdc_operator_reconcile_duration_seconds_count{controller=\"fdckernel\"} 1"
            ),
            "{text}"
        );
    }
}
