//! Test fixtures: a scripted mock API server (tower-test, the kube-rs controller-rs pattern),
//! test objects, and a fake kernel HTTP endpoint (admin API + per-pod `/metrics`).
//!
//! Kernel reconciles are tested as [`Scenario`]s: a test states what the cluster holds
//! ([`KernelWorld`]), [`ApiServer::run`] answers the pass in the reconcile's order and
//! records what it sent ([`Seen`]: created, replaced, applied and deleted objects, Events,
//! the status), and the test asserts on that. The call order lives here only: an extra,
//! missing or reordered call fails the scenario, and a change of order touches this file,
//! not every test.
//!
//! Other tests answer requests one by one with [`ApiServer::expect`], which asserts the exact
//! method and path+query of each request.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

use crate::controller::Context;
use crate::crd::{FdcKernel, FdcSchema, Producer};
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

/// An `fdc.dev/v1alpha1` object of `kind` named `name` in [`NS`] at generation 1, with `uid`
/// and the other `metadata` fields in `more_metadata` (an object), and `spec`.
fn fdc_object<K: serde::de::DeserializeOwned>(
    kind: &str,
    name: &str,
    uid: &str,
    more_metadata: Value,
    spec: Value,
) -> K {
    let mut metadata = json!({ "name": name, "namespace": NS, "uid": uid, "generation": 1 });
    for (key, value) in more_metadata.as_object().expect("metadata fields") {
        metadata[key] = value.clone();
    }
    let object = json!({
        "apiVersion": "fdc.dev/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    });
    serde_json::from_value(object).unwrap_or_else(|e| panic!("{kind} fixture: {e}"))
}

/// An `FdcKernel` as the API server would return it (defaults applied, uid, generation).
pub fn kernel(name: &str, replicas: i32) -> FdcKernel {
    let spec = json!({
        "replicas": replicas,
        "image": "registry.example/fdc-kernel:1.0",
        "redis": { "url": "redis://redis:6379/0" },
        "postgres": { "urlSecretRef": { "name": "pg", "key": "url" } },
        "spill": { "size": "2Gi", "storageClassName": "fast" },
    });
    fdc_object("FdcKernel", name, KERNEL_UID, json!({}), spec)
}

/// A `Producer` of kernel `kernel` (same namespace), with our finalizer already on it.
pub fn producer(name: &str, kernel: &str) -> Producer {
    let metadata = json!({ "finalizers": [crate::labels::PRODUCER_FINALIZER] });
    let spec = json!({ "kernelRef": { "name": kernel } });
    fdc_object("Producer", name, PRODUCER_UID, metadata, spec)
}

pub const SCHEMA_UID: &str = "5c4d3e2f-1a0b-4c9d-8e7f-6a5b4c3d2e1f";

/// An `FdcSchema` `orders@1.2.0` of kernel `kernel` (same namespace), with our finalizer
/// already on it.
pub fn fdc_schema(name: &str, kernel: &str) -> FdcSchema {
    let metadata = json!({
        "resourceVersion": "7",
        "finalizers": [crate::labels::SCHEMA_FINALIZER],
    });
    let spec = json!({
        "kernelRef": { "name": kernel },
        "name": "orders",
        "version": "1.2.0",
        "body": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["order_id", "amount"],
            "properties": {
                "order_id": { "type": "string" },
                "amount": { "type": "number", "minimum": 0 }
            }
        }
    });
    fdc_object("FdcSchema", name, SCHEMA_UID, metadata, spec)
}

/// The condition `type_` in the `status` of an object as applied; panics naming the object
/// when it has none.
pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// `status` and `reason` of a condition as applied (see [`condition`]).
pub fn status_reason(condition: &Value) -> (&str, &str) {
    let field = |name: &str| {
        condition[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {condition}"))
    };
    (field("status"), field("reason"))
}

/// `object` with the status of `applied` (a status apply the pass sent), as the next pass
/// reads it.
pub fn with_status<K: serde::Serialize + serde::de::DeserializeOwned>(
    object: K,
    applied: &Value,
) -> K {
    let mut json = serde_json::to_value(object).expect("object");
    json["status"] = applied["status"].clone();
    serde_json::from_value(json).expect("object with status")
}

/// `object` once its deletion was asked (a `deletionTimestamp` of now).
pub fn being_deleted<K: kube::Resource>(mut object: K) -> K {
    object.meta_mut().deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    object
}

/// `object` as it is before the operator put its finalizer on it (none at all).
pub fn without_finalizers<K: kube::Resource>(mut object: K) -> K {
    object.meta_mut().finalizers = None;
    object
}

/// `http://127.0.0.1:<port>` of a port nothing listens on: connections to it are refused.
pub fn unreachable_base() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

/// A context whose kernel HTTP calls go to [`unreachable_base`] (returned too), and its mock
/// API server.
pub fn unreachable_context() -> (Arc<Context>, ApiServer, String) {
    let base = unreachable_base();
    let (ctx, server) = test_context(&base);
    (ctx, server, base)
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
    /// Schema registry calls, their `path` as `METHOD /path`.
    schema_calls: Vec<AdminCall>,
    /// Answers to adding a version, deprecating one, deleting one and showing one.
    schema_add_response: (u16, Value),
    schema_deprecate_status: u16,
    schema_delete_response: (u16, Value),
    schema_show_response: (u16, Value),
    /// Schema binding calls, and the answer (`None`: 200 echoing the requested schema).
    bindings: Vec<AdminCall>,
    bind_response: Option<(u16, Value)>,
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
    /// Ingest figures per pod on its `/metrics`.
    ingest: BTreeMap<String, Ingesting>,
    /// Producer rows the admin API shows (`GET /v1/producers/{id}`; 404 for others).
    producers: BTreeMap<String, Value>,
    /// `GET /v1/producers/{id}` calls.
    producer_reads: Vec<AdminCall>,
}

/// Ingest figures a fake kernel pod exports (stream `orders`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ingesting {
    pub lag: u64,
    pub pending: u64,
    pub stored: u64,
    pub acked: u64,
}

/// The id the fake kernel gives a schema version it adds.
pub const SCHEMA_ID: &str = "0190d0e5-0000-7000-8000-0000000000aa";

/// A real HTTP server on 127.0.0.1 standing in for kernel pods: serves
/// `/pods/{pod}/metrics` with a `kernel_spill_pending_records` gauge and records admin API
/// calls (revocations, key pre-approvals).
pub struct FakeKernel {
    pub base: String,
    state: Arc<Mutex<FakeKernelState>>,
}

impl FakeKernel {
    pub async fn start() -> FakeKernel {
        use axum::extract::{Path, RawQuery, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, post};

        type Shared = Arc<Mutex<FakeKernelState>>;
        let state: Shared = Arc::new(Mutex::new(FakeKernelState {
            revoke_status: 200,
            key_response: (201, json!({"changed": true})),
            schema_add_response: (
                201,
                json!({"schema_id": SCHEMA_ID, "name": "orders", "version": "1.2.0",
                       "deprecated": false, "created_at": "2026-12-07T03:00:00Z"}),
            ),
            schema_deprecate_status: 200,
            schema_delete_response: (204, Value::Null),
            schema_show_response: (200, json!({"bound_producers": []})),
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
                    if let Some(i) = s.ingest.get(&pod) {
                        text.push_str(&format!(
                            "# TYPE kernel_group_lag gauge\nkernel_group_lag{{stream=\"orders\"}} {}\n\
                             kernel_group_pending{{stream=\"orders\"}} {}\n\
                             kernel_events_stored_total {}\nkernel_redis_ack_total {}\n",
                            i.lag, i.pending, i.stored, i.acked
                        ));
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
                "/v1/producers/{id}",
                get(move |State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap| async move {
                    let mut s = s.lock().unwrap();
                    s.producer_reads.push(record(format!("/v1/producers/{id}"), &headers, ""));
                    match s.producers.get(&id) {
                        Some(row) => (StatusCode::OK, axum::Json(row.clone())),
                        None => (StatusCode::NOT_FOUND, axum::Json(json!({"error": "producer not found"}))),
                    }
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
            .route(
                "/v1/schemas",
                post(move |State(s): State<Shared>, headers: HeaderMap, body: String| async move {
                    let mut s = s.lock().unwrap();
                    s.schema_calls.push(record("POST /v1/schemas".into(), &headers, &body));
                    let (status, body) = s.schema_add_response.clone();
                    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
                }),
            )
            .route(
                "/v1/schemas/{name}/{version}",
                get(move |State(s): State<Shared>, Path((name, version)): Path<(String, String)>, headers: HeaderMap| async move {
                    let mut s = s.lock().unwrap();
                    s.schema_calls.push(record(format!("GET /v1/schemas/{name}/{version}"), &headers, ""));
                    let (status, body) = s.schema_show_response.clone();
                    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
                })
                .delete(move |State(s): State<Shared>, Path((name, version)): Path<(String, String)>, RawQuery(query): RawQuery, headers: HeaderMap| async move {
                    let mut s = s.lock().unwrap();
                    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
                    s.schema_calls.push(record(format!("DELETE /v1/schemas/{name}/{version}{query}"), &headers, ""));
                    let (status, body) = s.schema_delete_response.clone();
                    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
                }),
            )
            .route(
                "/v1/schemas/{name}/{version}/deprecate",
                post(move |State(s): State<Shared>, Path((name, version)): Path<(String, String)>, headers: HeaderMap, body: String| async move {
                    let mut s = s.lock().unwrap();
                    s.schema_calls.push(record(format!("POST /v1/schemas/{name}/{version}/deprecate"), &headers, &body));
                    StatusCode::from_u16(s.schema_deprecate_status).unwrap()
                }),
            )
            .route(
                "/v1/producers/{id}/schema",
                post(move |State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap, body: String| async move {
                    let mut s = s.lock().unwrap();
                    let call = record(format!("/v1/producers/{id}/schema"), &headers, &body);
                    let (status, answer) = s.bind_response.clone().unwrap_or_else(|| {
                        (200, json!({"producer_id": id, "schema": call.body["schema"]}))
                    });
                    s.bindings.push(call);
                    (StatusCode::from_u16(status).unwrap(), axum::Json(answer))
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

    /// `pod` reports these ingest figures on its `/metrics`.
    pub fn set_ingest(&self, pod: &str, ingesting: Ingesting) {
        self.state
            .lock()
            .unwrap()
            .ingest
            .insert(pod.to_string(), ingesting);
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

    /// The admin API shows producer `id` as last seen at `last_seen_at` (RFC 3339, or null).
    pub fn set_producer_seen(&self, id: &str, last_seen_at: Value) {
        self.state.lock().unwrap().producers.insert(
            id.to_string(),
            json!({"producer_id": id, "name": "p", "created_at": "2026-12-01T00:00:00Z",
                   "last_seen_at": last_seen_at, "revoked_at": null}),
        );
    }

    pub fn producer_reads(&self) -> Vec<AdminCall> {
        self.state.lock().unwrap().producer_reads.clone()
    }

    pub fn key_approvals(&self) -> Vec<AdminCall> {
        self.state.lock().unwrap().key_approvals.clone()
    }

    /// Answer additions of a schema version with `status` and JSON `body` (default: 201,
    /// id [`SCHEMA_ID`], not deprecated).
    pub fn set_schema_add_response(&self, status: u16, body: Value) {
        self.state.lock().unwrap().schema_add_response = (status, body);
    }

    /// Answer deletions of a schema version with `status` and JSON `body` (default: 204).
    pub fn set_schema_delete_response(&self, status: u16, body: Value) {
        self.state.lock().unwrap().schema_delete_response = (status, body);
    }

    /// Answer `GET /v1/schemas/{name}/{version}` with `status` and JSON `body`.
    pub fn set_schema_show_response(&self, status: u16, body: Value) {
        self.state.lock().unwrap().schema_show_response = (status, body);
    }

    /// Schema registry calls so far (`path` is `METHOD /path`).
    pub fn schema_calls(&self) -> Vec<AdminCall> {
        self.state.lock().unwrap().schema_calls.clone()
    }

    /// Answer schema bindings with `status` and JSON `body` (default: 200 with the schema).
    pub fn set_bind_response(&self, status: u16, body: Value) {
        self.state.lock().unwrap().bind_response = Some((status, body));
    }

    pub fn bindings(&self) -> Vec<AdminCall> {
        self.state.lock().unwrap().bindings.clone()
    }
}

/// The query of every server-side apply the operator sends.
pub const APPLY: &str = "?&force=true&fieldManager=fdc-operator";

/// Path of core (v1) object `kind`/`name` in [`NS`].
pub fn core(kind: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/{kind}/{name}")
}

pub fn sts_uri(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/statefulsets/{name}")
}

pub fn pdb_uri(name: &str) -> String {
    format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{name}")
}

pub fn service_monitor_uri(name: &str) -> String {
    format!("/apis/monitoring.coreos.com/v1/namespaces/{NS}/servicemonitors/{name}")
}

/// ServiceMonitor discovery (does the cluster serve monitoring.coreos.com/v1?).
pub const MONITORING_DISCOVERY: &str = "/apis/monitoring.coreos.com/v1";

pub fn status_uri(name: &str) -> String {
    format!("/apis/fdc.dev/v1alpha1/namespaces/{NS}/fdckernels/{name}/status{APPLY}")
}

/// The list of kernel `name`'s pods (by its selector labels).
pub fn pods_uri(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/pods?&labelSelector=app.kubernetes.io%2Finstance%3D{name}%2Capp.kubernetes.io%2Fname%3Dfdc-kernel")
}

/// A StatefulSet as the API server returns it after an apply, with a status.
pub fn sts_with_status(applied: &Value, replicas: i64, ready: i64) -> Value {
    let mut sts = applied.clone();
    sts["metadata"]["generation"] = json!(1);
    sts["status"] = json!({
        "observedGeneration": 1, "replicas": replicas, "readyReplicas": ready,
        "updatedReplicas": replicas, "currentRevision": "r1", "updateRevision": "r1"
    });
    sts
}

/// Pod `name`: `ip` None = just created (no IP), `ready` its Ready condition.
pub fn pod(name: &str, ip: Option<&str>, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

/// How the API server answers the StatefulSet apply (given the applied body).
pub type StsAnswer = Box<dyn Fn(&Value) -> Value + Send>;

/// After the apply the StatefulSet reports `replicas` pods, `ready` of them ready.
pub fn sts_answer(replicas: i64, ready: i64) -> StsAnswer {
    Box::new(move |applied| sts_with_status(applied, replicas, ready))
}

/// After the apply the StatefulSet reports the applied replicas, all ready.
pub fn sts_answer_all_ready() -> StsAnswer {
    Box::new(|applied| {
        let replicas = applied["spec"]["replicas"].as_i64().expect("replicas");
        sts_with_status(applied, replicas, replicas)
    })
}

/// What the API server holds for one kernel when a reconcile pass starts, and how it
/// answers the writes of the pass.
pub struct KernelWorld {
    /// The kernel reconciled; a status apply is answered with it.
    pub kernel: crate::crd::FdcKernel,
    /// The Postgres URL Secret (`None`: not found).
    pub pg_secret: Option<Value>,
    /// The issuer key Secret (`None`: not found, so the pass creates it).
    pub issuer: Option<Value>,
    /// The admin token Secret (`None`: not found, so the pass creates it).
    pub admin: Option<Value>,
    /// The StatefulSet (`None`: not found).
    pub sts: Option<Value>,
    /// The pod a scale-in step reads (the StatefulSet's highest ordinal; `None`: not found).
    pub victim: Option<Value>,
    /// The answer to the StatefulSet apply.
    pub sts_after: StsAnswer,
    /// Whether discovery finds ServiceMonitors (when the context asks: once per context).
    pub service_monitor_crd: bool,
    /// The kernel's pods (the pass lists them for their metrics).
    pub pods: Vec<Value>,
}

impl KernelWorld {
    /// A new kernel: its Postgres Secret exists, nothing the operator creates does yet.
    pub fn fresh(kernel: &crate::crd::FdcKernel) -> Self {
        KernelWorld {
            kernel: kernel.clone(),
            pg_secret: Some(secret_with_key("pg", "url")),
            issuer: None,
            admin: None,
            sts: None,
            victim: None,
            sts_after: sts_answer_all_ready(),
            service_monitor_crd: false,
            pods: Vec::new(),
        }
    }

    /// A running kernel: its credentials (`issuer`, `admin`) and StatefulSet `sts` exist.
    pub fn running(
        kernel: &crate::crd::FdcKernel,
        issuer: &Value,
        admin: &Value,
        sts: Value,
    ) -> Self {
        KernelWorld {
            issuer: Some(issuer.clone()),
            admin: Some(admin.clone()),
            sts: Some(sts),
            ..KernelWorld::fresh(kernel)
        }
    }
}

/// One reconcile pass the mock API server answers (built once per pass, so the size of
/// the `Kernel` variant does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Scenario {
    /// A kernel reconcile against `world`: a blocked pass (missing Secret, refused config:
    /// an Event, then the status) or a full one (reads; credential writes; ConfigMap,
    /// StatefulSet, Service, PDB, ServiceMonitor applies; deletes; pods; status), whichever
    /// the reconcile takes.
    Kernel(KernelWorld),
    /// A paused kernel: only its status is written.
    Paused(crate::crd::FdcKernel),
    /// An object whose spec does not deserialize: one Event, nothing else.
    InvalidSpec,
}

/// What one pass sent to the API server.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every request, `METHOD uri`, in order.
    pub requests: Vec<String>,
    /// Bodies of created (POSTed) Secrets, in order.
    pub created: Vec<Value>,
    /// Bodies of replaced (PUT) Secrets, in order.
    pub replaced: Vec<Value>,
    /// Server-side applies by resource (`configmaps`, `statefulsets`, `services`,
    /// `poddisruptionbudgets`, `servicemonitors`).
    pub applied: BTreeMap<&'static str, Value>,
    /// Deleted resources, in order.
    pub deleted: Vec<&'static str>,
    /// Published Events, in order.
    pub events: Vec<Value>,
    /// The status apply, if any.
    pub status: Option<Value>,
}

impl Seen {
    /// The applied `resource`; panics when the pass did not apply it.
    pub fn applied(&self, resource: &str) -> &Value {
        self.applied
            .get(resource)
            .unwrap_or_else(|| panic!("no {resource} applied: {:?}", self.requests))
    }

    /// The status apply; panics when the pass wrote none.
    pub fn status(&self) -> &Value {
        self.status
            .as_ref()
            .unwrap_or_else(|| panic!("no status written: {:?}", self.requests))
    }

    pub fn event_reasons(&self) -> Vec<&str> {
        self.events
            .iter()
            .map(|e| e["reason"].as_str().expect("reason"))
            .collect()
    }

    pub fn event_notes(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["note"].as_str().expect("note").to_string())
            .collect()
    }

    /// Whether the pass asked `METHOD uri`.
    pub fn asked(&self, method: &str, uri: &str) -> bool {
        self.requests.contains(&format!("{method} {uri}"))
    }
}

/// Runs `reconcile` while the mock API server answers `scenario`; returns the reconcile's
/// result, the server (for a next pass on the same context) and what the pass sent. A
/// scenario that fails re-raises its panic here.
pub async fn pass<T>(
    server: ApiServer,
    scenario: Scenario,
    reconcile: impl std::future::Future<Output = T>,
) -> (T, ApiServer, Seen) {
    let answering = server.run(scenario);
    let out = reconcile.await;
    match answering.await {
        Ok((server, seen)) => (out, server, seen),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// One pass in progress: the server and what it has seen so far.
struct Answering {
    server: ApiServer,
    seen: Seen,
}

impl Answering {
    async fn next(&mut self) -> Call {
        let call = self.server.next().await;
        self.seen
            .requests
            .push(format!("{} {}", call.method, call.uri));
        call
    }

    /// The next request, which must be `method uri`.
    async fn expect(&mut self, method: &str, uri: &str) -> Call {
        let call = self.next().await;
        assert_call(&call, method, uri);
        call
    }

    /// The next request that is not an Event; Events before it are recorded and answered.
    async fn after_events(&mut self) -> Call {
        loop {
            let call = self.next().await;
            if call.method == "POST"
                && call.uri == format!("/apis/events.k8s.io/v1/namespaces/{NS}/events?")
            {
                self.seen.events.push(call.body.clone());
                call.echo();
                continue;
            }
            return call;
        }
    }

    /// `call` must be the server-side apply of `resource` at `uri`: recorded, echoed.
    fn applied(&mut self, call: Call, resource: &'static str, uri: &str) {
        assert_call(&call, "PATCH", &format!("{uri}{APPLY}"));
        self.seen.applied.insert(resource, call.body.clone());
        call.echo();
    }

    /// `call` must be `method uri`, writing a credential Secret: recorded as created (POST)
    /// or replaced (PUT), echoed. Returns the next request after the Events announcing it.
    async fn secret_written(&mut self, call: Call, method: &str, uri: &str) -> Call {
        assert_call(&call, method, uri);
        let written = if method == "PUT" {
            &mut self.seen.replaced
        } else {
            &mut self.seen.created
        };
        written.push(call.body.clone());
        call.echo();
        self.after_events().await
    }

    /// `call` must be the status apply of `kernel`.
    fn status(&mut self, call: Call, kernel: &crate::crd::FdcKernel) {
        assert_call(&call, "PATCH", &status_uri(&kernel.name_any()));
        self.seen.status = Some(call.body.clone());
        call.status_ok(kernel);
    }

    async fn kernel(&mut self, w: KernelWorld) {
        let name = w.kernel.name_any();
        let pg = w.kernel.spec.postgres.url_secret_ref.name.clone();
        answer(
            self.expect("GET", &core("secrets", &pg)).await,
            &w.pg_secret,
        );

        // A blocked pass (a Secret missing, a config the kernel refuses): an Event, the status.
        let call = self.after_events().await;
        if !self.seen.events.is_empty() {
            self.status(call, &w.kernel);
            return;
        }

        // Reads: credentials, the workload (a scale-in step also reads the pod it removes),
        // ServiceMonitor discovery (once per context).
        let issuer = core("secrets", &crate::labels::names::issuer_secret(&name));
        assert_call(&call, "GET", &issuer);
        answer(call, &w.issuer);
        let admin = core("secrets", &crate::labels::names::admin_secret(&name));
        answer(self.expect("GET", &admin).await, &w.admin);
        answer(self.expect("GET", &sts_uri(&name)).await, &w.sts);
        let current = w
            .sts
            .as_ref()
            .and_then(|s| s["spec"]["replicas"].as_i64())
            .unwrap_or(i64::from(w.kernel.spec.replicas));
        if i64::from(w.kernel.spec.replicas) < current {
            let victim = format!("{name}-{}", current - 1);
            answer(self.expect("GET", &core("pods", &victim)).await, &w.victim);
        }
        let mut call = self.next().await;
        if call.uri == MONITORING_DISCOVERY {
            assert_call(&call, "GET", MONITORING_DISCOVERY);
            if w.service_monitor_crd {
                call.ok(&json!({
                    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "monitoring.coreos.com/v1",
                    "resources": [{"name": "servicemonitors", "singularName": "servicemonitor", "namespaced": true,
                                   "kind": "ServiceMonitor", "verbs": ["get", "patch"]}]
                }));
            } else {
                call.not_found();
            }
            call = self.next().await;
        }

        // Writes: credentials created when absent (issuer key, then admin token) or
        // replaced on rotation or retirement, each followed by its Events.
        if w.issuer.is_none() {
            call = self.secret_written(call, "POST", &secrets_post()).await;
        } else if call.method == "PUT" {
            call = self
                .secret_written(call, "PUT", &format!("{issuer}?"))
                .await;
        }
        if w.admin.is_none() {
            call = self.secret_written(call, "POST", &secrets_post()).await;
        }

        // Config, then the workload (after the Event of a scale-in step).
        self.applied(
            call,
            "configmaps",
            &core("configmaps", &crate::labels::names::config_map(&name)),
        );
        let call = self.after_events().await;
        assert_call(&call, "PATCH", &format!("{}{APPLY}", sts_uri(&name)));
        self.seen.applied.insert("statefulsets", call.body.clone());
        let answer_sts = (w.sts_after)(&call.body);
        call.ok(&answer_sts);
        let call = self.next().await;
        self.applied(call, "services", &core("services", &name));

        // Optional applies (PDB, ServiceMonitor), then deletes of what is not wanted.
        let mut call = self.next().await;
        if call.method == "PATCH" && call.uri.starts_with(&pdb_uri(&name)) {
            self.applied(call, "poddisruptionbudgets", &pdb_uri(&name));
            call = self.next().await;
        }
        if call.method == "PATCH" && call.uri.starts_with(&service_monitor_uri(&name)) {
            self.applied(call, "servicemonitors", &service_monitor_uri(&name));
            call = self.next().await;
        }
        while call.method == "DELETE" {
            let resource = if call.uri == format!("{}?", pdb_uri(&name)) {
                "poddisruptionbudgets"
            } else {
                assert_call(&call, "DELETE", &format!("{}?", service_monitor_uri(&name)));
                "servicemonitors"
            };
            self.seen.deleted.push(resource);
            call.not_found();
            call = self.next().await;
        }

        // The pods (their metrics and, when some are not ready, why); then the status.
        assert_call(&call, "GET", &pods_uri(&name));
        call.ok(&json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": w.pods
        }));
        let call = self.next().await;
        self.status(call, &w.kernel);
    }
}

impl ApiServer {
    /// Answers one reconcile pass as `scenario` says, in a task; the task returns the
    /// server (for the next pass) and what the pass sent. See [`pass`].
    pub fn run(self, scenario: Scenario) -> JoinHandle<(ApiServer, Seen)> {
        tokio::spawn(async move {
            let mut answering = Answering {
                server: self,
                seen: Seen::default(),
            };
            match scenario {
                Scenario::Kernel(world) => answering.kernel(world).await,
                Scenario::Paused(kernel) => {
                    let call = answering.next().await;
                    answering.status(call, &kernel);
                }
                Scenario::InvalidSpec => {
                    let call = answering
                        .expect(
                            "POST",
                            &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events?"),
                        )
                        .await;
                    answering.seen.events.push(call.body.clone());
                    call.echo();
                }
            }
            (answering.server, answering.seen)
        })
    }
}

fn assert_call(call: &Call, method: &str, uri: &str) {
    assert_eq!(
        (call.method.as_str(), call.uri.as_str()),
        (method, uri),
        "unexpected request; body: {}",
        call.body
    );
}

/// Answers a read with `object`, or 404.
fn answer(call: Call, object: &Option<Value>) {
    match object {
        Some(o) => call.ok(o),
        None => call.not_found(),
    }
}

fn secrets_post() -> String {
    format!("/api/v1/namespaces/{NS}/secrets?&fieldManager=fdc-operator")
}

/// A reconcile of `object` (readable) through the controllers' entry point, in a task.
pub fn run<K: crate::controller::Reconciled>(
    object: K,
    ctx: &Arc<Context>,
) -> JoinHandle<Result<Action, crate::controller::Error>> {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        crate::controller::reconcile(Arc::new(DeserializeGuard(Ok(object))), ctx).await
    })
}

/// What the reconcile `task` decided, once it finished without an error.
pub async fn outcome(task: JoinHandle<Result<Action, crate::controller::Error>>) -> Action {
    task.await
        .expect("reconcile task")
        .expect("reconcile without an error")
}

/// Asserts the reconcile `task` finished without an error, asking to run again after `after`.
pub async fn assert_requeued(
    task: JoinHandle<Result<Action, crate::controller::Error>>,
    after: std::time::Duration,
) {
    assert_eq!(outcome(task).await, Action::requeue(after));
}

/// A Producer test: a fake kernel, and a context whose client talks to `server` and whose
/// kernel HTTP calls go to `fake`.
pub struct ProducerTest {
    pub fake: FakeKernel,
    pub ctx: Arc<Context>,
    pub server: ApiServer,
}

impl ProducerTest {
    pub async fn start() -> Self {
        let fake = FakeKernel::start().await;
        let (ctx, server) = test_context(&fake.base);
        ProducerTest { fake, ctx, server }
    }

    /// Ends the test: the context (and its client) goes, and the server must have seen no
    /// request that was not answered.
    pub async fn done(self) {
        drop(self.ctx);
        self.server.expect_done().await;
    }
}

// Producer reconciles: Producer `p` of FdcKernel `k`, answered call by call. The helpers
// below script the requests every pass makes the same way; what a test checks in between
// (the key approval at the kernel, Events) stays in the test, between the helper calls.

/// Path of FdcKernel `k` in [`NS`].
pub fn kernel_uri() -> String {
    format!("/apis/fdc.dev/v1alpha1/namespaces/{NS}/fdckernels/k")
}

/// Path of Secret `name` in [`NS`].
pub fn secret_uri(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/secrets/{name}")
}

/// Path of Producer `p` in [`NS`].
pub fn producer_uri() -> String {
    format!("/apis/fdc.dev/v1alpha1/namespaces/{NS}/producers/p")
}

/// The admin token Secret of FdcKernel `k` (token `admin-secret-token`).
pub fn admin_secret() -> Value {
    serde_json::to_value(
        crate::builders::issuer_keys::admin_secret(&kernel("k", 1), "admin-secret-token")
            .expect("admin secret"),
    )
    .expect("json")
}

impl ApiServer {
    /// A GET of `uri`, answered with `answer` or 404 when it is `None`.
    pub async fn get(&mut self, uri: &str, answer: Option<&Value>) {
        let call = self.expect("GET", uri).await;
        match answer {
            Some(object) => call.ok(object),
            None => call.not_found(),
        }
    }

    /// The reads that open a Producer apply pass: FdcKernel `k` (answered with `kernel`, in
    /// its own namespace), its issuer key Secret (there too), then the Producer's
    /// `p-credentials` Secret (`stored`, or 404).
    pub async fn producer_reads(
        &mut self,
        kernel: &FdcKernel,
        issuer_secret: &Value,
        stored: Option<&Value>,
    ) {
        let ns = kernel.namespace().expect("kernel namespace");
        let kernel_json = serde_json::to_value(kernel).expect("kernel");
        self.get(
            &format!("/apis/fdc.dev/v1alpha1/namespaces/{ns}/fdckernels/k"),
            Some(&kernel_json),
        )
        .await;
        self.get(
            &format!("/api/v1/namespaces/{ns}/secrets/k-issuer-keys"),
            Some(issuer_secret),
        )
        .await;
        self.get(&secret_uri("p-credentials"), stored).await;
    }

    /// [`producer_reads`](Self::producer_reads) of kernel `k` as [`kernel`] builds it, then
    /// its admin token Secret (read first thing in the apply step).
    pub async fn producer_reads_to_admin_token(
        &mut self,
        issuer_secret: &Value,
        stored: Option<&Value>,
    ) {
        self.producer_reads(&kernel("k", 1), issuer_secret, stored)
            .await;
        self.get(&secret_uri("k-admin-token"), Some(&admin_secret()))
            .await;
    }

    /// The reads that open a deletion pass: FdcKernel `k`, then its admin token Secret.
    pub async fn deletion_reads(&mut self) {
        self.get(
            &kernel_uri(),
            Some(&serde_json::to_value(kernel("k", 1)).expect("kernel")),
        )
        .await;
        self.get(&secret_uri("k-admin-token"), Some(&admin_secret()))
            .await;
    }

    /// The read of FdcKernel `k`'s admin token Secret that precedes the last-seen call of a
    /// pass that issued credentials.
    pub async fn admin_token_read(&mut self, kernel_ns: &str) {
        self.get(
            &format!("/api/v1/namespaces/{kernel_ns}/secrets/k-admin-token"),
            Some(&admin_secret()),
        )
        .await;
    }

    /// The apply of Secret `p-credentials`, echoed; returns what was applied.
    pub async fn credentials_apply(&mut self) -> Value {
        let call = self
            .expect("PATCH", &format!("{}{APPLY}", secret_uri("p-credentials")))
            .await;
        let secret = call.body.clone();
        call.echo();
        secret
    }

    /// The status apply of Producer `p`, answered; returns what was applied.
    pub async fn producer_status_apply(&mut self) -> Value {
        let call = self
            .expect("PATCH", &format!("{}/status{APPLY}", producer_uri()))
            .await;
        let status = call.body.clone();
        call.status_ok(&producer("p", "k"));
        status
    }

    /// A JSON patch of Producer `p` (its finalizer), answered with the Producer; returns the
    /// patch.
    pub async fn producer_patch(&mut self) -> Value {
        let call = self.expect("PATCH", &format!("{}?", producer_uri())).await;
        let patch = call.body.clone();
        call.ok(&serde_json::to_value(producer("p", "k")).expect("producer"));
        patch
    }
}
