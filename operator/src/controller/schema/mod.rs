//! `FdcSchema` reconciler: one schema version in a kernel's schema registry.
//!
//! A pass is a pipeline: `fetch::kernel` → `validate` (name, semantic version, body an
//! object, kernel found, namespace allowed) → `build` (pure: the registry request) → apply
//! (add the version through the kernel's admin API, idempotent there; deprecate it when
//! `spec.deprecated`) → `status`, written once from how the pass ended. The kernel refusing
//! the body (not a valid JSON Schema, a version that exists with another body, too large)
//! is a condition, not an error; so is a kernel that cannot be reached (with a requeue).
//!
//! Deletion goes through a finalizer: the version is deleted at the kernel first. While
//! producers are bound to it the kernel refuses (409): the finalizer stays, `InUse=True`
//! names how many, and the deletion is asked again until they are rebound.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::controller::admin::{self, kernel_label, REQUEUE_UNREACHABLE};
use crate::controller::apply::{Applier, Note};
use crate::controller::{Context, Error, Reconciled};
use crate::crd::condition::{self, types};
use crate::crd::FdcSchema;
use crate::kernel_api::{SchemaAdded, SchemaDeleted, SchemaRequest};
use crate::labels::{is_paused, SCHEMA_FINALIZER};

pub mod build;
pub mod fetch;
pub mod status;
pub mod validate;

use status::Report;

/// Controller name in metrics.
pub const CONTROLLER: &str = "fdcschema";

/// Periodic resync when the kernel holds the version: a kernel whose database was restored
/// gets it back.
pub const REQUEUE_IDLE: Duration = Duration::from_secs(600);
/// Requeue after "exists with another body": someone may delete the other body at the kernel.
pub const REQUEUE_CONFLICT: Duration = Duration::from_secs(300);
/// Requeue of a deletion that waits (producers bound, kernel unreachable).
pub const REQUEUE_DELETION: Duration = Duration::from_secs(30);

impl Reconciled for FdcSchema {
    const CONTROLLER: &'static str = CONTROLLER;

    async fn pass(&self, ctx: &Context) -> Result<Action, Error> {
        reconcile_schema(self, ctx).await
    }
}

/// One pass of a readable FdcSchema: its finalizer first, then apply, or clean up when deleted.
async fn reconcile_schema(schema: &FdcSchema, ctx: &Context) -> Result<Action, Error> {
    let has_finalizer = schema.finalizers().iter().any(|f| f == SCHEMA_FINALIZER);
    if schema.meta().deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        return cleanup(schema, ctx).await;
    }
    if !has_finalizer {
        // The patch is seen as a change, which runs the first pass.
        let mut finalizers = schema.finalizers().to_vec();
        finalizers.push(SCHEMA_FINALIZER.to_string());
        set_finalizers(schema, ctx, finalizers).await?;
        return Ok(Action::await_change());
    }
    apply(schema, ctx).await
}

/// Registers the version at the kernel: runs the pass, then writes the one status it ends
/// with.
pub async fn apply(schema: &FdcSchema, ctx: &Context) -> Result<Action, Error> {
    let now = Timestamp::now();
    let (report, action) = run_pass(schema, ctx).await?;
    let status = status::status(schema, &report, now);
    ctx.apply_status(schema, &status).await?;
    Ok(action)
}

async fn run_pass(schema: &FdcSchema, ctx: &Context) -> Result<(Report, Action), Error> {
    if is_paused(schema.annotations()) {
        return Ok((Report::Paused, Action::await_change()));
    }
    let kernel = fetch::kernel(schema, ctx).await?;
    let valid = match validate::validate(schema, kernel) {
        Ok(valid) => valid,
        Err(blocked) => {
            let action = blocked.action();
            return Ok((Report::Blocked(blocked), action));
        }
    };
    let desired = build::build(&valid);
    let kernel = &valid.kernel;
    let (label, at) = (desired.label(), kernel_label(kernel));
    let unavailable = |why| {
        Ok((
            Report::Unavailable(why),
            Action::requeue(REQUEUE_UNREACHABLE),
        ))
    };

    let doing = "to register the schema";
    let access = match admin::access(ctx, kernel, doing).await? {
        Ok(access) => access,
        Err(why) => return unavailable(why),
    };
    let to = access.target(kernel);
    let request = SchemaRequest {
        name: &desired.name,
        version: &desired.version,
        body: &desired.body,
        reason: &desired.reason,
    };
    let added = match ctx.kernel_api.add_schema(&to, &request).await {
        Ok(added) => added,
        Err(e) => return unavailable(admin::call_failed(kernel, doing, &e)),
    };
    let applier = Applier::new(ctx, schema);
    let refused = |reason: &'static str, message: String| Report::Refused { reason, message };
    let mut info = match added {
        SchemaAdded::Created(info) => {
            applier
                .announce(&Note::normal(
                    "SchemaAdded",
                    "AddSchema",
                    format!(
                        "{label} added to the schema registry of {at} (schema id {})",
                        info.schema_id
                    ),
                ))
                .await;
            info
        }
        SchemaAdded::Unchanged(info) => info,
        SchemaAdded::Invalid(why) => {
            let message = format!(
                "{at} refused {label}: spec.body is not a valid JSON Schema: {why}. Fix spec.body"
            );
            applier
                .announce(&Note::warning(
                    "SchemaInvalid",
                    "AddSchema",
                    message.clone(),
                ))
                .await;
            return Ok((refused("Invalid", message), Action::await_change()));
        }
        SchemaAdded::Conflict(why) => {
            let message = format!("{label} exists at {at} with another body ({why}): a version never changes once added. Give the new body a new version (another FdcSchema with a higher spec.version), or put the old body back");
            applier
                .announce(&Note::warning(
                    "VersionImmutable",
                    "AddSchema",
                    message.clone(),
                ))
                .await;
            return Ok((
                refused("VersionImmutable", message),
                Action::requeue(REQUEUE_CONFLICT),
            ));
        }
        SchemaAdded::TooLarge(why) => {
            let message = format!("{at} refused {label}: spec.body is larger than the kernel accepts ({why}); make it smaller");
            return Ok((refused("TooLarge", message), Action::await_change()));
        }
    };
    if desired.deprecate && !info.deprecated {
        let doing = "to deprecate the schema";
        let version = (desired.name.as_str(), desired.version.as_str());
        match ctx
            .kernel_api
            .deprecate_schema(&to, version, &desired.reason)
            .await
        {
            Ok(_) => {
                info.deprecated = true;
                applier
                    .announce(&Note::normal(
                        "SchemaDeprecated",
                        "DeprecateSchema",
                        format!("{label} deprecated at {at}"),
                    ))
                    .await;
            }
            Err(e) => return unavailable(admin::call_failed(kernel, doing, &e)),
        }
    }
    Ok((
        Report::Registered { label, at, info },
        Action::requeue(REQUEUE_IDLE),
    ))
}

