//! Status: the one status an FdcSchema pass writes, computed from how the pass ended (pure).
//! A pass that fails with an error writes none.

use k8s_openapi::jiff::Timestamp;

use crate::controller::admin::Unavailable;
use crate::controller::kernel_ref::Blocked;
use crate::crd::condition::{self, types};
use crate::crd::{FdcSchema, FdcSchemaStatus};
use crate::kernel_api::SchemaInfo;

/// How a pass ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Paused by annotation.
    Paused,
    /// Not sent to the kernel until someone acts (spec, kernel missing, namespace refused).
    Blocked(Blocked),
    /// The kernel's registry holds the version (`label`: `name@version`, `at`: the kernel).
    Registered {
        label: String,
        at: String,
        info: SchemaInfo,
    },
    /// The kernel refused the version: `Invalid` (the compiler's message), `VersionImmutable`
    /// or `TooLarge`.
    Refused {
        reason: &'static str,
        message: String,
    },
    /// The kernel's admin API could not be used.
    Unavailable(Unavailable),
    /// A deletion waits: producers are still bound to the version (`InUse=True`), or the
    /// kernel cannot be asked (`InUse=Unknown`).
    DeletionWaits {
        in_use: bool,
        reason: &'static str,
        message: String,
    },
}

/// The status of `schema` after a pass that ended as `report`.
pub fn status(schema: &FdcSchema, report: &Report, now: Timestamp) -> FdcSchemaStatus {
    let generation = schema.metadata.generation;
    let stamp = condition::Stamp { generation, now };
    let mut status = schema.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.schema_name = Some(schema.schema_name());
    let not_paused = stamp.not_paused();
    let accepted = |ok: bool, reason: &str, message: String| {
        stamp.condition(types::ACCEPTED, ok, reason, message)
    };
    let conditions = match report {
        Report::Paused => vec![stamp.paused(condition::PAUSED_MESSAGE)],
        Report::Blocked(Blocked {
            reason, message, ..
        })
        | Report::Refused { reason, message }
        | Report::Unavailable(Unavailable { reason, message }) => {
            vec![accepted(false, reason, message.clone()), not_paused]
        }
        Report::Registered { label, at, info } => {
            status.schema_id = Some(info.schema_id.clone());
            let at_kernel = |message: String| {
                stamp.condition(types::DEPRECATED, true, "DeprecatedAtKernel", message)
            };
            let deprecated = match (info.deprecated, schema.spec.deprecated) {
                (true, true) => at_kernel(format!("{label} is deprecated at {at}: producers bound to it keep being validated against it, no new binding picks it")),
                (true, false) => at_kernel(format!("{label} was deprecated at {at} (`fdc-kernel schema deprecate`, or an earlier spec.deprecated) and a deprecation cannot be undone: spec.deprecated=false changes nothing")),
                (false, _) => stamp.condition(types::DEPRECATED, false, "NotDeprecated", ""),
            };
            vec![
                accepted(
                    true,
                    "Accepted",
                    format!(
                        "{label} is in the schema registry of {at} (schema id {})",
                        info.schema_id
                    ),
                ),
                deprecated,
                not_paused,
            ]
        }
        Report::DeletionWaits {
            in_use,
            reason,
            message,
        } => {
            let mut c = stamp.condition(types::IN_USE, *in_use, reason, message.clone());
            if !in_use {
                c.status = "Unknown".to_string();
            }
            vec![c]
        }
    };
    status.conditions = condition::merge(&status.conditions, conditions);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::fdc_schema;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn find<'a>(
        s: &'a FdcSchemaStatus,
        type_: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        condition::find(&s.conditions, type_).unwrap_or_else(|| panic!("no {type_}"))
    }

    fn registered(deprecated: bool) -> Report {
        Report::Registered {
            label: "orders@1.2.0".into(),
            at: "FdcKernel apps/k".into(),
            info: SchemaInfo {
                schema_id: "id-1".into(),
                deprecated,
            },
        }
    }

    #[test]
    fn a_refusal_after_acceptance_keeps_the_id_and_flips_accepted() {
        let s = fdc_schema("s", "k");
        let first = status(&s, &registered(false), at(100));
        assert_eq!(first.schema_id.as_deref(), Some("id-1"));
        assert_eq!(first.schema_name.as_deref(), Some("orders"));
        assert_eq!(find(&first, "Accepted").status, "True");
        assert_eq!(find(&first, "Deprecated").status, "False");

        let mut s = s;
        s.status = Some(first);
        let refused = status(
            &s,
            &Report::Refused {
                reason: "VersionImmutable",
                message: "m".into(),
            },
            at(200),
        );
        let accepted = find(&refused, "Accepted");
        assert_eq!(
            (accepted.status.as_str(), accepted.reason.as_str()),
            ("False", "VersionImmutable")
        );
        assert_eq!(accepted.last_transition_time.0, at(200));
        assert_eq!(refused.schema_id.as_deref(), Some("id-1"));
    }

    #[test]
    fn a_deprecation_is_reported_even_when_the_spec_no_longer_asks() {
        let s = fdc_schema("s", "k");
        let st = status(&s, &registered(true), at(100));
        let d = find(&st, "Deprecated");
        assert_eq!(d.status, "True");
        assert!(d.message.contains("cannot be undone"), "{}", d.message);
    }

    #[test]
    fn a_waiting_deletion_is_in_use_or_unknown() {
        let s = fdc_schema("s", "k");
        let waits = |in_use| Report::DeletionWaits {
            in_use,
            reason: if in_use { "InUse" } else { "KernelUnreachable" },
            message: "deletion waits: x".into(),
        };
        assert_eq!(
            find(&status(&s, &waits(true), at(1)), "InUse").status,
            "True"
        );
        let unknown = status(&s, &waits(false), at(1));
        let c = find(&unknown, "InUse");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "KernelUnreachable")
        );
        // A deletion touches no other condition.
        assert!(condition::find(&unknown.conditions, "Accepted").is_none());
    }

    #[test]
    fn in_use_names_how_many_producers() {
        use crate::controller::schema::in_use_message;
        let m = |n| in_use_message("orders@1.2.0", "FdcKernel apps/k", n, "in use");
        assert!(m(Some(1))
            .starts_with("1 producer is bound to orders@1.2.0 at FdcKernel apps/k (in use)."));
        assert!(m(Some(3)).starts_with("3 producers are bound"));
        assert!(m(None).starts_with("producers or streams are bound"));
    }
}
