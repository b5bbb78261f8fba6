//! What every kernel test binary imports: the private servers and fixtures of `fdc-testenv`.

pub use fdc_testenv::*;
