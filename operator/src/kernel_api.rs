//! HTTP calls from the operator to kernel pods: the admin API (key pre-approval, revocation,
//! the schema registry and producers' schema bindings) and `/metrics` (spill backlog before
//! scale-in).
//!
//! Plain HTTP inside the cluster, through hyper (already a kube dependency). The admin token
//! is sent as a bearer header and never logged; errors carry status codes, not bodies (the
//! bodies read are refusals' `error` messages, which name ids, fingerprints, schema names and
//! the schema compiler's message only).

use std::time::Duration;

use bytes::Bytes;
use fdc_common::contract;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use uuid::Uuid;

use crate::builders::config::{ADMIN_PORT, HTTP_PORT};
use crate::crd::FdcKernel;

/// The kernel metrics the operator reads, named once for both sides in `fdc_common::contract`:
/// - `SPILL_PENDING_METRIC`: spilled records not yet replayed to Postgres (0 = drained; segment
///   bytes are not used because a live segment keeps its header);
/// - `SPILL_QUARANTINE_METRIC`: spill records the kernel could not decode and set aside in
///   quarantine files on the spill volume: acknowledged data too, so a replica holding any is
///   not drained;
/// - `STALLED_METRIC`: 1 per stage (`stage="reader"|"writer"`) that keeps failing on the same
///   work while entries wait; its `/readyz` then answers 503 naming the cause.
pub use fdc_common::contract::{SPILL_PENDING_METRIC, SPILL_QUARANTINE_METRIC, STALLED_METRIC};

/// Where kernel endpoints are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoints {
    /// In a cluster (default): the kernel Service's DNS name (`<kernel>.<ns>.svc`) for admin
    /// calls, pod IPs for `/metrics` and `/readyz`.
    Cluster,
    /// Pod IPs only, admin calls included (to a Ready kernel pod): for an operator outside
    /// the cluster on a network that routes pod IPs but does not resolve cluster DNS.
    PodIp,
    /// Everything at one base URL (tests): admin at `{base}`, a pod's endpoints at
    /// `{base}/pods/{pod}/{path}`.
    Fixed(String),
}

impl std::str::FromStr for Endpoints {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "service" => Ok(Endpoints::Cluster),
            "pod-ip" => Ok(Endpoints::PodIp),
            other => Err(format!(
                "unknown kernel access mode {other:?}; use `service` (in the cluster) or `pod-ip` (outside it, with pod IPs routed)"
            )),
        }
    }
}

/// A kernel HTTP call failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelApiError {
    #[error("request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("request to {url} timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("pod {0} has no IP yet")]
    NoPodIp(String),
    #[error("FdcKernel {0} has no Ready pod with an IP to send admin calls to")]
    NoReadyPod(String),
    #[error("{url} does not export {metric}")]
    MissingMetric { url: String, metric: &'static str },
    #[error("{url} answered a body the operator cannot read: {reason}")]
    BadBody { url: String, reason: String },
}

/// Client for kernel endpoints.
#[derive(Clone)]
pub struct KernelApi {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoints: Endpoints,
    timeout: Duration,
    /// Timeout of the status probes (`/readyz`, `/metrics` of a pod that is not ready).
    probe_timeout: Duration,
}

/// Result of a revocation call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The kernel recorded the revocation.
    Done,
    /// The kernel answered 404 (kernels before revocation of unseen producers): nothing
    /// was recorded.
    UnknownProducer,
}

/// Where an admin call goes, and with which token (no `Debug`: it holds the token).
#[derive(Clone, Copy)]
pub struct AdminTarget<'a> {
    pub kernel: &'a FdcKernel,
    /// The IP of a Ready pod of the kernel, used (and required) in [`Endpoints::PodIp`] mode.
    pub pod_ip: Option<&'a str>,
    /// The admin token, sent as a bearer header and never logged.
    pub token: &'a str,
}

