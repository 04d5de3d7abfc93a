//! The control connection of a UDP test: the peer's status messages, and whether the peer is
//! still there.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::engine::RECV_TIMEOUT;
use crate::engine::session::StreamEnd;
use crate::engine::state::TestState;
use crate::engine::tcp::{Liveness, ReadEvent, Reader, classify};

/// A peer that shows no sign of life (a well-formed status message on the control
/// connection, or data) for this long is gone. RouterOS's `interval` goes up to 5 s, so this is
/// three of its longest intervals; a peer seen to report even more slowly gets three of its own
/// intervals (see [`silence_limit`]).
pub(crate) const CONTROL_SILENCE: Duration = Duration::from_secs(15);
/// The silence limit never grows past this, however slowly the peer has reported.
pub(crate) const MAX_CONTROL_SILENCE: Duration = Duration::from_secs(60);
/// Read buffer of the control connection: it carries only 12-byte status messages.
const CONTROL_BUFFER: usize = 512;

/// How long a UDP test waits for a sign of life: [`CONTROL_SILENCE`] or three of the longest
/// gaps seen between the peer's status messages, whichever is longer (at most
/// [`MAX_CONTROL_SILENCE`]).
pub(crate) fn silence_limit(longest_status_gap: Duration) -> Duration {
    (longest_status_gap * 3).clamp(CONTROL_SILENCE, MAX_CONTROL_SILENCE)
}

/// Reads the peer's status messages on the control connection of a UDP test and feeds them to
/// the state (CPU, and the 1.5x rule where our rate is unlimited). This thread is the session's
/// primary stream: the control connection governs the data, so its end-of-file, an error on it,
/// or a silence past [`silence_limit`] ends the whole test and frees its port.
///
/// Liveness is deliberately looser than acceptance: every well-formed status counts, even one
/// whose seq repeats or is not believed (RouterOS may repeat a seq), and so does data arriving.
pub(crate) fn control_reader(control: TcpStream, state: &TestState) -> StreamEnd {
    if let Err(e) = control.set_read_timeout(Some(RECV_TIMEOUT)) {
        return classify(&e, state);
    }
    let reader = Reader {
        counters: None,
        scan_status: true,
        buffer: CONTROL_BUFFER,
        liveness: SilenceWatch {
            last_alive: Instant::now(),
            last_status: None,
            longest_gap: Duration::ZERO,
        },
    };
    reader.run(control, state)
}

/// The control connection's rule: the peer is gone after [`silence_limit`] without a status
/// message or a data datagram.
struct SilenceWatch {
    last_alive: Instant,
    last_status: Option<Instant>,
    longest_gap: Duration,
}

impl Liveness for SilenceWatch {
    fn after(&mut self, event: ReadEvent, state: &TestState) -> Option<StreamEnd> {
        if let ReadEvent::Bytes { statuses } = event
            && statuses > 0
        {
            let now = Instant::now();
            if let Some(prev) = self.last_status {
                self.longest_gap = self.longest_gap.max(now - prev);
            }
            self.last_status = Some(now);
            self.last_alive = now;
        }
        if state.take_data_seen() {
            self.last_alive = Instant::now();
        }
        if self.last_alive.elapsed() >= silence_limit(self.longest_gap) {
            return Some(if state.running() {
                StreamEnd::Stalled
            } else {
                StreamEnd::Stopped
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn silence_limit_is_15_s_or_three_status_gaps() {
        assert_eq!(silence_limit(Duration::ZERO), Duration::from_secs(15));
        assert_eq!(
            silence_limit(Duration::from_secs(5)),
            Duration::from_secs(15)
        );
        assert_eq!(
            silence_limit(Duration::from_secs(7)),
            Duration::from_secs(21)
        );
        assert_eq!(silence_limit(Duration::from_secs(600)), MAX_CONTROL_SILENCE);
    }

    #[test]
    fn data_is_a_sign_of_life_taken_once() {
        let state = TestState::new(0);
        assert!(!state.take_data_seen());
        state.note_data();
        state.note_data();
        assert!(state.take_data_seen());
        assert!(!state.take_data_seen());
    }

    /// The peer's status messages reach the state, and its close ends the test as the peer's.
    #[test]
    fn reads_status_until_the_peer_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (control, _) = listener.accept().unwrap();
        let state = TestState::new(0);
        let reader = {
            let state = state.clone();
            std::thread::spawn(move || control_reader(control, &state))
        };
        // Status seq 1, CPU 37 %, 1000 bytes received (protocol document section 8).
        peer.write_all(&[0x07, 0x80 | 37, 0, 0, 1, 0, 0, 0, 0xe8, 0x03, 0, 0])
            .unwrap();
        // Wait until the reader has taken it in, then close.
        let deadline = Instant::now() + Duration::from_secs(5);
        while state.remote_cpu().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(state.remote_cpu(), Some(37));
        drop(peer);
        assert_eq!(reader.join().unwrap(), StreamEnd::PeerClosed);
    }
}
