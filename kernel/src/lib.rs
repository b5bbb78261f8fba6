//! fdc kernel library.
pub mod testsupport;
