//! Fetch: the reads of a Producer pass. [`kernel`] reads the FdcKernel the Producer names,
//! which `validate` judges; [`current`] then reads the kernel's issuer key Secret and the
//! Producer's credentials Secret as stored (the latter only when the issuer key exists,
//! since without it nothing more is done).

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::builders::producer_secret::Stored;
use crate::controller::fetch::{read, FetchError};
use crate::controller::Context;
use crate::crd::{FdcKernel, Producer};
use crate::labels::names;

/// The namespace of `producer`'s kernel (its own unless `spec.kernelRef.namespace` says).
pub fn kernel_namespace(producer: &Producer) -> String {
    let ns = producer.namespace().unwrap_or_default();
    producer.kernel_namespace().unwrap_or(&ns).to_string()
}

/// Reads the FdcKernel `producer` names (`None`: not found).
pub async fn kernel(producer: &Producer, ctx: &Context) -> Result<Option<FdcKernel>, FetchError> {
    read(
        ctx,
        &kernel_namespace(producer),
        &producer.spec.kernel_ref.name,
    )
    .await
}

/// What a pass finds stored for a Producer of a valid kernel (no `Debug`: it holds the
/// token and private key).
#[derive(Clone)]
pub struct Current {
    /// The kernel's issuer key Secret (`None`: the kernel has none yet).
    pub issuer: Option<Secret>,
    /// The Producer's credentials as stored (empty when its Secret does not exist, or when
    /// the issuer key is missing and it was not read).
    pub stored: Stored,
}

/// Reads the kernel's issuer key Secret, then the Producer's credentials Secret.
pub async fn current(producer: &Producer, ctx: &Context) -> Result<Current, FetchError> {
    let kernel_ns = kernel_namespace(producer);
    let issuer_name = names::issuer_secret(&producer.spec.kernel_ref.name);
    let issuer: Option<Secret> = read(ctx, &kernel_ns, &issuer_name).await?;
    if issuer.is_none() {
        return Ok(Current {
            issuer,
            stored: Stored::default(),
        });
    }
    let ns = producer.namespace().unwrap_or_default();
    let stored = read::<Secret>(ctx, &ns, &names::producer_secret(&producer.name_any()))
        .await?
        .map(|s| Stored::read(&s))
        .unwrap_or_default();
    Ok(Current { issuer, stored })
}
