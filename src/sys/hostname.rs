//! This host's name.

/// The host name as the system has it (`gethostname`), non-UTF-8 bytes replaced; `None` when
/// the call fails.
pub(crate) fn get() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its full length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    // POSIX leaves the name unterminated when it is truncated.
    let len = memchr::memchr(0, &buf).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_a_name_without_nul() {
        let name = super::get().expect("gethostname works");
        assert!(!name.contains('\0'));
    }
}
