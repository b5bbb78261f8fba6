//! Fetch: the reads of a kernel pass, as data for the steps after it.
//!
//! [`inputs`] reads what the spec refers to (the Secrets the pods read at start), which
//! `validate` judges before anything else is read or written.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::ResourceExt;

use crate::controller::Context;
use crate::crd::FdcKernel;

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

/// The objects the spec refers to, as the API server holds them (`None`: not found).
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The Secret of `spec.postgres.urlSecretRef`.
    pub postgres: Option<Secret>,
    /// The Secret of `spec.redis.urlSecretRef`, when the spec names one.
    pub redis: Option<Option<Secret>>,
}

/// Reads the Secrets the kernel's pods read at start.
pub async fn inputs(kernel: &FdcKernel, ctx: &Context) -> Result<Inputs, FetchError> {
    let ns = kernel.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let postgres = read_secret(&secrets, &ns, &kernel.spec.postgres.url_secret_ref.name).await?;
    let redis = match &kernel.spec.redis.url_secret_ref {
        Some(r) => Some(read_secret(&secrets, &ns, &r.name).await?),
        None => None,
    };
    Ok(Inputs { postgres, redis })
}

async fn read_secret(
    secrets: &Api<Secret>,
    ns: &str,
    name: &str,
) -> Result<Option<Secret>, FetchError> {
    secrets
        .get_opt(name)
        .await
        .map_err(|source| FetchError::Read {
            what: format!("Secret {ns}/{name}"),
            source,
        })
}
