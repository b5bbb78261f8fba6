//! What the fdc kernel and the fdc operator share, so the operator does not link the kernel:
//! producer keys (`keys`, Ed25519 in PEM files) and access tokens (`token`, EdDSA JWTs).

pub mod keys;
pub mod token;
