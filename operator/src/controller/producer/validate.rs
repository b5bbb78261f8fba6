//! Validate: judges a Producer against its kernel before anything is written. A Producer
//! that cannot get credentials until someone acts is [`Blocked`]; otherwise it is a
//! [`ValidProducer`].

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use uuid::Uuid;

use fdc_common::config::{glob_match, is_pattern, Skip};

use crate::builders::issuer_keys::{IssuerKeySet, KeySetError};
use crate::builders::BuildError;
use crate::builders::{config, config_check};
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
    let stream = match served_stream(producer, &kernel) {
        Ok(stream) => stream,
        Err(blocked) => return Ok(Err(blocked)),
    };
    let ttl = token_ttl(producer, &kernel)?;
    Ok(Ok(ValidProducer {
        producer,
        id,
        kernel,
        stream,
        ttl,
    }))
}

/// The stream the Producer's credentials name: `spec.stream`, else the kernel's first plain
/// stream name. It must be one of the kernel's streams or match one of its patterns, and
/// not be a stream the kernel never reads (its dead-letter, re-publish or registration
/// streams, or on a Redis Cluster a name without a hash tag).
fn served_stream(producer: &Producer, kernel: &FdcKernel) -> Result<String, Blocked> {
    let streams = &kernel.spec.streams;
    let blocked = |reason, message| Blocked {
        reason,
        message,
        retry: None,
    };
    let stream = match &producer.spec.stream {
        Some(s) if is_pattern(s) => {
            return Err(blocked(
                "StreamIsPattern",
                format!("spec.stream {s:?} is a pattern; name the one stream this producer publishes to"),
            ))
        }
        Some(s) => s.clone(),
        None => match streams.iter().find(|s| !is_pattern(s)) {
            Some(first) => first.clone(),
            None => {
                return Err(blocked(
                    "StreamRequired",
                    format!("the kernel reads only patterns {streams:?}; set spec.stream to a stream one of them matches"),
                ))
            }
        },
    };
    if streams.contains(&stream) {
        return Ok(stream);
    }
    if !streams
        .iter()
        .any(|p| is_pattern(p) && glob_match(p, &stream))
    {
        return Err(blocked(
            "StreamNotServed",
            format!("stream {stream:?} is neither one of nor matched by the kernel's streams {streams:?}"),
        ));
    }
    // Matched by a pattern: discovery skips the kernel's own streams. A config the kernel
    // refuses is the kernel's condition to report, not the Producer's.
    let skip = config::render(kernel, &[])
        .ok()
        .and_then(|rendered| config_check::load(&rendered).ok())
        .and_then(|config| config.stream_sources().check(&stream).err());
    match skip {
        None => Ok(stream),
        Some(why) => Err(blocked(
            "StreamNotRead",
            format!("stream {stream:?} matches the kernel's streams {streams:?}, but the kernel never reads it: {}", skip_text(why)),
        )),
    }
}

fn skip_text(why: Skip) -> &'static str {
    match why {
        Skip::DeadLetters => "it is a dead-letter stream (it ends with ingest.dlq_suffix)",
        Skip::KernelOwn => "it is the kernel's re-publish or registration stream",
        Skip::NoHashTag => "on a Redis Cluster a stream needs a hash tag, e.g. events:{a}",
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{kernel, producer};

    /// What `served_stream` says of a Producer with `stream` for a kernel reading `streams`
    /// from Redis at `url`: the stream, or the Blocked reason.
    fn judge(streams: &[&str], url: &str, stream: Option<&str>) -> Result<String, &'static str> {
        let mut k = kernel("k", 1);
        k.spec.streams = streams.iter().map(|s| s.to_string()).collect();
        k.spec.redis.url = Some(url.into());
        let mut p = producer("p", "k");
        p.spec.stream = stream.map(String::from);
        served_stream(&p, &k).map_err(|b| b.reason)
    }

    const ONE: &str = "redis://redis:6379/0";
    const CLUSTER: &str = "redis+cluster://r0:6379,r1:6379/";

    #[test]
    fn listed_names_and_names_a_pattern_matches_are_served() {
        assert_eq!(judge(&["events"], ONE, None), Ok("events".into()));
        assert_eq!(
            judge(&["audit:*", "events"], ONE, None),
            Ok("events".into())
        );
        assert_eq!(
            judge(&["events:*"], ONE, Some("events:eu")),
            Ok("events:eu".into())
        );
        let tagged = judge(&["events:{*}"], CLUSTER, Some("events:{eu}"));
        assert_eq!(tagged, Ok("events:{eu}".into()));
        assert_eq!(
            judge(&["events"], ONE, Some("other")),
            Err("StreamNotServed")
        );
        assert_eq!(
            judge(&["events:*"], ONE, Some("audit:1")),
            Err("StreamNotServed")
        );
    }

    #[test]
    fn a_pattern_is_no_stream_to_publish_to() {
        assert_eq!(
            judge(&["events:*"], ONE, Some("events:*")),
            Err("StreamIsPattern")
        );
        assert_eq!(judge(&["events:*"], ONE, None), Err("StreamRequired"));
    }

    #[test]
    fn streams_the_kernel_never_reads_are_refused_though_a_pattern_matches() {
        let dlq = judge(&["events:*"], ONE, Some("events:dlq"));
        assert_eq!(dlq, Err("StreamNotRead"));
        let republish = judge(&["events:*"], ONE, Some("events:stored"));
        assert_eq!(republish, Err("StreamNotRead"));
        let untagged = judge(&["events:{*}"], CLUSTER, Some("events:{}"));
        assert_eq!(untagged, Err("StreamNotRead"));
    }
}
