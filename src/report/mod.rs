//! What leaves the program: interval lines and summaries on stdout, and the machine-readable
//! sinks (CSV, JSON, syslog, SVG).
#![forbid(unsafe_code)]

pub mod csv;
pub mod json;
pub mod peer;
pub mod result;
pub mod svg;
pub mod syslog;
pub mod text;
