//! `FdcKernel` reconciler.
//!
//! Order of a pass: check the Secrets the pods need (a missing one is reported as Degraded,
//! not as a crash loop), check the rendered config with the kernel's own loader (a config
//! the kernel would refuse is reported as Degraded and nothing is applied), make sure the
//! credential Secrets exist (created once, rewritten only on rotation or key expiry), then
//! apply config, StatefulSet, Service, PDB and ServiceMonitor with server-side apply, and
//! finally the status.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::Instrument;

use crate::builders::issuer_keys::{self, IssuerKeySet};
use crate::builders::{config, config_check, pdb, service, service_monitor, statefulset};
use crate::controller::kernel_status::{
    self, one_line, pod_ready, pod_state_cause, Observed, UnreadyPod,
};
use crate::controller::span::reconcile_span;
use crate::controller::{not_found_as_none, Context, Error};
use crate::crd::condition::{self, types};
use crate::crd::kernel::SecretKeyRef;
use crate::crd::{FdcKernel, FdcKernelStatus};
use crate::duration;
use crate::labels::{
    is_paused, kernel_selector_labels, names, selector_string, FIELD_MANAGER,
    ROTATE_ISSUER_KEY_ANNOTATION, ROTATION_HANDLED_ANNOTATION,
};

/// Controller name in metrics.
pub const CONTROLLER: &str = "fdckernel";

/// Requeue while something is moving (rollout, scale-in drain).
const REQUEUE_BUSY: Duration = Duration::from_secs(10);
/// Requeue while waiting for the user to fix something (e.g. create a Secret).
const REQUEUE_BLOCKED: Duration = Duration::from_secs(30);
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
    let ns = kernel.namespace().unwrap_or_default();
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

    // 1. Secrets the pods read at start. Without them pods would sit in
    //    CreateContainerConfigError; say so on the FdcKernel instead.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let mut missing = Vec::new();
    let postgres = &kernel.spec.postgres.url_secret_ref;
    if let Some(problem) = check_secret_key(&secrets, postgres).await? {
        missing.push(format!("Postgres URL: {problem}"));
    }
    if let Some(redis) = &kernel.spec.redis.url_secret_ref {
        if let Some(problem) = check_secret_key(&secrets, redis).await? {
            missing.push(format!("Redis URL: {problem}"));
        }
    }
    if !missing.is_empty() {
        let message = format!(
            "{}. Create it, e.g. `kubectl -n {ns} create secret generic {} --from-literal={}=postgres://USER:PASS@HOST:5432/DB`; the operator retries every {}s",
            missing.join("; "),
            postgres.name,
            postgres.key,
            REQUEUE_BLOCKED.as_secs()
        );
        return blocked(ctx, kernel, "SecretMissing", message, now).await;
    }

    // 2. Validate: the kernel's own config loader judges the config this spec renders to,
    //    before anything is written (no key rotation, no ConfigMap a restarting pod would
    //    read, no rollout). The issuer key ids only name files in auth.verify_keys, which
    //    the loader does not open, so a placeholder gives the same verdict as the real ids.
    let candidate = config::render(kernel, &["key-id".to_string()]);
    let verdict = match &candidate {
        Ok(rendered) => config_check::check(rendered).map_err(|e| e.to_string()),
        Err(e) => Err(format!("spec cannot be rendered: {e}")),
    };
    if let Err(problem) = verdict {
        let message = format!(
            "{problem}. Nothing was applied; the pods keep their current config. Fix the FdcKernel (the operator retries every {}s)",
            REQUEUE_BLOCKED.as_secs()
        );
        return blocked(ctx, kernel, "InvalidConfig", message, now).await;
    }

    // 3. Credentials: generated once, never regenerated by a plain reconcile.
    let keys = ensure_issuer_keys(kernel, &secrets, ctx, now).await?;
    ensure_admin_token(kernel, &secrets, ctx).await?;

    // 4. Config.
    let rendered = config::render(kernel, &keys.verify_kids())?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    config_maps
        .patch(
            &names::config_map(&name),
            &params,
            &Patch::Apply(config::config_map(kernel, &rendered)?),
        )
        .await?;

    // 5. Workload, one scale-in step at a time.
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = statefulsets.get_opt(&name).await?;
    let plan = plan_replicas(kernel, existing.as_ref(), ctx).await?;
    if let Some((pod, why)) = &plan.removed_pod {
        let note = format!(
            "removing pod {pod} ({why}): replicas {} -> {}, target {}",
            plan.replicas + 1,
            plan.replicas,
            kernel.spec.replicas
        );
        ctx.event(
            &kernel.object_ref(&()),
            EventType::Normal,
            "ScalingIn",
            "Scale",
            note,
        )
        .await;
    }
    let sts = statefulsets
        .patch(
            &name,
            &params,
            &Patch::Apply(statefulset::statefulset(
                kernel,
                plan.replicas,
                &rendered.hash,
            )?),
        )
        .await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    services
        .patch(&name, &params, &Patch::Apply(service::service(kernel)?))
        .await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    match pdb::pdb(kernel, plan.replicas)? {
        Some(p) => {
            pdbs.patch(&name, &params, &Patch::Apply(p)).await?;
        }
        None => {
            not_found_as_none(pdbs.delete(&name, &DeleteParams::default()).await)?;
        }
    }
    if kernel.spec.service_monitor.enabled && ctx.has_service_monitor_crd().await? {
        let monitors: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &service_monitor::api_resource());
        monitors
            .patch(
                &name,
                &params,
                &Patch::Apply(service_monitor::service_monitor(kernel)?),
            )
            .await?;
    }

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
        config_hash: Some(rendered.hash.clone()),
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
/// after [`REQUEUE_BLOCKED`] (a spec edit triggers a reconcile sooner).
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
    Ok(Action::requeue(REQUEUE_BLOCKED))
}

