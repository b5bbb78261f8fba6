//! `FdcKernel` reconciler.
//!
//! Order of a pass: fetch the Secrets the pods need and validate (`validate.rs`: a missing
//! Secret, or a rendered config the kernel's own loader would refuse, is reported as
//! Degraded, not as a crash loop, and nothing is applied), make sure the
//! credential Secrets exist (created once, rewritten only on rotation or key expiry), then
//! apply config, StatefulSet, Service, PDB and ServiceMonitor with server-side apply, and
//! finally the status.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use crate::builders::service_monitor;
use crate::controller::apply::{Applier, ApplyError};
use crate::controller::kernel_status::{
    self, one_line, pod_ready, pod_state_cause, Observed, UnreadyPod,
};
use crate::controller::span::reconcile_span;
use crate::controller::{Context, Error};
use crate::crd::condition::{self, types};
use crate::crd::{FdcKernel, FdcKernelStatus};
use crate::labels::{is_paused, kernel_selector_labels, selector_string};

pub mod build;
pub mod fetch;
pub mod validate;

use build::{Desired, Unwanted};
use validate::{Blocked, RETRY_BLOCKED};

/// Controller name in metrics.
pub const CONTROLLER: &str = "fdckernel";

/// Requeue while something is moving (rollout, scale-in drain).
const REQUEUE_BUSY: Duration = Duration::from_secs(10);
/// Periodic resync when all is well.
const REQUEUE_IDLE: Duration = Duration::from_secs(300);

/// Entry point for the controller: skips objects that do not deserialize (with an Event).
/// The pass runs in the object's [`reconcile_span`].
pub async fn reconcile(
    obj: Arc<DeserializeGuard<FdcKernel>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let span = reconcile_span("FdcKernel", obj.meta());
    reconcile_guarded(obj, ctx).instrument(span).await
}

