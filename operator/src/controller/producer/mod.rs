//! `Producer` reconciler: credentials Secret, token renewal, approval of an external public
//! key at the kernel, revocation on delete.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::{Resource, ResourceExt};
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::{self, TokenRequest};
use crate::builders::config::short_hash;
use crate::builders::issuer_keys;
use crate::builders::producer_secret::{self, Credentials};
use crate::controller::key_approval::{self, Outcome};
use crate::controller::span::reconcile_span;
use crate::controller::{Context, Error};
use crate::crd::condition::{self, types};
use crate::crd::{FdcKernel, Producer, ProducerStatus};
use crate::duration;
use crate::kernel_api::Revoked;
use crate::labels::{is_paused, names, FIELD_MANAGER, PRODUCER_FINALIZER, SKIP_REVOKE_ANNOTATION};

pub mod fetch;
pub mod validate;

use validate::{Blocked, ValidProducer};

/// Controller name in metrics.
pub const CONTROLLER: &str = "producer";

/// Never requeue sooner than this for renewal (a tiny TTL must not spin the controller).
const MIN_RENEW_DELAY: Duration = Duration::from_secs(10);

/// Entry point for the controller. The pass runs in the object's [`reconcile_span`].
pub async fn reconcile(
    obj: Arc<DeserializeGuard<Producer>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let span = reconcile_span("Producer", obj.meta());
    reconcile_guarded(obj, ctx).instrument(span).await
}

