//! `Producer` reconciler: credentials Secret, token renewal, approval of an external public
//! key at the kernel, binding to a payload schema at the kernel, revocation on delete.
//!
//! A pass is a pipeline: `fetch::kernel` → `validate` (kernel found, namespace allowed,
//! stream served) → `fetch::current` (issuer key, stored credentials) →
//! `validate::issuer_keys` → `build` (pure: key pair, token reused or issued, the Secret) →
//! apply (approve `spec.publicKey` at the kernel, bind `spec.schema` there, announce a new
//! token, apply the Secret
//! through the [`Applier`]) → `status`, written once from how the pass ended. The finalizer's
//! cleanup (revocation) is a separate path.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::ResourceExt;
use uuid::Uuid;

use crate::builders::issuer_keys;
use crate::controller::key_approval::{self, Outcome};
use crate::controller::schema_binding;
use crate::controller::{Context, Error, Reconciled};
use crate::crd::condition::{self, types};
use crate::crd::{FdcKernel, Producer};
use crate::kernel_api::{AdminTarget, Revoked};
use crate::labels::{is_paused, names, PRODUCER_FINALIZER, SKIP_REVOKE_ANNOTATION};

pub mod build;
pub mod fetch;
pub mod last_seen;
pub mod status;
pub mod validate;

use crate::controller::apply::{Applier, Note};
use status::Report;

/// Controller name in metrics.
pub const CONTROLLER: &str = "producer";

/// Never requeue sooner than this for renewal (a tiny TTL must not spin the controller).
const MIN_RENEW_DELAY: Duration = Duration::from_secs(10);

impl Reconciled for Producer {
    const CONTROLLER: &'static str = CONTROLLER;

    async fn pass(&self, ctx: &Context) -> Result<Action, Error> {
        reconcile_producer(self, ctx).await
    }
}