async fn reconcile_guarded(
    obj: Arc<DeserializeGuard<FdcKernel>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.start(CONTROLLER);
    let kernel = match &obj.0 {
        Ok(k) => k,
        Err(invalid) => {
            let reference = obj.object_ref(&());
            ctx.event(
                &reference,
                EventType::Warning,
                "InvalidSpec",
                "Reconcile",
                format!("cannot read FdcKernel: {}", invalid.error),
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    reconcile_kernel(kernel, &ctx).await
}

/// Reconciles one kernel.
pub async fn reconcile_kernel(kernel: &FdcKernel, ctx: &Context) -> Result<Action, Error> {
    let name = kernel.name_any();
    let generation = kernel.metadata.generation;
    let now = Timestamp::now();
    let old_conditions = kernel
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();

    if is_paused(kernel.annotations()) {
        let mut status = kernel.status.clone().unwrap_or_default();
        status.conditions = condition::merge(
            &old_conditions,
            vec![condition::new(
                types::PAUSED,
                true,
                "PausedByAnnotation",
                "reconciliation is paused; remove the fdc.dev/paused annotation to resume",
                generation,
                now,
            )],
        );
        status.observed_generation = generation;
        ctx.apply_status(kernel, &status).await?;
        return Ok(Action::await_change());
    }

    // Fetch what the spec refers to, and judge it before anything is written.
    let inputs = fetch::inputs(kernel, ctx).await?;
    let valid = match validate::validate(kernel, &inputs) {
        Ok(valid) => valid,
        Err(Blocked { reason, message }) => {
            return blocked(ctx, kernel, reason, message, now).await
        }
    };
    // Fetch what the operator owns, build what it should be, write it.
    let current = fetch::current(kernel, ctx).await?;
    let desired = build::build(&valid, &current, now)?;
    let sts = apply(&Applier::new(ctx, kernel), &desired).await?;
    let keys = desired.keys;
    let plan = desired.plan;

    // 6. Status, with the pods that are not ready and why.
    let st = sts.status.clone().unwrap_or_default();
    let unready = if st.ready_replicas.unwrap_or(0) < st.replicas.max(plan.replicas) {
        unready_pods(kernel, ctx).await?
    } else {
        Vec::new()
    };
    let old_status = kernel.status.clone().unwrap_or_default();
    let computed = kernel_status::compute(
        &Observed {
            kernel_name: &name,
            generation,
            desired: kernel.spec.replicas,
            applied: plan.replicas,
            settled: old_status.settled_replicas,
            sts: &sts,
            waiting: plan.waiting.as_deref(),
            unready: &unready,
        },
        now,
    );
    let mut updates = computed.conditions;
    updates.push(condition::new(
        types::DEGRADED,
        false,
        "AsExpected",
        "",
        generation,
        now,
    ));
    updates.push(condition::new(
        types::PAUSED,
        false,
        "NotPaused",
        "",
        generation,
        now,
    ));
    let status = FdcKernelStatus {
        observed_generation: generation,
        replicas: computed.replicas,
        ready_replicas: computed.ready_replicas,
        settled_replicas: computed.settled,
        selector: selector_string(&kernel_selector_labels(&name)),
        issuer_key_id: Some(keys.current_kid().to_string()),
        config_hash: Some(desired.config_hash),
        conditions: condition::merge(&old_conditions, updates),
    };
    ctx.apply_status(kernel, &status).await?;
    let busy = computed.busy;

    let mut next = if busy { REQUEUE_BUSY } else { REQUEUE_IDLE };
    if let Some(expiry) = keys.next_expiry() {
        let until = expiry.duration_since(now).unsigned_abs();
        next = next.min(until + Duration::from_secs(1));
    }
    Ok(Action::requeue(next))
}

/// Reports a kernel that cannot run as specified until the user acts: a Warning Event, and
/// `Ready=False`/`Degraded=True` with `reason` and `message`; applies nothing and retries
/// after [`RETRY_BLOCKED`] (a spec edit triggers a reconcile sooner).
async fn blocked(
    ctx: &Context,
    kernel: &FdcKernel,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Result<Action, Error> {
    let generation = kernel.metadata.generation;
    ctx.event(
        &kernel.object_ref(&()),
        EventType::Warning,
        reason,
        "Reconcile",
        message.clone(),
    )
    .await;
    let mut status = kernel.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.selector = selector_string(&kernel_selector_labels(&kernel.name_any()));
    let old = status.conditions.clone();
    status.conditions = condition::merge(
        &old,
        vec![
            condition::new(
                types::READY,
                false,
                reason,
                message.clone(),
                generation,
                now,
            ),
            condition::new(types::DEGRADED, true, reason, message, generation, now),
            condition::new(types::PAUSED, false, "NotPaused", "", generation, now),
        ],
    );
    ctx.apply_status(kernel, &status).await?;
    Ok(Action::requeue(RETRY_BLOCKED))
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
        }
    }
    Ok(sts)
}

/// The kernel's pods that are not Ready, each with why: its container state, or (for a
/// running container) the kernel's `/readyz` answer and its stalled stages. In ordinal order.
async fn unready_pods(kernel: &FdcKernel, ctx: &Context) -> Result<Vec<UnreadyPod>, Error> {
    let pods: Api<Pod> =
        Api::namespaced(ctx.client.clone(), &kernel.namespace().unwrap_or_default());
    let selector = selector_string(&kernel_selector_labels(&kernel.name_any()));
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    let mut unready: Vec<&Pod> = list.items.iter().filter(|p| !pod_ready(p)).collect();
    unready.sort_by_key(|p| {
        let name = p.name_any();
        let ordinal = name.rsplit('-').next().and_then(|o| o.parse::<u32>().ok());
        (ordinal, name)
    });
    Ok(join_all(unready.into_iter().map(|pod| diagnose(pod, ctx))).await)
}

async fn diagnose(pod: &Pod, ctx: &Context) -> UnreadyPod {
    let name = pod.name_any();
    if let Some(cause) = pod_state_cause(pod) {
        return UnreadyPod {
            pod: name,
            cause,
            stalled: Vec::new(),
        };
    }
    if pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_ref())
        .is_none()
    {
        return UnreadyPod {
            pod: name,
            cause: "pending (no pod IP yet)".to_string(),
            stalled: Vec::new(),
        };
    }
    let (readyz, stalled) = futures::join!(
        ctx.kernel_api.readyz(pod),
        ctx.kernel_api.stalled_stages(pod)
    );
    let cause = match readyz {
        Ok((200, _)) => "readiness probe failing (its /readyz answers ready now)".to_string(),
        Ok((_, body)) if !body.is_empty() => one_line(&body),
        Ok((status, _)) => format!("/readyz answered HTTP {status}"),
        Err(e) => format!("/readyz: {e}"),
    };
    UnreadyPod {
        pod: name,
        cause,
        stalled: stalled.unwrap_or_default(),
    }
}
