//! Random bytes from the kernel (`getrandom(2)`, `getentropy(3)` on macOS).

use std::io;

/// Fills `buf` with random bytes from the kernel.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        let n = getrandom_chunk(rest)?;
        filled += n;
    }
    Ok(())
}

/// Fills `buf`, aborting the process if the kernel has no randomness to give: every caller
/// needs secrets (challenges, keys, tokens) that must never be predictable.
pub fn fill_or_abort(buf: &mut [u8]) {
    if let Err(e) = fill(buf) {
        eprintln!("btest: fatal: no randomness from the kernel: {e}");
        std::process::abort();
    }
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn getrandom_chunk(buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the pointer and length describe a valid, writable slice.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn getrandom_chunk(buf: &mut [u8]) -> io::Result<usize> {
    let n = buf.len().min(256);
    // SAFETY: the pointer and length describe a valid, writable slice of at most 256 bytes.
    let rc = unsafe { libc::getentropy(buf.as_mut_ptr().cast(), n) };
    if rc == 0 {
        Ok(n)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_whole_buffer_with_varied_bytes() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        super::fill(&mut a).unwrap();
        super::fill(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 64]);
    }
}
