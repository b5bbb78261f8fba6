//! `FdcSchema`: one version of a payload schema (a JSON Schema), registered at a kernel.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
#[allow(unused_imports)] // used inside #[x_kube(...)] attributes
use kube::core::{ListMerge, Rule};
use kube::{CustomResource, KubeSchema, ResourceExt};
use serde::{Deserialize, Serialize};

use super::producer::KernelRef;

/// Pattern of a schema version: semantic versioning 2.0.0 (`1.2.0`, `2.0.0-rc.1`).
pub const SEMVER_PATTERN: &str = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*)?(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?$";
/// Pattern of a schema name (it is a path segment of the kernel's admin API).
pub const SCHEMA_NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]*$";
/// Pattern of a Producer's `spec.schema`: a schema name, then optionally `@` and a version
/// range the kernel judges (`orders`, `orders@^1.2`, `orders@>=1.2, <2`).
pub const SCHEMA_REF_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]*(@[^@]+)?$";

/// Desired state of a schema version.
// The printcolumn(...) arguments repeat keys by design (one column each).
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fdc.dev",
    version = "v1alpha1",
    kind = "FdcSchema",
    plural = "fdcschemas",
    shortname = "fdcs",
    category = "fdc",
    namespaced,
    status = "FdcSchemaStatus",
    derive = "PartialEq",
    doc = "One version of a payload schema (JSON Schema), registered in a kernel's schema registry; Producers bind to it with spec.schema: name@range.",
    printcolumn(name = "Schema", type_ = "string", json_path = ".status.schemaName"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(name = "Deprecated", type_ = "boolean", json_path = ".spec.deprecated"),
    printcolumn(
        name = "In Use",
        type_ = "string",
        priority = "1",
        json_path = ".status.conditions[?(@.type==\"InUse\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = "1",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)"
).message("name is immutable: a schema version is name@version; create another FdcSchema for another name"))]
#[serde(rename_all = "camelCase")]
pub struct FdcSchemaSpec {
    /// The kernel whose registry holds this schema. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("kernelRef is immutable; delete and recreate the FdcSchema"))]
    pub kernel_ref: KernelRef,

    /// Schema name at the kernel (what Producers bind to); default: `metadata.name`. Several
    /// versions of one schema are several FdcSchemas with the same `name`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = SCHEMA_NAME_PATTERN))]
    pub name: Option<String>,

    /// Semantic version (`1.2.0`). Immutable: a new version is a new FdcSchema.
    #[x_kube(validation = Rule::new("self == oldSelf").message("version is immutable: versions never change once added; create another FdcSchema for the new version"))]
    #[schemars(length(min = 1, max = 100), regex(pattern = SEMVER_PATTERN))]
    pub version: String,

    /// The JSON Schema (draft 2020-12 or draft 7), as YAML or JSON. The kernel compiles it
    /// when it is added and refuses an invalid one (condition `Accepted=False`, reason
    /// `Invalid`, with the compiler's message). A version's body cannot change.
    #[schemars(schema_with = "body_schema")]
    pub body: serde_json::Value,

    /// Deprecate this version at the kernel: producers pinned to it keep being validated
    /// against it, but no new binding picks it. Cannot be undone at the kernel.
    #[serde(default)]
    pub deprecated: bool,
}

/// `spec.body`: any JSON object, kept as is.
fn body_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Observed state of a schema version.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FdcSchemaStatus {
    /// `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The schema's name at the kernel (`spec.name`, else `metadata.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_name: Option<String>,
    /// The id of this version in the kernel's registry (events stored with it carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<String>,
    /// Accepted, Deprecated, InUse (while a deletion waits for bound producers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

impl FdcSchema {
    /// The schema's name at the kernel: `spec.name`, else `metadata.name`.
    pub fn schema_name(&self) -> String {
        self.spec.name.clone().unwrap_or_else(|| self.name_any())
    }

    /// Namespace of the referenced kernel.
    pub fn kernel_namespace(&self) -> Option<&str> {
        self.spec
            .kernel_ref
            .namespace
            .as_deref()
            .or(self.metadata.namespace.as_deref())
    }
}
