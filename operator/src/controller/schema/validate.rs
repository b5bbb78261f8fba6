//! Validate: judges an FdcSchema before the kernel is asked (pure). One that cannot be
//! registered until someone acts is [`Blocked`]; otherwise it is a [`ValidSchema`].

use kube::ResourceExt;

use crate::controller::kernel_ref::{serving_kernel, Blocked};
use crate::crd::{FdcKernel, FdcSchema};

/// An FdcSchema whose kernel exists and accepts its namespace, with a usable name, version
/// and body.
#[derive(Debug, Clone)]
pub struct ValidSchema<'a> {
    pub schema: &'a FdcSchema,
    pub kernel: FdcKernel,
    /// The name at the kernel (`spec.name`, else `metadata.name`).
    pub name: String,
}

/// An FdcSchema whose spec is wrong: not registered until it is fixed.
fn invalid_spec(message: String) -> Blocked {
    Blocked {
        reason: "InvalidSpec",
        message,
        retry: None,
    }
}

/// Judges `schema` against its kernel as fetched.
pub fn validate(schema: &FdcSchema, kernel: Option<FdcKernel>) -> Result<ValidSchema<'_>, Blocked> {
    let name = schema.schema_name();
    if !is_schema_name(&name) {
        return Err(invalid_spec(format!("schema name {name:?} (spec.name, else metadata.name) must start with a letter or digit and hold only letters, digits, '.', '_' and '-'")));
    }
    if !is_semver(&schema.spec.version) {
        return Err(invalid_spec(format!(
            "spec.version {:?} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0)",
            schema.spec.version
        )));
    }
    if !schema.spec.body.is_object() {
        return Err(invalid_spec(
            "spec.body must be an object: the JSON Schema itself".to_string(),
        ));
    }
    let ns = schema.namespace().unwrap_or_default();
    let kernel = serving_kernel(&schema.spec.kernel_ref, &ns, kernel, "resources")?;
    Ok(ValidSchema {
        schema,
        kernel,
        name,
    })
}

/// A schema name as the kernel accepts it (`fdc_common::schema_binding::check_name`): a
/// letter or digit, then letters, digits, `.`, `_`, `-`.
pub fn is_schema_name(name: &str) -> bool {
    fdc_common::schema_binding::check_name(name).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{fdc_schema, kernel};
    use crate::controller::kernel_ref::RETRY_BLOCKED;

    #[test]
    fn semantic_versions() {
        for ok in [
            "0.0.0",
            "1.2.0",
            "10.20.30",
            "1.0.0-rc.1",
            "1.0.0-alpha-1.0",
            "1.0.0+build.7",
            "1.0.0-0.3.7+exp.sha.5114f85",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "v1.2.3",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3+",
            "1.2.3-a..b",
            "1.2.x",
            "^1.2.3",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn the_crd_patterns_and_the_checks_agree() {
        // The CRD's patterns refuse what the API server sees; the checks cover objects
        // written before them (or with validation off). Both must say the same.
        let semver = regex::Regex::new(crate::crd::schema::SEMVER_PATTERN).unwrap();
        let name = regex::Regex::new(crate::crd::schema::SCHEMA_NAME_PATTERN).unwrap();
        for v in [
            "0.0.0",
            "1.2.0",
            "1.0.0-rc.1",
            "1.0.0+b.7",
            "01.2.3",
            "1.2",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3+",
            "v1.0.0",
            "1.0.0-x-y.0+z-1",
        ] {
            assert_eq!(semver.is_match(v), is_semver(v), "{v}");
        }
        for n in ["orders", "o.v2_b-1", "-o", "a/b", "a b", ""] {
            assert_eq!(name.is_match(n), is_schema_name(n), "{n}");
        }
    }

    #[test]
    fn schema_names() {
        assert!(is_schema_name("orders"));
        assert!(is_schema_name("orders.v2_beta-1"));
        assert!(is_schema_name(&"a".repeat(128)));
        for bad in ["", "-orders", "orders/1", "a b", "örders", &"a".repeat(129)] {
            assert!(!is_schema_name(bad), "{bad}");
        }
    }

    #[test]
    fn blocks_with_a_reason_that_says_what_to_do() {
        let s = fdc_schema("s", "k");
        let valid = validate(&s, Some(kernel("k", 1))).unwrap();
        assert_eq!(valid.name, "orders");

        let mut unnamed = fdc_schema("orders-1.2.0", "k");
        unnamed.spec.name = None;
        assert_eq!(
            validate(&unnamed, Some(kernel("k", 1))).unwrap().name,
            "orders-1.2.0"
        );

        let missing = validate(&s, None).unwrap_err();
        assert_eq!(
            (missing.reason, missing.retry),
            ("KernelNotFound", Some(RETRY_BLOCKED))
        );

        let mut bad = fdc_schema("s", "k");
        bad.spec.version = "1.2".into();
        assert_eq!(
            validate(&bad, Some(kernel("k", 1))).unwrap_err(),
            Blocked {
                reason: "InvalidSpec",
                message:
                    "spec.version \"1.2\" is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0)"
                        .into(),
                retry: None,
            }
        );
        let mut bad = fdc_schema("s", "k");
        bad.spec.body = serde_json::json!(true);
        assert_eq!(
            validate(&bad, Some(kernel("k", 1))).unwrap_err().message,
            "spec.body must be an object: the JSON Schema itself"
        );

        let mut other_ns = fdc_schema("s", "k");
        other_ns.metadata.namespace = Some("team-b".into());
        other_ns.spec.kernel_ref.namespace = Some(crate::controller::fixtures::NS.into());
        let refused = validate(&other_ns, Some(kernel("k", 1))).unwrap_err();
        assert_eq!(refused.reason, "NamespaceNotAllowed");
        assert_eq!(refused.message, "FdcKernel apps/k does not accept resources from namespace team-b; add it to the kernel's spec.auth.allowedProducerNamespaces");
    }

    #[test]
    fn the_documented_example_is_valid() {
        let example: FdcSchema =
            serde_yaml::from_str(include_str!("../../../../docs/examples/15-schema.yaml")).unwrap();
        let mut example = example;
        example.metadata.namespace = Some(crate::controller::fixtures::NS.into());
        let valid = validate(&example, Some(kernel("fdc", 1))).unwrap();
        assert_eq!(valid.name, "orders");
        assert_eq!(example.spec.version, "1.0.0");
        assert_eq!(example.spec.body["required"][0], "order_id");
    }
}
