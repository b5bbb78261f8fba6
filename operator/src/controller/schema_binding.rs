//! A `Producer` with `spec.schema` (`name@range`): bind it at the kernel (admin API,
//! `POST /v1/producers/{id}/schema`), so the kernel validates its data entries against the
//! newest version of that schema matching the range. A Producer whose `spec.schema` was
//! removed is unbound (`"schema": null`) on the next pass.
//!
//! Called on every pass (the kernel answers a repeat with the same binding), so a kernel
//! whose database was restored gets the binding back. A binding that fails never holds back
//! the credentials: the `SchemaBound` condition says why, and the pass is retried sooner.

use std::time::Duration;

use fdc_common::schema_binding::Binding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use uuid::Uuid;

use crate::controller::admin::{self, kernel_label, Unavailable, REQUEUE_UNREACHABLE};
use crate::controller::apply::{Applier, Note};
use crate::controller::{Context, Error};
use crate::crd::condition::{self, types};
use crate::crd::{FdcKernel, FdcSchema, Producer};
use crate::kernel_api::SchemaBinding;

/// Requeue while the kernel has not seen the producer yet (it binds known producers only).
pub const REQUEUE_UNSEEN: Duration = Duration::from_secs(60);
/// Requeue after a refusal (no such schema or version yet): an FdcSchema may be on its way.
pub const REQUEUE_REFUSED: Duration = Duration::from_secs(120);

/// The `SchemaBound` condition after this pass, and how soon to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub condition: Condition,
    /// Look again within this (a failed binding).
    pub retry: Option<Duration>,
}

/// What to ask the kernel for `producer`: `Some(Some(schema))` binds, `Some(None)` unbinds
/// (a `SchemaBound` condition shows a binding the spec no longer asks for), `None` leaves
/// it alone.
pub fn wanted(producer: &Producer) -> Option<Option<&str>> {
    match producer.spec.schema.as_deref() {
        Some(schema) => Some(Some(schema)),
        None => producer
            .status
            .as_ref()
            .and_then(|s| condition::find(&s.conditions, types::SCHEMA_BOUND))
            .map(|_| None),
    }
}

/// Whether `producer`'s `spec.schema` names `schema`'s schema at the same kernel (any
/// version: a new version may be the one its range picks).
pub fn names_schema(producer: &Producer, schema: &FdcSchema) -> bool {
    let same_kernel = producer.spec.kernel_ref.name == schema.spec.kernel_ref.name
        && producer.kernel_namespace() == schema.kernel_namespace();
    let name = schema.schema_name();
    same_kernel
        && producer
            .spec
            .schema
            .as_deref()
            .is_some_and(|s| s.split_once('@').map_or(s, |(n, _)| n) == name)
}

/// Binds (or unbinds) `producer`, whose id is `producer_id`, at `kernel`; `None` when there
/// is nothing to bind, which drops the condition.
pub async fn bind(
    ctx: &Context,
    producer: &Producer,
    kernel: &FdcKernel,
    producer_id: Uuid,
    now: Timestamp,
) -> Result<Option<Bound>, Error> {
    let Some(schema) = wanted(producer) else {
        return Ok(None);
    };
    let generation = producer.metadata.generation;
    let stamp = condition::Stamp { generation, now };
    if let Some(Err(e)) = schema.map(str::parse::<Binding>) {
        return Ok(Some(Bound {
            condition: stamp.condition(
                types::SCHEMA_BOUND,
                false,
                "InvalidSchema",
                format!(
                    "spec.schema is not name@range: {e}; e.g. orders, orders@1.2.0 or orders@^1.2"
                ),
            ),
            retry: None,
        }));
    }
    let at = kernel_label(kernel);
    let failed = |Unavailable { reason, message }: Unavailable, retry: Duration| Bound {
        condition: stamp.condition(types::SCHEMA_BOUND, false, reason, message),
        retry: Some(retry),
    };
    if !kernel.spec.auth.enabled {
        return Ok(schema.map(|schema| Bound {
            condition: stamp.condition(
                    types::SCHEMA_BOUND,
                    false,
                    "KernelAuthDisabled",
                    format!("{at} runs with spec.auth.enabled=false: it does not know which producer sent an entry, so spec.schema ({schema}) binds nothing; bind the stream instead in the kernel's spec.config.ingest.schemas ({{stream: name@version}})"),
                ),
            retry: None,
        }));
    }
    let doing = match schema {
        Some(_) => "to bind spec.schema",
        None => "to unbind the schema (spec.schema was removed)",
    };
    let access = match admin::access(ctx, kernel, doing).await? {
        Ok(access) => access,
        Err(why) => return Ok(Some(failed(why, REQUEUE_UNREACHABLE))),
    };
    let reason = match schema {
        Some(schema) => format!(
            "Producer {}/{} declares spec.schema {schema}",
            producer.namespace().unwrap_or_default(),
            producer.name_any()
        ),
        None => format!(
            "Producer {}/{} no longer declares spec.schema",
            producer.namespace().unwrap_or_default(),
            producer.name_any()
        ),
    };
    let answer = ctx
        .kernel_api
        .bind_schema(&access.target(kernel), producer_id, schema, &reason)
        .await;
    let bound = match answer {
        Ok(SchemaBinding::Bound(None)) => return Ok(None),
        Ok(SchemaBinding::Bound(Some(bound))) => {
            let message = format!("producer {producer_id} is bound to schema {bound} at {at}: its data entries are validated against the newest version of the schema the range admits, and dead-lettered with reason `schema` when they do not conform");
            let before = producer
                .status
                .as_ref()
                .and_then(|s| condition::find(&s.conditions, types::SCHEMA_BOUND));
            if before.is_none_or(|c| c.status != "True" || c.message != message) {
                Applier::new(ctx, producer)
.announce(&Note::normal("SchemaBound", "BindSchema", format!("producer {producer_id} bound to schema {bound} at {at}")))
.await;
            }
            Bound {
                condition: stamp.condition(types::SCHEMA_BOUND, true, "Bound", message),
                retry: None,
            }
        }
        Ok(SchemaBinding::UnknownProducer(why)) => failed(
            Unavailable {
                reason: "ProducerNotSeen",
                message: format!("{at} does not know producer {producer_id} yet ({why}); the binding is made once it does (it knows a producer from its first entry or registration); asked again every {}", humantime::format_duration(REQUEUE_UNSEEN)),
            },
            REQUEUE_UNSEEN,
        ),
        Ok(SchemaBinding::Refused(why)) => failed(
            Unavailable {
                reason: "BindingRefused",
                message: format!("{at} refused to bind spec.schema {}: {why}. Add the schema (an FdcSchema, or `fdc-kernel schema add`) or fix spec.schema (name@range, e.g. orders@^1.2); asked again every {}", schema.unwrap_or("(none)"), humantime::format_duration(REQUEUE_REFUSED)),
            },
            REQUEUE_REFUSED,
        ),
        Err(e) => failed(admin::call_failed(kernel, doing, &e), REQUEUE_UNREACHABLE),
    };
    Ok(Some(bound))
}

