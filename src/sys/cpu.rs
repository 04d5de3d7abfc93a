//! System-wide CPU load, sampled once per second for the status message and interval lines.
//!
//! RouterOS puts the sender's CPU load into every status message, and users compare it with
//! the peer's to tell whether a test is bound by the link or by a CPU. Each platform exposes
//! cumulative tick counters; the load is the busy share of the ticks that passed between two
//! samples. The sampler keeps the previous reading, so `sample` is cheap and allocation-free:
//! it runs on the status thread once a second for the whole test.

use std::time::Duration;

/// Ticks spent busy and in total, as cumulative counters read from the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Ticks {
    busy: u64,
    total: u64,
}

/// Measures system-wide CPU load between successive calls of [`CpuSampler::sample`].
#[derive(Debug)]
pub(crate) struct CpuSampler {
    source: platform::Source,
    prev: platform::Raw,
    /// Returned when no tick has passed since the previous sample (two calls in quick
    /// succession), so a caller never sees a spurious 0 %.
    last_pct: u8,
}

impl CpuSampler {
    /// Opens the platform's counters and takes the first reading; `None` where the platform
    /// has no supported source (the status message then carries 0 %, as RouterOS does when it
    /// cannot tell).
    pub(crate) fn new() -> Option<CpuSampler> {
        let mut source = platform::Source::open()?;
        let prev = source.read()?;
        Some(CpuSampler {
            source,
            prev,
            last_pct: 0,
        })
    }

