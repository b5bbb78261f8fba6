//! Reconciler tests against the mock API server.

mod kernel;
mod producer;
mod producer_key;
mod producer_schema;
mod schema;
mod span;
