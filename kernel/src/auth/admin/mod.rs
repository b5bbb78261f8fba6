//! Admin API: approve/reject registrations, pre-approve externally held keys, revoke producers
//! and keys, issue tokens.

pub mod http;
pub mod preapprove;
pub mod store;

pub use http::{read_admin_token, router, serve, AdminState};
