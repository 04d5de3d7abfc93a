//! Allocator tuning for a long-running server on glibc.
//!
//! glibc keeps memory freed by short-lived threads in per-thread arenas, and after the first
//! large buffer is freed it raises its mmap threshold so later large buffers come from those
//! arenas and stay resident. A server whose sessions each allocate a few hundred KiB of
//! buffers on their own threads then grows with every burst of sessions and never shrinks.
//! Fixing the threshold makes large buffers mmap'ed and returned on free; capping the arenas
//! bounds what small allocations can strand. musl and the BSD allocators need none of this.

/// The system's memory page size in bytes (4096 if it cannot be read).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the running system.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// Allocations at least this large are mapped on their own and unmapped when freed.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
pub(crate) const MMAP_THRESHOLD: i32 = 64 * 1024;
/// Most malloc arenas glibc may create.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
pub(crate) const ARENA_MAX: i32 = 2;

/// Applies the tuning where the C library supports it; a no-op elsewhere.
pub(crate) fn tune_for_server() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before the server's threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Gives the kernel back the pages of the calling thread's stack below the current frame.
///
/// glibc caches the stacks of exited threads for reuse (up to 40 MiB) with every page they
/// ever touched still resident, so a burst of 500 connection threads leaves megabytes behind
/// after they are gone. A thread calls this in its outermost frame just before it ends; the
/// pages below that frame are dead by then.
pub(crate) fn release_unused_stack() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: we query our own thread's stack bounds and discard only whole pages that lie
    // below the current frame minus a safety margin; nothing live is stored there.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return;
        }
        let mut low: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut low, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if got != 0 || low.is_null() {
            return;
        }
        let marker = 0u8;
        let here = std::hint::black_box(&marker) as *const u8 as usize;
        // The real page size: 16 KiB and 64 KiB kernels exist on aarch64 and ppc64, where a
        // 4 KiB-aligned range would make madvise fail (EINVAL) and release nothing.
        let page = page_size();
        let margin = 2 * page;
        let low = low as usize;
        let top = (here.saturating_sub(margin)) & !(page - 1);
        if top > low + page {
            libc::madvise(low as *mut libc::c_void, top - low, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_size_is_a_power_of_two_of_at_least_4k() {
        let page = super::page_size();
        assert!(page >= 4096 && page.is_power_of_two(), "{page}");
        super::release_unused_stack();
    }
}
