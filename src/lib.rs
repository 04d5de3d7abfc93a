//! btest-rs: the MikroTik Bandwidth Test protocol, both ends, over blocking sockets.
//!
//! The crate is layered so that each layer can be tested without the one above it:
//!
//! * [`proto`]: the bytes on the wire (command, replies, status message, UDP header). Pure
//!   functions over slices; no I/O.
//! * [`auth`]: MD5 challenge-response and EC-SRP5, as pure message math plus handshakes over
//!   any `Read + Write`.
//! * [`handshake`]: the hello / command / auth / OK exchange of both roles over `Read + Write`.
//! * `engine`: the data plane shared by client and server: per-stream threads, pacing,
//!   status exchange and interval accounting.
//! * `server` and `client`: sockets, threads and policy.
//! * `report`: what leaves the program: interval lines, summaries, CSV, JSON, syslog.
//! * [`sys`]: the few operating-system facilities we need, over `libc`.
//! * `pro` (feature `pro`): the user database, byte budgets and session history of
//!   `btest-server-pro`.

#![deny(unreachable_pub)]

pub mod app;
pub mod auth;
mod cli;
mod client;
mod engine;
pub mod handshake;
mod log;
#[cfg(feature = "pro")]
pub mod pro;
pub mod proto;
mod report;
mod server;
pub mod sys;

/// The traits the server core is extended through: an admission decides who may run a test and
/// what is recorded (`btest-server-pro` implements them over its database).
pub use server::policy;
