//! Access to a kernel's admin API for the passes that call it (a Producer's schema binding,
//! an FdcSchema's registration): the admin token from the kernel's Secret and, in pod-IP
//! mode, a Ready pod's IP; and one wording of a failed call, so every condition that reports
//! one says the same thing and the same way out.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::ResourceExt;

use crate::builders::issuer_keys;
use crate::controller::{Context, Error};
use crate::crd::FdcKernel;
use crate::kernel_api::{AdminTarget, KernelApiError};
use crate::labels::names;

/// Requeue while a kernel's admin API (or its token) cannot be used.
pub const REQUEUE_UNREACHABLE: Duration = Duration::from_secs(30);

/// What an admin call needs: the token (never logged) and, in pod-IP mode, a pod's IP.
pub struct Access {
    pub token: String,
    pub pod_ip: Option<String>,
}

impl Access {
    /// Admin calls to `kernel` with this access.
    pub fn target<'a>(&'a self, kernel: &'a FdcKernel) -> AdminTarget<'a> {
        AdminTarget {
            kernel,
            pod_ip: self.pod_ip.as_deref(),
            token: &self.token,
        }
    }
}

/// Why a kernel's admin API cannot be called now: a condition reason and a message that
/// says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub reason: &'static str,
    pub message: String,
}

/// `FdcKernel <ns>/<name>`, as messages name a kernel.
pub fn kernel_label(kernel: &FdcKernel) -> String {
    format!(
        "FdcKernel {}/{}",
        kernel.namespace().unwrap_or_default(),
        kernel.name_any()
    )
}

/// The admin token and pod IP for calls to `kernel`, or why there are none; `doing` says
/// what the call is for (`to bind spec.schema`).
pub async fn access(
    ctx: &Context,
    kernel: &FdcKernel,
    doing: &str,
) -> Result<Result<Access, Unavailable>, Error> {
    let at = kernel_label(kernel);
    let admin_secret = names::admin_secret(&kernel.name_any());
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &kernel.namespace().unwrap_or_default());
    let Some(secret) = secrets.get_opt(&admin_secret).await? else {
        return Ok(Err(Unavailable {
            reason: "AdminTokenNotReady",
            message: format!("{at} has no admin token Secret {admin_secret} yet, which is needed {doing}; see the kernel's status"),
        }));
    };
    let token = issuer_keys::admin_token_from_secret(&secret)?;
    Ok(match ctx.admin_pod_ip(kernel).await? {
        Ok(pod_ip) => Ok(Access { token, pod_ip }),
        Err(e) => Err(call_failed(kernel, doing, &e)),
    })
}

/// A failed admin call to `kernel` made `doing` something, as a condition reason and
/// message: a rejected token, an error answer, or no answer.
pub fn call_failed(kernel: &FdcKernel, doing: &str, e: &KernelApiError) -> Unavailable {
    let at = kernel_label(kernel);
    let retry = humantime::format_duration(REQUEUE_UNREACHABLE);
    match e {
        KernelApiError::Status { status: 401, .. } => Unavailable {
            reason: "AdminCallFailed",
            message: format!("{at} did not accept the operator's admin token ({e}) {doing}; Secret {} and the kernel pods disagree (restart the pods to reload it); retrying every {retry}", names::admin_secret(&kernel.name_any())),
        },
        KernelApiError::Status { .. } => Unavailable {
            reason: "AdminCallFailed",
            message: format!("{at} failed {doing} ({e}); see the kernel's logs; retrying every {retry}"),
        },
        e => Unavailable {
            reason: "KernelUnreachable",
            message: format!("cannot reach the admin API of {at} {doing} ({e}); retrying every {retry}. Check that the kernel is Ready: kubectl -n {} get fdckernel {}", kernel.namespace().unwrap_or_default(), kernel.name_any()),
        },
    }
}
