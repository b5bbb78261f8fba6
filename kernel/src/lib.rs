//! fdc kernel library.
pub mod auth;
