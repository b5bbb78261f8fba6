//! Pure builders: desired Kubernetes objects from a custom resource, no API calls.
//!
//! Each builder returns the full object the operator applies with server-side apply, so the
//! tests can check exactly what will be sent.

pub mod config;
pub mod config_check;
pub mod issuer_keys;
pub mod pdb;
pub mod producer_secret;
pub mod quantity;
pub mod service;
pub mod service_monitor;
pub mod statefulset;

#[cfg(test)]
mod tests;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::FdcKernel;
use crate::labels::kernel_labels;

/// Why a desired object could not be built (the custom resource is unusable as is).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BuildError {
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("{0}")]
    Invalid(String),
}

/// Metadata of an object owned (and garbage-collected) by `kernel`.
pub fn owner_meta(kernel: &FdcKernel, name: String) -> Result<ObjectMeta, BuildError> {
    let owner = kernel
        .controller_owner_ref(&())
        .ok_or(BuildError::MissingField("metadata.uid"))?;
    Ok(ObjectMeta {
        name: Some(name),
        namespace: kernel.namespace(),
        labels: Some(kernel_labels(&kernel.name_any())),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    })
}
