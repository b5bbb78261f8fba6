//! Status conditions: built with `observedGeneration`, merged by `type`.
//!
//! `lastTransitionTime` only moves when the status flips, so `kubectl wait` and humans see
//! when something actually changed rather than when the operator last looked.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types of the fdc kinds.
pub mod types {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const SPILL_DRAINED: &str = "SpillDrained";
    pub const PAUSED: &str = "Paused";
    /// Producer with `spec.publicKey`: the key is approved at the kernel.
    pub const KEY_APPROVED: &str = "KeyApproved";
    /// Producer with `spec.schema` (or one that had it): its binding at the kernel.
    pub const SCHEMA_BOUND: &str = "SchemaBound";
    /// FdcSchema: the kernel's registry holds this version.
    pub const ACCEPTED: &str = "Accepted";
    /// FdcSchema: deprecated at the kernel.
    pub const DEPRECATED: &str = "Deprecated";
    /// FdcSchema: its deletion waits for the producers bound to it.
    pub const IN_USE: &str = "InUse";
}

/// A condition for `generation`, stamped `now`.
pub fn new(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// What `Paused=True` says when nothing else stops with the reconciliation.
pub const PAUSED_MESSAGE: &str =
    "reconciliation is paused; remove the fdc.dev/paused annotation to resume";

/// What every condition of one pass carries: the generation it judged and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub generation: Option<i64>,
    pub now: Timestamp,
}

impl Stamp {
    /// A condition of this pass ([`new`] with the stamp's generation and time).
    pub fn condition(
        &self,
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Condition {
        new(type_, status, reason, message, self.generation, self.now)
    }

    /// `Paused=True` (reason `PausedByAnnotation`) with `message`, e.g. [`PAUSED_MESSAGE`].
    pub fn paused(&self, message: &str) -> Condition {
        self.condition(types::PAUSED, true, "PausedByAnnotation", message)
    }

    /// `Paused=False` (reason `NotPaused`), as every pass that runs reports it.
    pub fn not_paused(&self) -> Condition {
        self.condition(types::PAUSED, false, "NotPaused", "")
    }
}

/// Merge `updates` into `existing` by `type`: a condition whose status did not change keeps
/// its old `lastTransitionTime`. Conditions not in `updates` are kept as they were.
pub fn merge(existing: &[Condition], updates: Vec<Condition>) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing.to_vec();
    for mut update in updates {
        match out.iter_mut().find(|c| c.type_ == update.type_) {
            Some(old) => {
                if old.status == update.status {
                    update.last_transition_time = old.last_transition_time.clone();
                }
                *old = update;
            }
            None => out.push(update),
        }
    }
    out
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn unchanged_status_keeps_transition_time_and_takes_new_generation() {
        let old = vec![new("Ready", true, "Ok", "fine", Some(1), at(100))];
        let merged = merge(
            &old,
            vec![new("Ready", true, "Ok", "still fine", Some(2), at(200))],
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].last_transition_time, Time(at(100)));
        assert_eq!(merged[0].observed_generation, Some(2));
        assert_eq!(merged[0].message, "still fine");
    }

    #[test]
    fn flipped_status_moves_transition_time_and_others_are_kept() {
        let old = vec![
            new("Ready", true, "Ok", "fine", Some(1), at(100)),
            new("Paused", false, "NotPaused", "", Some(1), at(100)),
        ];
        let merged = merge(
            &old,
            vec![new("Ready", false, "Broken", "x", Some(2), at(300))],
        );
        assert_eq!(merged.len(), 2);
        let ready = find(&merged, "Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, Time(at(300)));
        assert_eq!(
            find(&merged, "Paused").unwrap().observed_generation,
            Some(1)
        );
    }
}