    /// CPU load in percent (0..=100) over the time since the previous call (or since
    /// [`CpuSampler::new`] for the first call); `None` if the counters could not be read.
    pub(crate) fn sample(&mut self) -> Option<u8> {
        let cur = self.source.read()?;
        let ticks = platform::delta(&self.prev, &cur);
        if ticks.total == 0 {
            return Some(self.last_pct);
        }
        self.prev = cur;
        let busy = ticks.busy.min(ticks.total);
        // Rounded to the nearest percent; u128 keeps the multiplication free of overflow even
        // for counters that have run for years.
        let pct = (u128::from(busy) * 100 + u128::from(ticks.total) / 2) / u128::from(ticks.total);
        self.last_pct = u8::try_from(pct.min(100)).unwrap_or(100);
        Some(self.last_pct)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod platform {
    //! `/proc/stat`: the first line sums all CPUs in USER_HZ ticks.

    use super::Ticks;
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    /// The first line holds at most ten 20-digit numbers; 512 bytes leave room to spare.
    const BUF_LEN: usize = 512;

    /// `/proc/stat`, opened once so each sample is a single `pread` at offset 0.
    #[derive(Debug)]
    pub(super) struct Source {
        file: File,
    }

    pub(super) type Raw = Ticks;

    impl Source {
        pub(super) fn open() -> Option<Source> {
            File::open("/proc/stat").ok().map(|file| Source { file })
        }

        pub(super) fn read(&mut self) -> Option<Raw> {
            let mut buf = [0u8; BUF_LEN];
            let mut len = 0;
            // procfs usually returns the whole first page at once, but a short read is legal.
            while len < BUF_LEN {
                match self.file.read_at(&mut buf[len..], len as u64) {
                    Ok(0) => break,
                    Ok(n) => {
                        len += n;
                        if buf[..len].contains(&b'\n') {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return None,
                }
            }
            parse_first_line(&buf[..len])
        }
    }

    pub(super) fn delta(prev: &Raw, cur: &Raw) -> Ticks {
        // Linux counters may step back slightly (iowait is known to), so saturate.
        Ticks {
            busy: cur.busy.saturating_sub(prev.busy),
            total: cur.total.saturating_sub(prev.total),
        }
    }

    /// Parses `cpu  user nice system idle iowait irq softirq steal guest guest_nice`.
    /// Guest time is already counted in user/nice, so only the first eight fields make up
    /// the total; busy excludes idle and iowait (waiting on a disk is not load).
    pub(super) fn parse_first_line(buf: &[u8]) -> Option<Ticks> {
        let end = memchr::memchr(b'\n', buf)?;
        let line = &buf[..end];
        let rest = line.strip_prefix(b"cpu ")?;
        let mut fields = [0u64; 8];
        let mut count = 0;
        for word in rest.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
            if count == fields.len() {
                break;
            }
            fields[count] = parse_u64(word)?;
            count += 1;
        }
        // Kernels before 2.6.11 printed fewer fields; four (up to idle) is the minimum.
        if count < 4 {
            return None;
        }
        let total = fields.iter().fold(0u64, |acc, &v| acc.saturating_add(v));
        let idle = fields[3].saturating_add(fields[4]);
        Some(Ticks {
            busy: total.saturating_sub(idle),
            total,
        })
    }

    fn parse_u64(word: &[u8]) -> Option<u64> {
        let mut v: u64 = 0;
        for &b in word {
            if !b.is_ascii_digit() {
                return None;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        Some(v)
    }
}

#[cfg(target_os = "freebsd")]
mod platform {
    //! `sysctlbyname("kern.cp_time")`: CPUSTATES (5) longs, user nice sys intr idle, summed
    //! over all CPUs in stathz ticks.

    use super::Ticks;

    const CPUSTATES: usize = 5;
    const CP_IDLE: usize = 4;

    #[derive(Debug)]
    pub(super) struct Source;

    pub(super) type Raw = [libc::c_long; CPUSTATES];

    impl Source {
        pub(super) fn open() -> Option<Source> {
            Some(Source)
        }

        pub(super) fn read(&mut self) -> Option<Raw> {
            let mut raw: Raw = [0; CPUSTATES];
            let mut len = std::mem::size_of::<Raw>();
            // SAFETY: the name is NUL-terminated; `raw` and `len` describe a writable buffer
            // of exactly `len` bytes; no new value is set.
            let rc = unsafe {
                libc::sysctlbyname(
                    c"kern.cp_time".as_ptr(),
                    raw.as_mut_ptr().cast(),
                    &mut len,
                    std::ptr::null(),
                    0,
                )
            };
            (rc == 0 && len == std::mem::size_of::<Raw>()).then_some(raw)
        }
    }

    pub(super) fn delta(prev: &Raw, cur: &Raw) -> Ticks {
        let mut ticks = Ticks::default();
        for (i, (&p, &c)) in prev.iter().zip(cur.iter()).enumerate() {
            let d = u64::try_from(c.wrapping_sub(p)).unwrap_or(0);
            ticks.total = ticks.total.saturating_add(d);
            if i != CP_IDLE {
                ticks.busy = ticks.busy.saturating_add(d);
            }
        }
        ticks
    }
}

#[cfg(target_os = "macos")]
mod platform {
    //! `host_statistics(HOST_CPU_LOAD_INFO)`: 32-bit tick counters (user system idle nice)
    //! that wrap after weeks on a busy many-core machine, so deltas are taken modulo 2^32.

    use super::Ticks;

    const CPU_STATES: usize = libc::CPU_STATE_MAX as usize;

    // Declared here because libc marks its binding deprecated in favour of another crate.
    unsafe extern "C" {
        fn mach_host_self() -> libc::mach_port_t;
    }

    #[derive(Debug)]
    pub(super) struct Source {
        host: libc::mach_port_t,
    }

    pub(super) type Raw = [libc::natural_t; CPU_STATES];

    impl Source {
        pub(super) fn open() -> Option<Source> {
            // SAFETY: no arguments; returns a send right to the host port of this task.
            let host = unsafe { mach_host_self() };
            Some(Source { host })
        }

        pub(super) fn read(&mut self) -> Option<Raw> {
            // SAFETY: an all-zero host_cpu_load_info is a valid plain C struct.
            let mut info: libc::host_cpu_load_info = unsafe { std::mem::zeroed() };
            let mut count: libc::mach_msg_type_number_t = libc::HOST_CPU_LOAD_INFO_COUNT;
            // SAFETY: `info` is writable and `count` gives its size in integer_t units,
            // as the HOST_CPU_LOAD_INFO flavour requires.
            let rc = unsafe {
                libc::host_statistics(
                    self.host,
                    libc::HOST_CPU_LOAD_INFO,
                    (&mut info as *mut libc::host_cpu_load_info).cast(),
                    &mut count,
                )
            };
            (rc == 0).then_some(info.cpu_ticks)
        }
    }

    pub(super) fn delta(prev: &Raw, cur: &Raw) -> Ticks {
        let mut ticks = Ticks::default();
        for (i, (&p, &c)) in prev.iter().zip(cur.iter()).enumerate() {
            let d = u64::from(c.wrapping_sub(p));
            ticks.total = ticks.total.saturating_add(d);
            if i != libc::CPU_STATE_IDLE as usize {
                ticks.busy = ticks.busy.saturating_add(d);
            }
        }
        ticks
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "macos"
)))]
mod platform {
    //! No supported counters: the sampler is never created.

    use super::Ticks;

    #[derive(Debug)]
    pub(super) struct Source;

    pub(super) type Raw = Ticks;

    impl Source {
        pub(super) fn open() -> Option<Source> {
            None
        }

        pub(super) fn read(&mut self) -> Option<Raw> {
            None
        }
    }

    pub(super) fn delta(_prev: &Raw, _cur: &Raw) -> Ticks {
        Ticks::default()
    }
}

// Every test reads /proc/stat.
#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_first_line() {
        let text = b"cpu  100 20 30 400 50 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let t = platform::parse_first_line(text).unwrap();
        assert_eq!(t.total, 100 + 20 + 30 + 400 + 50 + 6 + 7 + 8);
        assert_eq!(t.busy, t.total - 400 - 50);
        assert!(
            platform::parse_first_line(b"cpu  1 2 3").is_none(),
            "no newline"
        );
        assert!(platform::parse_first_line(b"intr 1 2 3 4\n").is_none());
        assert!(platform::parse_first_line(b"cpu  1 2 x 4\n").is_none());
        assert!(platform::parse_first_line(b"cpu  1 2 3\n").is_none());
    }

    fn spin_all_cores(dur: Duration) {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let deadline = std::time::Instant::now() + dur;
        let handles: Vec<_> = (0..n)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut x: u64 = 1;
                    while std::time::Instant::now() < deadline {
                        for _ in 0..1000 {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005) ^ 1);
                        }
                    }
                    x
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
    }

    #[test]
    fn load_rises_under_busy_loop() {
        let mut s = CpuSampler::new().expect("supported on Linux");
        std::thread::sleep(Duration::from_millis(300));
        let idle = s.sample().unwrap();
        assert!(idle <= 100);
        spin_all_cores(Duration::from_millis(300));
        let busy = s.sample().unwrap();
        assert!(busy <= 100);
        // Other tests run in parallel, so "idle" is only idle-ish; spinning every core must
        // still push the load high and never below the quieter sample.
        assert!(busy >= 30, "busy {busy}% (idle {idle}%)");
        assert!(busy >= idle, "busy {busy}% < idle {idle}%");
    }

    #[test]
    fn back_to_back_samples_do_not_drop_to_zero() {
        let mut s = CpuSampler::new().unwrap();
        spin_all_cores(Duration::from_millis(100));
        let first = s.sample().unwrap();
        // Immediately again: likely no tick passed; we get the previous value or a fresh one.
        let second = s.sample().unwrap();
        assert!(first <= 100 && second <= 100);
    }
}

