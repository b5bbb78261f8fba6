//! Admin API: approve/reject registrations, revoke producers and keys, issue tokens.

pub mod http;
pub mod store;

pub use http::{read_admin_token, router, serve, AdminState};
