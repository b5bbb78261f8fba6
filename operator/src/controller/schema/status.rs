//! Status: the one status an FdcSchema pass writes, computed from how the pass ended (pure).
//! A pass that fails with an error writes none.

use k8s_openapi::jiff::Timestamp;

use crate::controller::admin::Unavailable;
use crate::controller::schema::validate::Blocked;
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
    let mut status = schema.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.schema_name = Some(schema.schema_name());
    let not_paused = condition::new(types::PAUSED, false, "NotPaused", "", generation, now);
    let accepted = |ok: bool, reason: &str, message: String| {
        condition::new(types::ACCEPTED, ok, reason, message, generation, now)
    };
    let conditions = match report {
        Report::Paused => vec![condition::new(
            types::PAUSED,
            true,
            "PausedByAnnotation",
            "reconciliation is paused; remove the fdc.dev/paused annotation to resume",
            generation,
            now,
        )],
        Report::Blocked(Blocked {
            reason, message, ..
        })
        | Report::Refused { reason, message }
        | Report::Unavailable(Unavailable { reason, message }) => {
            vec![accepted(false, reason, message.clone()), not_paused]
        }
        Report::Registered { label, at, info } => {
            status.schema_id = Some(info.schema_id.clone());
            let deprecated = match (info.deprecated, schema.spec.deprecated) {
                (true, true) => condition::new(
                    types::DEPRECATED,
                    true,
                    "DeprecatedAtKernel",
                    format!("{label} is deprecated at {at}: producers bound to it keep being validated against it, no new binding picks it"),
                    generation,
                    now,
                ),
                (true, false) => condition::new(
                    types::DEPRECATED,
                    true,
                    "DeprecatedAtKernel",
                    format!("{label} was deprecated at {at} (`fdc-kernel schema deprecate`, or an earlier spec.deprecated) and a deprecation cannot be undone: spec.deprecated=false changes nothing"),
                    generation,
                    now,
                ),
                (false, _) => condition::new(
                    types::DEPRECATED,
                    false,
                    "NotDeprecated",
                    "",
                    generation,
                    now,
                ),
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
            let mut c = condition::new(
                types::IN_USE,
                *in_use,
                reason,
                message.clone(),
                generation,
                now,
            );
            if !in_use {
                c.status = "Unknown".to_string();
            }
            vec![c]
        }
    };
    status.conditions = condition::merge(&status.conditions, conditions);
    status
}
