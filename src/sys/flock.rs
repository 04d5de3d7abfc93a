//! Advisory whole-file locks (`flock`).

use std::fs::File;
use std::os::fd::AsRawFd;

/// Takes an exclusive lock on `file` without waiting; false when another open file holds a
/// lock on it (or the call fails). The lock lasts until every descriptor of this open file is
/// closed, so it goes with the `File`.
pub(crate) fn try_lock_exclusive(file: &File) -> bool {
    // SAFETY: flock on a descriptor the `File` owns; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_file_is_refused_until_the_first_closes() {
        let path = std::env::temp_dir().join(format!("btest-flock-{}", std::process::id()));
        let first = File::create(&path).unwrap();
        assert!(try_lock_exclusive(&first));
        let second = File::open(&path).unwrap();
        assert!(!try_lock_exclusive(&second));
        drop(first);
        assert!(try_lock_exclusive(&second));
        let _ = std::fs::remove_file(&path);
    }
}
