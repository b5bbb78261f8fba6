//! What the fdc kernel and the fdc operator share, so the operator does not link the kernel:
//! the `kernel.yaml` schema with its loading and validation (`config`), producer keys (`keys`,
//! Ed25519 in PEM files), access tokens (`token`, EdDSA JWTs) and the names both sides must
//! agree on (`contract`: environment variables, probe paths, admin routes, scraped metrics), and
//! the syntax of a producer's payload schema binding (`schema_binding`: `name@range`).

pub mod config;
pub mod contract;
pub mod keys;
pub mod schema_binding;
pub mod token;
