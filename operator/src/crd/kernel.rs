//! `FdcKernel`: one kernel deployment (a StatefulSet sharing one consumer group).

use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
#[allow(unused_imports)] // used inside #[x_kube(...)] attributes
use kube::core::{ListMerge, Rule};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::DURATION_PATTERN;

/// Desired state of a kernel.
// The printcolumn(...) arguments repeat keys by design (one column each).
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fdc.dev",
    version = "v1alpha1",
    kind = "FdcKernel",
    plural = "fdckernels",
    shortname = "fdck",
    category = "fdc",
    namespaced,
    status = "FdcKernelStatus",
    derive = "PartialEq",
    doc = "An fdc kernel: Redis Streams consumer group writing events to Postgres.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.lag"),
    printcolumn(
        name = "Stored/s",
        type_ = "number",
        json_path = ".status.storedPerSecond"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = "1",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Progressing",
        type_ = "string",
        priority = "1",
        json_path = ".status.conditions[?(@.type==\"Progressing\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "!has(self.republish) || !self.republish.enabled || !(self.republish.stream in self.streams)"
).message("republish.stream must not be one of the ingest streams: the kernel would re-ingest its own output"))]
#[x_kube(validation = Rule::new(SHUTDOWN_WITHIN_CLAIM_IDLE).message(
    "shutdownTimeout must be shorter than the kernel's ingest.claim_idle (spec.config.ingest.claim_idle, default 60s): another replica could claim the batch a stopping pod is still finishing"
))]
#[serde(rename_all = "camelCase")]
pub struct FdcKernelSpec {
    /// Number of kernel pods. All share one consumer group; each is a named consumer.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 64))]
    pub replicas: i32,

    /// Kernel container image; its entrypoint must be `fdc-kernel`.
    #[schemars(length(min = 1))]
    pub image: String,

    /// Image pull policy (Always, IfNotPresent, Never). Kubernetes' default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Secrets used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// CPU/memory requests and limits of the kernel container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Where Redis is.
    pub redis: RedisSpec,

    /// Where Postgres is (always through a Secret: the URL carries a password).
    pub postgres: PostgresSpec,

    /// Redis streams to consume: names, or glob patterns (`events:*`; on a Redis Cluster with a
    /// hash tag, `events:{*}`) whose streams the kernel discovers while it runs
    /// (docs/protocol.md).
    #[serde(default = "default_streams")]
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 200)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub streams: Vec<String>,

    /// Consumer group shared by all replicas. Immutable: changing it would strand the
    /// pending entries of the old group.
    #[serde(default = "default_group")]
    #[schemars(length(min = 1, max = 200))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("consumerGroup is immutable: pending entries of the old group would be stranded"))]
    pub consumer_group: String,

    /// Spill volume (one PersistentVolumeClaim per replica).
    #[serde(default)]
    pub spill: SpillSpec,

    /// Producer authentication.
    #[serde(default)]
    pub auth: AuthSpec,

    /// Optional re-publishing of stored events to a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<RepublishSpec>,

    /// Kernel log level.
    #[serde(default)]
    pub log_level: LogLevel,

    /// How long the kernel gets to finish its batch on SIGTERM. The pod's termination grace
    /// period is this plus a margin.
    #[serde(default = "default_shutdown_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub shutdown_timeout: String,

    /// Prometheus Operator ServiceMonitor (created only if that CRD exists in the cluster).
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,

    /// Free-form kernel config merged over the rendered one (same keys as `kernel.yaml`).
    /// Keys the operator owns (listed in docs/operator.md) are not overridable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "config_overrides_schema")]
    pub config: Option<serde_json::Value>,
}

