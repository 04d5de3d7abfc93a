//! SIGINT/SIGTERM as messages on a channel (temporary minimal version).

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use crossbeam_channel::Receiver;

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static RECEIVER: OnceLock<Receiver<i32>> = OnceLock::new();

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is one valid byte.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Installs the handlers once; every call returns a receiver of the signal numbers.
pub fn install() -> io::Result<Receiver<i32>> {
    if let Some(rx) = RECEIVER.get() {
        return Ok(rx.clone());
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    PIPE_WRITE.store(fds[1], Ordering::Relaxed);
    let (tx, rx) = crossbeam_channel::unbounded();
    let read_fd = fds[0];
    std::thread::Builder::new()
        .name("btest-signal".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut b = 0u8;
            loop {
                // SAFETY: reading one byte into a valid buffer.
                let n = unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) };
                if n == 1 {
                    if tx.send(i32::from(b)).is_err() {
                        return;
                    }
                } else if n == 0 {
                    return;
                }
            }
        })?;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing a handler that only calls write(2).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(RECEIVER.get_or_init(|| rx).clone())
}
