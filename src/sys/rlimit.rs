//! Resource limits of this process.

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit. Returns the soft
/// limit now in force, or `None` when it cannot be read.
pub(crate) fn raise_open_files() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let wanted = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            lim = wanted;
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, i64 on FreeBSD
    let soft = lim.rlim_cur as u64;
    Some(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_twice_gives_the_same_limit() {
        let first = raise_open_files().expect("getrlimit works");
        assert!(first > 0);
        assert_eq!(raise_open_files(), Some(first));
    }
}