/// CEL: `shutdownTimeout` < `config.ingest.claim_idle` (kernel default 60s; a test ties the
/// two), the one kernel-config relation that involves a spec field. Only durations in Go
/// syntax, which CEL's `duration()` parses, are compared; others (the `d` unit, humantime
/// spellings such as `2min`) pass here and are judged by the kernel's loader in the
/// reconcile (Degraded, nothing applied). Unknown fields are invisible to CEL, hence
/// `claim_idle` is declared in the schema of `config` ([`config_overrides_schema`]).
pub(crate) const SHUTDOWN_WITHIN_CLAIM_IDLE: &str = concat!(
    "!has(self.shutdownTimeout) || !self.shutdownTimeout.matches('^([0-9]+(ms|s|m|h))+$') || ",
    "(has(self.config) && has(self.config.ingest) && has(self.config.ingest.claim_idle) ",
    "? (!self.config.ingest.claim_idle.matches('^([0-9]+(ms|s|m|h))+$') ",
    "|| duration(self.shutdownTimeout) < duration(self.config.ingest.claim_idle)) ",
    ": duration(self.shutdownTimeout) < duration('60s'))"
);

/// `spec.config`: free-form (kept as is), except that `ingest.claim_idle` is declared, as a
/// string, so the CEL rule above can read it.
fn config_overrides_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "ingest": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "claim_idle": { "type": "string", "maxLength": 64 }
                }
            }
        }
    })
}

fn default_replicas() -> i32 {
    1
}
fn default_streams() -> Vec<String> {
    vec!["events".to_string()]
}
fn default_group() -> String {
    "kernel".to_string()
}
fn default_shutdown_timeout() -> String {
    "30s".to_string()
}

/// Image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// A key in a Secret of the kernel's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[serde(default = "default_url_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_url_key() -> String {
    "url".to_string()
}

/// Redis connection: an inline URL or a Secret key holding it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("set exactly one of redis.url and redis.urlSecretRef"))]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Redis URL, e.g. `redis://redis:6379/0`, or the seed nodes of a Redis Cluster,
    /// `redis+cluster://redis-0:6379,redis-1:6379/` (its stream names need a hash tag, see
    /// docs/protocol.md). Use urlSecretRef when it carries a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(rediss?|redis\+cluster)://"))]
    pub url: Option<String>,
    /// Secret key holding the Redis URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
}

/// Postgres connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Secret key holding the Postgres URL (`postgres://user:pass@host:5432/db`).
    pub url_secret_ref: SecretKeyRef,
}

/// Spill-to-disk volume of each replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpillSpec {
    /// PVC size per replica. Immutable (StatefulSet volume claim templates are).
    #[serde(default = "default_spill_size")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spill.size is immutable (StatefulSet volumeClaimTemplates are)"))]
    pub size: String,
    /// Storage class of the spill PVCs; the cluster default when unset. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spill.storageClassName is immutable (StatefulSet volumeClaimTemplates are)"))]
    pub storage_class_name: Option<String>,
    /// Spill budget in bytes (`spill.max_bytes`); default 90% of `size`, leaving room for
    /// filesystem overhead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1048576))]
    pub max_bytes: Option<i64>,
}

fn default_spill_size() -> String {
    "1Gi".to_string()
}

impl Default for SpillSpec {
    fn default() -> Self {
        SpillSpec {
            size: default_spill_size(),
            storage_class_name: None,
            max_bytes: None,
        }
    }
}

/// Producer authentication settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Require a valid token on every data/heartbeat entry.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Token issuer (`iss`).
    #[serde(default = "default_issuer")]
    #[schemars(length(min = 1, max = 200))]
    pub issuer: String,
    /// Token audience (`aud`).
    #[serde(default = "default_audience")]
    #[schemars(length(min = 1, max = 200))]
    pub audience: String,
    /// Default and longest lifetime of producer tokens. A rotated-out issuer key stays
    /// trusted for this long after rotation.
    #[serde(rename = "tokenTTL", default = "default_token_ttl")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub token_ttl: String,
    /// Namespaces (besides the kernel's own) whose Producers may reference this kernel;
    /// `"*"` allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_producer_namespaces: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_issuer() -> String {
    "fdc".to_string()
}
fn default_audience() -> String {
    "fdc-kernel".to_string()
}
fn default_token_ttl() -> String {
    "24h".to_string()
}