async fn reconcile_guarded(
    obj: Arc<DeserializeGuard<Producer>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.start(CONTROLLER);
    let producer = match &obj.0 {
        Ok(p) => Arc::new(p.clone()),
        Err(invalid) => {
            ctx.event(
                &obj.object_ref(&()),
                EventType::Warning,
                "InvalidSpec",
                "Reconcile",
                format!("cannot read Producer: {}", invalid.error),
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let api: Api<Producer> = Api::namespaced(
        ctx.client.clone(),
        &producer.namespace().unwrap_or_default(),
    );
    finalizer(&api, PRODUCER_FINALIZER, producer, |event| async {
        match event {
            FinalizerEvent::Apply(p) => apply(&p, &ctx).await,
            FinalizerEvent::Cleanup(p) => cleanup(&p, &ctx).await,
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
        .ok_or_else(|| Error::Build(crate::builders::BuildError::MissingField("metadata.uid")))
}

/// Renew once two thirds of a token's lifetime have passed.
pub fn renew_at(expires_at: Timestamp, ttl: Duration) -> Timestamp {
    expires_at - SignedDuration::try_from(ttl / 3).unwrap_or(SignedDuration::ZERO)
}

/// Ensures the credentials Secret holds a valid, current token.
pub async fn apply(producer: &Producer, ctx: &Context) -> Result<Action, Error> {
    let ns = producer.namespace().unwrap_or_default();
    let generation = producer.metadata.generation;
    let now = Timestamp::now();
    let mut status = producer.status.clone().unwrap_or_default();
    // `KeyApproved` exists only while spec.publicKey is set: drop it when the key is removed.
    let old: Vec<_> = status
        .conditions
        .iter()
        .filter(|c| producer.spec.public_key.is_some() || c.type_ != types::KEY_APPROVED)
        .cloned()
        .collect();
    let id = producer_id(producer)?;
    status.producer_id = Some(id.to_string());
    status.observed_generation = generation;

    if is_paused(producer.annotations()) {
        status.conditions = condition::merge(&old, vec![condition::new(types::PAUSED, true, "PausedByAnnotation", "reconciliation is paused (token renewal too); remove the fdc.dev/paused annotation to resume", generation, now)]);
        ctx.apply_status(producer, &status).await?;
        return Ok(Action::await_change());
    }

    let blocked = |status: &mut ProducerStatus, reason: &str, message: String| {
        status.conditions = condition::merge(
            &old,
            vec![
                condition::new(types::READY, false, reason, message, generation, now),
                condition::new(types::PAUSED, false, "NotPaused", "", generation, now),
            ],
        );
    };

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
        Err(Blocked {
            reason,
            message,
            retry,
        }) => {
            blocked(&mut status, reason, message);
            ctx.apply_status(producer, &status).await?;
            return Ok(retry.map_or_else(Action::await_change, Action::requeue));
        }
    };
    let ValidProducer {
        kernel,
        stream,
        ttl,
        ..
    } = valid;
    let secret_name = names::producer_secret(&producer.name_any());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);

    // Key pair: the producer's own public key, else the stored generated pair, else a new one.
    let (public_pem, key_pair) = match &producer.spec.public_key {
        Some(pem) => (pem.clone(), None),
        None => match stored.key_pair.clone() {
            Some(pair) => (pair.1.clone(), Some(pair)),
            None => {
                let pair = auth::generate_key_pair()?;
                (
                    pair.public_pem.clone(),
                    Some((pair.private_pem, pair.public_pem)),
                )
            }
        },
    };
    let fingerprint = auth::fingerprint(&public_pem)?;

    // An external key is approved at the kernel before its credentials are written, so the
    // producer can also run `fdc-kernel register` with it.
    let mut key_condition = None;
    if producer.spec.public_key.is_some() {
        let target = key_approval::Target {
            producer,
            kernel: &kernel,
            producer_id: id,
            public_key_pem: &public_pem,
            fingerprint: &fingerprint,
        };
        match key_approval::approve(ctx, &target, generation, now).await? {
            Outcome::Proceed(c) => key_condition = Some(c),
            Outcome::Blocked {
                reason,
                message,
                requeue,
            } => {
                status.fingerprint = Some(fingerprint);
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
                        condition::new(
                            types::KEY_APPROVED,
                            false,
                            reason,
                            message,
                            generation,
                            now,
                        ),
                        condition::new(types::PAUSED, false, "NotPaused", "", generation, now),
                    ],
                );
                ctx.apply_status(producer, &status).await?;
                return Ok(Action::requeue(requeue));
            }
        }
    }

    // Token: reuse while it was issued for the same inputs and is not due for renewal.
    let auth_spec = &kernel.spec.auth;
    let inputs_hash = short_hash(&format!(
        "{}|{}|{}|{}|{}|{}|{}|{}",
        auth_spec.issuer,
        auth_spec.audience,
        id,
        producer.name_any(),
        producer.spec.schema.as_deref().unwrap_or(""),
        ttl.as_secs(),
        keys.current_kid(),
        fingerprint,
    ));
    let reusable = match (&stored.token, stored.expires_at, &stored.inputs_hash) {
        (Some(token), Some(exp), Some(hash))
            if *hash == inputs_hash && now < renew_at(exp, ttl) =>
        {
            Some((token.clone(), exp))
        }
        _ => None,
    };
    let (token, expires_at) = match reusable {
        Some(t) => t,
        None => {
            let issued = auth::issue_token(
                keys.signing_pem(),
                &TokenRequest {
                    issuer: &auth_spec.issuer,
                    audience: &auth_spec.audience,
                    producer_id: id,
                    name: &producer.name_any(),
                    schema: producer.spec.schema.as_deref(),
                    ttl,
                },
            )?;
            let (reason, verb) = if stored.token.is_some() {
                ("TokenRenewed", "renewed")
            } else {
                ("TokenIssued", "issued")
            };
            ctx.event(
                &producer.object_ref(&()),
                EventType::Normal,
                reason,
                "IssueToken",
                format!(
                    "token {verb} with issuer key {}, expires {}",
                    keys.current_kid(),
                    issued.expires_at
                ),
            )
            .await;
            (issued.token, issued.expires_at)
        }
    };

    let credentials = Credentials {
        producer_id: id.to_string(),
        token,
        expires_at,
        kid: keys.current_kid().to_string(),
        inputs_hash,
        stream,
        fingerprint: fingerprint.clone(),
        key_pair,
    };
    let secret = producer_secret::credentials_secret(producer, &credentials)?;
    secrets
        .patch(
            &secret_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(secret),
        )
        .await?;

    let renew = renew_at(expires_at, ttl);
    status.secret_name = Some(secret_name.clone());
    status.fingerprint = Some(fingerprint);
    status.token_expires_at = Some(Time(expires_at));
    let left = expires_at.duration_since(now).unsigned_abs();
    let (expires_in, reading_holds) = if expires_at > now {
        duration::remaining(left)
    } else {
        ("expired".to_string(), Duration::MAX)
    };
    status.token_expires_in = Some(expires_in);
    status.token_key_id = Some(keys.current_kid().to_string());
    let mut conditions = vec![
        condition::new(
            types::READY,
            true,
            "CredentialsIssued",
            format!(
                "Secret {secret_name} holds a token valid until {expires_at}; renewal at {renew}"
            ),
            generation,
            now,
        ),
        condition::new(types::PAUSED, false, "NotPaused", "", generation, now),
    ];
    conditions.extend(key_condition);
    status.conditions = condition::merge(&old, conditions);
    ctx.apply_status(producer, &status).await?;

    // Next pass: renewal, or when `tokenExpiresIn` would read one unit less.
    let wait = renew.duration_since(now).unsigned_abs();
    let next = if renew > now {
        wait.min(reading_holds)
    } else {
        MIN_RENEW_DELAY
    };
    Ok(Action::requeue(next.max(MIN_RENEW_DELAY)))
}

/// Revokes the producer at its kernel before the finalizer lets the object (and, through
/// the owner reference, its Secret) go. While revocation fails the Producer shows
/// `Ready=False` `DeletionBlocked` with the cause and the way out, not the old
/// `CredentialsIssued`.
pub async fn cleanup(producer: &Producer, ctx: &Context) -> Result<Action, Error> {
    match revoke(producer, ctx).await {
        Ok(action) => Ok(action),
        Err(e) => {
            let generation = producer.metadata.generation;
            let now = Timestamp::now();
            let mut status = producer.status.clone().unwrap_or_default();
            status.conditions = condition::merge(
                &status.conditions,
                vec![condition::new(
                    types::READY,
                    false,
                    "DeletionBlocked",
                    deletion_blocked_message(producer, &e),
                    generation,
                    now,
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
    let reference = producer.object_ref(&());
    if producer
        .annotations()
        .get(SKIP_REVOKE_ANNOTATION)
        .is_some_and(|v| v == "true")
    {
        ctx.event(&reference, EventType::Warning, "RevocationSkipped", "Revoke", "fdc.dev/skip-revoke is set: the producer was not revoked at the kernel; its token stays valid until it expires").await;
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
            Error::Keys(issuer_keys::KeySetError::Missing(format!(
                "Secret {}",
                names::admin_secret(kernel_name)
            )))
        })?;
    let admin_token = issuer_keys::admin_token_from_secret(&admin)?;
    let id = producer_id(producer)?;
    let outcome = match ctx.admin_pod_ip(&kernel).await? {
        Ok(pod_ip) => {
            ctx.kernel_api
                .revoke_producer(
                    &kernel,
                    pod_ip.as_deref(),
                    &admin_token,
                    id,
                    &format!("Producer {ns}/{} deleted", producer.name_any()),
                )
                .await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(Revoked::Done) => {
            ctx.event(
                &reference,
                EventType::Normal,
                "Revoked",
                "Revoke",
                format!("producer {id} revoked at FdcKernel {kernel_ns}/{kernel_name}"),
            )
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
            ctx.event(
                &reference,
                EventType::Warning,
                "NotRevocable",
                "Revoke",
                format!("producer {id} was never seen by FdcKernel {kernel_ns}/{kernel_name}, which cannot revoke it yet; its token stays valid until {until} (rotate the kernel's issuer key to cut it off sooner)"),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) => {
            ctx.event(&reference, EventType::Warning, "RevocationFailed", "Revoke", format!("cannot revoke at the kernel ({e}); retrying. To give up, annotate the Producer with {SKIP_REVOKE_ANNOTATION}=true")).await;
            Err(e.into())
        }
    }
}
