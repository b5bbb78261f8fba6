//! Reconcilers and the controllers that drive them.

pub mod admin;
pub mod apply;
pub mod events;
pub mod fetch;
pub mod kernel;
pub mod kernel_ref;
pub mod kernel_status;
pub mod key_approval;
pub mod producer;
pub mod run;
pub mod schema;
pub mod schema_binding;
pub mod span;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tracing::Instrument;

use crate::auth::AuthError;
use crate::builders::issuer_keys::KeySetError;
use crate::builders::BuildError;
use crate::crd::FdcKernel;
use crate::kernel_api::{KernelApi, KernelApiError};
use crate::labels::{kernel_selector_labels, selector_string, CONTROLLER_NAME, FIELD_MANAGER};
use crate::metrics::Metrics;

/// A kind the operator reconciles: its controller's name in metrics and logs, and one pass
/// over a readable object (see [`reconcile`]).
pub trait Reconciled:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Controller name in metrics.
    const CONTROLLER: &'static str;

    /// One reconcile pass of this object.
    fn pass(&self, ctx: &Context) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// Entry point of every controller: the pass of `obj` runs in the object's span
/// ([`Context::reconcile`]); an object that does not deserialize gets an Event instead.
pub async fn reconcile<K: Reconciled>(
    obj: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.reconcile(&obj, K::CONTROLLER, async |object| object.pass(&ctx).await)
        .await
}

