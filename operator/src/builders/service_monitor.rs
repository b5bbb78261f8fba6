//! Prometheus Operator ServiceMonitor, built as a dynamic object (no typed dependency on
//! the Prometheus Operator's CRDs; it is only applied when the cluster serves them).

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::ResourceExt;
use serde_json::json;

use crate::builders::{owner_meta, BuildError};
use crate::crd::FdcKernel;
use crate::labels::kernel_selector_labels;

/// Group/version the Prometheus Operator serves ServiceMonitors under.
pub const GROUP_VERSION: &str = "monitoring.coreos.com/v1";

/// API resource of ServiceMonitor.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// ServiceMonitor `<kernel>` scraping the `http` port's `/metrics`.
pub fn service_monitor(kernel: &FdcKernel) -> Result<DynamicObject, BuildError> {
    let name = kernel.name_any();
    let mut obj = DynamicObject::new(&name, &api_resource());
    obj.metadata = owner_meta(kernel, name.clone())?;
    obj.data = json!({
        "spec": {
            "selector": { "matchLabels": kernel_selector_labels(&name) },
            "endpoints": [{
                "port": "http",
                "path": fdc_common::contract::METRICS_PATH,
                "interval": kernel.spec.service_monitor.interval,
            }],
        }
    });
    Ok(obj)
}
