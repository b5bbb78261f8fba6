//! Status: the one status a kernel pass writes, computed from how the pass ended (pure).
//! A pass that fails with an error writes none, so the status stays as it was.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::controller::kernel::ingest::Ingest;
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
        /// Lag, pending and stored/s from the pods' metrics.
        ingest: Ingest,
    },
}

/// The status of `kernel` after a pass that ended as `report`.
pub fn status(kernel: &FdcKernel, report: &Report, now: Timestamp) -> FdcKernelStatus {
    let generation = kernel.metadata.generation;
    let stamp = condition::Stamp { generation, now };
    let old = kernel.status.clone().unwrap_or_default();
    let selector = selector_string(&kernel_selector_labels(&kernel.name_any()));
    let not_paused = stamp.not_paused();
    match report {
        Report::Paused => FdcKernelStatus {
            observed_generation: generation,
            conditions: condition::merge(
                &old.conditions,
                vec![stamp.paused(condition::PAUSED_MESSAGE)],
            ),
            ..old
        },
        Report::Blocked(Blocked { reason, message }) => FdcKernelStatus {
            observed_generation: generation,
            selector,
            conditions: condition::merge(
                &old.conditions,
                vec![
                    stamp.condition(types::READY, false, reason, message.clone()),
                    stamp.condition(types::DEGRADED, true, reason, message.clone()),
                    not_paused,
                ],
            ),
            ..old
        },
        Report::Applied {
            computed,
            issuer_key_id,
            config_hash,
            ingest,
        } => {
            let mut updates = computed.conditions.clone();
            updates.push(stamp.condition(types::DEGRADED, false, "AsExpected", ""));
            updates.push(not_paused);
            FdcKernelStatus {
                observed_generation: generation,
                replicas: computed.replicas,
                ready_replicas: computed.ready_replicas,
                settled_replicas: computed.settled,
                selector,
                issuer_key_id: Some(issuer_key_id.clone()),
                config_hash: Some(config_hash.clone()),
                lag: ingest.lag,
                pending: ingest.pending,
                stored_per_second: ingest.stored_per_second,
                streams: ingest.streams.clone(),
                conditions: condition::merge(&old.conditions, updates),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::kernel;

    fn with_old_status() -> FdcKernel {
        let mut k = kernel("k", 3);
        k.metadata.generation = Some(5);
        k.status = Some(FdcKernelStatus {
            observed_generation: Some(4),
            replicas: 3,
            ready_replicas: 3,
            issuer_key_id: Some("kid-1".into()),
            ..Default::default()
        });
        k
    }

    fn condition<'a>(
        s: &'a FdcKernelStatus,
        type_: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        s.conditions.iter().find(|c| c.type_ == type_).expect(type_)
    }

    #[test]
    fn paused_and_blocked_keep_the_figures_of_the_last_applied_pass() {
        let now = Timestamp::now();
        let k = with_old_status();
        let paused = status(&k, &Report::Paused, now);
        assert_eq!((paused.observed_generation, paused.replicas), (Some(5), 3));
        assert_eq!(paused.issuer_key_id.as_deref(), Some("kid-1"));
        assert_eq!(condition(&paused, types::PAUSED).status, "True");

        let blocked = Report::Blocked(Blocked {
            reason: "SecretMissing",
            message: "Secret pg not found".into(),
        });
        let blocked = status(&k, &blocked, now);
        assert_eq!(
            (blocked.ready_replicas, blocked.observed_generation),
            (3, Some(5))
        );
        assert_eq!(
            blocked.selector,
            "app.kubernetes.io/instance=k,app.kubernetes.io/name=fdc-kernel"
        );
        let degraded = condition(&blocked, types::DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "SecretMissing")
        );
        assert_eq!(condition(&blocked, types::READY).status, "False");
        assert_eq!(condition(&blocked, types::PAUSED).status, "False");
    }
}
