//! Build: what a valid FdcSchema asks of the kernel's registry (pure).

use kube::ResourceExt;

use crate::controller::schema::validate::ValidSchema;

/// The registry calls of a pass, in order: add the version, then deprecate it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub name: String,
    pub version: String,
    pub body: serde_json::Value,
    /// The audit reason the kernel records.
    pub reason: String,
    /// Deprecate the version (`spec.deprecated`) when the kernel has not yet.
    pub deprecate: bool,
}

/// Builds the registry calls of `valid`.
pub fn build(valid: &ValidSchema<'_>) -> Desired {
    let schema = valid.schema;
    Desired {
        name: valid.name.clone(),
        version: schema.spec.version.clone(),
        body: schema.spec.body.clone(),
        reason: format!(
            "FdcSchema {}/{} declares it",
            schema.namespace().unwrap_or_default(),
            schema.name_any()
        ),
        deprecate: schema.spec.deprecated,
    }
}

impl Desired {
    /// `name@version`, as messages name a schema version.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{fdc_schema, kernel};
    use crate::controller::schema::validate::validate;

    #[test]
    fn the_request_is_the_spec_with_an_audit_reason() {
        let mut s = fdc_schema("orders-v1-2", "k");
        s.spec.deprecated = true;
        let desired = build(&validate(&s, Some(kernel("k", 1))).unwrap());
        assert_eq!(
            desired,
            Desired {
                name: "orders".into(),
                version: "1.2.0".into(),
                body: s.spec.body.clone(),
                reason: "FdcSchema apps/orders-v1-2 declares it".into(),
                deprecate: true,
            }
        );
        assert_eq!(desired.label(), "orders@1.2.0");
    }
}
