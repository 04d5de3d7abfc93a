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
use super::latency::LatencyProbe;
pub(crate) use super::outcome::{EndReason, Interval, Outcome, StreamEnd};
use super::state::{EndMode, StreamSnapshot, TestState};
use super::tcp::{self, ReceivePlan, SendPlan};
use super::{LINGER, RECV_TIMEOUT, SEND_TIMEOUT, STREAM_STACK_SIZE, spawn_guarded};
use crate::proto::StatusMessage;

/// How our status messages leave, once per interval.
pub(crate) enum StatusOut {
    /// We send none (TCP client; TCP server that only transmits).
    None,
    /// Written directly on the control connection (UDP; TCP server that only receives).
    Direct(TcpStream),
    /// Left for the primary connection's sender to insert between data writes (TCP server
    /// that transmits and receives).
    Inject,
}

/// Settings of one run of the driver.
pub(crate) struct RunOptions<'a> {
    /// End the test at this instant.
    pub deadline: Option<Instant>,
    /// End the test when a signal arrives here.
    pub stop: Option<&'a Receiver<i32>>,
    /// Samples our CPU load, once per interval.
    pub cpu: &'a mut dyn FnMut() -> Option<u8>,
    /// Stops the test from another thread (server shutdown, budget): any message or
    /// disconnection ends it.
    pub external_stop: Option<Receiver<()>>,
    /// Stops the test for a policy reason (a budget checked in `on_interval`, which may send
    /// here to end the test before the next interval).
    pub policy_stop: Option<Receiver<()>>,
}

struct Ended {
    primary: bool,
    end: StreamEnd,
}

/// A running test: its threads, its sockets, and the channel they report their end on.
pub(crate) struct Session {
    state: Arc<TestState>,
    label: String,
    status_out: StatusOut,
    ended_tx: Sender<Ended>,
    ended_rx: Receiver<Ended>,
    sockets: Vec<TcpStream>,
    udp_sockets: Vec<UdpSocket>,
    threads: Vec<JoinHandle<()>>,
    connections: usize,
    latency: LatencyProbe,
    acked: AckMeter,
}

/// What the driver keeps from one wake-up to the next.
struct Drive {
    start: Instant,
    last_tick: Instant,
    /// Stream threads still running.
    live: usize,
    /// Intervals accounted so far; also the seq of our last status message.
    index: u32,
    snapshots: Vec<StreamSnapshot>,
    hold: Hold,
    totals: Totals,
}

impl Drive {
    /// The end of the interval under way.
    fn next_tick(&self) -> Instant {
        self.start + Duration::from_secs(u64::from(self.index) + 1)
    }
}

/// The channels that end a test from outside, each one that was not given never ready.
struct Stops {
    signal: Receiver<i32>,
    external: Receiver<()>,
    policy: Receiver<()>,
}

impl Stops {
    fn take(opts: &mut RunOptions<'_>) -> Stops {
        use crossbeam_channel::never;
        Stops {
            signal: opts.stop.cloned().unwrap_or_else(never),
            external: opts.external_stop.take().unwrap_or_else(never),
            policy: opts.policy_stop.take().unwrap_or_else(never),
        }
    }
}

/// What woke the driver.
enum Wake {
    Ended(Ended),
    End(EndReason),
    Timer,
}

