//! The kernel StatefulSet.
//!
//! Why a StatefulSet: each replica needs its own spill volume that survives restarts
//! (`volumeClaimTemplates`), and a stable name that doubles as its consumer name in the
//! Redis consumer group (`FDC_INGEST__CONSUMER` from the downward API), so a restarted pod
//! picks up its own pending entries.

use std::collections::BTreeMap;

use fdc_common::contract;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::builders::config::{
    ADMIN_DIR, ADMIN_PORT, CONFIG_KEY, CONFIG_PATH, HTTP_PORT, KEYS_DIR, SPILL_DIR,
};
use crate::builders::{owner_meta, BuildError};
use crate::crd::kernel::SecretKeyRef;
use crate::crd::FdcKernel;
use crate::labels::{kernel_labels, kernel_selector_labels, names, CONFIG_HASH_ANNOTATION};

/// UID/GID the kernel runs as (distroless `nonroot`; the kernel image uses the same).
pub const RUN_AS: i64 = 65532;
/// Seconds added to the kernel's shutdown timeout for the pod's termination grace period,
/// so the kubelet never SIGKILLs a kernel that is still finishing its last batch.
pub const GRACE_MARGIN_SECS: i64 = 15;
/// Probe timeout: the kernel answers `/readyz` within 500 ms, also when Postgres or Redis
/// hangs (its own checks are bounded), so a 503 naming the cause arrives well before the
/// kubelet gives up with "context deadline exceeded".
pub const PROBE_TIMEOUT_SECS: i32 = 3;
/// Name of the spill volume claim template (PVCs are `spill-<pod>`).
pub const SPILL_VOLUME: &str = "spill";
/// Name of the kernel container.
pub const CONTAINER: &str = "kernel";

/// The StatefulSet for `kernel` with `replicas` pods; `pod_hash` goes on the pod template.
pub fn statefulset(
    kernel: &FdcKernel,
    replicas: i32,
    pod_hash: &str,
) -> Result<StatefulSet, BuildError> {
    let name = kernel.name_any();
    let spec = &kernel.spec;
    let shutdown = kernel
        .shutdown_timeout()
        .map_err(|e| BuildError::Invalid(format!("shutdownTimeout: {e}")))?;
    let grace =
        shutdown.as_secs() as i64 + i64::from(shutdown.subsec_nanos() > 0) + GRACE_MARGIN_SECS;

    let mut env = vec![EnvVar {
        name: contract::env_name("ingest.consumer"),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }];
    env.push(secret_env(
        &contract::env_name("postgres.url"),
        &spec.postgres.url_secret_ref,
    ));
    if let Some(r) = &spec.redis.url_secret_ref {
        env.push(secret_env(&contract::env_name("redis.url"), r));
    }

    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(PROBE_TIMEOUT_SECS),
        ..Probe::default()
    };

    let container = Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(vec!["run".into(), "--config".into(), CONFIG_PATH.into()]),
        env: Some(env),
        ports: Some(vec![
            container_port("http", HTTP_PORT),
            container_port("admin", ADMIN_PORT),
        ]),
        // Liveness is lenient (a kernel waiting for Postgres is alive); readiness is not.
        liveness_probe: Some(probe(contract::HEALTHZ_PATH, 10, 6)),
        readiness_probe: Some(probe(contract::READYZ_PATH, 5, 2)),
        resources: spec.resources.clone(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_PATH.into(),
                // subPath: a mount at /etc/fdc would hide the key mounts below it.
                sub_path: Some(CONFIG_KEY.into()),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            read_only_mount("issuer-keys", KEYS_DIR),
            read_only_mount("admin-token", ADMIN_DIR),
            VolumeMount {
                name: SPILL_VOLUME.into(),
                mount_path: SPILL_DIR.into(),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    let pod_spec = PodSpec {
        containers: vec![container],
        termination_grace_period_seconds: Some(grace),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty())
            .then(|| spec.image_pull_secrets.clone()),
        // The kernel talks to Redis and Postgres only; it needs no API access.
        automount_service_account_token: Some(false),
        // No Docker-link style variables for the namespace's Services: a Service named `fdc`
        // (the usual kernel name) would inject FDC_SERVICE_HOST, FDC_PORT, ... which the
        // kernel's config loader (prefix FDC_, unknown keys denied) refuses, so the pod would
        // crash-loop. The kernel reaches Redis and Postgres by DNS names from its config.
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            // Makes the spill volume writable for the non-root user.
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::config_map(&name),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            secret_volume("issuer-keys", names::issuer_secret(&name)),
            secret_volume("admin-token", names::admin_secret(&name)),
        ]),
        ..PodSpec::default()
    };

    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(SPILL_VOLUME.into()),
            labels: Some(kernel_labels(&name)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.spill.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(spec.spill.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };

    Ok(StatefulSet {
        metadata: owner_meta(kernel, name.clone())?,
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(name.clone()),
            // Pods start and stop in parallel; scale-in is still one pod at a time because
            // the operator lowers `replicas` only after the last pod's spill is drained.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(kernel_selector_labels(&name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(kernel_labels(&name)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        pod_hash.to_string(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            volume_claim_templates: Some(vec![claim]),
            // Spill PVCs are kept on scale-in and on deletion: a volume may still hold events
            // (e.g. a pod removed while Postgres was down); scaling back up re-attaches it
            // and the kernel replays it. Deleting them is a deliberate, documented step.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some("Retain".into()),
                    when_deleted: Some("Retain".into()),
                },
            ),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    })
}

fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn read_only_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn secret_volume(name: &str, secret: String) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            // Owner and group (fsGroup) read only: the files hold a private key and the admin token.
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}