/// A kernel's answer: the URL asked, the status and the body.
struct Answer {
    url: String,
    status: u16,
    body: Bytes,
}

impl Answer {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The `error` of the kernel's JSON error body, bounded and on one line.
    fn refusal(&self) -> String {
        refusal_message(&self.body)
    }

    /// An answer the call does not expect, as its error.
    fn unexpected<T>(self) -> Result<T, KernelApiError> {
        Err(KernelApiError::Status {
            url: self.url,
            status: self.status,
        })
    }

    /// `true` when done (2xx), `false` when the kernel does not know what was named (404);
    /// any other answer is an error.
    fn done_or_not_found(self) -> Result<bool, KernelApiError> {
        match self.status {
            404 => Ok(false),
            _ if self.is_success() => Ok(true),
            _ => self.unexpected(),
        }
    }
}

/// A public key to approve at the kernel for a producer id (the request's JSON body, but for
/// the id, which is in its path).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyApprovalRequest<'a> {
    #[serde(skip)]
    pub producer_id: Uuid,
    /// SPKI PEM (public, not a secret).
    #[serde(rename = "public_key")]
    pub public_key_pem: &'a str,
    /// Name and schema of the producer row, when the kernel creates it.
    pub name: &'a str,
    pub schema: Option<&'a str>,
    pub reason: &'a str,
}

/// Result of a key pre-approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyApproval {
    /// Approved by this call (HTTP 201).
    Approved,
    /// Already approved for this producer (HTTP 200); nothing changed at the kernel.
    AlreadyApproved,
    /// The kernel refused (HTTP 409): the key is bound to another producer, revoked or
    /// rejected, or the producer is revoked. The kernel's message says which.
    Refused(String),
}

/// Longest refusal message kept from a kernel answer (it ends up in a status condition).
const MAX_REFUSAL_LEN: usize = 512;

/// A schema version to add to the kernel's registry (the request's JSON body).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchemaRequest<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// The JSON Schema itself.
    pub body: &'a serde_json::Value,
    pub reason: &'a str,
}

/// A schema version as the kernel's registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaInfo {
    pub schema_id: String,
    pub deprecated: bool,
}

/// Result of adding a schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaAdded {
    /// Added by this call (HTTP 201).
    Created(SchemaInfo),
    /// The same name, version and body exist (HTTP 200); nothing changed.
    Unchanged(SchemaInfo),
    /// That version exists with another body (HTTP 409): versions are immutable.
    Conflict(String),
    /// The body is not a valid JSON Schema (HTTP 400, the compiler's message).
    Invalid(String),
    /// The body is larger than the kernel accepts (HTTP 413).
    TooLarge(String),
}

/// Result of deleting a schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaDeleted {
    /// Deleted by this call (HTTP 204).
    Deleted,
    /// The kernel does not hold it (HTTP 404).
    NotFound,
    /// A producer or a stream is bound to it (HTTP 409, the kernel's message).
    InUse(String),
}

/// Result of binding a producer to a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaBinding {
    /// The kernel recorded the binding (HTTP 200); `None` when unbound.
    Bound(Option<String>),
    /// The kernel does not know the producer yet (HTTP 404, its message).
    UnknownProducer(String),
    /// The kernel refused (HTTP 400 or 409: no such schema, no version in the range, a bad
    /// range), with its message.
    Refused(String),
}

impl KernelApi {
    pub fn new(endpoints: Endpoints) -> Self {
        KernelApi {
            http: Client::builder(TokioExecutor::new()).build_http(),
            endpoints,
            timeout: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(3),
        }
    }

    /// Whether admin calls go to a pod IP (the caller then passes a Ready pod's IP).
    pub fn admin_needs_pod_ip(&self) -> bool {
        self.endpoints == Endpoints::PodIp
    }

