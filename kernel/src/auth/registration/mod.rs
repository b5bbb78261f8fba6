//! The registration flow: a producer with its own Ed25519 key asks for a token on the
//! `fdc:register` stream; see docs/protocol.md ("Registration").

pub mod reply;
pub mod request;
pub mod seal;
pub mod service;
pub mod store;
pub mod stream;

pub use service::{Answer, RegistrationError, RegistrationService};
