//! Checks rendered manifests (e.g. `helm template` output) against the Kubernetes API types:
//! every document must deserialize into its k8s-openapi (or fdc CRD) type with no field left
//! over, so a typo such as `imagePullPolicies` or a misplaced key fails CI instead of being
//! silently dropped by the API server.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::crd::{FdcKernel, FdcSchema, Producer};
use crate::keda::ScaledObject;

/// One checked document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub kind: String,
    pub name: String,
}

/// Checks every document of a multi-document YAML stream. Empty documents (helm leaves
/// some) are skipped. Returns what was checked, or every problem found.
pub fn check_documents(yaml: &str) -> Result<Vec<Checked>, Vec<String>> {
    let mut checked = Vec::new();
    let mut problems = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = match Value::deserialize(doc) {
            Ok(Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("document {i}: not YAML: {e}"));
                continue;
            }
        };
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let label = format!("document {i} ({api_version} {kind} {name:?})");
        if name.is_empty() {
            problems.push(format!("{label}: metadata.name is missing"));
        }
        let result = match (api_version.as_str(), kind.as_str()) {
            ("v1", "ServiceAccount") => strict::<ServiceAccount>(value),
            ("v1", "Service") => strict::<Service>(value),
            ("v1", "ConfigMap") => strict::<ConfigMap>(value),
            ("v1", "Secret") => strict::<Secret>(value),
            ("apps/v1", "Deployment") => strict::<Deployment>(value),
            ("policy/v1", "PodDisruptionBudget") => strict::<PodDisruptionBudget>(value),
            ("coordination.k8s.io/v1", "Lease") => strict::<Lease>(value),
            ("autoscaling/v2", "HorizontalPodAutoscaler") => {
                strict::<HorizontalPodAutoscaler>(value)
            }
            ("keda.sh/v1alpha1", "ScaledObject") => strict::<ScaledObject>(value),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => strict::<ClusterRole>(value),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                strict::<ClusterRoleBinding>(value)
            }
            ("rbac.authorization.k8s.io/v1", "Role") => strict::<Role>(value),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => strict::<RoleBinding>(value),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                strict::<CustomResourceDefinition>(value)
            }
            // kube-derive's root types check apiVersion/kind outside serde, which reports
            // them as ignored; they were matched above.
            ("fdc.dev/v1alpha1", "FdcKernel") => {
                strict::<FdcKernel>(value).or_else(allow_type_meta)
            }
            ("fdc.dev/v1alpha1", "Producer") => strict::<Producer>(value).or_else(allow_type_meta),
            ("fdc.dev/v1alpha1", "FdcSchema") => {
                strict::<FdcSchema>(value).or_else(allow_type_meta)
            }
            _ => Err(vec![
                "kind not known to the checker; add its type to manifests.rs".to_string(),
            ]),
        };
        match result {
            Ok(()) => checked.push(Checked { kind, name }),
            Err(errs) => problems.extend(errs.into_iter().map(|e| format!("{label}: {e}"))),
        }
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

fn allow_type_meta(errors: Vec<String>) -> Result<(), Vec<String>> {
    let rest: Vec<String> = errors
        .into_iter()
        .filter(|e| e != "unknown field apiVersion" && e != "unknown field kind")
        .collect();
    if rest.is_empty() {
        Ok(())
    } else {
        Err(rest)
    }
}

/// Deserializes `value` as `T`, reporting every field `T` does not know.
pub fn strict<T: DeserializeOwned>(value: Value) -> Result<(), Vec<String>> {
    let mut unknown = Vec::new();
    // serde_ignored writes `?` path segments for `Option`s; drop them for readable paths.
    let result: Result<T, _> = serde_ignored::deserialize(value, |path| {
        unknown.push(path.to_string().replace(".?", ""))
    });
    let mut errors: Vec<String> = unknown
        .into_iter()
        .map(|p| format!("unknown field {p}"))
        .collect();
    if let Err(e) = result {
        errors.push(format!("does not match the API type: {e}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
---
# Source: fdc/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: fdc-operator
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fdc-operator
spec:
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
        - name: operator
          image: fdc-operator:dev
          imagePullPolicy: IfNotPresent
"#;

    #[test]
    fn accepts_valid_documents_and_skips_empty_ones() {
        let checked = check_documents(GOOD).expect("valid");
        assert_eq!(
            checked,
            vec![
                Checked {
                    kind: "ServiceAccount".into(),
                    name: "fdc-operator".into()
                },
                Checked {
                    kind: "Deployment".into(),
                    name: "fdc-operator".into()
                },
            ]
        );
    }

    #[test]
    fn rejects_unknown_fields_with_their_path() {
        let bad = GOOD.replace("imagePullPolicy", "imagePullPolicies");
        let problems = check_documents(&bad).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("unknown field spec.template.spec.containers.0.imagePullPolicies"),
            "{problems:?}"
        );
    }

    #[test]
    fn rejects_wrong_types_unknown_kinds_and_missing_names() {
        let wrong_type = GOOD.replace("name: operator", "name: [operator]");
        assert_eq!(check_documents(&wrong_type).unwrap_err().len(), 1);
        let unknown_kind = "apiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n";
        assert!(check_documents(unknown_kind).unwrap_err()[0].contains("kind not known"));
        let nameless = "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n";
        assert!(check_documents(nameless).unwrap_err()[0].contains("metadata.name is missing"));
    }

    #[test]
    fn checks_fdc_resources_too() {
        let kernel = "apiVersion: fdc.dev/v1alpha1\nkind: FdcKernel\nmetadata: {name: k}\n\
                      spec:\n  image: fdc-kernel:dev\n  redis: {url: 'redis://r:6379'}\n  \
                      postgres: {urlSecretRef: {name: pg}}\n  replicaz: 2\n";
        let problems = check_documents(kernel).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("unknown field spec.replicaz"),
            "{problems:?}"
        );
    }
}
