//! Validate: judges an FdcSchema before the kernel is asked (pure). One that cannot be
//! registered until someone acts is [`Blocked`]; otherwise it is a [`ValidSchema`].

use std::time::Duration;

use kube::ResourceExt;

use crate::controller::schema::fetch::kernel_namespace;
use crate::crd::{FdcKernel, FdcSchema};

/// How often an FdcSchema waiting for its kernel is looked at again.
pub const RETRY_BLOCKED: Duration = Duration::from_secs(30);

/// An FdcSchema whose kernel exists and accepts its namespace, with a usable name, version
/// and body.
#[derive(Debug, Clone)]
pub struct ValidSchema<'a> {
    pub schema: &'a FdcSchema,
    pub kernel: FdcKernel,
    /// The name at the kernel (`spec.name`, else `metadata.name`).
    pub name: String,
}

/// Why an FdcSchema is not registered now: the condition reason, a message that says what
/// to do, and when to look again (`None`: at the next change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub reason: &'static str,
    pub message: String,
    pub retry: Option<Duration>,
}

impl Blocked {
    fn spec(message: String) -> Self {
        Blocked {
            reason: "InvalidSpec",
            message,
            retry: None,
        }
    }
}

/// Judges `schema` against its kernel as fetched.
pub fn validate(schema: &FdcSchema, kernel: Option<FdcKernel>) -> Result<ValidSchema<'_>, Blocked> {
    let name = schema.schema_name();
    if !is_schema_name(&name) {
        return Err(Blocked::spec(format!("schema name {name:?} (spec.name, else metadata.name) must start with a letter or digit and hold only letters, digits, '.', '_' and '-'")));
    }
    if !is_semver(&schema.spec.version) {
        return Err(Blocked::spec(format!(
            "spec.version {:?} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0)",
            schema.spec.version
        )));
    }
    if !schema.spec.body.is_object() {
        return Err(Blocked::spec(
            "spec.body must be an object: the JSON Schema itself".to_string(),
        ));
    }
    let ns = schema.namespace().unwrap_or_default();
    let kernel_ns = kernel_namespace(schema);
    let kernel_name = &schema.spec.kernel_ref.name;
    let Some(kernel) = kernel else {
        return Err(Blocked {
            reason: "KernelNotFound",
            message: format!(
                "FdcKernel {kernel_ns}/{kernel_name} not found; create it or fix spec.kernelRef"
            ),
            retry: Some(RETRY_BLOCKED),
        });
    };
    if !kernel.allows_producer_namespace(&ns) {
        return Err(Blocked {
            reason: "NamespaceNotAllowed",
            message: format!("FdcKernel {kernel_ns}/{kernel_name} does not accept resources from namespace {ns}; add it to the kernel's spec.auth.allowedProducerNamespaces"),
            retry: None,
        });
    }
    Ok(ValidSchema {
        schema,
        kernel,
        name,
    })
}

/// A schema name: a letter or digit, then letters, digits, `.`, `_`, `-` (at most 200).
pub fn is_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 200
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A semantic version 2.0.0: `MAJOR.MINOR.PATCH`, numbers without leading zeros, then an
/// optional `-pre.release` and `+build` of dot-separated alphanumeric identifiers.
pub fn is_semver(version: &str) -> bool {
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numeric = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let identifiers = |s: &str, numbers_canonical: bool| {
        s.split('.').all(|id| {
            !id.is_empty()
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && (!numbers_canonical || !id.chars().all(|c| c.is_ascii_digit()) || numeric(id))
        })
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|p| identifiers(p, true))
        && build.is_none_or(|b| identifiers(b, false))
}
