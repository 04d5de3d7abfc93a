//! Bounds on what peers can make the server hold: connections in total and per source address.
//!
//! Every accepted TCP connection takes a [`ConnSlot`] before a thread is spawned for it and
//! keeps it until the connection is closed, whatever path closes it (handshake failure, join,
//! end of session, panic). Each connection costs at most two data threads plus its handshake or
//! session thread, so capping connections caps threads.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// Connection counts, total and per address.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitRefusal {
    /// The server holds its maximum number of connections.
    Total(usize),
    /// This address holds its maximum number of connections.
    PerIp(usize),
}

impl fmt::Display for LimitRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitRefusal::Total(n) => write!(f, "server holds its maximum of {n} connections"),
            LimitRefusal::PerIp(n) => {
                write!(f, "address holds its maximum of {n} connections")
            }
        }
    }
}

/// One connection's place; given back on drop.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    /// Limits of `max_total` connections, `max_per_ip` of them from one address.
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_total,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Takes a place for a connection from `ip`.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, LimitRefusal> {
        let mut counts = self.counts.lock();
        if counts.total >= self.max_total {
            return Err(LimitRefusal::Total(self.max_total));
        }
        let per_ip = counts.per_ip.entry(ip).or_insert(0);
        if *per_ip >= self.max_per_ip {
            return Err(LimitRefusal::PerIp(self.max_per_ip));
        }
        *per_ip += 1;
        counts.total += 1;
        Ok(ConnSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections held now.
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.counts.lock().total
    }

    /// Places `ip` holds now.
    pub(crate) fn held_by(&self, ip: IpAddr) -> usize {
        self.counts.lock().per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Addresses with at least one connection (the map never keeps empty entries).
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.counts.lock().per_ip.len()
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut counts = self.limits.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Raises this process's soft limit on open files to the hard limit: a server holding
/// thousands of connections would otherwise fail `accept()` at the common default of 1024.
/// Returns the soft limit now in force.
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    crate::sys::rlimit::raise_open_files()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_caps_and_release() {
        let limits = ConnLimits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = limits.acquire(a).unwrap();
        let _s2 = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).unwrap_err(), LimitRefusal::PerIp(2));
        let _s3 = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b).unwrap_err(), LimitRefusal::Total(3));
        drop(s1);
        let _s4 = limits.acquire(b).unwrap();
        assert_eq!(limits.total(), 3);
    }

    #[test]
    fn empty_addresses_are_forgotten() {
        let limits = ConnLimits::new(10, 10);
        let slot = limits.acquire("192.0.2.9".parse().unwrap()).unwrap();
        assert_eq!(limits.addresses(), 1);
        drop(slot);
        assert_eq!(limits.addresses(), 0);
    }
}
