//! KEDA's `ScaledObject` (`keda.sh/v1alpha1`, KEDA 2.x) as typed structs, written down from the
//! fields KEDA documents for its CRD, so `check-manifests` can validate the autoscaling example
//! (docs/examples/autoscaling/) without a cluster: an unknown or misplaced field, or a wrong
//! type, fails like for the Kubernetes API types. The HPA `behavior` is the Kubernetes type.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObject {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ScaledObjectSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    pub scale_target_ref: ScaleTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_period: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cooldown_period: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_replica_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replica_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced: Option<Advanced>,
    pub triggers: Vec<Trigger>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_source_container_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    pub failure_threshold: i32,
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Advanced {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to_original_replica_count: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizontal_pod_autoscaler_config: Option<HpaConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_modifiers: Option<ScalingModifiers>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HpaConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingModifiers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scaler settings; KEDA takes every value as a string.
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<AuthenticationRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cached_metrics: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

    use super::*;
    use crate::manifests::check_documents;

    const KEDA: &str = include_str!("../../docs/examples/autoscaling/keda-scaledobject.yaml");
    const HPA: &str = include_str!("../../docs/examples/autoscaling/hpa-external.yaml");

    #[test]
    fn the_examples_pass_the_manifest_check() {
        let checked = check_documents(&format!("{KEDA}\n---\n{HPA}")).unwrap();
        let kinds: Vec<&str> = checked.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["ScaledObject", "HorizontalPodAutoscaler"]);
    }

    #[test]
    fn both_examples_scale_an_fdckernel_in_slowly_and_never_to_zero() {
        let keda: ScaledObject = serde_yaml::from_str(KEDA).unwrap();
        let target = &keda.spec.scale_target_ref;
        assert_eq!(target.api_version.as_deref(), Some("fdc.dev/v1alpha1"));
        assert_eq!(target.kind.as_deref(), Some("FdcKernel"));
        assert_eq!(keda.spec.min_replica_count, Some(2));
        assert_eq!(keda.spec.triggers[0].type_, "redis-streams");
        assert_eq!(keda.spec.triggers[0].metadata["consumerGroup"], "kernel");
        let keda_down = keda
            .spec
            .advanced
            .and_then(|a| a.horizontal_pod_autoscaler_config)
            .and_then(|h| h.behavior)
            .and_then(|b| b.scale_down)
            .unwrap();

        let hpa: HorizontalPodAutoscaler = serde_yaml::from_str(HPA).unwrap();
        let spec = hpa.spec;
        assert_eq!(
            spec.scale_target_ref.api_version.as_deref(),
            Some("fdc.dev/v1alpha1")
        );
        assert_eq!(spec.scale_target_ref.kind, "FdcKernel");
        assert_eq!(spec.min_replicas, Some(2));
        let metric = &spec.metrics.unwrap()[0];
        assert_eq!(metric.type_, "External");
        assert_eq!(
            metric.external.as_ref().unwrap().metric.name,
            "fdc_group_lag"
        );
        let hpa_down = spec.behavior.unwrap().scale_down.unwrap();

        for down in [keda_down, hpa_down] {
            assert!(down.stabilization_window_seconds.unwrap() >= 300);
            let policy = &down.policies.unwrap()[0];
            assert_eq!((policy.type_.as_str(), policy.value), ("Pods", 1));
        }
    }

    #[test]
    fn a_misplaced_or_mistyped_field_fails() {
        let misplaced = KEDA.replace("  minReplicaCount: 2", "  minReplicas: 2");
        let problems = check_documents(&misplaced).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("unknown field spec.minReplicas")),
            "{problems:?}"
        );
        let mistyped = KEDA.replace("lagCount: \"5000\"", "lagCount: [5000]");
        assert!(check_documents(&mistyped).is_err());
        let hpa_typo = HPA.replace("averageValue:", "averageValues:");
        let problems = check_documents(&hpa_typo).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("averageValues")),
            "{problems:?}"
        );
    }
}
