//! The operating-system facilities we need, each a few lines over `libc`.
#![allow(unsafe_code)]

pub(crate) mod alloc;
pub(crate) mod clock;
pub(crate) mod cpu;
#[cfg(feature = "pro")]
pub(crate) mod flock;
pub(crate) mod hostname;
#[cfg(target_os = "linux")]
pub(crate) mod mmsg;
pub mod random;
pub(crate) mod rlimit;
pub(crate) mod signal;
pub(crate) mod sockopt;
pub(crate) mod tcp_info;
#[cfg(target_os = "linux")]
pub(crate) mod udp_gso;
