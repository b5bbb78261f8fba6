//! The kernel's Service: metrics/health (`http`) and the admin API (`admin`).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::builders::config::{ADMIN_PORT, HTTP_PORT};
use crate::builders::{owner_meta, BuildError};
use crate::crd::FdcKernel;
use crate::labels::kernel_selector_labels;
use kube::ResourceExt;

/// ClusterIP Service `<kernel>`; any replica can answer admin calls (decisions are in Postgres).
pub fn service(kernel: &FdcKernel) -> Result<Service, BuildError> {
    let name = kernel.name_any();
    let port = |name: &str, port: i32| ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    Ok(Service {
        metadata: owner_meta(kernel, name.clone())?,
        spec: Some(ServiceSpec {
            selector: Some(kernel_selector_labels(&name)),
            ports: Some(vec![port("http", HTTP_PORT), port("admin", ADMIN_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}
