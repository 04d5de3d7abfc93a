//! What leaves the program besides the terminal: JSON, CSV rows and syslog events.

pub mod csv;
pub mod json;
pub mod syslog;
