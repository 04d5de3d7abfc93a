//! What leaves the program: interval lines and summaries on stdout, and the machine-readable
//! sinks (CSV, JSON, syslog).

pub mod text;
