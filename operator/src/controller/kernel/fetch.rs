//! Fetch: the reads of a kernel pass, as data for the steps after it.
//!
//! [`inputs`] reads what the spec refers to (the Secrets the pods read at start), which
//! `validate` judges before anything else is read or written. [`current`] reads, for a
//! valid kernel only, what the operator owns: credential Secrets, the StatefulSet, the pod
//! a scale-in step would remove and its spill backlog, and ServiceMonitor discovery. A
//! blocked pass thus reads no more than its verdict needs.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;

use crate::controller::fetch::{read, FetchError};
use crate::controller::kernel_status::pod_ready;
use crate::controller::Context;
use crate::crd::FdcKernel;
use crate::labels::names;

/// The objects the spec refers to, as the API server holds them (`None`: not found).
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The Secret of `spec.postgres.urlSecretRef`.
    pub postgres: Option<Secret>,
    /// The Secret of `spec.redis.urlSecretRef`, when the spec names one.
    pub redis: Option<Option<Secret>>,
}

/// Reads the Secrets the kernel's pods read at start.
pub async fn inputs(kernel: &FdcKernel, ctx: &Context) -> Result<Inputs, FetchError> {
    let ns = kernel.namespace().unwrap_or_default();
    let postgres = read(ctx, &ns, &kernel.spec.postgres.url_secret_ref.name).await?;
    let redis = match &kernel.spec.redis.url_secret_ref {
        Some(r) => Some(read(ctx, &ns, &r.name).await?),
        None => None,
    };
    Ok(Inputs { postgres, redis })
}

/// What the operator owns for a kernel, as the API server holds it.
#[derive(Debug, Clone)]
pub struct Current {
    /// The issuer key Secret (`None`: not created yet).
    pub issuer: Option<Secret>,
    /// Whether the admin token Secret exists.
    pub admin_token: bool,
    /// The StatefulSet (`None`: not created yet).
    pub sts: Option<StatefulSet>,
    /// The pod a scale-in would remove next, when the spec asks for fewer replicas than the
    /// StatefulSet has.
    pub victim: Option<Victim>,
    /// Whether the cluster serves ServiceMonitors (to apply one, or to delete one no longer
    /// wanted).
    pub service_monitor_crd: bool,
}

/// The highest-ordinal pod of a StatefulSet being scaled in.
#[derive(Debug, Clone)]
pub struct Victim {
    /// Its name (`<kernel>-<ordinal>`).
    pub name: String,
    /// The pod (`None`: no such pod).
    pub pod: Option<Pod>,
    /// Its spill backlog in records, read from its `/metrics` when it is Ready (`Err`: why
    /// it could not be read); `None` when not read.
    pub spill: Option<Result<u64, String>>,
}

/// Reads the credential Secrets, the StatefulSet, the pod a scale-in step would remove
/// (and its spill backlog), and whether ServiceMonitors exist.
pub async fn current(kernel: &FdcKernel, ctx: &Context) -> Result<Current, FetchError> {
    let ns = kernel.namespace().unwrap_or_default();
    let name = kernel.name_any();
    let issuer = read(ctx, &ns, &names::issuer_secret(&name)).await?;
    let admin_token = read::<Secret>(ctx, &ns, &names::admin_secret(&name))
        .await?
        .is_some();
    let sts: Option<StatefulSet> = read(ctx, &ns, &name).await?;
    let replicas = sts.as_ref().and_then(|s| s.spec.replicas);
    let victim = match replicas {
        Some(current) if kernel.spec.replicas < current => {
            Some(victim(ctx, &ns, format!("{name}-{}", current - 1)).await?)
        }
        _ => None,
    };
    let service_monitor_crd =
        ctx.has_service_monitor_crd()
            .await
            .map_err(|source| FetchError::Read {
                what: "API group monitoring.coreos.com/v1".to_string(),
                source,
            })?;
    Ok(Current {
        issuer,
        admin_token,
        sts,
        victim,
        service_monitor_crd,
    })
}

/// Reads pod `name` and, when it is Ready, its spill backlog. A pod that is not Ready is
/// not asked: its answer could not make the scale-in proceed.
async fn victim(ctx: &Context, ns: &str, name: String) -> Result<Victim, FetchError> {
    let pod: Option<Pod> = read(ctx, ns, &name).await?;
    let spill = match &pod {
        Some(p) if pod_ready(p) => Some(
            ctx.kernel_api
                .spill_pending(p)
                .await
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    Ok(Victim { name, pod, spill })
}
