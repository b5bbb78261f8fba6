//! Wires the reconcilers into kube-runtime controllers.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::controller::schema_binding::names_schema;
use crate::controller::{reconcile, Context, Error, Reconciled};
use crate::crd::{FdcKernel, FdcSchema, Producer};
use crate::labels::managed_by_selector;

/// Backoff after a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(15);

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A controller of the resources of kind `K`, readable or not ([`DeserializeGuard`]), reacting
/// to every change of them (status included).
fn controller<K>(client: &Client, namespace: Option<&str>) -> Controller<DeserializeGuard<K>>
where
    K: Reconciled + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    Controller::new(
        api::<DeserializeGuard<K>>(client, namespace),
        watcher::Config::default().any_semantic(),
    )
}

/// Logs what a controller's stream yields as an error (a reconcile's own errors are counted
/// and logged by [`error_policy`]).
async fn log_failed<T, E: std::fmt::Display>(controller: &'static str, result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "{controller} controller event");
    }
}

fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |_obj, error, ctx| {
        ctx.metrics.failed(controller, error.metric_label());
        tracing::warn!(controller, %error, "reconcile failed");
        Action::requeue(ERROR_REQUEUE)
    }
}

/// Runs `controller` until `stop`: each object through [`reconcile`], failures counted and
/// retried after [`ERROR_REQUEUE`].
async fn drive<K: Reconciled>(
    controller: Controller<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) {
    controller
        .graceful_shutdown_on(stopped(stop))
        .run(reconcile::<K>, error_policy(K::CONTROLLER), ctx)
        .for_each(|r| log_failed(K::CONTROLLER, r))
        .await
}

/// Runs the controllers for one namespace (`None`: all) until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, stop: watch::Receiver<bool>) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let owned = watcher::Config::default().labels(&managed_by_selector());

    let kernels = controller::<FdcKernel>(&client, ns)
        .owns(api::<StatefulSet>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned.clone())
        .owns(api::<ConfigMap>(&client, ns), owned.clone())
        .owns(api::<Secret>(&client, ns), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, ns), owned.clone());
    let schemas = controller::<FdcSchema>(&client, ns);

    let producers = controller::<Producer>(&client, ns);
    let store = producers.store();
    let schema_store = producers.store();
    let producers = producers
        .owns(api::<Secret>(&client, ns), owned)
        // A kernel change (e.g. a key rotation shown in its status) re-issues its producers' tokens.
        .watches(
            api::<DeserializeGuard<FdcKernel>>(&client, ns),
            watcher::Config::default(),
            move |kernel| {
                let kernel_ns = kernel.namespace();
                let kernel_name = kernel.name_any();
                producers_where(&store, |p| {
                    p.spec.kernel_ref.name == kernel_name
                        && p.kernel_namespace().map(str::to_string) == kernel_ns
                })
            },
        )
        // A schema version added (or deprecated) re-binds the producers that name it.
        .watches(
            api::<DeserializeGuard<FdcSchema>>(&client, ns),
            watcher::Config::default(),
            move |schema| {
                let Ok(schema) = &schema.0 else {
                    return Vec::new();
                };
                producers_where(&schema_store, |p| names_schema(p, schema))
            },
        );

    futures::join!(
        drive(kernels, ctx.clone(), stop.clone()),
        drive(schemas, ctx.clone(), stop.clone()),
        drive(producers, ctx, stop),
    );
}

/// The readable Producers of `store` for which `wanted` holds, to reconcile again.
fn producers_where(
    store: &Store<DeserializeGuard<Producer>>,
    wanted: impl Fn(&Producer) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<Producer>>> {
    store
        .state()
        .into_iter()
        .filter(|p| p.0.as_ref().is_ok_and(&wanted))
        .map(|p| ObjectRef::from_obj(&*p))
        .collect()
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}
