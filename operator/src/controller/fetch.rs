//! Reads shared by the reconcilers' fetch steps (`kernel/fetch.rs`, `producer/fetch.rs`):
//! one error type that names what could not be read.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::controller::Context;

/// A read failed; the pass stops and the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Reads object `name` of type `K` in namespace `ns` (`None`: not found).
pub async fn read<K>(ctx: &Context, ns: &str, name: &str) -> Result<Option<K>, FetchError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    Api::<K>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|source| FetchError::Read {
            what: format!("{} {ns}/{name}", K::kind(&())),
            source,
        })
}
