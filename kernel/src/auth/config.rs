//! The `auth` config section lives with the rest of the schema in [`crate::config::auth`];
//! re-exported here so `auth::config::…` paths keep working.

pub use crate::config::auth::*;
