//! The operating-system facilities we need, each a few lines over `libc`.
#![allow(unsafe_code)]

pub mod alloc;
pub mod clock;
pub mod cpu;
pub mod flock;
pub mod hostname;
#[cfg(target_os = "linux")]
pub mod mmsg;
pub mod random;
pub mod rlimit;
pub mod signal;
pub mod sockopt;
pub mod tcp_info;
#[cfg(target_os = "linux")]
pub mod udp_gso;