#[cfg(test)]
mod tests {
    use super::wanted;
    use crate::controller::fixtures::producer;
    use crate::crd::condition::{self, types};

    #[test]
    fn a_schema_change_concerns_the_producers_naming_it_at_its_kernel() {
        use super::names_schema;
        use crate::controller::fixtures::fdc_schema;
        let schema = fdc_schema("orders-1.2.0", "k");
        let with = |s: Option<&str>, kernel: &str| {
            let mut p = producer("p", kernel);
            p.spec.schema = s.map(str::to_string);
            p
        };
        assert!(names_schema(&with(Some("orders@^1"), "k"), &schema));
        assert!(names_schema(&with(Some("orders"), "k"), &schema));
        assert!(!names_schema(&with(Some("orders-v2@^1"), "k"), &schema));
        assert!(!names_schema(&with(Some("orders@^1"), "other"), &schema));
        assert!(!names_schema(&with(None, "k"), &schema));
        let mut elsewhere = with(Some("orders@^1"), "k");
        elsewhere.spec.kernel_ref.namespace = Some("team-b".into());
        assert!(!names_schema(&elsewhere, &schema));
    }

    #[tokio::test]
    async fn a_malformed_schema_is_a_condition_and_no_call() {
        // No API server and no kernel answer: the check comes first.
        let (ctx, _server) = crate::controller::fixtures::test_context(
            &crate::controller::fixtures::unreachable_base(),
        );
        let mut p = producer("p", "k");
        p.spec.schema = Some("orders@^x".into());
        let now = k8s_openapi::jiff::Timestamp::now();
        let kernel = crate::controller::fixtures::kernel("k", 1);
        let id = uuid::Uuid::nil();
        let bound = super::bind(&ctx, &p, &kernel, id, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bound.retry, None);
        assert_eq!(bound.condition.reason, "InvalidSchema");
        assert!(
            bound.condition.message.starts_with(
                "spec.schema is not name@range: version requirement \"^x\" after '@' is not a version"
            ),
            "{}",
            bound.condition.message
        );
    }

    #[test]
    fn binds_what_the_spec_names_and_unbinds_what_it_no_longer_does() {
        let mut p = producer("p", "k");
        assert_eq!(wanted(&p), None, "no schema, nothing bound: no call");
        p.spec.schema = Some("orders@^1".into());
        assert_eq!(wanted(&p), Some(Some("orders@^1")));
        p.spec.schema = None;
        let now = k8s_openapi::jiff::Timestamp::now();
        p.status = Some(crate::crd::ProducerStatus {
            conditions: vec![condition::new(
                types::SCHEMA_BOUND,
                false,
                "BindingRefused",
                "",
                None,
                now,
            )],
            ..Default::default()
        });
        assert_eq!(
            wanted(&p),
            Some(None),
            "a binding (or a try) is left: unbind"
        );
    }
}