/// `None` when `r` names an existing Secret with that key; else what is wrong.
async fn check_secret_key(
    secrets: &Api<Secret>,
    r: &SecretKeyRef,
) -> Result<Option<String>, Error> {
    Ok(match secrets.get_opt(&r.name).await? {
        None => Some(format!("Secret {} not found", r.name)),
        Some(s) if !s.data.as_ref().is_some_and(|d| d.contains_key(&r.key)) => {
            Some(format!("Secret {} has no key {:?}", r.name, r.key))
        }
        Some(_) => None,
    })
}

/// Reads the issuer key Secret, creating it if absent; rotates on request and drops keys
/// whose trust ended. Each write is an optimistic-concurrency replace, so two operator
/// replicas (during a leader hand-over) cannot both rotate.
async fn ensure_issuer_keys(
    kernel: &FdcKernel,
    secrets: &Api<Secret>,
    ctx: &Context,
    now: Timestamp,
) -> Result<IssuerKeySet, Error> {
    let name = names::issuer_secret(&kernel.name_any());
    let requested = kernel
        .annotations()
        .get(ROTATE_ISSUER_KEY_ANNOTATION)
        .cloned();
    let reference = kernel.object_ref(&());

    let Some(existing) = secrets.get_opt(&name).await? else {
        let keys = IssuerKeySet::generate()?;
        // A rotation annotation present at creation is considered handled: the key is new.
        let secret = keys.to_secret(kernel, requested.as_deref())?;
        secrets.create(&post_params(), &secret).await?;
        ctx.event(
            &reference,
            EventType::Normal,
            "IssuerKeyCreated",
            "CreateKey",
            format!("created token issuer key {}", keys.current_kid()),
        )
        .await;
        return Ok(keys);
    };

    let mut keys = IssuerKeySet::from_secret(&existing)?;
    let handled = existing
        .annotations()
        .get(ROTATION_HANDLED_ANNOTATION)
        .cloned();
    let mut changed = false;
    let mut notes = Vec::new();
    if requested.is_some() && requested != handled {
        let old = keys.current_kid().to_string();
        let keep_for = kernel
            .token_ttl()
            .map_err(|e| crate::builders::BuildError::Invalid(format!("auth.tokenTTL: {e}")))?;
        let new = keys.rotate(keep_for, now)?;
        changed = true;
        notes.push((
            "IssuerKeyRotated",
            format!(
                "issuer key rotated: {old} -> {new}; {old} stays trusted for {} (auth.tokenTTL {} + {} margin)",
                duration::exact(keep_for + issuer_keys::RETIRE_MARGIN),
                duration::exact(keep_for),
                duration::exact(issuer_keys::RETIRE_MARGIN)
            ),
        ));
    }
    let retired = keys.prune(now);
    if !retired.is_empty() {
        changed = true;
        notes.push((
            "IssuerKeyRetired",
            format!("issuer keys no longer trusted: {}", retired.join(", ")),
        ));
    }
    if changed {
        let mut secret = keys.to_secret(kernel, requested.as_deref().or(handled.as_deref()))?;
        secret.metadata.resource_version = existing.resource_version();
        secrets
            .replace(&name, &PostParams::default(), &secret)
            .await?;
        for (reason, note) in notes {
            ctx.event(&reference, EventType::Normal, reason, "RotateKey", note)
                .await;
        }
    }
    Ok(keys)
}