    /// Base URL of `kernel`'s admin API; `pod_ip` is a Ready kernel pod's IP, used (and
    /// required) in [`Endpoints::PodIp`] mode.
    pub fn admin_base(
        &self,
        kernel: &FdcKernel,
        pod_ip: Option<&str>,
    ) -> Result<String, KernelApiError> {
        match &self.endpoints {
            Endpoints::Cluster => Ok(format!(
                "http://{}.{}.svc:{ADMIN_PORT}",
                kernel.name_any(),
                kernel.namespace().unwrap_or_default()
            )),
            Endpoints::PodIp => {
                let ip = pod_ip.ok_or_else(|| {
                    KernelApiError::NoReadyPod(format!(
                        "{}/{}",
                        kernel.namespace().unwrap_or_default(),
                        kernel.name_any()
                    ))
                })?;
                Ok(format!("http://{}:{ADMIN_PORT}", url_host(ip)))
            }
            Endpoints::Fixed(base) => Ok(base.clone()),
        }
    }

    /// URL of `path` (`/metrics`, `/readyz`) on `pod`'s HTTP port.
    pub fn pod_url(&self, pod: &Pod, path: &str) -> Result<String, KernelApiError> {
        match &self.endpoints {
            Endpoints::Cluster | Endpoints::PodIp => {
                let ip = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .ok_or_else(|| KernelApiError::NoPodIp(pod.name_any()))?;
                Ok(format!("http://{}:{HTTP_PORT}{path}", url_host(ip)))
            }
            Endpoints::Fixed(base) => Ok(format!("{base}/pods/{}{path}", pod.name_any())),
        }
    }

    /// The status and first line of `pod`'s `/readyz` answer (e.g. `503`, `not ready:
    /// Postgres unreachable`).
    pub async fn readyz(&self, pod: &Pod) -> Result<(u16, String), KernelApiError> {
        let answer = self
            .pod_get(pod, contract::READYZ_PATH, self.probe_timeout)
            .await?;
        let text = String::from_utf8_lossy(&answer.body);
        let first_line = text.lines().next().unwrap_or("").trim().to_string();
        Ok((answer.status, first_line))
    }

    /// `pod`'s `/metrics` text (Prometheus text format).
    pub async fn metrics(&self, pod: &Pod) -> Result<String, KernelApiError> {
        let (_, text) = self.metrics_within(pod, self.probe_timeout).await?;
        Ok(text)
    }

    /// `pod`'s `/metrics` text and its URL, within `timeout`; an error unless it answers 2xx.
    async fn metrics_within(
        &self,
        pod: &Pod,
        timeout: Duration,
    ) -> Result<(String, String), KernelApiError> {
        let answer = self.pod_get(pod, contract::METRICS_PATH, timeout).await?;
        if !answer.is_success() {
            return answer.unexpected();
        }
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        Ok((answer.url, text))
    }

    /// A GET of `path` on `pod`'s HTTP port, within `timeout`.
    async fn pod_get(
        &self,
        pod: &Pod,
        path: &str,
        timeout: Duration,
    ) -> Result<Answer, KernelApiError> {
        let url = self.pod_url(pod, path)?;
        let request = http::Request::get(&url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| transport(&url, e))?;
        self.send_within(url, request, timeout).await
    }

    /// Revokes `producer_id` at the kernel's admin API.
    pub async fn revoke_producer(
        &self,
        to: &AdminTarget<'_>,
        producer_id: Uuid,
        reason: &str,
    ) -> Result<Revoked, KernelApiError> {
        let body = serde_json::json!({ "reason": reason });
        let answer = self
            .admin_post(to, &revoke_path(producer_id), &body)
            .await?;
        Ok(match answer.done_or_not_found()? {
            true => Revoked::Done,
            false => Revoked::UnknownProducer,
        })
    }

    /// When the kernel last saw `producer_id` (a data or heartbeat entry with a valid token),
    /// from its admin API; `None` when it never did or has no row of the producer (404).
    pub async fn producer_last_seen(
        &self,
        to: &AdminTarget<'_>,
        producer_id: Uuid,
    ) -> Result<Option<Timestamp>, KernelApiError> {
        let path = contract::producer_path(producer_id);
        let Some(answer) = self.admin_get(to, &path).await? else {
            return Ok(None);
        };
        last_seen_at(&answer.body).map_err(|reason| KernelApiError::BadBody {
            url: answer.url,
            reason,
        })
    }

