//! `FdcKernel` status conditions computed from observed state (pure: no API calls).
//!
//! - `Ready` is availability: at least `min(spec.replicas, settledReplicas)` pods pass their
//!   readiness probe (at least one when any are requested). During a scale-in that is the new,
//!   smaller count; during a scale-out the count that already served before it. A rollout
//!   does not make it False by itself: only pods that are not ready do.
//! - `Progressing` carries the transition: `ScalingIn`, `ScalingOut`, `RollingOut`,
//!   `Starting` (a new kernel's first pods). With none under way it is False: `RolledOut`
//!   while ingest moves (or is not known yet), `Stalled` (a pod reports `kernel_stalled`) or
//!   `NoProgress` (entries wait and none was acknowledged since the last scrape) when not.
//! - `SpillDrained` says whether a scale-in waits for a replica's spill.
//!
//! When pods are not ready, `Ready`'s message names them and why (container state, or the
//! kernel's own `/readyz` answer and its `kernel_stalled` stages), so `kubectl get fdck`
//! shows the cause rather than a count.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use crate::controller::kernel::ingest::Flow;
use crate::crd::condition::{self, types};

/// Most unready pods named in the `Ready` message (the rest are counted).
pub const MAX_PODS_NAMED: usize = 3;

/// A kernel pod that is not Ready, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadyPod {
    pub pod: String,
    /// Container state (`ErrImagePull: ...`), scheduling problem, or the kernel's `/readyz`
    /// answer.
    pub cause: String,
    /// Stages the kernel reports stalled (`kernel_stalled{stage}` = 1): `reader`, `writer`.
    pub stalled: Vec<String>,
}

/// What one reconcile pass observed.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub kernel_name: &'a str,
    pub generation: Option<i64>,
    /// `spec.replicas`.
    pub desired: i32,
    /// StatefulSet replicas applied this pass (above `desired` while a scale-in waits).
    pub applied: i32,
    /// `status.settledReplicas` before this pass.
    pub settled: Option<i32>,
    /// The StatefulSet as the API server returned it.
    pub sts: &'a StatefulSet,
    /// Why the scale-in waits, if it does.
    pub waiting: Option<&'a str>,
    /// Pods that are not Ready (empty when all are).
    pub unready: &'a [UnreadyPod],
    /// Whether ingest moves, from the pods' metrics.
    pub flow: &'a Flow,
}

/// Conditions and figures for the status.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    /// Ready, Progressing, SpillDrained (to merge into the existing ones).
    pub conditions: Vec<Condition>,
    pub replicas: i32,
    pub ready_replicas: i32,
    /// `status.settledReplicas` after this pass.
    pub settled: Option<i32>,
    /// Something is moving or wrong: requeue soon.
    pub busy: bool,
}

/// The transition under way, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transition {
    ScalingIn,
    RollingOut,
    ScalingOut(i32),
    Starting,
    None,
}