/// Creates the admin token Secret if absent; never touches an existing one.
async fn ensure_admin_token(
    kernel: &FdcKernel,
    secrets: &Api<Secret>,
    ctx: &Context,
) -> Result<(), Error> {
    let name = names::admin_secret(&kernel.name_any());
    if secrets.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let secret = issuer_keys::admin_secret(kernel, &issuer_keys::generate_admin_token())?;
    secrets.create(&post_params(), &secret).await?;
    ctx.event(
        &kernel.object_ref(&()),
        EventType::Normal,
        "AdminTokenCreated",
        "CreateToken",
        format!("created admin API token Secret {name}"),
    )
    .await;
    Ok(())
}

/// How many replicas the StatefulSet gets this pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaPlan {
    /// Replicas to apply.
    pub replicas: i32,
    /// `Some(message)` while a scale-in waits for a spill to drain.
    pub waiting: Option<String>,
    /// The pod this pass removes, and why it may go.
    pub removed_pod: Option<(String, &'static str)>,
}

/// Scale-out is immediate. Scale-in removes the highest ordinal only once it is Ready and
/// its spill backlog is zero (read from its `/metrics`), one pod per pass. What this cannot
/// rule out (an outage starting between the check and the pod's exit) is in docs/operator.md.
async fn plan_replicas(
    kernel: &FdcKernel,
    existing: Option<&StatefulSet>,
    ctx: &Context,
) -> Result<ReplicaPlan, Error> {
    let desired = kernel.spec.replicas;
    let current = existing.and_then(|s| s.spec.replicas).unwrap_or(desired);
    if desired >= current {
        return Ok(ReplicaPlan {
            replicas: desired,
            waiting: None,
            removed_pod: None,
        });
    }
    let victim = format!("{}-{}", kernel.name_any(), current - 1);
    let pods: Api<Pod> =
        Api::namespaced(ctx.client.clone(), &kernel.namespace().unwrap_or_default());
    let Some(pod) = pods.get_opt(&victim).await? else {
        // No pod: nothing runs that could drain; its PVC is retained (see docs).
        return Ok(ReplicaPlan {
            replicas: current - 1,
            waiting: None,
            removed_pod: Some((victim, "no such pod; its volume is kept")),
        });
    };
    // Not Ready means its /readyz fails: Postgres (or Redis) unreachable or ingest blocked.
    // A pod stopped in that state may spill the batch it finishes during shutdown, after
    // the spill read below, to a volume no running pod replays. Wait for it to recover.
    let waiting = if !pod_ready(&pod) {
        Some(format!("scale-in waits: pod {victim} is not Ready (Postgres or Redis unreachable, or ingest blocked); stopping it now could spill its last batch where no pod replays it. It is removed once it is Ready and its spill is empty"))
    } else {
        match ctx.kernel_api.spill_pending(&pod).await {
            Ok(0) => None,
            Ok(records) => Some(format!("scale-in waits: pod {victim} still holds {records} spilled records; it is removed once they are replayed to Postgres (check Postgres health if this persists)")),
            Err(e) => Some(format!("scale-in waits: cannot read the spill backlog of pod {victim} ({e}); it is removed once its /metrics reports an empty spill")),
        }
    };
    Ok(match waiting {
        None => ReplicaPlan {
            replicas: current - 1,
            waiting: None,
            removed_pod: Some((victim, "Ready, spill empty")),
        },
        Some(w) => ReplicaPlan {
            replicas: current,
            waiting: Some(w),
            removed_pod: None,
        },
    })
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

/// Create/replace parameters carrying the operator's field manager (these writes cannot be
/// applies: they must fail on conflict instead of overwriting credentials).
fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}