    /// Pre-approves a public key for a producer at the kernel's admin API, so the producer's
    /// own `fdc-kernel register` is answered `issued`. Idempotent at the kernel.
    pub async fn approve_key(
        &self,
        to: &AdminTarget<'_>,
        req: &KeyApprovalRequest<'_>,
    ) -> Result<KeyApproval, KernelApiError> {
        let answer = self
            .admin_post(to, &keys_path(req.producer_id), req)
            .await?;
        match answer.status {
            201 => Ok(KeyApproval::Approved),
            200 => Ok(KeyApproval::AlreadyApproved),
            409 => Ok(KeyApproval::Refused(answer.refusal())),
            _ => answer.unexpected(),
        }
    }

    /// Adds a schema version to the kernel's registry. Idempotent at the kernel.
    pub async fn add_schema(
        &self,
        to: &AdminTarget<'_>,
        req: &SchemaRequest<'_>,
    ) -> Result<SchemaAdded, KernelApiError> {
        let answer = self.admin_post(to, contract::SCHEMAS_ROUTE, req).await?;
        let info = || {
            schema_info(&answer.body).ok_or_else(|| KernelApiError::Transport {
                url: answer.url.clone(),
                reason: "answer without schema_id".into(),
            })
        };
        match answer.status {
            201 => Ok(SchemaAdded::Created(info()?)),
            200 => Ok(SchemaAdded::Unchanged(info()?)),
            409 => Ok(SchemaAdded::Conflict(answer.refusal())),
            400 => Ok(SchemaAdded::Invalid(answer.refusal())),
            413 => Ok(SchemaAdded::TooLarge(answer.refusal())),
            _ => answer.unexpected(),
        }
    }

    /// Deprecates a schema version; `Ok(false)` when the kernel does not hold it (404).
    pub async fn deprecate_schema(
        &self,
        to: &AdminTarget<'_>,
        (name, version): (&str, &str),
        reason: &str,
    ) -> Result<bool, KernelApiError> {
        let body = serde_json::json!({ "reason": reason });
        let path = contract::schema_deprecate_path(name, version);
        self.admin_post(to, &path, &body).await?.done_or_not_found()
    }

    /// Deletes a schema version from the kernel's registry; `reason` is audited.
    pub async fn delete_schema(
        &self,
        to: &AdminTarget<'_>,
        (name, version): (&str, &str),
        reason: &str,
    ) -> Result<SchemaDeleted, KernelApiError> {
        let path = format!(
            "{}?reason={}",
            contract::schema_path(name, version),
            query_escape(reason)
        );
        let answer = self
            .admin_call(to, http::Method::DELETE, &path, None)
            .await?;
        match answer.status {
            _ if answer.is_success() => Ok(SchemaDeleted::Deleted),
            404 => Ok(SchemaDeleted::NotFound),
            409 => Ok(SchemaDeleted::InUse(answer.refusal())),
            _ => answer.unexpected(),
        }
    }

    /// How many producers are bound to a schema version (`None`: the kernel does not hold
    /// it, or its answer does not say).
    pub async fn bound_producers(
        &self,
        to: &AdminTarget<'_>,
        (name, version): (&str, &str),
    ) -> Result<Option<u64>, KernelApiError> {
        let path = contract::schema_path(name, version);
        let answer = self.admin_get(to, &path).await?;
        Ok(answer.and_then(|answer| bound_count(&answer.body)))
    }

