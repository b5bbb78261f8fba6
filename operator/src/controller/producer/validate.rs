//! Validate: judges a Producer against its kernel before anything is written. A Producer
//! that cannot get credentials until someone acts is [`Blocked`]; otherwise it is a
//! [`ValidProducer`].

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use uuid::Uuid;

use crate::builders::issuer_keys::{IssuerKeySet, KeySetError};
use crate::builders::BuildError;
use crate::controller::kernel_ref::{serving_kernel, Blocked, RETRY_BLOCKED};
use crate::controller::producer::fetch::kernel_namespace;
use crate::crd::{FdcKernel, Producer};

/// A Producer whose kernel exists, accepts its namespace and serves its stream.
#[derive(Debug, Clone)]
pub struct ValidProducer<'a> {
    pub producer: &'a Producer,
    pub id: Uuid,
    pub kernel: FdcKernel,
    /// The stream its credentials name (`spec.stream`, else the kernel's first).
    pub stream: String,
    /// The token TTL: the Producer's, capped at the kernel's.
    pub ttl: Duration,
}

/// Judges `producer` (whose id is `id`) against its kernel as fetched.
pub fn validate(
    producer: &Producer,
    id: Uuid,
    kernel: Option<FdcKernel>,
) -> Result<Result<ValidProducer<'_>, Blocked>, BuildError> {
    let ns = producer.namespace().unwrap_or_default();
    let kernel = match serving_kernel(&producer.spec.kernel_ref, &ns, kernel, "Producers") {
        Ok(kernel) => kernel,
        Err(blocked) => return Ok(Err(blocked)),
    };
    let stream = producer
        .spec
        .stream
        .clone()
        .unwrap_or_else(|| kernel.spec.streams.first().cloned().unwrap_or_default());
    if !kernel.spec.streams.contains(&stream) {
        return Ok(Err(Blocked {
            reason: "StreamNotServed",
            message: format!(
                "stream {stream:?} is not one of the kernel's streams {:?}",
                kernel.spec.streams
            ),
            retry: None,
        }));
    }
    let ttl = token_ttl(producer, &kernel)?;
    Ok(Ok(ValidProducer {
        producer,
        id,
        kernel,
        stream,
        ttl,
    }))
}

/// The kernel's issuer keys, or Blocked while the kernel has none yet.
pub fn issuer_keys(
    valid: &ValidProducer<'_>,
    secret: Option<&Secret>,
) -> Result<Result<IssuerKeySet, Blocked>, KeySetError> {
    let Some(secret) = secret else {
        return Ok(Err(Blocked {
            reason: "IssuerKeyNotReady",
            message: format!(
                "FdcKernel {}/{} has no issuer key yet; see its status",
                kernel_namespace(valid.producer),
                valid.kernel.name_any()
            ),
            retry: Some(RETRY_BLOCKED),
        }));
    };
    IssuerKeySet::from_secret(secret).map(Ok)
}

/// Token TTL: the Producer's, capped at the kernel's (which bounds how long a rotated-out
/// issuer key must stay trusted).
fn token_ttl(producer: &Producer, kernel: &FdcKernel) -> Result<Duration, BuildError> {
    let invalid =
        |what: &str, e: humantime::DurationError| BuildError::Invalid(format!("{what}: {e}"));
    let max = kernel
        .token_ttl()
        .map_err(|e| invalid("FdcKernel auth.tokenTTL", e))?;
    Ok(match &producer.spec.token_ttl {
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| invalid("tokenTTL", e))?
            .min(max),
        None => max,
    })
}