impl Default for AuthSpec {
    fn default() -> Self {
        AuthSpec {
            enabled: true,
            issuer: default_issuer(),
            audience: default_audience(),
            token_ttl: default_token_ttl(),
            allowed_producer_namespaces: Vec::new(),
        }
    }
}

/// Re-publish stored events to a stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepublishSpec {
    /// Turn re-publishing on.
    #[serde(default)]
    pub enabled: bool,
    /// Target stream.
    #[serde(default = "default_republish_stream")]
    #[schemars(length(min = 1, max = 200))]
    pub stream: String,
    /// Approximate MAXLEN of the target stream.
    #[serde(default = "default_republish_maxlen")]
    #[schemars(range(min = 1))]
    pub max_len: i64,
}

fn default_republish_stream() -> String {
    "events:normalized".to_string()
}
fn default_republish_maxlen() -> i64 {
    100_000
}

/// Kernel log level.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// ServiceMonitor settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create a ServiceMonitor when the Prometheus Operator CRD is installed.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Scrape interval.
    #[serde(default = "default_scrape_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
}

fn default_scrape_interval() -> String {
    "30s".to_string()
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        ServiceMonitorSpec {
            enabled: true,
            interval: default_scrape_interval(),
        }
    }
}

/// Observed state of a kernel.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FdcKernelStatus {
    /// `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist (the scale subresource reads this).
    #[serde(default)]
    pub replicas: i32,
    /// Pods that pass their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Replica count of the last finished rollout or scale. While a scale runs, `Ready`
    /// needs the smaller of this and `spec.replicas` ready (at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_replicas: Option<i32>,
    /// Label selector of the pods (for the scale subresource and autoscalers).
    #[serde(default)]
    pub selector: String,
    /// `kid` of the key that signs new tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_key_id: Option<String>,
    /// Hash of the rendered config the pods run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Entries of the streams not yet delivered to the consumer group (`kernel_group_lag`
    /// summed over the streams), from the pods' `/metrics` at the last reconcile; unset when
    /// no pod could be scraped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Entries delivered to the group and not yet acknowledged (`kernel_group_pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
    /// Events stored per second between the last two reconciles' scrapes (growth of
    /// `kernel_events_stored_total` over all pods); unset until two scrapes are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_per_second: Option<f64>,
    /// Per stream: lag and pending from the same scrape, the streams with the most lag first
    /// (at most 50, so that thousands of streams cannot bloat the object); empty when no pod
    /// could be scraped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamStatus>,
    /// Ready, Progressing, Degraded, SpillDrained, Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// One stream's consumer-group figures (`kernel_group_lag`, `kernel_group_pending`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// The stream's name.
    pub name: String,
    /// Entries not yet delivered to the consumer group.
    pub lag: i64,
    /// Entries delivered to the group and not yet acknowledged.
    pub pending: i64,
}

impl FdcKernel {
    /// Spec'd token lifetime, parsed.
    pub fn token_ttl(&self) -> Result<std::time::Duration, humantime::DurationError> {
        humantime::parse_duration(&self.spec.auth.token_ttl)
    }

    /// Spec'd shutdown timeout, parsed.
    pub fn shutdown_timeout(&self) -> Result<std::time::Duration, humantime::DurationError> {
        humantime::parse_duration(&self.spec.shutdown_timeout)
    }

    /// Whether a Producer in `namespace` may use this kernel.
    pub fn allows_producer_namespace(&self, namespace: &str) -> bool {
        self.metadata.namespace.as_deref() == Some(namespace)
            || self
                .spec
                .auth
                .allowed_producer_namespaces
                .iter()
                .any(|n| n == "*" || n == namespace)
    }
}