/// How long a ServiceMonitor CRD lookup is trusted before asking discovery again.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub events: events::Publisher,
    pub kernel_api: KernelApi,
    /// Cached answer to "does the cluster serve monitoring.coreos.com/v1 ServiceMonitors?".
    service_monitor_crd: Mutex<Option<(Instant, bool)>>,
    /// The last scrape of each kernel's counters (`namespace/name`), for the rates of the
    /// next pass.
    ingest_samples: Mutex<HashMap<String, kernel::ingest::Sample>>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        kernel_api: KernelApi,
        instance: Option<String>,
    ) -> Self {
        Context {
            events: events::Publisher::new(client.clone(), CONTROLLER_NAME.into(), instance),
            client,
            metrics,
            kernel_api,
            service_monitor_crd: Mutex::new(None),
            ingest_samples: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `sample` as kernel `key`'s last scrape.
    pub fn keep_ingest_sample(&self, key: &str, sample: kernel::ingest::Sample) {
        self.ingest_samples
            .lock()
            .expect("poisoned")
            .insert(key.to_string(), sample);
    }

    /// Kernel `key`'s last scrape, if one is kept.
    pub fn ingest_sample(&self, key: &str) -> Option<kernel::ingest::Sample> {
        self.ingest_samples
            .lock()
            .expect("poisoned")
            .get(key)
            .cloned()
    }

    /// Publishes an Event; a failure to publish is logged, never fails the reconcile.
    /// `note` must not contain secrets (it is world-readable in the namespace).
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        let note = note.into();
        if let Err(e) = self
            .events
            .publish(regarding, type_, reason, action, &note)
            .await
        {
            tracing::warn!(reason, error = %e, "cannot publish event");
        }
    }

    /// One reconcile pass of `obj`, in its [`span::reconcile_span`] and timed in the metrics
    /// as `controller`: `pass` runs on the object, unless it does not deserialize
    /// ([`readable`](Self::readable)); then the pass waits for the next change.
    pub async fn reconcile<K>(
        &self,
        obj: &DeserializeGuard<K>,
        controller: &'static str,
        pass: impl AsyncFnOnce(&K) -> Result<Action, Error>,
    ) -> Result<Action, Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let span = span::reconcile_span(&K::kind(&()), obj.meta());
        async {
            let _timer = self.metrics.start(controller);
            match self.readable(obj).await {
                Some(object) => pass(object).await,
                None => Ok(Action::await_change()),
            }
        }
        .instrument(span)
        .await
    }

    /// The object a reconcile pass works on, or `None` when it does not deserialize: then a
    /// Warning Event `InvalidSpec` on it says why (`cannot read <kind>: …`), and the caller
    /// waits for the next change.
    pub async fn readable<'o, K>(&self, obj: &'o DeserializeGuard<K>) -> Option<&'o K>
    where
        K: Resource<DynamicType = ()>,
    {
        match &obj.0 {
            Ok(object) => Some(object),
            Err(invalid) => {
                self.event(
                    &obj.object_ref(&()),
                    EventType::Warning,
                    "InvalidSpec",
                    "Reconcile",
                    format!("cannot read {}: {}", K::kind(&()), invalid.error),
                )
                .await;
                None
            }
        }
    }

    /// Server-side applies `status` to `obj`'s status subresource (our field manager, forced:
    /// the operator owns the status of the resources it reconciles).
    pub async fn apply_status<K>(&self, obj: &K, status: &impl Serialize) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> =
            Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
        Ok(())
    }

    /// In pod-IP access mode, the IP of a Ready pod of `kernel` for admin calls (`Ok(Err)`
    /// when it has none); `Ok(Ok(None))` in the other modes, which need none.
    pub async fn admin_pod_ip(
        &self,
        kernel: &FdcKernel,
    ) -> Result<Result<Option<String>, KernelApiError>, kube::Error> {
        if !self.kernel_api.admin_needs_pod_ip() {
            return Ok(Ok(None));
        }
        let pods: Api<Pod> =
            Api::namespaced(self.client.clone(), &kernel.namespace().unwrap_or_default());
        let selector = selector_string(&kernel_selector_labels(&kernel.name_any()));
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        let ip = list
            .items
            .iter()
            .filter(|p| kernel_status::pod_ready(p))
            .find_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()));
        Ok(match ip {
            Some(ip) => Ok(Some(ip)),
            None => Err(KernelApiError::NoReadyPod(format!(
                "{}/{}",
                kernel.namespace().unwrap_or_default(),
                kernel.name_any()
            ))),
        })
    }

    /// Whether ServiceMonitors can be created (cached for [`DISCOVERY_TTL`]).
    pub async fn has_service_monitor_crd(&self) -> Result<bool, kube::Error> {
        if let Some((at, known)) = *self.service_monitor_crd.lock().expect("poisoned") {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(known);
            }
        }
        let found = match self
            .client
            .list_api_group_resources(crate::builders::service_monitor::GROUP_VERSION)
            .await
        {
            Ok(list) => list.resources.iter().any(|r| r.name == "servicemonitors"),
            Err(kube::Error::Api(s)) if s.code == 404 => false,
            Err(e) => return Err(e),
        };
        *self.service_monitor_crd.lock().expect("poisoned") = Some((Instant::now(), found));
        Ok(found)
    }
}

/// A reconcile failed; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Desired(#[from] DesiredError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error(transparent)]
    Status(#[from] kernel::status::StatusError),
    #[error("kernel API: {0}")]
    KernelApi(#[from] KernelApiError),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// The desired objects of a pass cannot be built (the build step of both reconcilers).
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("cannot build desired objects: {0}")]
    Build(#[from] BuildError),
    #[error("stored issuer keys unusable: {0}")]
    Keys(#[from] KeySetError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl From<BuildError> for Error {
    fn from(e: BuildError) -> Self {
        Error::Desired(e.into())
    }
}

impl From<KeySetError> for Error {
    fn from(e: KeySetError) -> Self {
        Error::Desired(e.into())
    }
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        Error::Desired(e.into())
    }
}

impl Error {
    /// Short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) | Error::Fetch(_) | Error::Apply(_) | Error::Status(_) => "kube",
            Error::Desired(DesiredError::Build(_)) => "build",
            Error::Desired(DesiredError::Keys(_)) => "keys",
            Error::Desired(DesiredError::Auth(_)) => "auth",
            Error::KernelApi(_) => "kernel_api",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// `NotFound` from the API server as `None`.
pub(crate) fn not_found_as_none<T>(r: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}
