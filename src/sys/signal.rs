//! SIGINT / SIGTERM as messages on a channel, so Ctrl-C ends a test cleanly (summary printed,
//! CSV flushed, server sessions drained) instead of killing the process mid-write.
//!
//! A signal handler may only call async-signal-safe functions, so it does two things: set an
//! atomic flag and `write` the signal number to a self-pipe. One thread, `btest-signal`,
//! blocks on the pipe's read end and forwards each number on a crossbeam channel, where the
//! client and server loops can `select!` on it next to their other events.

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Write end of the self-pipe, -1 until installed. Read by the handler, hence an atomic.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

/// The receiver handed out by [`install`]; kept so a second call returns the same stream
/// and so the forwarding thread's sends never fail for lack of a receiver.
static INSTALLED: Mutex<Option<Receiver<i32>>> = Mutex::new(None);

/// Installs the SIGINT and SIGTERM handlers and returns a receiver of the signal numbers
/// caught from then on. Idempotent: later calls return a clone of the same receiver (clones
/// share one queue, so each signal is delivered to only one of them).
pub(crate) fn install() -> io::Result<Receiver<i32>> {
    let mut installed = INSTALLED.lock();
    if let Some(rx) = installed.as_ref() {
        return Ok(rx.clone());
    }
    let (read_end, write_end) = self_pipe()?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("btest-signal".into())
        .stack_size(64 * 1024)
        .spawn(move || forward(read_end, tx))?;
    // The write end lives for the rest of the process: the handler may run at any time.
    PIPE_WRITE.store(into_raw(write_end), Ordering::Release);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        set_handler(sig)?;
    }
    *installed = Some(rx.clone());
    Ok(rx)
}

fn into_raw(fd: OwnedFd) -> RawFd {
    std::os::fd::IntoRawFd::into_raw_fd(fd)
}

/// Creates the pipe: both ends close-on-exec; the write end non-blocking so a handler never
/// stalls if nobody drains the pipe (a full pipe just drops the signal number; the flag
/// still records it). `pipe` + `fcntl` rather than `pipe2` because macOS lacks the latter;
/// no other thread forks while we are here, so the window before FD_CLOEXEC is harmless.
fn self_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe(2) requires.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe(2) succeeded, so both descriptors are open and owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [fds[0], fds[1]] {
        set_flag(fd, libc::F_GETFD, libc::F_SETFD, libc::FD_CLOEXEC)?;
    }
    set_flag(fds[1], libc::F_GETFL, libc::F_SETFL, libc::O_NONBLOCK)?;
    Ok((read_end, write_end))
}

fn set_flag(fd: RawFd, get: libc::c_int, set: libc::c_int, flag: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl on an open descriptor with integer arguments only.
    let old = unsafe { libc::fcntl(fd, get) };
    if old < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, set, old | flag) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_handler(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid starting value; we then fill the fields.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SA_RESTART: blocking calls elsewhere resume rather than fail with EINTR; the program
    // notices the signal through the channel or the flag, not through interrupted syscalls.
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action.sa_mask` is a valid sigset_t to initialise; `action` is fully set up and
    // the handler only performs async-signal-safe operations.
    let rc = unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The handler: only atomics and `write(2)`, with errno preserved for the interrupted code.
extern "C" fn on_signal(sig: libc::c_int) {
    let saved = errno::get();
    let fd = PIPE_WRITE.load(Ordering::Acquire);
    if fd >= 0 {
        let byte = u8::try_from(sig).unwrap_or(0);
        // SAFETY: write(2) is async-signal-safe; the buffer is one valid byte on our stack.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
    errno::set(saved);
}

/// Runs on the `btest-signal` thread for the life of the process.
fn forward(read_end: OwnedFd, tx: Sender<i32>) {
    let mut pipe = File::from(read_end);
    let mut buf = [0u8; 64];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                for &b in &buf[..n] {
                    if tx.send(i32::from(b)).is_err() {
                        return;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

mod errno {
    //! errno lives in a per-thread location whose accessor differs by libc.

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn location() -> *mut libc::c_int {
        // SAFETY: returns the calling thread's errno; async-signal-safe.
        unsafe { libc::__errno_location() }
    }

    #[cfg(any(target_os = "freebsd", target_os = "macos", target_os = "ios"))]
    fn location() -> *mut libc::c_int {
        // SAFETY: returns the calling thread's errno; async-signal-safe.
        unsafe { libc::__error() }
    }

    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "macos",
        target_os = "ios"
    )))]
    fn location() -> *mut libc::c_int {
        std::ptr::null_mut()
    }

    pub(super) fn get() -> libc::c_int {
        let p = location();
        if p.is_null() {
            0
        } else {
            // SAFETY: non-null pointer to this thread's errno.
            unsafe { *p }
        }
    }

    pub(super) fn set(value: libc::c_int) {
        let p = location();
        if !p.is_null() {
            // SAFETY: non-null pointer to this thread's errno.
            unsafe { *p = value }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sigterm_arrives_on_the_channel_and_does_not_kill() {
        let rx = install().unwrap();
        let again = install().unwrap();
        assert!(
            rx.same_channel(&again),
            "second install returns the same stream"
        );
        // SAFETY: our handler is installed, so SIGTERM is caught rather than fatal.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        let got = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(got, libc::SIGTERM);
    }
}
