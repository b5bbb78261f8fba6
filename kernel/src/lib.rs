//! fdc kernel library.
