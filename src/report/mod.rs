//! What leaves the program: interval lines and summaries on stdout, and the machine-readable
//! sinks (CSV, JSON, syslog, SVG). Every sink reads one [`record::TestRecord`] per test and
//! the engine's intervals, the same for client and server.

pub mod csv;
pub mod events;
pub mod json;
pub mod lines;
pub mod peer;
pub mod record;
pub mod result;
pub mod svg;
pub mod syslog;
pub mod text;
