//! The tracing span every reconcile runs in: `reconcile{kind, namespace, name, generation}`,
//! so each log line of a pass names the object it is about.

use kube::core::ObjectMeta;
use tracing::Span;

/// The span of one reconcile of the object `kind` described by `meta`. An object whose
/// spec cannot be read still has metadata, so malformed objects get the same span.
pub fn reconcile_span(kind: &str, meta: &ObjectMeta) -> Span {
    tracing::info_span!(
        "reconcile",
        kind,
        namespace = meta.namespace.as_deref().unwrap_or(""),
        name = meta.name.as_deref().unwrap_or(""),
        generation = meta.generation.unwrap_or(0),
    )
}
