//! Status: the one status a kernel pass writes, computed from how the pass ended (pure).
//! A pass that fails with an error writes none, so the status stays as it was.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::controller::kernel::validate::Blocked;
use crate::controller::kernel_status::Computed;
use crate::crd::condition::{self, types};
use crate::crd::{FdcKernel, FdcKernelStatus};
use crate::labels::{kernel_selector_labels, selector_string};

/// The status cannot be written; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot write the status of FdcKernel {what}: {source}")]
    Write {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// How a pass ended.
#[derive(Debug, Clone)]
pub enum Report {
    /// Paused by annotation: nothing read or written.
    Paused,
    /// Cannot run as specified until the user acts: nothing applied.
    Blocked(Blocked),
    /// Applied: the conditions computed from the StatefulSet and pods after the apply.
    Applied {
        computed: Computed,
        issuer_key_id: String,
        config_hash: String,
    },
}

/// The status of `kernel` after a pass that ended as `report`.
pub fn status(kernel: &FdcKernel, report: &Report, now: Timestamp) -> FdcKernelStatus {
    let generation = kernel.metadata.generation;
    let old = kernel.status.clone().unwrap_or_default();
    let selector = selector_string(&kernel_selector_labels(&kernel.name_any()));
    let not_paused = condition::new(types::PAUSED, false, "NotPaused", "", generation, now);
    match report {
        Report::Paused => FdcKernelStatus {
            observed_generation: generation,
            conditions: condition::merge(
                &old.conditions,
                vec![condition::new(
                    types::PAUSED,
                    true,
                    "PausedByAnnotation",
                    "reconciliation is paused; remove the fdc.dev/paused annotation to resume",
                    generation,
                    now,
                )],
            ),
            ..old
        },
        Report::Blocked(Blocked { reason, message }) => FdcKernelStatus {
            observed_generation: generation,
            selector,
            conditions: condition::merge(
                &old.conditions,
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
                        types::DEGRADED,
                        true,
                        reason,
                        message.clone(),
                        generation,
                        now,
                    ),
                    not_paused,
                ],
            ),
            ..old
        },
        Report::Applied {
            computed,
            issuer_key_id,
            config_hash,
        } => {
            let mut updates = computed.conditions.clone();
            updates.push(condition::new(
                types::DEGRADED,
                false,
                "AsExpected",
                "",
                generation,
                now,
            ));
            updates.push(not_paused);
            FdcKernelStatus {
                observed_generation: generation,
                replicas: computed.replicas,
                ready_replicas: computed.ready_replicas,
                settled_replicas: computed.settled,
                selector,
                issuer_key_id: Some(issuer_key_id.clone()),
                config_hash: Some(config_hash.clone()),
                conditions: condition::merge(&old.conditions, updates),
            }
        }
    }
}
