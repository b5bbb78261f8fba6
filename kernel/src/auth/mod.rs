//! Producer authentication: Ed25519 keys, EdDSA JWT access tokens, the
//! `fdc:register` registration flow, the admin API and the auth CLI.
//!
//! See `docs/auth.md` for the operator-facing description.

pub mod admin;
pub mod authenticator;
pub mod cli;
pub mod last_seen;
pub mod metrics;
pub mod producers_db;
pub mod registration;
pub mod schema_cli;

pub use authenticator::{Authenticator, Denial, Identity, Verdict};
pub mod gate;
pub mod runtime;
