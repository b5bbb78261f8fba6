//! A binding of a producer (or, with auth off, a stream) to a payload schema, and the rule that
//! picks the version that validates. Written once here: the kernel resolves bindings, the
//! operator checks `Producer.spec.schema` before it sends one.
//!
//! Syntax (docs/schemas.md, "Versions and bindings"):
//! - `name`: the newest version of `name`;
//! - `name@1.2.0` (a full version, nothing else): exactly that version;
//! - `name@<requirement>`: the newest version matching a semver requirement (`^1.2`, `~1.2`,
//!   `>=1.0, <2`, `=1.2.0`, `*`), with the `semver` crate's rules (so pre-releases match only
//!   a requirement that names one).
//!
//! The version that validates is the newest matching version that is not deprecated; when
//! every matching version is deprecated, the newest matching one (deprecating never leaves a
//! bound producer without its schema). A new binding must not pick a deprecated version.

use std::fmt;
use std::str::FromStr;

use semver::{Version, VersionReq};

/// Longest schema name.
pub const MAX_NAME_LEN: usize = 128;

/// Which versions of the schema a binding accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Any version: the newest.
    Newest,
    /// Exactly this version.
    Exact(Version),
    /// The newest version matching the requirement.
    Matching(VersionReq),
}

/// `name`, `name@version` or `name@requirement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub pick: Pick,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    #[error("schema name {0:?} must be 1 to 128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit")]
    Name(String),
    #[error("version requirement {0:?} after '@' is not a version (1.2.0) nor a semver requirement (^1.2, >=1, <2): {1}")]
    Requirement(String, String),
}

/// Checks a schema name: it is a URL path segment of the admin API and part of a binding.
pub fn check_name(name: &str) -> Result<(), BindingError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(BindingError::Name(name.to_string()))
    }
}

impl FromStr for Binding {
    type Err = BindingError;

    fn from_str(s: &str) -> Result<Binding, BindingError> {
        let (name, pick) = match s.split_once('@') {
            None => (s, Pick::Newest),
            Some((name, req)) => {
                let req = req.trim();
                let pick = if let Ok(v) = Version::parse(req) {
                    Pick::Exact(v)
                } else {
                    VersionReq::parse(req)
                        .map(Pick::Matching)
                        .map_err(|e| BindingError::Requirement(req.to_string(), e.to_string()))?
                };
                (name, pick)
            }
        };
        check_name(name)?;
        Ok(Binding {
            name: name.to_string(),
            pick,
        })
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pick {
            Pick::Newest => write!(f, "{}", self.name),
            Pick::Exact(v) => write!(f, "{}@{v}", self.name),
            Pick::Matching(r) => write!(f, "{}@{r}", self.name),
        }
    }
}

impl Binding {
    pub fn accepts(&self, version: &Version) -> bool {
        match &self.pick {
            Pick::Newest => version.pre.is_empty(),
            Pick::Exact(v) => v == version,
            Pick::Matching(r) => r.matches(version),
        }
    }

    /// The version that validates, among `versions` (each with whether it is deprecated), by
    /// the rule of this module; `None` when no version matches.
    pub fn pick<'v, T>(&self, versions: impl IntoIterator<Item = &'v T>) -> Option<&'v T>
    where
        T: AsVersion + 'v,
    {
        let matching: Vec<&T> = versions
            .into_iter()
            .filter(|v| self.accepts(v.version()))
            .collect();
        let newest = |live_only: bool| {
            matching
                .iter()
                .filter(|v| !live_only || !v.deprecated())
                .max_by(|a, b| a.version().cmp(b.version()))
                .copied()
        };
        newest(true).or_else(|| newest(false))
    }
}

/// A version of a schema as [`Binding::pick`] sees it.
pub trait AsVersion {
    fn version(&self) -> &Version;
    fn deprecated(&self) -> bool;
}

impl AsVersion for (Version, bool) {
    fn version(&self) -> &Version {
        &self.0
    }
    fn deprecated(&self) -> bool {
        self.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(list: &[(&str, bool)]) -> Vec<(Version, bool)> {
        list.iter()
            .map(|(v, d)| (Version::parse(v).unwrap(), *d))
            .collect()
    }

    fn picked(binding: &str, list: &[(&str, bool)]) -> Option<String> {
        let b: Binding = binding.parse().unwrap();
        b.pick(&versions(list)).map(|(v, _)| v.to_string())
    }

    #[test]
    fn bare_version_is_exact_and_requirements_match_the_newest() {
        let all = [
            ("1.0.0", false),
            ("1.2.0", false),
            ("1.3.1", false),
            ("2.0.0", false),
            ("2.1.0-rc.1", false),
        ];
        assert_eq!(picked("orders", &all).as_deref(), Some("2.0.0"));
        assert_eq!(picked("orders@1.2.0", &all).as_deref(), Some("1.2.0"));
        assert_eq!(picked("orders@^1.2", &all).as_deref(), Some("1.3.1"));
        assert_eq!(picked("orders@~1.2", &all).as_deref(), Some("1.2.0"));
        assert_eq!(picked("orders@>=1, <2", &all).as_deref(), Some("1.3.1"));
        assert_eq!(picked("orders@1.2.5", &all), None);
        assert_eq!(picked("orders@^3", &all), None);
    }

    #[test]
    fn deprecated_versions_are_passed_over_unless_nothing_else_matches() {
        let all = [("1.0.0", false), ("1.1.0", true)];
        assert_eq!(picked("orders@^1", &all).as_deref(), Some("1.0.0"));
        assert_eq!(picked("orders@1.1.0", &all).as_deref(), Some("1.1.0"));
        let all = [("1.0.0", true), ("1.1.0", true)];
        assert_eq!(picked("orders", &all).as_deref(), Some("1.1.0"));
    }

    #[test]
    fn syntax_errors_name_the_part_that_is_wrong() {
        assert!(matches!(
            "orders@banana".parse::<Binding>(),
            Err(BindingError::Requirement(r, _)) if r == "banana"
        ));
        assert!(matches!(
            "ord ers@1.0.0".parse::<Binding>(),
            Err(BindingError::Name(_))
        ));
        assert!(matches!(
            "@1".parse::<Binding>(),
            Err(BindingError::Name(_))
        ));
        let b: Binding = "orders@^1.2".parse().unwrap();
        assert_eq!(b.to_string(), "orders@^1.2");
        assert_eq!("orders".parse::<Binding>().unwrap().to_string(), "orders");
        assert_eq!(
            "orders@=1.2.0".parse::<Binding>().unwrap().to_string(),
            "orders@=1.2.0"
        );
    }
}
