//! The session driver: starts a test's stream threads, wakes once a second to account an
//! interval and send our status, and ends the test when the duration is up, a signal arrives,
//! or the primary connection ends.
//!
//! The driver sleeps on a channel with a deadline, so a stream that ends wakes it at once; no
//! loop here polls.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::acked::AckMeter;
use super::intervals::{Held, Hold, Totals, reorder_window};
use super::latency::{LatencyProbe, TcpLatency};
use super::state::{StreamSnapshot, TestState};
use super::tcp::{self, ReceivePlan, SendPlan};
use super::{RECV_TIMEOUT, SEND_TIMEOUT, STREAM_STACK_SIZE, spawn_guarded};
use crate::proto::StatusMessage;

/// Why one stream (one thread) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The test was stopped on our side.
    Stopped,
    /// The peer closed or reset the connection.
    PeerClosed,
    /// The peer stopped reading or sending for longer than the timeout.
    Stalled,
    /// Another socket error.
    Error(io::ErrorKind),
    /// The thread panicked (a bug; logged where it happened).
    Panicked,
    /// The test's byte budget could not give this stream more (see [`super::budget`]).
    BudgetSpent,
}

/// Why the whole test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The requested duration elapsed.
    Duration,
    /// SIGINT or SIGTERM.
    Interrupted,
    /// The primary connection ended (peer closed, stalled or failed).
    Stream(StreamEnd),
    /// Asked to stop from outside (server shutdown).
    Stopped,
    /// Stopped by the server's policy (byte budget spent, time limit).
    Policy,
}

impl EndReason {
    /// True when the test ended the way the user asked (duration or interrupt).
    pub fn is_clean(self) -> bool {
        matches!(
            self,
            EndReason::Duration | EndReason::Interrupted | EndReason::Stopped
        )
    }

    /// A short description for logs.
    pub fn describe(self) -> String {
        match self {
            EndReason::Duration => "duration reached".into(),
            EndReason::Interrupted => "interrupted".into(),
            EndReason::Stopped => "stopped".into(),
            EndReason::Policy => "stopped by policy".into(),
            EndReason::Stream(StreamEnd::PeerClosed) => "peer closed the connection".into(),
            EndReason::Stream(StreamEnd::Stalled) => "peer stalled".into(),
            EndReason::Stream(StreamEnd::Stopped) => "stopped".into(),
            EndReason::Stream(StreamEnd::Panicked) => "internal error".into(),
            EndReason::Stream(StreamEnd::BudgetSpent) => "byte budget spent".into(),
            EndReason::Stream(StreamEnd::Error(kind)) => format!("socket error: {kind}"),
        }
    }
}

/// One interval's figures, handed to the reporter.
#[derive(Clone, Debug)]
pub struct Interval<'a> {
    /// 1 for the first interval.
    pub index: u32,
    /// Length of this interval (one second, except the last).
    pub duration: Duration,
    /// Bytes sent by all streams.
    pub tx_bytes: u64,
    /// Bytes received by all streams.
    pub rx_bytes: u64,
    /// Datagrams lost (UDP).
    pub lost: u64,
    /// Per-stream figures, in connection order.
    pub streams: &'a [StreamSnapshot],
    /// Our CPU load over the interval.
    pub local_cpu: Option<u8>,
    /// The peer's last reported CPU load.
    pub remote_cpu: Option<u8>,
    /// True for the partial interval that closes the test.
    pub last: bool,
    /// RTT and retransmissions of the TCP data connections (`TCP_INFO`), if any.
    pub tcp: Option<TcpLatency>,
}

impl Interval<'_> {
    /// Datagrams of this interval that arrived after a higher sequence number (UDP).
    pub fn reordered(&self) -> u64 {
        self.streams.iter().map(|s| s.reordered).sum()
    }

    /// Datagrams of this interval that arrived more than once (UDP).
    pub fn duplicates(&self) -> u64 {
        self.streams.iter().map(|s| s.duplicates).sum()
    }

    /// Datagrams received in this interval, all streams (UDP).
    pub fn rx_packets(&self) -> u64 {
        self.streams.iter().map(|s| s.rx_packets).sum()
    }
}