    /// Binds a producer to `schema` (`name@range`; `None` unbinds).
    pub async fn bind_schema(
        &self,
        to: &AdminTarget<'_>,
        producer_id: Uuid,
        schema: Option<&str>,
        reason: &str,
    ) -> Result<SchemaBinding, KernelApiError> {
        let body = serde_json::json!({ "schema": schema, "reason": reason });
        let path = contract::producer_schema_path(producer_id);
        let answer = self.admin_post(to, &path, &body).await?;
        match answer.status {
            200 | 201 => Ok(SchemaBinding::Bound(
                serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v["schema"].as_str().map(str::to_string))
                    .or_else(|| schema.map(str::to_string)),
            )),
            // A kernel without the route answers 404 too, but without an `error`: that one
            // is an error answer, not an unknown producer.
            404 if has_error_message(&answer.body) => {
                Ok(SchemaBinding::UnknownProducer(answer.refusal()))
            }
            400 | 409 => Ok(SchemaBinding::Refused(answer.refusal())),
            _ => answer.unexpected(),
        }
    }

    /// A GET of `path` of `to`'s admin API: the answer when it is 200, `None` when the kernel
    /// holds no such thing (404); any other answer is an error.
    async fn admin_get(
        &self,
        to: &AdminTarget<'_>,
        path: &str,
    ) -> Result<Option<Answer>, KernelApiError> {
        let answer = self.admin_call(to, http::Method::GET, path, None).await?;
        match answer.status {
            200 => Ok(Some(answer)),
            404 => Ok(None),
            _ => answer.unexpected(),
        }
    }

    /// A POST of `body` as JSON to `path` of `to`'s admin API.
    async fn admin_post(
        &self,
        to: &AdminTarget<'_>,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<Answer, KernelApiError> {
        // The bodies are maps of strings: this does not fail (were it to, the error names the
        // path, since no URL was built yet).
        let json = serde_json::to_vec(body).map_err(|e| transport(path, e))?;
        self.admin_call(to, http::Method::POST, path, Some(json))
            .await
    }

    /// One request to `path` of `to`'s admin API with the bearer token and an optional JSON
    /// body.
    async fn admin_call(
        &self,
        to: &AdminTarget<'_>,
        method: http::Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<Answer, KernelApiError> {
        let url = format!("{}{path}", self.admin_base(to.kernel, to.pod_ip)?);
        let builder = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {}", to.token));
        let request = match json {
            Some(json) => builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(json))),
            None => builder.body(Full::new(Bytes::new())),
        }
        .map_err(|e| transport(&url, e))?;
        self.send_within(url, request, self.timeout).await
    }

    /// Spilled records `pod` has not replayed yet plus its quarantine files, from its
    /// `/metrics`: 0 means its spill volume holds nothing that would be lost with it.
    pub async fn spill_pending(&self, pod: &Pod) -> Result<u64, KernelApiError> {
        let (url, text) = self.metrics_within(pod, self.timeout).await?;
        spill_backlog(&text).ok_or(KernelApiError::MissingMetric {
            url,
            metric: SPILL_PENDING_METRIC,
        })
    }

    /// Sends `request` to `url` and reads the whole answer, within `timeout`.
    async fn send_within(
        &self,
        url: String,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, KernelApiError> {
        let call = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| transport(&url, e))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(&url, e))?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok((status, body))) => Ok(Answer { url, status, body }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(KernelApiError::Timeout { url, timeout }),
        }
    }
}

/// Admin API path that revokes a producer.
pub fn revoke_path(producer_id: Uuid) -> String {
    contract::producer_revoke_path(producer_id)
}

/// Admin API path that pre-approves a key for a producer.
pub fn keys_path(producer_id: Uuid) -> String {
    contract::producer_keys_path(producer_id)
}

/// `last_seen_at` of a producer as the admin API shows it (RFC 3339 or null).
fn last_seen_at(body: &[u8]) -> Result<Option<Timestamp>, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    match &value["last_seen_at"] {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(t) => t
            .parse::<Timestamp>()
            .map(Some)
            .map_err(|e| format!("last_seen_at {t:?}: {e}")),
        other => Err(format!("last_seen_at is {other}, not a time")),
    }
}

