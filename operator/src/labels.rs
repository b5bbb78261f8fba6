//! Names, labels and annotations shared by the builders and reconcilers.
//!
//! Kept in one place so that a selector built in one module always matches the labels
//! written by another.

use std::collections::BTreeMap;

/// API group of the fdc custom resources.
pub const GROUP: &str = "fdc.dev";
/// Field manager used for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "fdc-operator";
/// Controller name reported in Events.
pub const CONTROLLER_NAME: &str = "fdc-operator";

/// Set to `"true"` on an `FdcKernel`, `Producer` or `FdcSchema` to stop reconciling it.
pub const PAUSE_ANNOTATION: &str = "fdc.dev/paused";
/// Set to a new value (e.g. a timestamp) on an `FdcKernel` to rotate its token issuer key.
pub const ROTATE_ISSUER_KEY_ANNOTATION: &str = "fdc.dev/rotate-issuer-key";
/// Records, on the issuer key Secret, the rotation request that has already been handled.
pub const ROTATION_HANDLED_ANNOTATION: &str = "fdc.dev/rotation-handled";
/// Set to `"true"` on a `Producer` to skip revocation at the kernel on deletion
/// (escape hatch when the kernel is gone for good).
pub const SKIP_REVOKE_ANNOTATION: &str = "fdc.dev/skip-revoke";
/// Hash of the rendered kernel config (and key set) on the pod template: a change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "fdc.dev/config-hash";
/// Finalizer on `Producer`: revocation at the kernel happens before the object goes.
pub const PRODUCER_FINALIZER: &str = "fdc.dev/revoke-producer";
/// Finalizer on `FdcSchema`: the version is deleted from the kernel's registry (once no
/// producer is bound to it) before the object goes.
pub const SCHEMA_FINALIZER: &str = "fdc.dev/unregister-schema";

/// `app.kubernetes.io/managed-by` value of every object the operator creates.
pub const MANAGED_BY: &str = "fdc-operator";

/// Labels on every object belonging to one kernel; also the pod selector.
pub fn kernel_selector_labels(kernel: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "fdc-kernel".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), kernel.to_string()),
    ])
}

/// Selector labels plus the informational ones.
pub fn kernel_labels(kernel: &str) -> BTreeMap<String, String> {
    let mut labels = kernel_selector_labels(kernel);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels.insert("app.kubernetes.io/component".into(), "kernel".into());
    labels
}

/// Labels of a producer's credentials Secret.
pub fn producer_labels(producer: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "fdc-producer".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            producer.to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
    ])
}

/// `key=value,...` form of a label map, as used in `status.selector` and list calls.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Label selector matching only objects the operator manages (for owned-object watches).
pub fn managed_by_selector() -> String {
    format!("app.kubernetes.io/managed-by={MANAGED_BY}")
}

/// Object names derived from a kernel's name.
pub mod names {
    /// ConfigMap holding `kernel.yaml`.
    pub fn config_map(kernel: &str) -> String {
        format!("{kernel}-config")
    }
    /// Secret holding the token issuer key pair(s).
    pub fn issuer_secret(kernel: &str) -> String {
        format!("{kernel}-issuer-keys")
    }
    /// Secret holding the admin API bearer token.
    pub fn admin_secret(kernel: &str) -> String {
        format!("{kernel}-admin-token")
    }
    /// Secret holding a producer's credentials.
    pub fn producer_secret(producer: &str) -> String {
        format!("{producer}-credentials")
    }
}

/// Whether the pause annotation is set to a true-ish value.
pub fn is_paused(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(PAUSE_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}
