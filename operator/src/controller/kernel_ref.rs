//! What the passes of resources that name an FdcKernel in `spec.kernelRef` (a Producer, an
//! FdcSchema) judge alike: the kernel exists and takes resources from their namespace. One
//! that cannot go on until someone acts is [`Blocked`].

use std::time::Duration;

use kube::runtime::controller::Action;

use crate::crd::producer::KernelRef;
use crate::crd::FdcKernel;

/// How often a resource waiting for its kernel is looked at again.
pub const RETRY_BLOCKED: Duration = Duration::from_secs(30);

/// Why a resource is not served now: the condition reason, a message that says what to do,
/// and when to look again (`None`: at the next change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub reason: &'static str,
    pub message: String,
    pub retry: Option<Duration>,
}

impl Blocked {
    /// The pass's next step: look again after `retry`, else at the next change.
    pub fn action(&self) -> Action {
        self.retry
            .map_or_else(Action::await_change, Action::requeue)
    }
}

/// The kernel named by `kernel_ref` of a resource in namespace `ns`, as fetched (`None`: not
/// found), if it takes `kind` (`Producers`, `resources`, as the message names them) from
/// `ns`; otherwise why not.
pub fn serving_kernel(
    kernel_ref: &KernelRef,
    ns: &str,
    kernel: Option<FdcKernel>,
    kind: &str,
) -> Result<FdcKernel, Blocked> {
    let kernel_ns = kernel_ref.namespace.as_deref().unwrap_or(ns);
    let kernel_name = &kernel_ref.name;
    let Some(kernel) = kernel else {
        return Err(Blocked {
            reason: "KernelNotFound",
            message: format!(
                "FdcKernel {kernel_ns}/{kernel_name} not found; create it or fix spec.kernelRef"
            ),
            retry: Some(RETRY_BLOCKED),
        });
    };
    if !kernel.allows_producer_namespace(ns) {
        return Err(Blocked {
            reason: "NamespaceNotAllowed",
            message: format!("FdcKernel {kernel_ns}/{kernel_name} does not accept {kind} from namespace {ns}; add it to the kernel's spec.auth.allowedProducerNamespaces"),
            retry: None,
        });
    }
    Ok(kernel)
}
