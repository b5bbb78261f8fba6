//! Admin API: approve/reject registrations, pre-approve externally held keys, revoke producers
//! and keys, issue tokens, manage payload schemas and producers' schema bindings.

pub mod http;
pub mod preapprove;
pub mod schemas;
pub mod store;

pub use http::{read_admin_token, router, serve, AdminState};
