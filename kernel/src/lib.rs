//! fdc kernel library.
pub mod spill;
