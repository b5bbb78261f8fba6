//! HTTP calls from the operator to kernel pods: the admin API (key pre-approval, revocation)
//! and `/metrics` (spill backlog before scale-in).
//!
//! Plain HTTP inside the cluster, through hyper (already a kube dependency). The admin token
//! is sent as a bearer header and never logged; errors carry status codes, not bodies (the
//! one body read is a 409's `error` message, which names ids and fingerprints only).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use uuid::Uuid;

use crate::builders::config::{ADMIN_PORT, HTTP_PORT};
use crate::crd::FdcKernel;

/// Gauge the kernel exports with the spilled records not yet replayed to Postgres
/// (0 = drained; segment bytes are not used because a live segment keeps its header).
pub const SPILL_PENDING_METRIC: &str = "kernel_spill_pending_records";

/// Gauge of spill records the kernel could not decode and set aside in quarantine files on
/// the spill volume: they are acknowledged data too, so a replica holding any is not drained.
pub const SPILL_QUARANTINE_METRIC: &str = "kernel_spill_quarantine_files";

/// Where kernel endpoints are.
#[derive(Debug, Clone)]
pub enum Endpoints {
    /// In a cluster: the kernel Service for admin calls, pod IPs for metrics.
    Cluster,
    /// Everything at one base URL (tests): admin at `{base}`, a pod's metrics at
    /// `{base}/pods/{pod}/metrics`.
    Fixed(String),
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
    #[error("{url} does not export {metric}")]
    MissingMetric { url: String, metric: &'static str },
}

/// Client for kernel endpoints.
#[derive(Clone)]
pub struct KernelApi {
    http: Client<HttpConnector, Full<Bytes>>,
    endpoints: Endpoints,
    timeout: Duration,
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

/// A public key to approve at the kernel for a producer id.
#[derive(Debug, Clone)]
pub struct KeyApprovalRequest<'a> {
    pub producer_id: Uuid,
    /// SPKI PEM (public, not a secret).
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

impl KernelApi {
    pub fn new(endpoints: Endpoints) -> Self {
        KernelApi {
            http: Client::builder(TokioExecutor::new()).build_http(),
            endpoints,
            timeout: Duration::from_secs(10),
        }
    }

    fn admin_base(&self, kernel: &FdcKernel) -> String {
        match &self.endpoints {
            Endpoints::Cluster => format!(
                "http://{}.{}.svc:{ADMIN_PORT}",
                kernel.name_any(),
                kernel.namespace().unwrap_or_default()
            ),
            Endpoints::Fixed(base) => base.clone(),
        }
    }

    fn metrics_url(&self, pod: &Pod) -> Result<String, KernelApiError> {
        match &self.endpoints {
            Endpoints::Cluster => {
                let ip = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .ok_or_else(|| KernelApiError::NoPodIp(pod.name_any()))?;
                // IPv6 pod IPs need brackets in a URL.
                let host = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                Ok(format!("http://{host}:{HTTP_PORT}/metrics"))
            }
            Endpoints::Fixed(base) => Ok(format!("{base}/pods/{}/metrics", pod.name_any())),
        }
    }

    /// Revokes `producer_id` at the kernel's admin API.
    pub async fn revoke_producer(
        &self,
        kernel: &FdcKernel,
        admin_token: &str,
        producer_id: Uuid,
        reason: &str,
    ) -> Result<Revoked, KernelApiError> {
        let url = format!("{}{}", self.admin_base(kernel), revoke_path(producer_id));
        let body = serde_json::json!({ "reason": reason }).to_string();
        let request = http::Request::post(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {admin_token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(&url, e))?;
        let (status, _) = self.send(&url, request).await?;
        match status {
            s if (200..300).contains(&s) => Ok(Revoked::Done),
            404 => Ok(Revoked::UnknownProducer),
            s => Err(KernelApiError::Status { url, status: s }),
        }
    }

    /// Pre-approves a public key for a producer at the kernel's admin API, so the producer's
    /// own `fdc-kernel register` is answered `issued`. Idempotent at the kernel.
    pub async fn approve_key(
        &self,
        kernel: &FdcKernel,
        admin_token: &str,
        req: &KeyApprovalRequest<'_>,
    ) -> Result<KeyApproval, KernelApiError> {
        let url = format!("{}{}", self.admin_base(kernel), keys_path(req.producer_id));
        let body = serde_json::json!({
            "public_key": req.public_key_pem,
            "name": req.name,
            "schema": req.schema,
            "reason": req.reason,
        })
        .to_string();
        let request = http::Request::post(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {admin_token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(&url, e))?;
        let (status, body) = self.send(&url, request).await?;
        match status {
            201 => Ok(KeyApproval::Approved),
            200 => Ok(KeyApproval::AlreadyApproved),
            409 => Ok(KeyApproval::Refused(refusal_message(&body))),
            s => Err(KernelApiError::Status { url, status: s }),
        }
    }

    /// Spilled records `pod` has not replayed yet plus its quarantine files, from its
    /// `/metrics`: 0 means its spill volume holds nothing that would be lost with it.
    pub async fn spill_pending(&self, pod: &Pod) -> Result<u64, KernelApiError> {
        let url = self.metrics_url(pod)?;
        let request = http::Request::get(&url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| transport(&url, e))?;
        let (status, body) = self.send(&url, request).await?;
        if !(200..300).contains(&status) {
            return Err(KernelApiError::Status { url, status });
        }
        spill_backlog(&String::from_utf8_lossy(&body)).ok_or(KernelApiError::MissingMetric {
            url,
            metric: SPILL_PENDING_METRIC,
        })
    }

    async fn send(
        &self,
        url: &str,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(u16, Bytes), KernelApiError> {
        let call = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| transport(url, e))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(url, e))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| KernelApiError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            })?
    }
}

/// Admin API path that revokes a producer.
pub fn revoke_path(producer_id: Uuid) -> String {
    format!("/v1/producers/{producer_id}/revoke")
}

/// Admin API path that pre-approves a key for a producer.
pub fn keys_path(producer_id: Uuid) -> String {
    format!("/v1/producers/{producer_id}/keys")
}

/// The `error` of a kernel's JSON error body, bounded and on one line.
fn refusal_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| "conflict (no message)".to_string());
    let mut one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.len() > MAX_REFUSAL_LEN {
        let mut end = MAX_REFUSAL_LEN;
        while !one_line.is_char_boundary(end) {
            end -= 1;
        }
        one_line.truncate(end);
        one_line.push('…');
    }
    one_line
}

fn transport(url: &str, e: impl std::fmt::Display) -> KernelApiError {
    KernelApiError::Transport {
        url: url.to_string(),
        reason: e.to_string(),
    }
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
    fn refusal_message_is_the_error_field_on_one_bounded_line() {
        assert_eq!(
            refusal_message(br#"{"error":"conflict: key ab is revoked"}"#),
            "conflict: key ab is revoked"
        );
        assert_eq!(refusal_message(b"<html>"), "conflict (no message)");
        assert_eq!(refusal_message(br#"{"error":"a\nb"}"#), "a b");
        let long = format!(r#"{{"error":"{}"}}"#, "é".repeat(MAX_REFUSAL_LEN));
        let m = refusal_message(long.as_bytes());
        assert!(m.len() <= MAX_REFUSAL_LEN + '…'.len_utf8());
        assert!(m.ends_with('…'));
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