/// Computes the conditions of one pass.
pub fn compute(o: &Observed<'_>, now: Timestamp) -> Computed {
    let stamp = condition::Stamp {
        generation: o.generation,
        now,
    };
    let st = o.sts.status.clone().unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let desired = o.desired;
    let generation_seen = st.observed_generation >= o.sts.metadata.generation;
    let rolled_out = generation_seen
        && updated >= o.applied
        && st.replicas <= o.applied
        && (st.update_revision.is_none() || st.current_revision == st.update_revision);

    let transition = if o.waiting.is_some() || o.applied > desired || st.replicas > o.applied {
        Transition::ScalingIn
    } else if !rolled_out {
        Transition::RollingOut
    } else if ready < desired {
        match o.settled {
            Some(s) if s < desired => Transition::ScalingOut(s),
            Some(_) => Transition::None,
            None => Transition::Starting,
        }
    } else {
        Transition::None
    };

    let (progressing, p_reason, p_message) = match &transition {
        Transition::ScalingIn => (
            true,
            "ScalingIn",
            format!(
                "scaling in from {} to {desired} replicas, one drained pod at a time ({} pods exist, {ready} ready)",
                o.applied.max(st.replicas),
                st.replicas
            ),
        ),
        Transition::RollingOut => (
            true,
            "RollingOut",
            format!("{updated}/{} pods updated, {ready} ready", o.applied),
        ),
        Transition::ScalingOut(from) => (
            true,
            "ScalingOut",
            format!("scaling out from {from} to {desired} replicas: {ready}/{desired} ready"),
        ),
        Transition::Starting => (
            true,
            "Starting",
            format!("first pods starting: {ready}/{desired} ready"),
        ),
        Transition::None => match o.flow {
            Flow::Stalled { reason, message } => (
                false,
                *reason,
                format!("all {} pods run the current spec; {message}", o.applied),
            ),
            Flow::Moving | Flow::Unknown => (
                false,
                "RolledOut",
                format!("all {} pods run the current spec", o.applied),
            ),
        },
    };
    let stalled = matches!(o.flow, Flow::Stalled { .. });

    // Availability: the smaller side of a scale, at least one pod when any is requested.
    let required = if desired == 0 {
        0
    } else {
        desired.min(o.settled.unwrap_or(desired)).max(1)
    };
    let is_ready = ready >= required;
    let (r_reason, r_message) = if desired == 0 && is_ready {
        ("ScaledToZero", "no replicas requested".to_string())
    } else if is_ready && ready >= desired && transition != Transition::ScalingIn {
        (
            "AllReplicasReady",
            format!("{ready}/{desired} replicas ready"),
        )
    } else if is_ready {
        (
            "Available",
            format!(
                "{ready} pods ready, {desired} requested, at least {required} needed while {} (see Progressing)",
                match transition {
                    Transition::ScalingIn => "scaling in",
                    Transition::ScalingOut(_) => "scaling out",
                    _ => "pods are replaced",
                }
            ),
        )
    } else {
        let stalled = o.unready.iter().any(|p| !p.stalled.is_empty());
        (
            if stalled { "Stalled" } else { "ReplicasNotReady" },
            format!(
                "{ready}/{required} replicas ready{}; see `kubectl describe pod -l app.kubernetes.io/instance={}`",
                describe_unready(o.unready),
                o.kernel_name
            ),
        )
    };

    let drained = match o.waiting {
        Some(w) => stamp.condition(types::SPILL_DRAINED, false, "SpillPending", w),
        None => stamp.condition(
            types::SPILL_DRAINED,
            true,
            "Drained",
            "no replica waits to drain its spill",
        ),
    };
    let settled = if !progressing && ready >= desired {
        Some(desired)
    } else {
        o.settled
    };
    Computed {
        conditions: vec![
            stamp.condition(types::READY, is_ready, r_reason, r_message),
            stamp.condition(types::PROGRESSING, progressing, p_reason, p_message),
            drained,
        ],
        replicas: st.replicas,
        ready_replicas: ready,
        settled,
        busy: progressing || stalled || !is_ready || ready < st.replicas,
    }
}

/// `: pod k-1: not ready: Postgres unreachable; pod k-2: ...` (at most [`MAX_PODS_NAMED`]).
fn describe_unready(unready: &[UnreadyPod]) -> String {
    if unready.is_empty() {
        return String::new();
    }
    let mut parts: Vec<String> = unready
        .iter()
        .take(MAX_PODS_NAMED)
        .map(|p| {
            if p.stalled.is_empty() {
                format!("pod {}: {}", p.pod, p.cause)
            } else {
                format!(
                    "pod {}: {} stalled (kernel_stalled), {}",
                    p.pod,
                    p.stalled.join(" and "),
                    p.cause
                )
            }
        })
        .collect();
    if unready.len() > MAX_PODS_NAMED {
        parts.push(format!("and {} more", unready.len() - MAX_PODS_NAMED));
    }
    format!(": {}", parts.join("; "))
}