/// The `error` of a kernel's JSON error body, bounded and on one line.
fn refusal_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| "the kernel gave no message".to_string());
    crate::text::one_line(&message, MAX_REFUSAL_LEN)
}

/// `schema_id` (a string or a number) and `deprecated` of a kernel's schema answer.
fn schema_info(body: &[u8]) -> Option<SchemaInfo> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let schema_id = match &v["schema_id"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(SchemaInfo {
        schema_id,
        deprecated: v["deprecated"].as_bool().unwrap_or(false),
    })
}

/// The number of `bound_producers` of a kernel's schema answer (a list or a count).
fn bound_count(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    match &v["bound_producers"] {
        serde_json::Value::Array(a) => Some(a.len() as u64),
        other => other.as_u64(),
    }
}

/// Whether `body` is a kernel's JSON error body (`{"error": "..."}`).
fn has_error_message(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["error"].is_string())
}

/// `text` as a URL query value: unreserved characters kept, every other byte `%XX`.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// An IP as a URL host (IPv6 in brackets).
fn url_host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

fn transport(url: &str, e: impl std::error::Error) -> KernelApiError {
    KernelApiError::Transport {
        url: url.to_string(),
        reason: with_hint(error_chain(&e)),
    }
}

/// A name that did not resolve is usually an operator outside the cluster, where `*.svc`
/// names mean nothing: say so, with the option that helps.
fn with_hint(reason: String) -> String {
    if reason.contains("dns error") {
        format!("{reason} (the host name did not resolve; outside the cluster, run the operator with --kernel-access pod-ip, see docs/operator.md)")
    } else {
        reason
    }
}

/// An error and its sources on one line, each cause once: hyper's `client error (Connect)`
/// alone does not say whether the name did not resolve or the connection was refused.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Some errors repeat their source in their own message.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Stages with `kernel_stalled{stage="..."}` above zero, in order of appearance.
pub fn stalled_stages(metrics: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    for (stage, value) in samples_by_label(metrics, STALLED_METRIC, "stage") {
        if value > 0.0 && !stages.contains(&stage) {
            stages.push(stage);
        }
    }
    stages
}

/// The samples of `metric` that carry `label`, as (label value, sample value), in order of
/// appearance (Prometheus text format; a longer name that starts with `metric` is another
/// metric).
pub fn samples_by_label(metrics: &str, metric: &str, label: &str) -> Vec<(String, f64)> {
    let prefix = format!("{metric}{{");
    let mut samples = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let value = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok());
        let label_value = labels
            .split(',')
            .filter_map(|l| l.trim().strip_prefix(label)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .next();
        if let (Some(v), Some(value)) = (label_value, value) {
            samples.push((v, value));
        }
    }
    samples
}

/// Sum of all samples of `metric` (any labels) in Prometheus text format.
/// Pending records plus quarantine files (a kernel without the quarantine gauge has none).
fn spill_backlog(metrics: &str) -> Option<u64> {
    let pending = parse_gauge_sum(metrics, SPILL_PENDING_METRIC)?;
    let quarantined = parse_gauge_sum(metrics, SPILL_QUARANTINE_METRIC).unwrap_or(0.0);
    Some((pending.max(0.0) + quarantined.max(0.0)) as u64)
}

