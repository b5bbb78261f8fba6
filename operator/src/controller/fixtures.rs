//! Test fixtures: a scripted mock API server (tower-test, the kube-rs controller-rs pattern),
//! test objects, and a fake kernel HTTP endpoint (admin API + per-pod `/metrics`).
//!
//! Tests drive a reconcile in a task and answer its requests one by one with
//! [`ApiServer::expect`], which asserts the exact method and path+query of each request, so
//! an extra, missing or reordered call fails the test.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tower_test::mock::{self, Handle, SendResponse};

use crate::controller::Context;
use crate::crd::{FdcKernel, Producer};
use crate::kernel_api::{Endpoints, KernelApi};
use crate::metrics::Metrics;

pub const NS: &str = "apps";
pub const KERNEL_UID: &str = "6a1c5bd5-3a42-4b8e-9d1e-3f0f7c1e2a10";
pub const PRODUCER_UID: &str = "0b9f8e7d-6c5b-4a39-8271-605f4e3d2c1b";

/// The mock API server end of a test client.
pub struct ApiServer(Pin<Box<Handle<Request<Body>, Response<Body>>>>);

/// One received request, waiting for its response.
pub struct Call {
    pub method: String,
    pub uri: String,
    /// JSON body (Null when empty).
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

impl ApiServer {
    /// Next request, whatever it is.
    pub async fn next(&mut self) -> Call {
        let (request, send) =
            tokio::time::timeout(std::time::Duration::from_secs(10), self.0.next_request())
                .await
                .expect("timed out waiting for a request")
                .expect("client gone while a request was expected");
        let method = request.method().to_string();
        let uri = request.uri().to_string();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        Call {
            method,
            uri,
            body,
            send,
        }
    }

    /// Next request, which must be `method uri` exactly.
    pub async fn expect(&mut self, method: &str, uri: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (call.method.as_str(), call.uri.as_str()),
            (method, uri),
            "unexpected request; body: {}",
            call.body
        );
        call
    }

    /// Answers an Event publication (POST to events.k8s.io) and returns its body.
    pub async fn expect_event(&mut self, namespace: &str, reason: &str) -> Value {
        let call = self
            .expect(
                "POST",
                &format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events?"),
            )
            .await;
        assert_eq!(call.body["reason"], reason, "event: {}", call.body);
        let body = call.body.clone();
        call.echo();
        body
    }

    /// Asserts the client makes no request for `quiet` (while its side keeps running).
    pub async fn expect_quiet(&mut self, quiet: std::time::Duration) {
        if let Ok(Some((request, _))) = tokio::time::timeout(quiet, self.0.next_request()).await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }

    /// Asserts the client made no further request (call after the reconcile finished and
    /// every client clone is dropped).
    pub async fn expect_done(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!(
                "unexpected extra request {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

impl Call {
    pub fn respond(self, status: u16, body: &Value) {
        let response = Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response");
        self.send.send_response(response);
    }

    /// 200 with `body`.
    pub fn ok(self, body: &Value) {
        self.respond(200, body);
    }

    /// 200 with the request body (what the API server returns for an apply or create,
    /// give or take server-set fields).
    pub fn echo(self) {
        let body = self.body.clone();
        self.respond(200, &body);
    }

    /// 200 with `object` carrying the status of this status-subresource apply.
    pub fn status_ok(self, object: &impl serde::Serialize) {
        let mut response = serde_json::to_value(object).expect("object");
        response["status"] = self.body["status"].clone();
        self.respond(200, &response);
    }

    /// 404 Status.
    pub fn not_found(self) {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "not found", "reason": "NotFound", "code": 404
        });
        self.respond(404, &body);
    }
}

/// A client talking to the returned mock API server.
pub fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(Box::pin(handle)))
}

/// A context whose client talks to the returned mock API server, and whose kernel HTTP
/// calls go to `kernel_base` (see [`FakeKernel`]).
pub fn test_context(kernel_base: &str) -> (Arc<Context>, ApiServer) {
    let (client, server) = mock_client();
    let ctx = Context::new(
        client,
        Arc::new(Metrics::new().expect("metrics")),
        KernelApi::new(Endpoints::Fixed(kernel_base.to_string())),
        Some("test".into()),
    );
    (Arc::new(ctx), server)
}

/// An `FdcKernel` as the API server would return it (defaults applied, uid, generation).
pub fn kernel(name: &str, replicas: i32) -> FdcKernel {
    serde_json::from_value(json!({
        "apiVersion": "fdc.dev/v1alpha1",
        "kind": "FdcKernel",
        "metadata": { "name": name, "namespace": NS, "uid": KERNEL_UID, "generation": 1 },
        "spec": {
            "replicas": replicas,
            "image": "registry.example/fdc-kernel:1.0",
            "redis": { "url": "redis://redis:6379/0" },
            "postgres": { "urlSecretRef": { "name": "pg", "key": "url" } },
            "spill": { "size": "2Gi", "storageClassName": "fast" },
        }
    }))
    .expect("kernel fixture")
}

/// A `Producer` of kernel `kernel` (same namespace), with our finalizer already on it.
pub fn producer(name: &str, kernel: &str) -> Producer {
    serde_json::from_value(json!({
        "apiVersion": "fdc.dev/v1alpha1",
        "kind": "Producer",
        "metadata": {
            "name": name, "namespace": NS, "uid": PRODUCER_UID, "generation": 1,
            "finalizers": [crate::labels::PRODUCER_FINALIZER],
        },
        "spec": { "kernelRef": { "name": kernel }, "schema": "orders-v1" }
    }))
    .expect("producer fixture")
}

