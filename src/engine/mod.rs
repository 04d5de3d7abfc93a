//! The data plane shared by client and server: one thread per stream direction, pacing, the
//! once-a-second status exchange and interval accounting.

pub(crate) mod acked;
pub(crate) mod budget;
mod intervals;
pub(crate) mod latency;
mod outcome;
pub(crate) mod pacing;
mod role;
pub(crate) mod rx_loss;
pub(crate) mod seq_gate;
pub(crate) mod session;
pub(crate) mod state;
pub(crate) mod tcp;
pub(crate) mod udp;
mod udp_session;

pub(crate) use latency::TcpLatency;
pub(crate) use role::{Role, Setup, start_tcp};
pub(crate) use session::{EndReason, Interval, Outcome, RunOptions, Session};
pub(crate) use state::TestState;
pub(crate) use udp_session::{UdpCounts, UdpLink, start_udp};

use std::io;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Stack size of data-plane threads: their buffers live on the heap, so a small stack is enough
/// and keeps hundreds of sessions cheap.
pub(crate) const STREAM_STACK_SIZE: usize = 128 * 1024;

/// Kernel receive timeout of data sockets: how long a blocked read waits before the loop checks
/// whether the test is still running.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(1);

/// Kernel send timeout of data sockets: a peer that stops reading for this long ends the test.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A receiver that expects data and gets none for this long treats the peer as gone.
pub(crate) const IDLE_LIMIT: Duration = Duration::from_secs(10);

/// How long a stopped test goes on reading its TCP connections until the peer closes them: a
/// socket closed with unread bytes is reset, and a reset throws away what is still queued for
/// the peer. A peer closes once our FIN reaches it, so this is normally one round trip; a
/// reader already blocked when it runs out ends at its next receive timeout ([`RECV_TIMEOUT`]).
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// Spawns a named thread with a small stack. A panic inside is caught at the thread boundary
/// and logged, so it ends only that thread's work; `on_exit` runs either way (it reports the end
/// of the stream to the session driver).
pub(crate) fn spawn_guarded<F, E>(
    name: String,
    stack_size: usize,
    body: F,
    on_exit: E,
) -> io::Result<JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
    E: FnOnce(bool) + Send + 'static,
{
    thread::Builder::new()
        .name(name)
        .stack_size(stack_size)
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            if let Err(panic) = &result {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let name = thread::current().name().unwrap_or("?").to_string();
                crate::log_error!("thread {name} panicked: {what}");
            }
            on_exit(result.is_err());
            crate::sys::alloc::release_unused_stack();
        })
}