pub fn parse_gauge_sum(text: &str, metric: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        // Exactly this metric: followed by labels or a space, not a longer name.
        let rest = if let Some(labels) = rest.strip_prefix('{') {
            match labels.split_once('}') {
                Some((_, after)) => after,
                None => continue,
            }
        } else if rest.starts_with(' ') {
            rest
        } else {
            continue;
        };
        let value: f64 = match rest.split_whitespace().next().and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => continue,
        };
        *found.get_or_insert(0.0) += value;
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::controller::fixtures::kernel;

    fn pod(ip: Option<&str>) -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "k-1", "namespace": "apps"},
            "status": {"podIP": ip}
        }))
        .unwrap()
    }

    #[test]
    fn urls_per_access_mode() {
        use super::{Endpoints, KernelApi, KernelApiError};
        let k = kernel("k", 2);
        let cluster = KernelApi::new(Endpoints::Cluster);
        assert!(!cluster.admin_needs_pod_ip());
        assert_eq!(
            cluster.admin_base(&k, None).unwrap(),
            "http://k.apps.svc:8081"
        );
        assert_eq!(
            cluster.pod_url(&pod(Some("10.1.2.3")), "/readyz").unwrap(),
            "http://10.1.2.3:8080/readyz"
        );
        assert!(matches!(
            cluster.pod_url(&pod(None), "/metrics"),
            Err(KernelApiError::NoPodIp(p)) if p == "k-1"
        ));

        let pod_ip: Endpoints = "pod-ip".parse().unwrap();
        let direct = KernelApi::new(pod_ip);
        assert!(direct.admin_needs_pod_ip());
        assert_eq!(
            direct.admin_base(&k, Some("10.1.2.3")).unwrap(),
            "http://10.1.2.3:8081"
        );
        assert_eq!(
            direct.admin_base(&k, Some("fd00::7")).unwrap(),
            "http://[fd00::7]:8081"
        );
        assert_eq!(
            direct.admin_base(&k, None).unwrap_err().to_string(),
            "FdcKernel apps/k has no Ready pod with an IP to send admin calls to"
        );
        assert_eq!(
            direct.pod_url(&pod(Some("fd00::7")), "/metrics").unwrap(),
            "http://[fd00::7]:8080/metrics"
        );
        assert_eq!("service".parse::<Endpoints>(), Ok(Endpoints::Cluster));
        assert!("dns"
            .parse::<Endpoints>()
            .unwrap_err()
            .contains("use `service` (in the cluster) or `pod-ip`"));
    }

    #[test]
    fn stalled_stages_are_read_by_label() {
        use super::stalled_stages;
        let text = "# TYPE kernel_stalled gauge\nkernel_stalled{stage=\"reader\"} 0\nkernel_stalled{stage=\"writer\"} 1\nkernel_stalled_total 3\n";
        assert_eq!(stalled_stages(text), vec!["writer".to_string()]);
        assert!(stalled_stages("kernel_spill_pending_records 0\n").is_empty());
    }

    #[test]
    fn error_chain_names_every_distinct_cause() {
        use super::error_chain;
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "client error (Connect)",
            Some(Box::new(E(
                "dns error",
                Some(Box::new(E(
                    "failed to lookup address information: Name or service not known",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "client error (Connect): dns error: failed to lookup address information: Name or service not known"
        );
        assert_eq!(
            super::with_hint(error_chain(&e)),
            "client error (Connect): dns error: failed to lookup address information: Name or service not known (the host name did not resolve; outside the cluster, run the operator with --kernel-access pod-ip, see docs/operator.md)"
        );
        assert_eq!(super::with_hint("refused".into()), "refused");
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        use super::{Endpoints, KernelApi};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let api = KernelApi::new(Endpoints::Fixed(format!("http://{addr}")));
        let err = api.readyz(&pod(Some("x"))).await.unwrap_err().to_string();
        assert!(err.contains("Connection refused"), "{err}");
        assert!(err.contains(&addr.to_string()), "{err}");
    }

    #[tokio::test]
    async fn an_unresolvable_name_says_so() {
        use super::{Endpoints, KernelApi};
        // `.invalid` never resolves (RFC 6761).
        let api = KernelApi::new(Endpoints::Fixed("http://fdc-kernel.invalid:8080".into()));
        let err = api.readyz(&pod(Some("x"))).await.unwrap_err().to_string();
        assert!(err.contains("dns error"), "{err}");
        assert!(err.contains("the host name did not resolve"), "{err}");
    }

    #[test]
    fn quarantine_files_count_as_backlog() {
        use super::spill_backlog;
        assert_eq!(spill_backlog("kernel_spill_pending_records 0\n"), Some(0));
        assert_eq!(
            spill_backlog("kernel_spill_pending_records 0\nkernel_spill_quarantine_files 2\n"),
            Some(2)
        );
        assert_eq!(
            spill_backlog("kernel_spill_pending_records 3\nkernel_spill_quarantine_files 0\n"),
            Some(3)
        );
        assert_eq!(spill_backlog("kernel_spill_quarantine_files 1\n"), None);
    }

    use super::{parse_gauge_sum, refusal_message, MAX_REFUSAL_LEN};

    #[test]
    fn last_seen_is_read_from_the_producer_body() {
        use super::last_seen_at;
        let seen = last_seen_at(
            br#"{"producer_id":"x","name":"p","last_seen_at":"2026-12-07T04:20:01.123456Z","revoked_at":null}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(seen.to_string(), "2026-12-07T04:20:01.123456Z");
        assert_eq!(last_seen_at(br#"{"last_seen_at":null}"#), Ok(None));
        assert!(last_seen_at(br#"{"last_seen_at":3}"#)
            .unwrap_err()
            .contains("not a time"));
        assert!(last_seen_at(b"<html>").is_err());
    }

    #[test]
    fn refusal_message_is_the_error_field_on_one_bounded_line() {
        assert_eq!(
            refusal_message(br#"{"error":"conflict: key ab is revoked"}"#),
            "conflict: key ab is revoked"
        );
        assert_eq!(refusal_message(b"<html>"), "the kernel gave no message");
        assert_eq!(refusal_message(br#"{"error":"a\nb"}"#), "a b");
        let long = format!(r#"{{"error":"{}"}}"#, "é".repeat(MAX_REFUSAL_LEN));
        let m = refusal_message(long.as_bytes());
        assert!(m.len() <= MAX_REFUSAL_LEN + '…'.len_utf8());
        assert!(m.ends_with('…'));
    }

    #[test]
    fn a_query_value_is_escaped() {
        assert_eq!(
            super::query_escape("FdcSchema apps/s deleted ~ é&x=1"),
            "FdcSchema%20apps%2Fs%20deleted%20~%20%C3%A9%26x%3D1"
        );
    }

    #[test]
    fn schema_answers_are_read_whatever_the_id_type() {
        use super::{bound_count, schema_info, SchemaInfo};
        assert_eq!(
            schema_info(br#"{"schema_id":"0190-aa","deprecated":true}"#),
            Some(SchemaInfo {
                schema_id: "0190-aa".into(),
                deprecated: true
            })
        );
        assert_eq!(
            schema_info(br#"{"schema_id":42}"#),
            Some(SchemaInfo {
                schema_id: "42".into(),
                deprecated: false
            })
        );
        assert_eq!(schema_info(br#"{"name":"orders"}"#), None);
        assert_eq!(bound_count(br#"{"bound_producers":["a","b"]}"#), Some(2));
        assert_eq!(bound_count(br#"{"bound_producers":3}"#), Some(3));
        assert_eq!(bound_count(br#"{"body":{}}"#), None);
    }

    #[test]
    fn sums_labelled_samples_and_ignores_longer_names() {
        let text = "# HELP kernel_spill_bytes bytes\n# TYPE kernel_spill_bytes gauge\n\
                    kernel_spill_bytes{segment=\"a\"} 100\nkernel_spill_bytes{segment=\"b\"} 23\n\
                    kernel_spill_bytes_total 999\n";
        assert_eq!(parse_gauge_sum(text, "kernel_spill_bytes"), Some(123.0));
        assert_eq!(
            parse_gauge_sum("kernel_spill_bytes 0\n", "kernel_spill_bytes"),
            Some(0.0)
        );
        assert_eq!(parse_gauge_sum("other 5\n", "kernel_spill_bytes"), None);
    }
}
