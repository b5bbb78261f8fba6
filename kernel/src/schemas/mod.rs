//! Payload schemas: versioned JSON Schemas that producers (or, with auth off, streams) are
//! bound to, and the validation of `data` payloads against them at ingest. See docs/schemas.md.
//!
//! - `compile`: a body to a validator (bounded, no fetching, linear-time patterns), and the
//!   check of one payload;
//! - `store`: the registry's Postgres queries (tables `schemas`, `producers.schema_binding`);
//! - `registry`: the ingest path's view, `Schemas::judge`, with its caches.
//!
//! The binding syntax and the rule that picks a version are `fdc_common::schema_binding`.

pub mod compile;
mod registry;
pub mod store;

pub use compile::{CompileError, MAX_BODY_BYTES};
pub use registry::{Compiled, Judged, Schemas};
