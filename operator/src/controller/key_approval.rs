//! A `Producer` with `spec.publicKey`: approve that key at the kernel (admin API,
//! `POST /v1/producers/{id}/keys`) so the producer can run `fdc-kernel register` itself and
//! get tokens sealed to its key.
//!
//! Called on every reconcile (the kernel answers a repeat with "nothing changed"), so a kernel
//! whose database was restored or replaced gets the approval back without anyone noticing.
//! A kernel that cannot be reached blocks the Producer with a condition and a requeue, never
//! an error loop; a kernel that refuses (409) says why, and the message is passed on.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use uuid::Uuid;

use crate::controller::admin::{self, Unavailable};
use crate::controller::apply::{Applier, Note};
use crate::controller::{Context, Error};
use crate::crd::condition::{self, types};
use crate::crd::{FdcKernel, Producer};
use crate::kernel_api::{KernelApiError, KeyApproval, KeyApprovalRequest};
use crate::labels::names;

/// Requeue while the kernel or its admin token is not reachable yet.
pub use crate::controller::admin::REQUEUE_UNREACHABLE;
/// Requeue after a refusal: it needs a human, but the kernel is asked again now and then.
pub const REQUEUE_REFUSED: Duration = Duration::from_secs(300);

/// What the reconcile does next.
#[derive(Debug)]
pub enum Outcome {
    /// Go on issuing credentials; `condition` is the `KeyApproved` condition to show.
    Proceed(Condition),
    /// Stop here: `Ready` and `KeyApproved` False with this reason and message, requeue.
    Blocked {
        reason: &'static str,
        message: String,
        requeue: Duration,
    },
}

/// What is approved, for whom, at which kernel.
pub struct Target<'a> {
    pub producer: &'a Producer,
    pub kernel: &'a FdcKernel,
    pub producer_id: Uuid,
    pub public_key_pem: &'a str,
    pub fingerprint: &'a str,
}

/// Approves `target.public_key_pem` for the producer at its kernel.
pub async fn approve(
    ctx: &Context,
    target: &Target<'_>,
    generation: Option<i64>,
    now: Timestamp,
) -> Result<Outcome, Error> {
    let stamp = condition::Stamp { generation, now };
    let Target {
        producer,
        kernel,
        producer_id,
        public_key_pem,
        fingerprint,
    } = target;
    let kernel_ns = kernel.namespace().unwrap_or_default();
    let kernel_name = kernel.name_any();
    let at = format!("FdcKernel {kernel_ns}/{kernel_name}");

    if !kernel.spec.auth.enabled {
        // No admin API and no registration flow: nothing to approve, and nothing checks
        // tokens either, so the credentials are still written.
        let message = format!("{at} runs with spec.auth.enabled=false: it has no registration flow to approve spec.publicKey for (and checks no tokens)");
        return Ok(Outcome::Proceed(stamp.condition(
            types::KEY_APPROVED,
            false,
            "KernelAuthDisabled",
            message,
        )));
    }

    let admin_secret = names::admin_secret(&kernel_name);
    let access = match admin::access(ctx, kernel, "to approve spec.publicKey").await? {
        Ok(access) => access,
        Err(Unavailable { reason, message }) => {
            return Ok(Outcome::Blocked {
                reason,
                message,
                requeue: REQUEUE_UNREACHABLE,
            })
        }
    };
    let ns = producer.namespace().unwrap_or_default();
    let name = producer.name_any();
    let reason = format!("Producer {ns}/{name} declares this public key (spec.publicKey)");
    let request = KeyApprovalRequest {
        producer_id: *producer_id,
        public_key_pem,
        name: &name,
        schema: producer.spec.schema.as_deref(),
        reason: &reason,
    };
    let retry = humantime::format_duration(REQUEUE_UNREACHABLE);
    let approved = |fingerprint: &str| {
        stamp.condition(
            types::KEY_APPROVED,
            true,
            "ApprovedAtKernel",
            format!("public key {fingerprint} is approved at {at} for producer {producer_id}: the producer can run `fdc-kernel register` to get tokens sealed to its key"),
        )
    };
    let approval = ctx
        .kernel_api
        .approve_key(&access.target(kernel), &request)
        .await;
    match approval {
        Ok(KeyApproval::Approved) => {
            Applier::new(ctx, *producer)
.announce(&Note::normal("KeyApproved", "ApproveKey", format!("public key {fingerprint} approved at {at} for producer {producer_id}")))
.await;
            Ok(Outcome::Proceed(approved(fingerprint)))
        }
        Ok(KeyApproval::AlreadyApproved) => Ok(Outcome::Proceed(approved(fingerprint))),
        Ok(KeyApproval::Refused(why)) => {
            let message = format!("{at} refused to approve spec.publicKey (fingerprint {fingerprint}): {why}. Put another key in spec.publicKey, or settle it at the kernel with `fdc-kernel admin`; asked again every {}", humantime::format_duration(REQUEUE_REFUSED));
            Applier::new(ctx, *producer)
.announce(&Note::warning("KeyApprovalRefused", "ApproveKey", message.clone()))
.await;
            Ok(Outcome::Blocked {
                reason: "KeyRefusedByKernel",
                message,
                requeue: REQUEUE_REFUSED,
            })
        }
        Err(e @ KernelApiError::Status { status: 401, .. }) => Ok(Outcome::Blocked {
            reason: "KeyApprovalFailed",
            message: format!("{at} did not accept the operator's admin token ({e}) while approving spec.publicKey; Secret {admin_secret} and the kernel pods disagree (restart the pods to reload it); retrying every {retry}"),
            requeue: REQUEUE_UNREACHABLE,
        }),
        Err(e @ KernelApiError::Status { .. }) => Ok(Outcome::Blocked {
            reason: "KeyApprovalFailed",
            message: format!("{at} failed to approve spec.publicKey ({e}); see the kernel's logs; retrying every {retry}"),
            requeue: REQUEUE_UNREACHABLE,
        }),
        Err(e) => Ok(Outcome::Blocked {
            reason: "KernelUnreachable",
            message: format!("cannot reach the admin API of {at} to approve spec.publicKey ({e}); retrying every {retry}. Check that the kernel is Ready: kubectl -n {kernel_ns} get fdckernel {kernel_name}"),
            requeue: REQUEUE_UNREACHABLE,
        }),
    }
}