/// How our status messages leave, once per interval.
pub enum StatusOut {
    /// We send none (TCP client; TCP server that only transmits).
    None,
    /// Written directly on the control connection (UDP; TCP server that only receives).
    Direct(TcpStream),
    /// Left for the primary connection's sender to insert between data writes (TCP server
    /// that transmits and receives).
    Inject,
}

/// Settings of one run of the driver.
pub struct RunOptions<'a> {
    /// End the test at this instant.
    pub deadline: Option<Instant>,
    /// End the test when a signal arrives here.
    pub stop: Option<&'a Receiver<i32>>,
    /// Where our status messages go.
    pub status_out: StatusOut,
    /// Samples our CPU load, once per interval.
    pub cpu: &'a mut dyn FnMut() -> Option<u8>,
    /// Stops the test from another thread (server shutdown, budget): any message or
    /// disconnection ends it.
    pub external_stop: Option<Receiver<()>>,
    /// Stops the test for a policy reason (a budget checked in `on_interval`, which may send
    /// here to end the test before the next interval).
    pub policy_stop: Option<Receiver<()>>,
}

/// Totals of a finished test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Why it ended.
    pub reason: EndReason,
    /// From the start of data to the end.
    pub elapsed: Duration,
    /// The receive clock: from the first data datagram to the end in UDP tests (a server's
    /// session starts a round trip before the client's data arrives), else `elapsed`.
    pub rx_elapsed: Duration,
    /// Bytes sent, all streams.
    pub tx_bytes: u64,
    /// Bytes received, all streams.
    pub rx_bytes: u64,
    /// Datagrams lost (UDP).
    pub lost: u64,
    /// Bytes each stream sent and received over the whole test, in connection order.
    pub per_stream: Vec<(u64, u64)>,
    /// RTT min/avg/max over every sample and total retransmissions (TCP tests).
    pub tcp: Option<TcpLatency>,
    /// Bytes TCP senders wrote that the peer had not acknowledged when the test ended: left
    /// out of `tx_bytes`, since they had not crossed the link.
    pub unacknowledged: u64,
}

struct Ended {
    primary: bool,
    end: StreamEnd,
}

/// A running test: its threads, its sockets, and the channel they report their end on.
pub struct Session {
    state: Arc<TestState>,
    label: String,
    ended_tx: Sender<Ended>,
    ended_rx: Receiver<Ended>,
    sockets: Vec<TcpStream>,
    udp_sockets: Vec<UdpSocket>,
    threads: Vec<JoinHandle<()>>,
    connections: usize,
    latency: LatencyProbe,
    acked: AckMeter,
}