/// The machine's CPU load, sampled by one background thread once a second and read by any
/// number of sessions: several sessions sampling the same counters themselves would each see
/// only the slice since the other's sample.
#[derive(Debug)]
pub(crate) struct SharedCpu {
    load: std::sync::atomic::AtomicU8,
}

impl SharedCpu {
    const UNKNOWN: u8 = u8::MAX;

    /// Starts the sampling thread; it ends when `stop` is disconnected. Returns a reader whose
    /// value is `None` where the platform has no sampler.
    pub(crate) fn start(stop: crossbeam_channel::Receiver<()>) -> std::sync::Arc<SharedCpu> {
        let shared = std::sync::Arc::new(SharedCpu {
            load: std::sync::atomic::AtomicU8::new(Self::UNKNOWN),
        });
        if let Some(mut sampler) = CpuSampler::new() {
            let writer = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("btest-cpu".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                        stop.recv_timeout(Duration::from_secs(1))
                    {
                        if let Some(load) = sampler.sample() {
                            writer
                                .load
                                .store(load, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            if let Err(e) = spawned {
                crate::log_error!("cannot start the CPU sampler: {e}");
            }
        }
        shared
    }

    /// The last sampled load.
    pub(crate) fn get(&self) -> Option<u8> {
        match self.load.load(std::sync::atomic::Ordering::Relaxed) {
            Self::UNKNOWN => None,
            load => Some(load),
        }
    }
}
