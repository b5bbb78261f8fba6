//! fdc operator: reconciles `FdcKernel`, `Producer` and `FdcSchema` custom resources.

pub mod auth;
pub mod builders;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod keda;
pub mod kernel_api;
pub mod labels;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod server;
pub mod text;