impl Session {
    /// A session whose threads are named after `label` (usually the peer address).
    pub fn new(state: Arc<TestState>, label: impl Into<String>) -> Session {
        let (ended_tx, ended_rx) = crossbeam_channel::unbounded();
        Session {
            state,
            label: label.into(),
            ended_tx,
            ended_rx,
            sockets: Vec::new(),
            udp_sockets: Vec::new(),
            threads: Vec::new(),
            connections: 0,
            latency: LatencyProbe::default(),
            acked: AckMeter::default(),
        }
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<TestState> {
        &self.state
    }

    /// Number of connections added so far.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Starts a thread that belongs to this session; its end is reported to the driver.
    pub fn spawn(
        &mut self,
        role: &str,
        primary: bool,
        body: impl FnOnce() -> StreamEnd + Send + 'static,
    ) -> io::Result<()> {
        let name = format!("btest-{role}-{}", self.label);
        let ended_tx = self.ended_tx.clone();
        let result = Arc::new(parking_lot::Mutex::new(StreamEnd::Panicked));
        let slot = result.clone();
        let thread = name.clone();
        let handle = spawn_guarded(
            name,
            STREAM_STACK_SIZE,
            move || {
                crate::log!(2, "thread {thread} start");
                let end = body();
                crate::log!(2, "thread {thread} end: {end:?}");
                *slot.lock() = end;
            },
            move |_panicked| {
                let end = *result.lock();
                let _ = ended_tx.send(Ended { primary, end });
            },
        )?;
        self.threads.push(handle);
        Ok(())
    }

    /// Keeps a handle on a socket so the session can shut it down when it ends, which wakes any
    /// thread blocked on it at once.
    pub fn track_socket(&mut self, socket: &TcpStream) -> io::Result<()> {
        self.sockets.push(socket.try_clone()?);
        Ok(())
    }

    /// Keeps a handle on a UDP socket so the session can shut it down when it ends: on Linux
    /// that wakes a thread blocked in a receive at once (elsewhere the 1 s receive timeout
    /// does).
    pub fn track_udp(&mut self, socket: &UdpSocket) -> io::Result<()> {
        self.udp_sockets.push(socket.try_clone()?);
        Ok(())
    }

    /// Adds a TCP connection: a sender thread if `send` is given, and always a receiver, which
    /// also notices when the peer closes.
    pub fn add_tcp(
        &mut self,
        stream: TcpStream,
        send: Option<SendPlan>,
        receive: ReceivePlan,
    ) -> io::Result<()> {
        let primary = self.connections == 0;
        let index = self.connections;
        self.connections += 1;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(RECV_TIMEOUT))?;
        stream.set_write_timeout(Some(SEND_TIMEOUT))?;
        self.track_socket(&stream)?;
        let position = self.state.stream_count();
        if let Some(tracked) = self.sockets.last() {
            self.latency.add(tracked);
            if send.is_some() {
                self.acked.add(position, tracked);
            }
        }
        let counters = self.state.add_stream(send.is_some());
        if let Some(plan) = send {
            let (state, counters, writer) =
                (self.state.clone(), counters.clone(), stream.try_clone()?);
            self.spawn(&format!("tx{index}"), primary, move || {
                tcp::send_loop(writer, &state, &counters, plan)
            })?;
        }
        let state = self.state.clone();
        self.spawn(&format!("rx{index}"), primary, move || {
            tcp::receive_loop(stream, &state, &counters, receive)
        })
    }

