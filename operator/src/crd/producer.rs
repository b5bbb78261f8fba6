//! `Producer`: an external event producer, with credentials issued by a kernel.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
#[allow(unused_imports)] // used inside #[x_kube(...)] attributes
use kube::core::{ListMerge, Rule};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::DURATION_PATTERN;

/// Desired state of a producer.
// The printcolumn(...) arguments repeat keys by design (one column each).
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fdc.dev",
    version = "v1alpha1",
    kind = "Producer",
    plural = "producers",
    shortname = "fdcp",
    category = "fdc",
    namespaced,
    status = "ProducerStatus",
    derive = "PartialEq",
    doc = "An fdc producer: gets a Secret `<name>-credentials` with its id and a token signed by the kernel's issuer key.",
    printcolumn(name = "Kernel", type_ = "string", json_path = ".spec.kernelRef.name"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Expires In",
        type_ = "string",
        json_path = ".status.tokenExpiresIn"
    ),
    printcolumn(name = "Last Seen", type_ = "date", json_path = ".status.lastSeenAt"),
    printcolumn(
        name = "Expires At",
        type_ = "string",
        priority = "1",
        json_path = ".status.tokenExpiresAt"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = "1",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ProducerSpec {
    /// The kernel this producer publishes to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("kernelRef is immutable; delete and recreate the Producer"))]
    pub kernel_ref: KernelRef,

    /// Payload schema the producer's data entries must follow, as `name@range`: a name of
    /// the kernel's schema registry (an FdcSchema) and a semver range (`orders@^1.2`,
    /// `orders@1.2.0` exact; `orders` alone: the newest version). The operator binds the
    /// producer to it at the kernel (condition `SchemaBound`); it is also the token's
    /// `schema` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200), regex(pattern = super::schema::SCHEMA_REF_PATTERN))]
    pub schema: Option<String>,

    /// Token lifetime; defaults to, and is capped at, the kernel's `auth.tokenTTL`.
    #[serde(rename = "tokenTTL", default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub token_ttl: Option<String>,

    /// PEM (SPKI) Ed25519 public key of a key the producer holds itself. The operator
    /// approves it at the kernel for this producer's id (condition `KeyApproved`), so the
    /// producer can also run `fdc-kernel register` and get tokens sealed to its key. When
    /// unset the operator generates a key pair and stores it in the credentials Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('-----BEGIN PUBLIC KEY-----')").message("publicKey must be a PEM public key (-----BEGIN PUBLIC KEY-----)"))]
    #[schemars(length(max = 4096))]
    pub public_key: Option<String>,

    /// Stream to publish to: one of the kernel's streams, or a name one of its patterns
    /// matches (see docs/protocol.md). Default: the kernel's first stream that is no pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub stream: Option<String>,
}

/// Reference to an `FdcKernel`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KernelRef {
    /// Name of the FdcKernel.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace; the referring resource's own when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Observed state of a producer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProducerStatus {
    /// `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Stable producer id (the token's `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<String>,
    /// Secret holding the credentials (in the Producer's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// SHA-256 fingerprint of the producer's public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// When the current token expires (it is renewed before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<Time>,
    /// Time left on the current token, rounded down (`15h`; `40m` in 5-minute steps under an
    /// hour; `<5m`; `expired`); refreshed whenever that reading drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_in: Option<String>,
    /// When the kernel last saw this producer (a data or heartbeat entry with a valid
    /// token), read from its admin API every few minutes; unset while it never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<Time>,
    /// `kid` of the issuer key that signed the current token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_key_id: Option<String>,
    /// Ready, KeyApproved (only with spec.publicKey), Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

impl Producer {
    /// Namespace of the referenced kernel.
    pub fn kernel_namespace(&self) -> Option<&str> {
        self.spec
            .kernel_ref
            .namespace
            .as_deref()
            .or(self.metadata.namespace.as_deref())
    }
}