/// One pass of a readable Producer, through its finalizer: apply, or clean up when deleted.
async fn reconcile_producer(producer: &Producer, ctx: &Context) -> Result<Action, Error> {
    let producer = Arc::new(producer.clone());
    let api: Api<Producer> = Api::namespaced(
        ctx.client.clone(),
        &producer.namespace().unwrap_or_default(),
    );
    finalizer(&api, PRODUCER_FINALIZER, producer, |event| async {
        match event {
            FinalizerEvent::Apply(p) => apply(&p, ctx).await,
            FinalizerEvent::Cleanup(p) => cleanup(&p, ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// The producer id: the Producer object's UID, stable for its whole life and known even
/// when its status was lost.
pub fn producer_id(producer: &Producer) -> Result<Uuid, Error> {
    producer
        .uid()
        .and_then(|u| Uuid::parse_str(&u).ok())
        .ok_or_else(|| Error::from(crate::builders::BuildError::MissingField("metadata.uid")))
}

/// Renew once two thirds of a token's lifetime have passed.
pub fn renew_at(expires_at: Timestamp, ttl: Duration) -> Timestamp {
    expires_at - SignedDuration::try_from(ttl / 3).unwrap_or(SignedDuration::ZERO)
}

/// Ensures the credentials Secret holds a valid, current token: runs the pass, then writes
/// the one status it ends with.
pub async fn apply(producer: &Producer, ctx: &Context) -> Result<Action, Error> {
    let now = Timestamp::now();
    let id = producer_id(producer)?;
    let (report, action) = run_pass(producer, id, ctx, now).await?;
    let status = status::status(producer, id, &report, now);
    ctx.apply_status(producer, &status).await?;
    Ok(action)
}

/// One pass up to the status: fetch and validate the kernel, fetch its issuer key and
/// what is stored, build the credentials, then apply: approve `spec.publicKey` at the
/// kernel (an admin API call), announce a new token, apply the Secret.
async fn run_pass(
    producer: &Producer,
    id: Uuid,
    ctx: &Context,
    now: Timestamp,
) -> Result<(Report, Action), Error> {
    if is_paused(producer.annotations()) {
        return Ok((Report::Paused, Action::await_change()));
    }

    // The kernel, its namespace policy and its stream; then its issuer key and what is
    // stored for this Producer.
    let kernel = fetch::kernel(producer, ctx).await?;
    let checked = match validate::validate(producer, id, kernel)? {
        Ok(valid) => {
            let current = fetch::current(producer, ctx).await?;
            validate::issuer_keys(&valid, current.issuer.as_ref())?
                .map(|keys| (valid, keys, current.stored))
        }
        Err(blocked) => Err(blocked),
    };
    let (valid, keys, stored) = match checked {
        Ok(checked) => checked,
        Err(blocked) => {
            let action = blocked.action();
            return Ok((Report::Blocked(blocked), action));
        }
    };

    let desired = build::build(&valid, &keys, &stored, now)?;

    // Apply. An external key is approved at the kernel before its credentials are
    // written, so the producer can also run `fdc-kernel register` with it.
    let mut key_condition = None;
    if desired.approve_key {
        let target = key_approval::Target {
            producer,
            kernel: &valid.kernel,
            producer_id: id,
            public_key_pem: &desired.public_pem,
            fingerprint: &desired.fingerprint,
        };
        match key_approval::approve(ctx, &target, producer.metadata.generation, now).await? {
            Outcome::Proceed(c) => key_condition = Some(c),
            Outcome::Blocked {
                reason,
                message,
                requeue,
            } => {
                let report = Report::KeyBlocked {
                    reason,
                    message,
                    fingerprint: desired.fingerprint,
                };
                return Ok((report, Action::requeue(requeue)));
            }
        }
    }
    // The schema binding (or unbinding); a failed one does not hold back the credentials.
    let schema = schema_binding::bind(ctx, producer, &valid.kernel, id, now).await?;
    let applier = Applier::new(ctx, producer);
    for note in &desired.announce {
        applier.announce(note).await;
    }
    applier.apply(&desired.secret).await?;
    let last_seen = last_seen::read_last_seen(ctx, &valid.kernel, id).await;

    // Next pass: renewal, when `tokenExpiresIn` would read one unit less, or when the
    // last-seen time is read again.
    let expires_at = desired.issued.expires_at;
    let renew = renew_at(expires_at, valid.ttl);
    let reading_holds = status::expires_in(expires_at, now).1;
    let wait = renew.duration_since(now).unsigned_abs();
    let mut next = if renew > now {
        wait.min(reading_holds).min(last_seen::REFRESH)
    } else {
        MIN_RENEW_DELAY
    };
    if let Some(retry) = schema.as_ref().and_then(|b| b.retry) {
        next = next.min(retry);
    }
    let report = Report::Issued {
        issued: desired.issued,
        fingerprint: desired.fingerprint,
        renew,
        conditions: key_condition
            .into_iter()
            .chain(schema.map(|b| b.condition))
            .collect(),
        last_seen,
    };
    Ok((report, Action::requeue(next.max(MIN_RENEW_DELAY))))
}

/// Revokes the producer at its kernel before the finalizer lets the object (and, through
/// the owner reference, its Secret) go. While revocation fails the Producer shows
/// `Ready=False` `DeletionBlocked` with the cause and the way out, not the old
/// `CredentialsIssued`.
pub async fn cleanup(producer: &Producer, ctx: &Context) -> Result<Action, Error> {
    match revoke(producer, ctx).await {
        Ok(action) => Ok(action),
        Err(e) => {
            let stamp = condition::Stamp {
                generation: producer.metadata.generation,
                now: Timestamp::now(),
            };
            let mut status = producer.status.clone().unwrap_or_default();
            status.conditions = condition::merge(
                &status.conditions,
                vec![stamp.condition(
                    types::READY,
                    false,
                    "DeletionBlocked",
                    deletion_blocked_message(producer, &e),
                )],
            );
            ctx.apply_status(producer, &status).await?;
            Err(e)
        }
    }
}

/// Why a deletion waits, until when the producer's token stays valid, and how to give up.
pub fn deletion_blocked_message(producer: &Producer, e: &Error) -> String {
    let ns = producer.namespace().unwrap_or_default();
    let kernel_ns = producer.kernel_namespace().unwrap_or(&ns).to_string();
    let until = producer
        .status
        .as_ref()
        .and_then(|s| s.token_expires_at.as_ref())
        .map_or_else(|| "its expiry".to_string(), |t| t.0.to_string());
    format!(
        "deletion waits: the producer must be revoked at FdcKernel {kernel_ns}/{} first, which failed: {e}. Retried every 15s; meanwhile its token stays valid until {until}. To delete without revoking: kubectl -n {ns} annotate producer {} {SKIP_REVOKE_ANNOTATION}=true",
        producer.spec.kernel_ref.name,
        producer.name_any()
    )
}

async fn revoke(producer: &Producer, ctx: &Context) -> Result<Action, Error> {
    let applier = Applier::new(ctx, producer);
    if producer
        .annotations()
        .get(SKIP_REVOKE_ANNOTATION)
        .is_some_and(|v| v == "true")
    {
        applier.announce(&Note::warning("RevocationSkipped", "Revoke", "fdc.dev/skip-revoke is set: the producer was not revoked at the kernel; its token stays valid until it expires")).await;
        return Ok(Action::await_change());
    }
    let ns = producer.namespace().unwrap_or_default();
    let kernel_ns = producer.kernel_namespace().unwrap_or(&ns).to_string();
    let kernel_name = &producer.spec.kernel_ref.name;
    let kernels: Api<FdcKernel> = Api::namespaced(ctx.client.clone(), &kernel_ns);
    let Some(kernel) = kernels.get_opt(kernel_name).await? else {
        // The kernel and its issuer keys are gone: no token of this producer verifies anywhere.
        return Ok(Action::await_change());
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &kernel_ns);
    let admin = secrets
        .get_opt(&names::admin_secret(kernel_name))
        .await?
        .ok_or_else(|| {
            Error::from(issuer_keys::KeySetError::Missing(format!(
                "Secret {}",
                names::admin_secret(kernel_name)
            )))
        })?;
    let admin_token = issuer_keys::admin_token_from_secret(&admin)?;
    let id = producer_id(producer)?;
    let outcome = match ctx.admin_pod_ip(&kernel).await? {
        Ok(pod_ip) => {
            let to = AdminTarget {
                kernel: &kernel,
                pod_ip: pod_ip.as_deref(),
                token: &admin_token,
            };
            let reason = format!("Producer {ns}/{} deleted", producer.name_any());
            ctx.kernel_api.revoke_producer(&to, id, &reason).await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(Revoked::Done) => {
            applier
                .announce(&Note::normal(
                    "Revoked",
                    "Revoke",
                    format!("producer {id} revoked at FdcKernel {kernel_ns}/{kernel_name}"),
                ))
                .await;
            Ok(Action::await_change())
        }
        Ok(Revoked::UnknownProducer) => {
            // The kernel revokes only producers it has seen; an unused token stays valid
            // until it expires. Say so rather than claim a revocation.
            let until = producer
                .status
                .as_ref()
                .and_then(|s| s.token_expires_at.as_ref())
                .map_or_else(|| "its expiry".to_string(), |t| t.0.to_string());
            applier.announce(&Note::warning(
                "NotRevocable",
                "Revoke",
                format!("producer {id} was never seen by FdcKernel {kernel_ns}/{kernel_name}, which cannot revoke it yet; its token stays valid until {until} (rotate the kernel's issuer key to cut it off sooner)"),
            ))
            .await;
            Ok(Action::await_change())
        }
        Err(e) => {
            applier.announce(&Note::warning("RevocationFailed", "Revoke", format!("cannot revoke at the kernel ({e}); retrying. To give up, annotate the Producer with {SKIP_REVOKE_ANNOTATION}=true"))).await;
            Err(e.into())
        }
    }
}