/// A Secret holding `key`.
pub fn secret_with_key(name: &str, key: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": name, "namespace": NS },
        "data": { key: "cG9zdGdyZXM6Ly91OnBAcGc6NTQzMi9mZGM=" }
    })
}

/// An admin API call the fake kernel saw.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminCall {
    pub path: String,
    pub authorization: String,
    pub body: Value,
}

#[derive(Default)]
struct FakeKernelState {
    spill: BTreeMap<String, u64>,
    /// `/readyz` answer per pod.
    readyz: BTreeMap<String, (u16, String)>,
    /// Stalled stages per pod (`kernel_stalled{stage} 1` on its `/metrics`).
    stalled: BTreeMap<String, Vec<String>>,
    revokes: Vec<AdminCall>,
    revoke_status: u16,
    key_approvals: Vec<AdminCall>,
    /// Status and JSON body of the answer to a key pre-approval.
    key_response: (u16, Value),
}

/// A real HTTP server on 127.0.0.1 standing in for kernel pods: serves
/// `/pods/{pod}/metrics` with a `kernel_spill_pending_records` gauge and records admin API
/// calls (revocations, key pre-approvals).
pub struct FakeKernel {
    pub base: String,
    state: Arc<Mutex<FakeKernelState>>,
}

impl FakeKernel {
    pub async fn start() -> FakeKernel {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, post};

        type Shared = Arc<Mutex<FakeKernelState>>;
        let state: Shared = Arc::new(Mutex::new(FakeKernelState {
            revoke_status: 200,
            key_response: (201, json!({"changed": true})),
            ..Default::default()
        }));
        let record = |path: String, headers: &HeaderMap, body: &str| AdminCall {
            path,
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body: serde_json::from_str(body).unwrap_or(Value::Null),
        };
        let app = axum::Router::new()
            .route(
                "/pods/{pod}/metrics",
                get(|State(s): State<Shared>, Path(pod): Path<String>| async move {
                    let s = s.lock().unwrap();
                    let mut text = String::new();
                    if let Some(b) = s.spill.get(&pod) {
                        text.push_str(&format!("# TYPE kernel_spill_pending_records gauge\nkernel_spill_pending_records {b}\n"));
                    }
                    if let Some(stages) = s.stalled.get(&pod) {
                        text.push_str("# TYPE kernel_stalled gauge\n");
                        for stage in ["reader", "writer"] {
                            let v = u8::from(stages.iter().any(|x| x == stage));
                            text.push_str(&format!("kernel_stalled{{stage=\"{stage}\"}} {v}\n"));
                        }
                    }
                    if text.is_empty() {
                        (StatusCode::NOT_FOUND, text)
                    } else {
                        (StatusCode::OK, text)
                    }
                }),
            )
            .route(
                "/pods/{pod}/readyz",
                get(|State(s): State<Shared>, Path(pod): Path<String>| async move {
                    let (status, body) = s
                        .lock()
                        .unwrap()
                        .readyz
                        .get(&pod)
                        .cloned()
                        .unwrap_or((200, "ready\n".to_string()));
                    (StatusCode::from_u16(status).unwrap(), body)
                }),
            )
            .route(
                "/v1/producers/{id}/revoke",
                post(move |State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap, body: String| async move {
                    let mut s = s.lock().unwrap();
                    s.revokes.push(record(format!("/v1/producers/{id}/revoke"), &headers, &body));
                    StatusCode::from_u16(s.revoke_status).unwrap()
                }),
            )
            .route(
                "/v1/producers/{id}/keys",
                post(move |State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap, body: String| async move {
                    let mut s = s.lock().unwrap();
                    s.key_approvals.push(record(format!("/v1/producers/{id}/keys"), &headers, &body));
                    let (status, body) = s.key_response.clone();
                    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
                }),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        FakeKernel { base, state }
    }

    pub fn set_spill(&self, pod: &str, bytes: u64) {
        self.state
            .lock()
            .unwrap()
            .spill
            .insert(pod.to_string(), bytes);
    }

    /// `pod`'s `/readyz` answers `status` with `body` (default: 200 `ready`).
    pub fn set_readyz(&self, pod: &str, status: u16, body: &str) {
        self.state
            .lock()
            .unwrap()
            .readyz
            .insert(pod.to_string(), (status, body.to_string()));
    }

    /// `pod` reports `stages` stalled on its `/metrics`.
    pub fn set_stalled(&self, pod: &str, stages: &[&str]) {
        self.state.lock().unwrap().stalled.insert(
            pod.to_string(),
            stages.iter().map(|s| s.to_string()).collect(),
        );
    }

    pub fn set_revoke_status(&self, status: u16) {
        self.state.lock().unwrap().revoke_status = status;
    }

    pub fn revokes(&self) -> Vec<AdminCall> {
        self.state.lock().unwrap().revokes.clone()
    }

    /// Answer key pre-approvals with `status` and JSON `body` (default: 201).
    pub fn set_key_response(&self, status: u16, body: Value) {
        self.state.lock().unwrap().key_response = (status, body);
    }

    pub fn key_approvals(&self) -> Vec<AdminCall> {
        self.state.lock().unwrap().key_approvals.clone()
    }
}
