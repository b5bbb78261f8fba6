//! `FdcKernel` reconciler, a pipeline:
//!
//! 1. `fetch::inputs`: the Secrets the pods need;
//! 2. `validate`: a missing Secret, or a rendered config the kernel's own loader would
//!    refuse, blocks the pass (reported as Degraded, not as a crash loop; nothing applied);
//! 3. `fetch::current`: credential Secrets, StatefulSet, the pod a scale-in step removes and
//!    its spill backlog, ServiceMonitor discovery;
//! 4. `build` (pure): credentials to create or rotate, the objects, the replica plan, what
//!    to delete;
//! 5. `apply` through the one [`Applier`];
//! 6. `status`: written once, from how the pass ended (paused, blocked or applied). A pass
//!    that fails with an error writes none.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;

use crate::builders::service_monitor;
use crate::controller::apply::{Applier, ApplyError, Note};
use crate::controller::kernel_status::{
    self, one_line, pod_ready, pod_state_cause, Observed, UnreadyPod,
};
use crate::controller::{Context, Error, Reconciled};
use crate::crd::FdcKernel;
use crate::labels::{is_paused, kernel_selector_labels, selector_string};

pub mod build;
pub mod fetch;
pub mod ingest;
pub mod status;
pub mod validate;

use crate::kernel_api::stalled_stages;
use build::{Desired, Unwanted};
use ingest::PodReading;
use status::{Report, StatusError};
use validate::RETRY_BLOCKED;

/// Controller name in metrics.
pub const CONTROLLER: &str = "fdckernel";

/// Requeue while something is moving (rollout, scale-in drain).
const REQUEUE_BUSY: Duration = Duration::from_secs(10);
/// Periodic resync when all is well (also how often the status's lag and stored/s refresh).
const REQUEUE_IDLE: Duration = Duration::from_secs(60);

impl Reconciled for FdcKernel {
    const CONTROLLER: &'static str = CONTROLLER;

    async fn pass(&self, ctx: &Context) -> Result<Action, Error> {
        reconcile_kernel(self, ctx).await
    }
}

/// Reconciles one kernel: runs the pass, then writes the one status it ends with.
pub async fn reconcile_kernel(kernel: &FdcKernel, ctx: &Context) -> Result<Action, Error> {
    reconcile_kernel_at(kernel, ctx, Timestamp::now()).await
}

/// [`reconcile_kernel`] at time `now` (the rates between passes are per second of `now`).
pub async fn reconcile_kernel_at(
    kernel: &FdcKernel,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let (report, action) = run_pass(kernel, ctx, now).await?;
    let status = status::status(kernel, &report, now);
    ctx.apply_status(kernel, &status)
        .await
        .map_err(|source| StatusError::Write {
            what: format!(
                "{}/{}",
                kernel.namespace().unwrap_or_default(),
                kernel.name_any()
            ),
            source,
        })?;
    Ok(action)
}

/// One pass up to the status: paused, blocked (a Warning Event), or fetched, built and
/// applied, with the conditions computed from the result.
async fn run_pass(
    kernel: &FdcKernel,
    ctx: &Context,
    now: Timestamp,
) -> Result<(Report, Action), Error> {
    if is_paused(kernel.annotations()) {
        return Ok((Report::Paused, Action::await_change()));
    }

    // Fetch what the spec refers to, and judge it before anything is written. A blocked
    // kernel cannot run as specified until the user acts: a Warning Event, and
    // `Ready=False`/`Degraded=True`; nothing is applied, and the pass is retried after
    // [`RETRY_BLOCKED`] (a spec edit triggers one sooner).
    let inputs = fetch::inputs(kernel, ctx).await?;
    let valid = match validate::validate(kernel, &inputs) {
        Ok(valid) => valid,
        Err(blocked) => {
            let note = Note::warning(blocked.reason, "Reconcile", blocked.message.clone());
            Applier::new(ctx, kernel).announce(&note).await;
            return Ok((Report::Blocked(blocked), Action::requeue(RETRY_BLOCKED)));
        }
    };

    // Fetch what the operator owns, build what it should be, write it.
    let current = fetch::current(kernel, ctx).await?;
    let desired = build::build(&valid, &current, now)?;
    let sts = apply(&Applier::new(ctx, kernel), &desired).await?;
    let (keys, plan) = (&desired.keys, &desired.plan);

    // What came of it: every pod's metrics (lag, stored/s, stalled stages), and the pods
    // that are not ready and why.
    let st = sts.status.clone().unwrap_or_default();
    let pods = scrape_pods(kernel, ctx).await?;
    let unready = if st.ready_replicas.unwrap_or(0) < st.replicas.max(plan.replicas) {
        unready_pods(&pods, ctx).await
    } else {
        Vec::new()
    };
    let key = format!(
        "{}/{}",
        kernel.namespace().unwrap_or_default(),
        kernel.name_any()
    );
    let readings: Vec<PodReading> = pods
        .iter()
        .filter_map(|(pod, metrics)| {
            Some(PodReading::parse(&pod.name_any(), metrics.as_ref().ok()?))
        })
        .collect();
    let previous = ctx.ingest_sample(&key);
    let (ingest, sample) = ingest::judge(previous.as_ref(), &readings, now);
    if let Some(sample) = sample {
        ctx.keep_ingest_sample(&key, sample);
    }
    let computed = kernel_status::compute(
        &Observed {
            kernel_name: &kernel.name_any(),
            generation: kernel.metadata.generation,
            desired: kernel.spec.replicas,
            applied: plan.replicas,
            settled: kernel.status.as_ref().and_then(|s| s.settled_replicas),
            sts: &sts,
            waiting: plan.waiting.as_deref(),
            unready: &unready,
            flow: &ingest.flow,
        },
        now,
    );
    let mut next = if computed.busy {
        REQUEUE_BUSY
    } else {
        REQUEUE_IDLE
    };
    if let Some(expiry) = keys.next_expiry() {
        let until = expiry.duration_since(now).unsigned_abs();
        next = next.min(until + Duration::from_secs(1));
    }
    let report = Report::Applied {
        computed,
        issuer_key_id: keys.current_kid().to_string(),
        config_hash: desired.config_hash.clone(),
        ingest,
    };
    Ok((report, Action::requeue(next)))
}