/// Deletes the version at the kernel, then lets the object go. A version this object never
/// got accepted (no `status.schemaId`: refused, or another body holds that version) is not
/// deleted at the kernel.
pub async fn cleanup(schema: &FdcSchema, ctx: &Context) -> Result<Action, Error> {
    let now = Timestamp::now();
    let registered = schema
        .status
        .as_ref()
        .is_some_and(|s| s.schema_id.is_some());
    let kernel = match registered {
        true => fetch::kernel(schema, ctx).await?,
        false => None,
    };
    // No kernel object: nothing can be asked (the version stays in its database).
    let Some(kernel) = kernel else {
        return release(schema, ctx).await;
    };
    let label = format!("{}@{}", schema.schema_name(), schema.spec.version);
    let at = kernel_label(&kernel);
    let doing = "to delete the schema";
    let reason = format!(
        "FdcSchema {}/{} deleted",
        schema.namespace().unwrap_or_default(),
        schema.name_any()
    );
    let waits = |in_use: bool, reason: &'static str, message: String| Report::DeletionWaits {
        in_use,
        reason,
        message: format!("deletion waits: {message}"),
    };
    let report = match admin::access(ctx, &kernel, doing).await? {
        Err(why) => waits(false, why.reason, why.message),
        Ok(access) => {
            let to = access.target(&kernel);
            let version = (schema.schema_name(), schema.spec.version.clone());
            let version = (version.0.as_str(), version.1.as_str());
            match ctx.kernel_api.delete_schema(&to, version, &reason).await {
                Ok(SchemaDeleted::Deleted) => {
                    Applier::new(ctx, schema)
                        .announce(&Note::normal(
                            "SchemaDeleted",
                            "DeleteSchema",
                            format!("{label} deleted from the schema registry of {at}"),
                        ))
                        .await;
                    return release(schema, ctx).await;
                }
                Ok(SchemaDeleted::NotFound) => return release(schema, ctx).await,
                Ok(SchemaDeleted::InUse(why)) => {
                    let bound = ctx
                        .kernel_api
                        .bound_producers(&to, version)
                        .await
                        .ok()
                        .flatten();
                    waits(true, "InUse", in_use_message(&label, &at, bound, &why))
                }
                Err(e) => {
                    let why = admin::call_failed(&kernel, doing, &e);
                    waits(false, why.reason, why.message)
                }
            }
        }
    };
    let before = schema
        .status
        .as_ref()
        .and_then(|s| condition::find(&s.conditions, types::IN_USE));
    let status = status::status(schema, &report, now);
    let after = condition::find(&status.conditions, types::IN_USE);
    if let Some(c) = after.filter(|c| before.is_none_or(|b| b.reason != c.reason)) {
        Applier::new(ctx, schema)
            .announce(&Note::warning(
                "DeletionBlocked",
                "DeleteSchema",
                c.message.clone(),
            ))
            .await;
    }
    ctx.apply_status(schema, &status).await?;
    Ok(Action::requeue(REQUEUE_DELETION))
}

/// Why a deletion waits for bound producers, and the ways out.
pub fn in_use_message(label: &str, at: &str, bound: Option<u64>, why: &str) -> String {
    let who = match bound {
        Some(1) => "1 producer is".to_string(),
        Some(n) => format!("{n} producers are"),
        None => "producers or streams are".to_string(),
    };
    format!("{who} bound to {label} at {at} ({why}). Bind them to another version (Producer spec.schema, or `fdc-kernel producer bind`) or unbind them; to retire the version without deleting it, set spec.deprecated=true instead. Asked again every {}", humantime::format_duration(REQUEUE_DELETION))
}

/// Removes our finalizer: the object goes.
async fn release(schema: &FdcSchema, ctx: &Context) -> Result<Action, Error> {
    let finalizers: Vec<String> = schema
        .finalizers()
        .iter()
        .filter(|f| *f != SCHEMA_FINALIZER)
        .cloned()
        .collect();
    set_finalizers(schema, ctx, finalizers).await?;
    Ok(Action::await_change())
}

/// Sets `schema`'s finalizers, guarded by its `resourceVersion` (a concurrent change makes
/// the patch fail and the pass retry).
async fn set_finalizers(
    schema: &FdcSchema,
    ctx: &Context,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api: Api<FdcSchema> =
        Api::namespaced(ctx.client.clone(), &schema.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": schema.resource_version(),
        }
    });
    api.patch(
        &schema.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