impl Session {
    /// A session whose threads are named after `label` (usually the peer address), whose
    /// status messages leave through `status_out`.
    pub(crate) fn new(
        state: Arc<TestState>,
        label: impl Into<String>,
        status_out: StatusOut,
    ) -> Session {
        let (ended_tx, ended_rx) = crossbeam_channel::unbounded();
        Session {
            state,
            label: label.into(),
            status_out,
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
    pub(crate) fn state(&self) -> &Arc<TestState> {
        &self.state
    }

    /// Starts a thread that belongs to this session; its end is reported to the driver.
    pub(crate) fn spawn(
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
    pub(crate) fn track_socket(&mut self, socket: &TcpStream) -> io::Result<()> {
        self.sockets.push(socket.try_clone()?);
        Ok(())
    }

    /// Keeps a handle on a UDP socket so the session can shut it down when it ends: on Linux
    /// that wakes a thread blocked in a receive at once (elsewhere the 1 s receive timeout
    /// does).
    pub(crate) fn track_udp(&mut self, socket: &UdpSocket) -> io::Result<()> {
        self.udp_sockets.push(socket.try_clone()?);
        Ok(())
    }

    /// Adds a TCP connection: a sender thread if `send` is given, and always a receiver, which
    /// also notices when the peer closes.
    pub(crate) fn add_tcp(
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

    /// Runs the test to its end, calling `on_interval` once a second and once more for the
    /// final partial interval, then stops and joins every thread.
    pub(crate) fn run(
        mut self,
        mut opts: RunOptions<'_>,
        mut on_interval: impl FnMut(&Interval<'_>),
    ) -> Outcome {
        let stops = Stops::take(&mut opts);
        let start = Instant::now();
        let mut drive = Drive {
            start,
            last_tick: start,
            live: self.threads.len(),
            index: 0,
            snapshots: Vec::new(),
            hold: Hold::default(),
            totals: Totals::default(),
        };
        let reason = loop {
            let next_tick = drive.next_tick();
            let reason = match self.wait(&drive, &opts, &stops) {
                Wake::Ended(ended) => self.stream_ended(&mut drive, &ended),
                Wake::End(reason) => Some(reason),
                Wake::Timer => self.on_timer(&mut drive, &mut opts, next_tick, &mut on_interval),
            };
            if let Some(reason) = reason {
                break reason;
            }
        };
        self.release(&mut drive, &mut on_interval);
        self.finish(reason, drive, opts.cpu, &mut on_interval)
    }

    /// Sleeps until a stream ends, a stop arrives, or the next interval, deadline or held
    /// interval is due, whichever comes first.
    fn wait(&self, drive: &Drive, opts: &RunOptions<'_>, stops: &Stops) -> Wake {
        let mut wake = opts
            .deadline
            .map_or(drive.next_tick(), |d| d.min(drive.next_tick()));
        if let Some(due) = drive.hold.due() {
            wake = wake.min(due);
        }
        let timeout = wake.saturating_duration_since(Instant::now());
        crossbeam_channel::select! {
            // The session holds a sender, so the channel never disconnects.
            recv(self.ended_rx) -> ended => ended.map_or(Wake::Timer, Wake::Ended),
            recv(stops.signal) -> _ => Wake::End(EndReason::Interrupted),
            recv(stops.external) -> _ => Wake::End(EndReason::Stopped),
            recv(stops.policy) -> _ => Wake::End(EndReason::Policy),
            default(timeout) => Wake::Timer,
        }
    }

    /// A stream thread ended: the test ends with the primary's, the last one's, or any
    /// stream's that ran out of budget.
    fn stream_ended(&self, drive: &mut Drive, ended: &Ended) -> Option<EndReason> {
        drive.live = drive.live.saturating_sub(1);
        // Any stream out of budget ends the test, so the others stop drawing.
        if ended.end == StreamEnd::BudgetSpent {
            return Some(EndReason::Policy);
        }
        if ended.primary || drive.live == 0 {
            return Some(EndReason::Stream(ended.end));
        }
        crate::log!(
            1,
            "{}: a secondary stream ended: {:?}",
            self.label,
            ended.end
        );
        None
    }

    /// The timer fired: report a held interval that is due, end at the deadline, or account
    /// the interval that just ended.
    fn on_timer(
        &mut self,
        drive: &mut Drive,
        opts: &mut RunOptions<'_>,
        next_tick: Instant,
        on_interval: &mut impl FnMut(&Interval<'_>),
    ) -> Option<EndReason> {
        let now = Instant::now();
        if drive.hold.due().is_some_and(|due| now >= due) {
            self.release(drive, on_interval);
        }
        // At the deadline the last interval is accounted after the threads have stopped, so
        // that it also holds the bytes in flight at the stop.
        if opts.deadline.is_some_and(|d| now >= d) {
            return Some(EndReason::Duration);
        }
        if now >= next_tick {
            return self.tick(drive, opts.cpu, now, on_interval);
        }
        None
    }

    /// Accounts one interval: takes the streams' figures, sends our status, and reports the
    /// interval (or holds it back a reorder window for its UDP loss). A failed status write
    /// ends the test.
    fn tick(
        &mut self,
        drive: &mut Drive,
        cpu: &mut dyn FnMut() -> Option<u8>,
        now: Instant,
        on_interval: &mut impl FnMut(&Interval<'_>),
    ) -> Option<EndReason> {
        drive.index += 1;
        let duration = now - drive.last_tick;
        drive.last_tick = now;
        self.state.mark_interval_end();
        self.state.take_streams(&mut drive.snapshots);
        self.acked.apply(&mut drive.snapshots);
        let local_cpu = cpu();
        let rx: u64 = drive.snapshots.iter().map(|s| s.rx_bytes).sum();
        let msg = StatusMessage {
            cpu: local_cpu.unwrap_or(0),
            seq: drive.index,
            bytes_received: u32::try_from(rx).unwrap_or(u32::MAX),
        };
        let sent = send_status(&mut self.status_out, &self.state, &msg);
        let tcp = self.latency.sample();
        if self.state.settles_loss() {
            // The line waits a reorder window for this interval's loss.
            let due = now + reorder_window(&self.status_out);
            let held = Held {
                index: drive.index,
                duration,
                local_cpu,
                tcp,
                due,
            };
            drive.hold.hold(held, &mut drive.snapshots);
        } else {
            let remote_cpu = self.state.remote_cpu();
            let mut interval = drive.totals.interval(
                drive.index,
                duration,
                &drive.snapshots,
                local_cpu,
                remote_cpu,
                false,
            );
            interval.tcp = tcp;
            on_interval(&interval);
        }
        sent.err()
            .map(|e| EndReason::Stream(tcp::classify(&e, &self.state)))
    }

    /// Reports the interval held back for its loss, if any, with the loss settled now.
    fn release(&self, drive: &mut Drive, on_interval: &mut impl FnMut(&Interval<'_>)) {
        if let Some((h, snapshots)) = drive.hold.release(&self.state) {
            let remote_cpu = self.state.remote_cpu();
            let mut interval = drive.totals.interval(
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

    /// Stops every thread, reports the final partial interval, and sums the test up.
    fn finish(
        mut self,
        reason: EndReason,
        mut drive: Drive,
        cpu: &mut dyn FnMut() -> Option<u8>,
        on_interval: &mut impl FnMut(&Interval<'_>),
    ) -> Outcome {
        let end = Instant::now();
        // Sampled before the shutdown below resets the connections' state.
        let final_tcp = self.latency.sample();
        self.acked.freeze();
        if reason == EndReason::Stream(StreamEnd::PeerClosed) {
            self.state.set_end_mode(EndMode::Collect);
        }
        self.stop_threads();
        // Every write is in the counters now; what the peer had not acknowledged when the
        // test stopped (frozen above, or by this sample) is not reported as sent.
        self.state.take_streams(&mut drive.snapshots);
        self.acked.apply(&mut drive.snapshots);
        let final_duration = end - drive.last_tick;
        let has_bytes = drive.snapshots.iter().any(|s| s.tx_bytes + s.rx_bytes > 0);
        if has_bytes && !final_duration.is_zero() {
            let local_cpu = cpu();
            let mut interval = drive.totals.interval(
                drive.index + 1,
                final_duration,
                &drive.snapshots,
                local_cpu,
                self.state.remote_cpu(),
                true,
            );
            interval.tcp = final_tcp;
            on_interval(&interval);
        }
        let start = drive.start;
        Outcome {
            reason,
            elapsed: end - start,
            rx_elapsed: end - self.state.rx_started().map_or(start, |t| t.max(start)),
            tx_bytes: drive.totals.tx,
            rx_bytes: drive.totals.rx,
            lost: drive.totals.lost,
            per_stream: drive.totals.per_stream,
            tcp: self.latency.test_total(),
            unacknowledged: self.acked.unacknowledged(),
        }
    }

    /// Stops the test, shuts every socket down so blocked threads wake at once, and joins
    /// them.
    fn stop_threads(&mut self) {
        self.state.stop();
        // See `EndMode`. Either way every blocked thread wakes: writers at once, readers at
        // once (both ways) or when the peer closes, within `RECV_TIMEOUT` at the latest.
        let collect = self.state.end_mode() == EndMode::Collect;
        let control = match &self.status_out {
            StatusOut::Direct(s) => Some(s),
            _ => None,
        };
        for socket in self.sockets.iter().chain(control) {
            tcp::abort_on_close(socket);
            let _ = socket.shutdown(if collect {
                Shutdown::Write
            } else {
                Shutdown::Both
            });
        }
        for socket in &self.udp_sockets {
            super::udp::shutdown(socket);
        }
        let deadline = Instant::now() + LINGER;
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
        if collect {
            for socket in self.sockets.iter().chain(control) {
                tcp::linger(socket, deadline);
            }
        }
    }
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
