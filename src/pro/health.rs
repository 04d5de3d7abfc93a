//! Whether the database takes the server's writes. The writer sets it after every batch; the
//! admission refuses new tests while usage cannot be stored (fail closed: a test whose bytes
//! cannot be recorded would be free, and after a restart its usage would be handed back), and
//! `/metrics` and `/api/health` show it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::{log, log_error};

/// The writer's state, shared with the admission and the HTTP side.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: AtomicBool,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl WriteHealth {
    /// True while writes fail (usage is held in memory, waiting to be stored).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Failed writes since start.
    pub fn errors_total(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The last error, while failing.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// Records a batch's result: `failed` writes and the first error, or none. Logs each
    /// change between working and failing once.
    pub fn record(&self, failed: u64, error: Option<String>, waiting: usize) {
        self.errors.fetch_add(failed, Ordering::Relaxed);
        let now_failing = waiting > 0;
        let was = self.failing.swap(now_failing, Ordering::AcqRel);
        match (was, now_failing) {
            (false, true) => log_error!(
                "database writes failing ({}); {waiting} writes held in memory; refusing new \
                 tests until writes succeed again",
                error.as_deref().unwrap_or("unknown error")
            ),
            (true, false) => log!(0, "database writes succeed again; accepting new tests"),
            _ => {}
        }
        *self.last_error.lock() = if now_failing { error } else { None };
    }
}
