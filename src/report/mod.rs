//! What leaves the program: interval lines and summaries on stdout, and the machine-readable
//! sinks (CSV, JSON, syslog, SVG). Every sink reads one [`record::TestRecord`] per test and
//! the engine's intervals, the same for client and server.

pub(crate) mod csv;
pub(crate) mod events;
pub(crate) mod json;
pub(crate) mod lines;
pub(crate) mod peer;
pub(crate) mod record;
pub(crate) mod result;
pub(crate) mod svg;
pub(crate) mod syslog;
pub(crate) mod text;
