//! Fetch: the reads of an FdcSchema pass: the FdcKernel it names (whose admin API holds the
//! registry). The admin token is read by [`crate::controller::admin::access`] once the
//! schema is valid.

use kube::ResourceExt;

use crate::controller::fetch::{read, FetchError};
use crate::controller::Context;
use crate::crd::{FdcKernel, FdcSchema};

/// The namespace of `schema`'s kernel (its own unless `spec.kernelRef.namespace` says).
pub fn kernel_namespace(schema: &FdcSchema) -> String {
    let ns = schema.namespace().unwrap_or_default();
    schema.kernel_namespace().unwrap_or(&ns).to_string()
}

/// Reads the FdcKernel `schema` names (`None`: not found).
pub async fn kernel(schema: &FdcSchema, ctx: &Context) -> Result<Option<FdcKernel>, FetchError> {
    read(ctx, &kernel_namespace(schema), &schema.spec.kernel_ref.name).await
}
