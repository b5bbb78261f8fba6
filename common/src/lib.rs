//! What the fdc kernel and the fdc operator share, so the operator does not link the kernel:
//! the `kernel.yaml` schema with its loading and validation (`config`), producer keys (`keys`,
//! Ed25519 in PEM files) and access tokens (`token`, EdDSA JWTs).

pub mod config;
pub mod keys;
pub mod token;