    /// Reports the interval held back for its loss, if any, with the loss settled now.
    fn release(
        &self,
        hold: &mut Hold,
        totals: &mut Totals,
        on_interval: &mut impl FnMut(&Interval<'_>),
    ) {
        if let Some((h, snapshots)) = hold.release(&self.state) {
            let remote_cpu = self.state.remote_cpu();
            let mut interval = totals.interval(
                h.index,
                h.duration,
                snapshots,
                h.local_cpu,
                remote_cpu,
                false,
            );
            interval.tcp = h.tcp;
            on_interval(&interval);
        }
    }

    /// Runs the test to its end, calling `on_interval` once a second and once more for the
    /// final partial interval, then stops and joins every thread.
    pub fn run(
        mut self,
        mut opts: RunOptions<'_>,
        mut on_interval: impl FnMut(&Interval<'_>),
    ) -> Outcome {
        let never = crossbeam_channel::never();
        let stop = opts.stop.unwrap_or(&never);
        let external = opts
            .external_stop
            .take()
            .unwrap_or_else(crossbeam_channel::never);
        let policy = opts
            .policy_stop
            .take()
            .unwrap_or_else(crossbeam_channel::never);
        let start = Instant::now();
        let mut last_tick = start;
        let mut live = self.threads.len();
        let mut index: u32 = 0;
        let mut snapshots = Vec::new();
        let mut hold = Hold::default();
        let mut totals = Totals::default();
        let mut status_seq: u32 = 0;

        let reason = loop {
            let next_tick = start + Duration::from_secs(u64::from(index) + 1);
            let mut wake = opts.deadline.map_or(next_tick, |d| d.min(next_tick));
            if let Some(due) = hold.due() {
                wake = wake.min(due);
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(self.ended_rx) -> ended => {
                    if let Ok(ended) = ended {
                        live = live.saturating_sub(1);
                        // Any stream out of budget ends the test, so the others stop drawing.
                        if ended.end == StreamEnd::BudgetSpent {
                            break EndReason::Policy;
                        }
                        if ended.primary || live == 0 {
                            break EndReason::Stream(ended.end);
                        }
                        crate::log!(1, "{}: a secondary stream ended: {:?}", self.label, ended.end);
                    }
                }
                recv(stop) -> _ => break EndReason::Interrupted,
                recv(external) -> _ => break EndReason::Stopped,
                recv(policy) -> _ => break EndReason::Policy,
                default(timeout) => {
                    let now = Instant::now();
                    if hold.due().is_some_and(|due| now >= due) {
                        self.release(&mut hold, &mut totals, &mut on_interval);
                    }
                    // At the deadline the last interval is accounted after the threads have
                    // stopped, so that it also holds the bytes in flight at the stop.
                    if opts.deadline.is_some_and(|d| now >= d) {
                        break EndReason::Duration;
                    }
                    if now >= next_tick {
                        index += 1;
                        let duration = now - last_tick;
                        last_tick = now;
                        self.state.mark_interval_end();
                        self.state.take_streams(&mut snapshots);
                        self.acked.apply(&mut snapshots);
                        let local_cpu = (opts.cpu)();
                        status_seq += 1;
                        let rx: u64 = snapshots.iter().map(|s| s.rx_bytes).sum();
                        let msg = StatusMessage {
                            cpu: local_cpu.unwrap_or(0),
                            seq: status_seq,
                            bytes_received: u32::try_from(rx).unwrap_or(u32::MAX),
                        };
                        let sent = send_status(&mut opts.status_out, &self.state, &msg);
                        let tcp = self.latency.sample();
                        if self.state.settles_loss() {
                            // The line waits a reorder window for this interval's loss.
                            let due = now + reorder_window(&opts.status_out);
                            hold.hold(Held { index, duration, local_cpu, tcp, due }, &mut snapshots);
                        } else {
                            let mut interval = totals.interval(index, duration, &snapshots,
                                local_cpu, self.state.remote_cpu(), false);
                            interval.tcp = tcp;
                            on_interval(&interval);
                        }
                        if let Err(e) = sent {
                            break EndReason::Stream(tcp::classify(&e, &self.state));
                        }
                    }
                }
            }
        };
        self.release(&mut hold, &mut totals, &mut on_interval);

        let end = Instant::now();
        // Sampled before the shutdown below resets the connections' state.
        let final_tcp = self.latency.sample();
        self.acked.freeze();
        self.state.stop();
        for socket in &self.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
        for socket in &self.udp_sockets {
            shutdown_udp(socket);
        }
        if let StatusOut::Direct(s) = &opts.status_out {
            let _ = s.shutdown(Shutdown::Both);
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        // Every write is in the counters now; what the peer had not acknowledged when the
        // test stopped (frozen above, or by this sample) is not reported as sent.
        self.state.take_streams(&mut snapshots);
        self.acked.apply(&mut snapshots);
        let final_duration = end - last_tick;
        let has_bytes = snapshots.iter().any(|s| s.tx_bytes + s.rx_bytes > 0);
        if has_bytes && !final_duration.is_zero() {
            let local_cpu = (opts.cpu)();
            let mut interval = totals.interval(
                index + 1,
                final_duration,
                &snapshots,
                local_cpu,
                self.state.remote_cpu(),
                true,
            );
            interval.tcp = final_tcp;
            on_interval(&interval);
        }
        Outcome {
            reason,
            elapsed: end - start,
            rx_elapsed: end - self.state.rx_started().map_or(start, |t| t.max(start)),
            tx_bytes: totals.tx,
            rx_bytes: totals.rx,
            lost: totals.lost,
            per_stream: totals.per_stream,
            tcp: self.latency.test_total(),
            unacknowledged: self.acked.unacknowledged(),
        }
    }
}

/// Shuts a UDP socket down. An unconnected socket answers `ENOTCONN`, but Linux still marks it
/// shut and wakes its blocked readers and writers, which is all we want.
fn shutdown_udp(socket: &UdpSocket) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        crate::sys::sockopt::shutdown(socket.as_raw_fd());
    }
    #[cfg(not(unix))]
    let _ = socket;
}

fn send_status(out: &mut StatusOut, state: &TestState, msg: &StatusMessage) -> io::Result<()> {
    match out {
        StatusOut::None => Ok(()),
        StatusOut::Inject => {
            state.status_slot.put(msg);
            Ok(())
        }
        StatusOut::Direct(stream) => stream.write_all(&msg.encode()),
    }
}
