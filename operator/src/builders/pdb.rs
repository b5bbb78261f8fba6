//! PodDisruptionBudget: follows the replica count.
//!
//! With one replica a PDB would block every node drain (no pod may ever be evicted), so none
//! is created; with more, one pod at a time may be evicted.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::builders::{owner_meta, BuildError};
use crate::crd::FdcKernel;
use crate::labels::kernel_selector_labels;

/// The PDB for `replicas` pods, or `None` when there should be none.
pub fn pdb(kernel: &FdcKernel, replicas: i32) -> Result<Option<PodDisruptionBudget>, BuildError> {
    if replicas <= 1 {
        return Ok(None);
    }
    let name = kernel.name_any();
    Ok(Some(PodDisruptionBudget {
        metadata: owner_meta(kernel, name.clone())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(kernel_selector_labels(&name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }))
}