/// Writes `desired` through the Applier: credentials (with their Events), the ConfigMap,
/// the StatefulSet (after the Events of a scale-in step), Service, PDB and ServiceMonitor,
/// then deletes what is no longer wanted. Returns the StatefulSet as stored.
async fn apply(applier: &Applier<'_>, desired: &Desired) -> Result<StatefulSet, ApplyError> {
    for write in &desired.create {
        applier.write_secret(write).await?;
    }
    let objects = &desired.apply;
    applier.apply(&objects.config_map).await?;
    for note in &desired.announce {
        applier.announce(note).await;
    }
    let sts = applier.apply(&objects.statefulset).await?;
    applier.apply(&objects.service).await?;
    if let Some(pdb) = &objects.pdb {
        applier.apply(pdb).await?;
    }
    if let Some(monitor) = &objects.service_monitor {
        applier
            .apply_dynamic(monitor, &service_monitor::api_resource())
            .await?;
    }
    for unwanted in &desired.delete {
        match unwanted {
            Unwanted::Pdb(name) => applier.delete::<PodDisruptionBudget>(name).await?,
            Unwanted::ServiceMonitor(name) => {
                applier
                    .delete_dynamic(name, &service_monitor::api_resource())
                    .await?
            }
        }
    }
    Ok(sts)
}

/// A kernel pod and its `/metrics` text (`Err`: why it could not be read).
type Scraped = (Pod, Result<String, String>);

/// The kernel's pods in ordinal order, each with its `/metrics` (pods without an IP are
/// not asked).
async fn scrape_pods(kernel: &FdcKernel, ctx: &Context) -> Result<Vec<Scraped>, Error> {
    let pods: Api<Pod> =
        Api::namespaced(ctx.client.clone(), &kernel.namespace().unwrap_or_default());
    let selector = selector_string(&kernel_selector_labels(&kernel.name_any()));
    let mut list = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    list.sort_by_key(|p| {
        let name = p.name_any();
        let ordinal = name.rsplit('-').next().and_then(|o| o.parse::<u32>().ok());
        (ordinal, name)
    });
    Ok(join_all(list.into_iter().map(|pod| async move {
        let metrics = if has_ip(&pod) {
            ctx.kernel_api
                .metrics(&pod)
                .await
                .map_err(|e| e.to_string())
        } else {
            Err("no pod IP yet".to_string())
        };
        (pod, metrics)
    }))
    .await)
}

fn has_ip(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_ref())
        .is_some()
}

/// The pods that are not Ready, each with why: its container state, or (for a running
/// container) the kernel's `/readyz` answer and its stalled stages. In ordinal order.
async fn unready_pods(pods: &[Scraped], ctx: &Context) -> Vec<UnreadyPod> {
    join_all(
        pods.iter()
            .filter(|(pod, _)| !pod_ready(pod))
            .map(|(pod, metrics)| diagnose(pod, metrics, ctx)),
    )
    .await
}

async fn diagnose(pod: &Pod, metrics: &Result<String, String>, ctx: &Context) -> UnreadyPod {
    let name = pod.name_any();
    if let Some(cause) = pod_state_cause(pod) {
        return UnreadyPod {
            pod: name,
            cause,
            stalled: Vec::new(),
        };
    }
    if !has_ip(pod) {
        return UnreadyPod {
            pod: name,
            cause: "pending (no pod IP yet)".to_string(),
            stalled: Vec::new(),
        };
    }
    let cause = match ctx.kernel_api.readyz(pod).await {
        Ok((200, _)) => "readiness probe failing (its /readyz answers ready now)".to_string(),
        Ok((_, body)) if !body.is_empty() => one_line(&body),
        Ok((status, _)) => format!("/readyz answered HTTP {status}"),
        Err(e) => format!("/readyz: {e}"),
    };
    UnreadyPod {
        pod: name,
        cause,
        stalled: metrics.as_deref().map(stalled_stages).unwrap_or_default(),
    }
}
