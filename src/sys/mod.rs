//! The operating-system facilities we need, each a few lines over `libc`.

pub mod random;
pub mod signal;
