//! Opening the secondary connections of a multi-connection test, all at once.
//!
//! Each join costs about two round trips (TCP connect, then the server's hello before the
//! join bytes go out; the client does not wait for the server's answer to the join). Opened
//! one after another, 19 joins over a 200 ms path take several seconds before the first byte
//! of data; so every secondary connection gets its own thread and the joins overlap,
//! finishing about two round trips after they start whatever their number. The bytes of each join are exactly
//! those of a sequential join ([`hs::join`]); only their timing changes. The threads report
//! through a channel, and the caller starts the test clock once the last one has joined.

use std::net::{SocketAddr, TcpStream};

use super::{ClientConfig, ClientError, HANDSHAKE_TIMEOUT, prepare};
use crate::handshake::client as hs;

/// Stack of a join thread: it only connects and exchanges a few bytes.
const JOIN_STACK_SIZE: usize = 64 * 1024;

/// One connection opened and joined to session `token`.
fn join_one(host: &str, addr: SocketAddr, token: u16) -> Result<TcpStream, ClientError> {
    let mut s = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT).map_err(|source| {
        ClientError::Connect {
            host: host.to_owned(),
            source,
        }
    })?;
    prepare(&s).map_err(ClientError::Io)?;
    hs::join(&mut s, token).map_err(ClientError::Handshake)?;
    Ok(s)
}

/// Opens `extra` connections to `addr` in parallel and joins each to session `token`. Returns
/// them in the order they were opened once every one has joined. The first failure ends the
/// whole attempt with that failure, as a failed join always has: connections already joined
/// are closed, and the threads still connecting close theirs when they finish.
pub(super) fn join_all(
    cfg: &ClientConfig,
    addr: SocketAddr,
    token: u16,
    extra: usize,
) -> Result<Vec<TcpStream>, ClientError> {
    let total = extra + 1;
    crate::log!(2, "opening {extra} more connections to {addr} at once");
    let (tx, rx) = crossbeam_channel::bounded(extra);
    for i in 0..extra {
        let (tx, host) = (tx.clone(), cfg.host.clone());
        std::thread::Builder::new()
            .name(format!("btest-join{}", i + 1))
            .stack_size(JOIN_STACK_SIZE)
            .spawn(move || {
                // The receiver is gone only when another join failed first: nothing to do.
                let _ = tx.send((i, join_one(&host, addr, token)));
            })
            .map_err(ClientError::Io)?;
    }
    drop(tx);
    let mut joined: Vec<Option<TcpStream>> = (0..extra).map(|_| None).collect();
    let mut count = 0;
    while count < extra {
        let Ok((i, result)) = rx.recv() else {
            // Every thread sends before it ends; a missing report means one died.
            return Err(ClientError::Io(std::io::Error::other(
                "a join thread ended without reporting",
            )));
        };
        let stream = result?;
        count += 1;
        crate::log!(
            1,
            "connection {}/{total} joined session {token:#06x}",
            count + 1
        );
        if let Some(slot) = joined.get_mut(i) {
            *slot = Some(stream);
        }
    }
    Ok(joined.into_iter().flatten().collect())
}