/// Whether the pod's `Ready` condition is True (its readiness probe, `/readyz`, passes).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the pod's own status says about why it is not ready, when it says something: being
/// deleted, unschedulable, a container waiting (`ErrImagePull`, `CrashLoopBackOff`, ...) or
/// terminated. `None` for a running container whose readiness probe fails: then only the
/// kernel's `/readyz` knows why.
pub fn pod_state_cause(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("terminating".to_string());
    }
    let status = pod.status.as_ref()?;
    if let Some(c) = status.conditions.as_ref().and_then(|cs| {
        cs.iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    }) {
        return Some(format!(
            "not scheduled: {}{}",
            c.reason.as_deref().unwrap_or("Pending"),
            c.message
                .as_deref()
                .map(|m| format!(": {}", one_line(m)))
                .unwrap_or_default()
        ));
    }
    let container = status.container_statuses.as_ref()?.first()?;
    let state = container.state.as_ref()?;
    if let Some(w) = &state.waiting {
        let reason = w.reason.as_deref().unwrap_or("Waiting");
        let mut cause = format!(
            "{reason}{}",
            w.message
                .as_deref()
                .map(|m| format!(": {}", one_line(m)))
                .unwrap_or_default()
        );
        if let Some(t) = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
        {
            cause.push_str(&format!(
                " (last exit code {}{}, {} restarts)",
                t.exit_code,
                t.reason
                    .as_deref()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default(),
                container.restart_count
            ));
        }
        return Some(cause);
    }
    if let Some(t) = &state.terminated {
        return Some(format!(
            "exited with code {}{}",
            t.exit_code,
            t.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    None
}

/// `text` on one line, bounded (a kubelet message can be long).
pub fn one_line(text: &str) -> String {
    crate::text::one_line(text.trim(), 300)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(
        applied: i32,
        pods: i32,
        ready: i32,
        updated: i32,
        revisions: (&str, &str),
    ) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "k", "generation": 2},
            "spec": {"replicas": applied, "selector": {}, "template": {}, "serviceName": "k"},
            "status": {
                "observedGeneration": 2, "replicas": pods, "readyReplicas": ready,
                "updatedReplicas": updated,
                "currentRevision": revisions.0, "updateRevision": revisions.1
            }
        }))
        .unwrap()
    }

    fn run(
        desired: i32,
        applied: i32,
        settled: Option<i32>,
        sts: &StatefulSet,
        waiting: Option<&str>,
        unready: &[UnreadyPod],
    ) -> Computed {
        compute(
            &Observed {
                kernel_name: "k",
                generation: Some(2),
                desired,
                applied,
                settled,
                sts,
                waiting,
                unready,
                flow: &Flow::Unknown,
            },
            Timestamp::from_second(1_000).unwrap(),
        )
    }

    fn cond<'a>(c: &'a Computed, type_: &str) -> &'a Condition {
        condition::find(&c.conditions, type_).unwrap()
    }

    /// Status and reason of Ready, then of Progressing.
    fn summary(c: &Computed) -> [&str; 4] {
        let r = cond(c, "Ready");
        let p = cond(c, "Progressing");
        [&r.status, &r.reason, &p.status, &p.reason].map(String::as_str)
    }

    #[test]
    fn scale_in_with_every_pod_ready_stays_ready_while_progressing() {
        // 3 -> 1: the first step's pod drains, all 3 pods are 1/1.
        let set = sts(3, 3, 3, 3, ("r1", "r1"));
        let c = run(
            1,
            3,
            Some(3),
            &set,
            Some("scale-in waits: pod k-2 still holds 5 spilled records"),
            &[],
        );
        assert_eq!(summary(&c), ["True", "Available", "True", "ScalingIn"]);
        assert_eq!(
            cond(&c, "Ready").message,
            "3 pods ready, 1 requested, at least 1 needed while scaling in (see Progressing)"
        );
        assert_eq!(cond(&c, "SpillDrained").status, "False");
        assert_eq!(
            c.settled,
            Some(3),
            "settled moves only when the scale-in is done"
        );
        assert!(c.busy);

        // Step 3 -> 2 applied; the StatefulSet still shows 3 pods (k-2 terminating).
        let set = sts(2, 3, 2, 3, ("r1", "r1"));
        let c = run(1, 2, Some(3), &set, None, &[]);
        assert_eq!(summary(&c), ["True", "Available", "True", "ScalingIn"]);

        // Last step applied (2 -> 1), k-1 still terminating: still scaling in.
        let set = sts(1, 2, 1, 2, ("r1", "r1"));
        let c = run(1, 1, Some(3), &set, None, &[]);
        assert_eq!(summary(&c), ["True", "Available", "True", "ScalingIn"]);

        // Done.
        let set = sts(1, 1, 1, 1, ("r1", "r1"));
        let c = run(1, 1, Some(3), &set, None, &[]);
        assert_eq!(
            summary(&c),
            ["True", "AllReplicasReady", "False", "RolledOut"]
        );
        assert_eq!(cond(&c, "Ready").message, "1/1 replicas ready");
        assert_eq!(c.settled, Some(1));
        assert!(!c.busy);
    }

    #[test]
    fn scale_in_during_an_outage_is_not_ready_and_names_the_cause() {
        let set = sts(3, 3, 0, 3, ("r1", "r1"));
        let unready: Vec<UnreadyPod> = (0..3)
            .map(|i| UnreadyPod {
                pod: format!("k-{i}"),
                cause: "not ready: Postgres unreachable".into(),
                stalled: vec![],
            })
            .collect();
        let c = run(
            1,
            3,
            Some(3),
            &set,
            Some("scale-in waits: pod k-2 is not Ready"),
            &unready,
        );
        assert_eq!(
            summary(&c),
            ["False", "ReplicasNotReady", "True", "ScalingIn"]
        );
        assert_eq!(
            cond(&c, "Ready").message,
            "0/1 replicas ready: pod k-0: not ready: Postgres unreachable; pod k-1: not ready: Postgres unreachable; pod k-2: not ready: Postgres unreachable; see `kubectl describe pod -l app.kubernetes.io/instance=k`"
        );
    }

    #[test]
    fn a_rollout_keeps_ready_while_pods_are_ready_and_reports_the_pod_being_replaced() {
        // Config change: new revision, no pod replaced yet, both ready.
        let set = sts(2, 2, 2, 0, ("r1", "r2"));
        let c = run(2, 2, Some(2), &set, None, &[]);
        assert_eq!(
            summary(&c),
            ["True", "AllReplicasReady", "True", "RollingOut"]
        );
        assert_eq!(cond(&c, "Progressing").message, "0/2 pods updated, 2 ready");
        assert_eq!(c.settled, Some(2));

        // k-1 being replaced: one pod ready of two requested is not all requested.
        let unready = [UnreadyPod {
            pod: "k-1".into(),
            cause: "ContainerCreating".into(),
            stalled: vec![],
        }];
        let set = sts(2, 2, 1, 1, ("r1", "r2"));
        let c = run(2, 2, Some(2), &set, None, &unready);
        assert_eq!(
            summary(&c),
            ["False", "ReplicasNotReady", "True", "RollingOut"]
        );
        assert!(cond(&c, "Ready")
            .message
            .starts_with("1/2 replicas ready: pod k-1: ContainerCreating;"));

        // Rolled out.
        let set = sts(2, 2, 2, 2, ("r2", "r2"));
        let c = run(2, 2, Some(2), &set, None, &[]);
        assert_eq!(
            summary(&c),
            ["True", "AllReplicasReady", "False", "RolledOut"]
        );
    }

    #[test]
    fn scale_out_is_ready_on_the_smaller_side() {
        let set = sts(3, 3, 1, 3, ("r1", "r1"));
        let c = run(3, 3, Some(1), &set, None, &[]);
        assert_eq!(summary(&c), ["True", "Available", "True", "ScalingOut"]);
        assert_eq!(
            cond(&c, "Progressing").message,
            "scaling out from 1 to 3 replicas: 1/3 ready"
        );
        assert_eq!(c.settled, Some(1));
        let set = sts(3, 3, 3, 3, ("r1", "r1"));
        let c = run(3, 3, Some(1), &set, None, &[]);
        assert_eq!(
            summary(&c),
            ["True", "AllReplicasReady", "False", "RolledOut"]
        );
        assert_eq!(c.settled, Some(3));
    }

    #[test]
    fn scale_out_from_zero_needs_a_ready_pod() {
        let set = sts(2, 2, 0, 2, ("r1", "r1"));
        let c = run(2, 2, Some(0), &set, None, &[]);
        assert_eq!(
            summary(&c),
            ["False", "ReplicasNotReady", "True", "ScalingOut"]
        );
    }

    #[test]
    fn a_new_kernel_is_starting_until_its_pods_are_ready() {
        let set = sts(1, 1, 0, 1, ("r1", "r1"));
        let c = run(1, 1, None, &set, None, &[]);
        assert_eq!(
            summary(&c),
            ["False", "ReplicasNotReady", "True", "Starting"]
        );
        assert_eq!(c.settled, None);
        let set = sts(1, 1, 1, 1, ("r1", "r1"));
        let c = run(1, 1, None, &set, None, &[]);
        assert_eq!(
            summary(&c),
            ["True", "AllReplicasReady", "False", "RolledOut"]
        );
        assert_eq!(c.settled, Some(1));
    }

    #[test]
    fn an_outage_after_rollout_is_not_ready_without_a_transition() {
        let set = sts(2, 2, 0, 2, ("r1", "r1"));
        let unready = [
            UnreadyPod {
                pod: "k-0".into(),
                cause: "not ready: writer stalled".into(),
                stalled: vec!["writer".into()],
            },
            UnreadyPod {
                pod: "k-1".into(),
                cause: "not ready: Postgres unreachable".into(),
                stalled: vec![],
            },
        ];
        let c = run(2, 2, Some(2), &set, None, &unready);
        assert_eq!(summary(&c), ["False", "Stalled", "False", "RolledOut"]);
        assert_eq!(
            cond(&c, "Ready").message,
            "0/2 replicas ready: pod k-0: writer stalled (kernel_stalled), not ready: writer stalled; pod k-1: not ready: Postgres unreachable; see `kubectl describe pod -l app.kubernetes.io/instance=k`"
        );
        assert!(c.busy);
    }

    #[test]
    fn many_unready_pods_are_counted_past_the_first_few() {
        let unready: Vec<UnreadyPod> = (0..5)
            .map(|i| UnreadyPod {
                pod: format!("k-{i}"),
                cause: "x".into(),
                stalled: vec![],
            })
            .collect();
        assert_eq!(
            describe_unready(&unready),
            ": pod k-0: x; pod k-1: x; pod k-2: x; and 2 more"
        );
    }

    #[test]
    fn zero_replicas_is_ready() {
        let set = sts(0, 0, 0, 0, ("r1", "r1"));
        let c = run(0, 0, Some(2), &set, None, &[]);
        assert_eq!(summary(&c), ["True", "ScaledToZero", "False", "RolledOut"]);
    }

    #[test]
    fn pod_state_names_image_pull_crash_loop_and_scheduling() {
        let pod = |status: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "k-0"}, "status": status})).unwrap()
        };
        let pull = pod(json!({"containerStatuses": [{
            "name": "kernel", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": "pull access denied for fdc-kernel"}}
        }]}));
        assert_eq!(
            pod_state_cause(&pull).unwrap(),
            "ErrImagePull: pull access denied for fdc-kernel"
        );
        let crash = pod(json!({"containerStatuses": [{
            "name": "kernel", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
        }]}));
        assert_eq!(
            pod_state_cause(&crash).unwrap(),
            "CrashLoopBackOff: back-off 40s (last exit code 1 Error, 4 restarts)"
        );
        let pending = pod(json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient memory."
        }]}));
        assert_eq!(
            pod_state_cause(&pending).unwrap(),
            "not scheduled: Unschedulable: 0/1 nodes are available: 1 Insufficient memory."
        );
        let running = pod(json!({"containerStatuses": [{
            "name": "kernel", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"running": {}}
        }]}));
        assert_eq!(pod_state_cause(&running), None);
    }
}
