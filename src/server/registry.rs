//! Multi-connection sessions waiting for their secondary connections.
//!
//! The primary registers a token *before* it writes the OK that announces it, then waits on a
//! channel; each join with that token reserves a slot under the lock, answers its client, and
//! hands its socket over the channel, which wakes the primary at once. Sessions are found by
//! token only, never by peer address: two MikroTiks behind one NAT share an address. But a join
//! is taken only from the primary's address, so a third party that learns or guesses a token
//! cannot slip its own connection into someone else's test.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

struct Waiting<T> {
    remaining: usize,
    /// The primary connection's address (IPv4-mapped IPv6 as IPv4): joins come from here.
    primary_ip: IpAddr,
    joins: Sender<T>,
}

/// Live tokens of sessions that still accept joins; `T` is what a join hands over (the
/// connection and what it holds).
pub(crate) struct Registry<T> {
    waiting: Mutex<HashMap<u16, Waiting<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

/// Why a join was turned down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinRefusal {
    /// No session with this token is waiting for connections.
    UnknownToken(u16),
    /// The session already has all the connections it announced.
    Full(u16),
    /// The join came from another address than the session's primary connection.
    WrongAddress {
        /// The session's token.
        token: u16,
        /// The primary's address.
        primary: IpAddr,
        /// The joining connection's address.
        from: IpAddr,
    },
}

impl fmt::Display for JoinRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinRefusal::UnknownToken(t) => write!(f, "join with unknown session token {t:#06x}"),
            JoinRefusal::Full(t) => write!(f, "join to session {t:#06x}, which is already full"),
            JoinRefusal::WrongAddress {
                token,
                primary,
                from,
            } => write!(
                f,
                "join to session {token:#06x} from {from}, not from its primary's address \
                 {primary}"
            ),
        }
    }
}

/// A reserved place in a session; hand the connection over with [`Slot::deliver`].
pub(crate) struct Slot<T> {
    joins: Sender<T>,
}

impl<T> Slot<T> {
    /// Gives the connection to the waiting primary (which may have given up meanwhile, in which
    /// case the connection is simply closed).
    pub(crate) fn deliver(self, joined: T) {
        let _ = self.joins.send(joined);
    }
}

impl<T> Registry<T> {
    /// Registers a session expecting `secondaries` more connections, with a fresh token whose
    /// bytes are both non-zero and at least 2 in the high byte (so the join's first bytes can
    /// never read as a command's protocol byte), unique among live sessions.
    pub(crate) fn register(
        &self,
        secondaries: usize,
        primary_ip: IpAddr,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> (u16, Receiver<T>) {
        let (tx, rx) = crossbeam_channel::bounded(secondaries.max(1));
        let mut waiting = self.waiting.lock();
        let token = loop {
            let mut b = [0u8; 2];
            random(&mut b);
            let token = u16::from_be_bytes([b[0].max(2), b[1].max(1)]);
            if !waiting.contains_key(&token) {
                break token;
            }
        };
        waiting.insert(
            token,
            Waiting {
                remaining: secondaries,
                primary_ip: primary_ip.to_canonical(),
                joins: tx,
            },
        );
        (token, rx)
    }

    /// True when a session with `token` waits for joins: how a join of the older form (the
    /// token, then the rest of the primary's command) is told from a command.
    pub(crate) fn is_waiting(&self, token: u16) -> bool {
        self.waiting.lock().contains_key(&token)
    }

    /// Reserves a place in the session with `token` for a connection from `from`.
    pub(crate) fn reserve(&self, token: u16, from: IpAddr) -> Result<Slot<T>, JoinRefusal> {
        let mut waiting = self.waiting.lock();
        let entry = waiting
            .get_mut(&token)
            .ok_or(JoinRefusal::UnknownToken(token))?;
        let from = from.to_canonical();
        if from != entry.primary_ip {
            return Err(JoinRefusal::WrongAddress {
                token,
                primary: entry.primary_ip,
                from,
            });
        }
        if entry.remaining == 0 {
            return Err(JoinRefusal::Full(token));
        }
        entry.remaining -= 1;
        Ok(Slot {
            joins: entry.joins.clone(),
        })
    }

    /// Stops accepting joins for `token`.
    pub(crate) fn remove(&self, token: u16) {
        self.waiting.lock().remove(&token);
    }

    /// Sessions currently waiting for joins.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.lock().len()
    }

    /// True when no session waits for joins.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn joins_only_from_the_primarys_address() {
        let reg: Registry<()> = Registry::default();
        let (token, _rx) = reg.register(2, LOCAL, &mut |b| b.fill(0x42));
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(
            reg.reserve(token, other).err(),
            Some(JoinRefusal::WrongAddress {
                token,
                primary: LOCAL,
                from: other
            })
        );
        // The same address over a dual-stack socket is the same address.
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert!(reg.reserve(token, mapped).is_ok());
        assert!(reg.reserve(token, IpAddr::V6(Ipv6Addr::LOCALHOST)).is_err());
    }

    #[test]
    fn tokens_are_unique_and_well_formed() {
        let reg: Registry<()> = Registry::default();
        let mut n = 0u8;
        let mut counter = |b: &mut [u8]| {
            // Always the same bytes: forces the uniqueness loop to... never finish, so vary.
            n = n.wrapping_add(1);
            b.fill(n);
        };
        let (a, _ra) = reg.register(2, LOCAL, &mut counter);
        let (b, _rb) = reg.register(2, LOCAL, &mut counter);
        assert_ne!(a, b);
        for t in [a, b] {
            assert!(t >> 8 >= 2 && t & 0xff >= 1, "{t:#06x}");
        }
    }

    #[test]
    fn full_and_unknown_are_refused() {
        let reg: Registry<()> = Registry::default();
        let (token, _rx) = reg.register(1, LOCAL, &mut |b| b.fill(0x42));
        assert!(reg.is_waiting(token));
        assert!(reg.reserve(token, LOCAL).is_ok());
        assert_eq!(
            reg.reserve(token, LOCAL).err(),
            Some(JoinRefusal::Full(token))
        );
        assert_eq!(
            reg.reserve(token ^ 1, LOCAL).err(),
            Some(JoinRefusal::UnknownToken(token ^ 1))
        );
        reg.remove(token);
        assert!(reg.is_empty());
    }
}
