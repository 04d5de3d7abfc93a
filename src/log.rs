//! A tiny leveled logger to stderr.
//!
//! Results go to stdout, diagnostics here. Level: 0 = errors and session lines, 1 = `-v`,
//! 2 = `-vv`; `-q` lowers it to [`SESSION`] (-1), which keeps errors and the server's session
//! start and end lines, or to -2 (`btest-server-pro -q`), which keeps only errors.

use std::sync::atomic::{AtomicI8, Ordering};

static LEVEL: AtomicI8 = AtomicI8::new(0);

/// Level of the server's session start and end lines: shown even with `btest -s -q`.
pub(crate) const SESSION: i8 = -1;

/// Level `-q` selects where only errors are wanted (`btest-server-pro`).
#[cfg(feature = "pro")]
pub(crate) const ERRORS_ONLY: i8 = -2;

/// Sets the global verbosity.
pub(crate) fn set_level(level: i8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// The global verbosity.
pub(crate) fn level() -> i8 {
    LEVEL.load(Ordering::Relaxed)
}

/// True when messages of `level` are printed.
pub(crate) fn enabled(level: i8) -> bool {
    self::level() >= level
}

/// Logs at a level: `log!(0, ...)` always (unless quiet), `log!(1, ...)` with `-v`.
#[macro_export]
macro_rules! log {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::log::enabled($lvl) {
            eprintln!("btest: {}", format_args!($($arg)*));
        }
    };
}

/// Logs an error; printed even with `-q`.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => {
        eprintln!("btest: error: {}", format_args!($($arg)*))
    };
}

/// The level a command line selects: `quiet` (the binary's meaning of `-q`) when given,
/// otherwise 0 plus one per `-v`, up to 2.
pub(crate) fn chosen(quiet: Option<i8>, verbose: u8) -> i8 {
    quiet.unwrap_or(verbose.min(2) as i8)
}
