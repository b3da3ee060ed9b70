//! The media driver: UDP sockets and the shared ticker around the pure sessions.
//!
//! Owns I/O only: binding one socket per call leg from a configured port range, one
//! reader task per socket, one engine task that holds every [`MediaSession`] and
//! runs them from a single ticker, wiring bridged legs together and writing
//! recordings. All decisions stay in [`super::session`]; this is the only media
//! module that imports `tokio` or `std::net`.
//!
//! ```text
//!  socket reader tasks --(leg, from, bytes)--+
//!  MediaEngine handle  --EngineRequest-------+--> engine task: select! {
//!  5 ms ticker (4 phases of the 20 ms grid) -+        datagram -> handle_rtp
//!                                                     tick     -> handle_tick (one phase)
//!                                                     request  -> open/start/command/...
//!                                                   } -> poll_transmit: try_send_to
//!                                                     -> poll_action: EngineEvent
//!                                                     -> poll_frame: peer.handle_peer_frame
//! ```
//!
//! Why phases: with every session due on the same 20 ms tick, the last sessions of
//! a large batch go out late by the whole batch time. Sessions are spread over the
//! four 5 ms phases of the grid instead, so each batch is a quarter of the load.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::FRAME_DURATION;
use super::recording::{RecordSides, RecordingError, RecordingWriter};
use super::rtcp;
use super::rtp::StreamQuality;
use super::session::{MediaAction, MediaCommand, MediaSession, SessionConfig};
use crate::time::{Clock, SystemClock};

/// Identifies a call leg; chosen by the B2BUA.
pub type LegId = u64;

/// Default phases of the 20 ms grid: 4, so the ticker runs every 5 ms.
pub const DEFAULT_PHASES: u32 = 4;
/// Largest datagram we read: RTP for G.711 at 20 ms is 172 bytes; 1500 covers any MTU.
const MAX_DATAGRAM: usize = 1500;

/// RTP ports to bind, inclusive. Only even ports are used (RFC 3550 section 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port tried (rounded up to even).
    pub first: u16,
    /// Last port that may be used; with `first` this bounds concurrent legs to (last - first) / 2 + 1.
    pub last: u16,
}

/// Driver configuration.
#[derive(Clone)]
pub struct EngineConfig {
    /// Local address to bind media sockets on.
    pub bind: IpAddr,
    /// `None`: let the OS choose (tests).
    pub ports: Option<PortRange>,
    /// Phases of the 20 ms grid; the ticker period is 20 ms / phases.
    pub phases: u32,
    /// Wall clock for RTCP sender reports (NTP timestamps); injected so tests can fix it.
    pub clock: Arc<dyn Clock>,
}

impl EngineConfig {
    /// Defaults: [`DEFAULT_PHASES`] phases and the system wall clock.
    pub fn new(bind: IpAddr, ports: Option<PortRange>) -> Self {
        EngineConfig {
            bind,
            ports,
            phases: DEFAULT_PHASES,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("bind", &self.bind)
            .field("ports", &self.ports)
            .field("phases", &self.phases)
            .finish_non_exhaustive()
    }
}

/// Why the driver could not do what was asked. `NoFreePort` maps to SIP 503 with Retry-After
/// (the B2BUA's one place for that mapping); the rest are internal (500).
#[derive(Debug, Error)]
pub enum DriverError {
    #[error("no free RTP port in {first}-{last}")]
    NoFreePort { first: u16, last: u16 },
    #[error("binding an RTP socket: {0}")]
    Bind(std::io::Error),
    #[error("no media leg {0}")]
    UnknownLeg(LegId),
    #[error("media engine has stopped")]
    Stopped,
    #[error(transparent)]
    Recording(#[from] RecordingError),
}

/// What the engine reports to the B2BUA.
#[derive(Debug)]
pub enum EngineEvent {
    Action {
        leg: LegId,
        action: MediaAction,
    },
    /// A recording was completed (moved into place) or failed.
    RecordingFinished {
        leg: LegId,
        result: Result<PathBuf, RecordingError>,
    },
}

/// What the handle asks of the engine task. Replies travel on oneshot channels so
/// the B2BUA can await them; fire-and-forget requests have none.
enum Request {
    /// Bind a socket for a leg (before SDP, whose answer needs our port).
    Open {
        leg: LegId,
        reply: oneshot::Sender<Result<SocketAddr, DriverError>>,
    },
    /// Create the session once SDP is agreed; boxed to keep the enum small.
    Start {
        leg: LegId,
        config: Box<SessionConfig>,
    },
    Command {
        leg: LegId,
        command: MediaCommand,
    },
    /// Wire two legs so each one's frames feed the other.
    Link {
        a: LegId,
        b: LegId,
    },
    Record {
        leg: LegId,
        path: PathBuf,
        sides: RecordSides,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    Close {
        leg: LegId,
        reply: oneshot::Sender<Option<StreamQuality>>,
    },
}

/// Handle to the engine task; cheap to clone.
#[derive(Clone, Debug)]
pub struct MediaEngine {
    requests: mpsc::UnboundedSender<Request>,
}

impl DriverError {
    /// The SIP final response for an INVITE that needed this leg: out of ports is
    /// a temporary overload (503, to be sent with Retry-After); the rest are ours (500).
    pub fn sip_status(&self) -> u16 {
        match self {
            DriverError::NoFreePort { .. } => 503,
            _ => 500,
        }
    }
}

impl MediaEngine {
    /// Spawns the engine task. Events arrive on the returned receiver.
    pub fn spawn(
        config: EngineConfig,
    ) -> (
        MediaEngine,
        mpsc::UnboundedReceiver<EngineEvent>,
        JoinHandle<()>,
    ) {
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(config, requests_rx, events));
        (MediaEngine { requests }, events_rx, task)
    }

    /// Binds a socket for a new leg; the address goes into our SDP.
    pub async fn open(&self, leg: LegId) -> Result<SocketAddr, DriverError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Open { leg, reply })?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    /// Starts the leg's session once SDP is negotiated.
    pub fn start(&self, leg: LegId, config: SessionConfig) -> Result<(), DriverError> {
        self.send(Request::Start {
            leg,
            config: Box::new(config),
        })
    }

    /// Sends a [`MediaCommand`] to a started leg; unknown legs are ignored by the engine.
    pub fn command(&self, leg: LegId, command: MediaCommand) -> Result<(), DriverError> {
        self.send(Request::Command { leg, command })
    }

    /// Bridges two legs: each one's received audio is relayed to the other.
    pub fn bridge(&self, a: LegId, b: LegId) -> Result<(), DriverError> {
        self.send(Request::Link { a, b })?;
        self.command(a, MediaCommand::Bridge)?;
        self.command(b, MediaCommand::Bridge)
    }

    /// Records the leg into `path` (a WAV written as `<path>.part` until complete).
    pub async fn record(
        &self,
        leg: LegId,
        path: PathBuf,
        sides: RecordSides,
    ) -> Result<(), DriverError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Record {
            leg,
            path,
            sides,
            reply,
        })?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    /// Closes the leg and returns its quality figures for the CDR.
    pub async fn close(&self, leg: LegId) -> Option<StreamQuality> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Close { leg, reply }).ok()?;
        rx.await.ok().flatten()
    }

    fn send(&self, request: Request) -> Result<(), DriverError> {
        self.requests
            .send(request)
            .map_err(|_| DriverError::Stopped)
    }
}

/// One call leg as the engine holds it.
struct Leg {
    /// Shared with the reader task; the engine sends on it directly.
    socket: Arc<UdpSocket>,
    /// RTCP on RTP port + 1 (RFC 3550 section 11); only with a port range, where
    /// the pair can be reserved together.
    rtcp_socket: Option<Arc<UdpSocket>>,
    /// Aborted when the leg is dropped, which closes the sockets and frees the ports.
    readers: Vec<JoinHandle<()>>,
    /// `None` between `open` and `start` (SDP not agreed yet): datagrams are dropped.
    session: Option<MediaSession>,
    /// Which phase of the 20 ms grid ticks this leg.
    phase: usize,
    /// The bridged leg, if any.
    peer: Option<LegId>,
    /// Open recording file, fed from `poll_recording`.
    writer: Option<RecordingWriter>,
}

impl Drop for Leg {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// A datagram as a reader task hands it over, stamped with its arrival time so
/// jitter is measured from the socket, not from when the engine got to it.
struct Datagram {
    leg: LegId,
    rtcp: bool,
    from: SocketAddr,
    bytes: Vec<u8>,
    at: Instant,
}

/// The engine task's state: every leg, the phase buckets and the port cursor.
struct Engine {
    config: EngineConfig,
    legs: HashMap<LegId, Leg>,
    /// Legs per phase, so a tick touches only the quarter that is due.
    phases: Vec<Vec<LegId>>,
    /// Round-robin phase assignment keeps the buckets even.
    next_phase: usize,
    /// Next port to try; cycling through the range spreads reuse of recently freed
    /// ports (late packets of an old call must not reach a new one).
    next_port: u16,
    /// The ticker's first tick: origin of every session's frame grid.
    epoch: Instant,
    events: mpsc::UnboundedSender<EngineEvent>,
    datagrams: mpsc::Sender<Datagram>,
    /// Datagrams the kernel refused (send buffer full): dropped, like the network would.
    send_failures: u64,
}

async fn run(
    config: EngineConfig,
    mut requests: mpsc::UnboundedReceiver<Request>,
    events: mpsc::UnboundedSender<EngineEvent>,
) {
    let phases = config.phases.max(1);
    let period = FRAME_DURATION / phases;
    // Bounded: if the engine falls behind, readers wait and the kernel drops, rather
    // than memory growing without limit.
    let (datagrams, mut datagrams_rx) = mpsc::channel(8192);
    let epoch = Instant::now();
    let mut ticker = tokio::time::interval_at(epoch, period);
    // After a stall, sessions catch up from their own clocks; bursting missed ticks
    // would only add work.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut engine = Engine {
        next_port: config.ports.map_or(0, |p| p.first + p.first % 2),
        config,
        legs: HashMap::new(),
        phases: vec![Vec::new(); phases as usize],
        next_phase: 0,
        epoch,
        events,
        datagrams,
        send_failures: 0,
    };
    // The only select! in the media engine. Ends when every handle is dropped.
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some(request) => engine.request(request).await,
                None => break,
            },
            Some(d) = datagrams_rx.recv() => engine.datagram(d),
            tick = ticker.tick() => engine.tick(tick, period),
        }
    }
    tracing::debug!(send_failures = engine.send_failures, "media engine stopped");
}

impl Engine {
    async fn request(&mut self, request: Request) {
        match request {
            Request::Open { leg, reply } => {
                let _ = reply.send(self.open(leg).await);
            }
            Request::Start { leg, config } => {
                let now = Instant::now();
                let Some(state) = self.legs.get_mut(&leg) else {
                    return;
                };
                let mut config = *config;
                // Wall clock for RTCP sender reports, read once per leg.
                config.wallclock = Some((
                    now.into_std(),
                    rtcp::ntp_from_unix_ms(self.config.clock.unix_ms()),
                ));
                // Put the session on its phase of the shared grid.
                let phase_offset = FRAME_DURATION / self.phases.len() as u32 * state.phase as u32;
                config.pacing_epoch = Some((self.epoch + phase_offset).into_std());
                state.session = Some(MediaSession::new(now.into_std(), config));
            }
            Request::Command { leg, command } => {
                let now = Instant::now();
                if let Some(session) = self.legs.get_mut(&leg).and_then(|l| l.session.as_mut()) {
                    session.handle_command(now.into_std(), command);
                }
                self.flush(leg, now);
            }
            Request::Link { a, b } => {
                for (x, y) in [(a, b), (b, a)] {
                    if let Some(l) = self.legs.get_mut(&x) {
                        l.peer = Some(y);
                    }
                }
            }
            Request::Record {
                leg,
                path,
                sides,
                reply,
            } => {
                let now = Instant::now();
                let result = match self.legs.get_mut(&leg) {
                    Some(Leg {
                        session: Some(session),
                        writer,
                        ..
                    }) => match RecordingWriter::create(&path) {
                        Ok(w) => {
                            *writer = Some(w);
                            session.handle_command(
                                now.into_std(),
                                MediaCommand::StartRecording(sides),
                            );
                            Ok(())
                        }
                        Err(e) => Err(e.into()),
                    },
                    _ => Err(DriverError::UnknownLeg(leg)),
                };
                let _ = reply.send(result);
            }
            Request::Close { leg, reply } => {
                let quality = self.close(leg);
                let _ = reply.send(quality);
            }
        }
    }

    async fn open(&mut self, leg: LegId) -> Result<SocketAddr, DriverError> {
        // Re-opening an id replaces the old leg cleanly (its port, phase slot, peer).
        self.close(leg);
        let (socket, rtcp_socket) = self.bind().await?;
        let socket = Arc::new(socket);
        let rtcp_socket = rtcp_socket.map(Arc::new);
        let local = socket.local_addr().map_err(DriverError::Bind)?;
        let mut readers = vec![tokio::spawn(read_socket(
            leg,
            false,
            socket.clone(),
            self.datagrams.clone(),
        ))];
        if let Some(rtcp) = &rtcp_socket {
            readers.push(tokio::spawn(read_socket(
                leg,
                true,
                rtcp.clone(),
                self.datagrams.clone(),
            )));
        }
        let phase = self.next_phase;
        self.next_phase = (self.next_phase + 1) % self.phases.len();
        self.phases[phase].push(leg);
        self.legs.insert(
            leg,
            Leg {
                socket,
                rtcp_socket,
                readers,
                session: None,
                phase,
                peer: None,
                writer: None,
            },
        );
        Ok(local)
    }

    /// Binds the next free even port of the range and the odd one above it for
    /// RTCP, wrapping once around the range. Without a range (tests), one
    /// OS-chosen port and no RTCP.
    async fn bind(&mut self) -> Result<(UdpSocket, Option<UdpSocket>), DriverError> {
        let Some(range) = self.config.ports else {
            let socket = UdpSocket::bind(SocketAddr::new(self.config.bind, 0))
                .await
                .map_err(DriverError::Bind)?;
            return Ok((socket, None));
        };
        let first = range.first + range.first % 2;
        let slots = (range.last.saturating_sub(first) / 2 + 1) as usize;
        for _ in 0..slots {
            let port = self.next_port;
            self.next_port = if port.saturating_add(2) > range.last {
                first
            } else {
                port + 2
            };
            let Ok(socket) = UdpSocket::bind(SocketAddr::new(self.config.bind, port)).await else {
                continue;
            };
            // The RTCP port is part of the slot: if it is taken, so is the slot.
            if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(self.config.bind, port + 1)).await {
                return Ok((socket, Some(rtcp)));
            }
        }
        Err(DriverError::NoFreePort {
            first: range.first,
            last: range.last,
        })
    }

    /// Removes a leg: frees its port, unlinks its peer, completes its recording and
    /// returns the quality figures for the CDR.
    fn close(&mut self, leg: LegId) -> Option<StreamQuality> {
        let mut state = self.legs.remove(&leg)?;
        self.phases[state.phase].retain(|l| *l != leg);
        if let Some(peer) = state.peer.and_then(|p| self.legs.get_mut(&p)) {
            peer.peer = None;
        }
        let quality = state.session.as_ref().map(MediaSession::quality);
        // A recording still running when the leg closes is complete as far as it goes.
        if let (Some(session), Some(writer)) = (state.session.as_mut(), state.writer.take()) {
            session.handle_command(
                std::time::Instant::from(Instant::now()),
                MediaCommand::StopRecording,
            );
            self.finish_recording(leg, session, writer);
        }
        quality
    }

    fn finish_recording(
        &mut self,
        leg: LegId,
        session: &mut MediaSession,
        mut writer: RecordingWriter,
    ) {
        let mut result = Ok(());
        while let Some(samples) = session.poll_recording() {
            if result.is_ok() {
                result = writer.write(&samples);
            }
        }
        let result = result.and_then(|()| writer.finish());
        let _ = self
            .events
            .send(EngineEvent::RecordingFinished { leg, result });
    }

    fn datagram(&mut self, d: Datagram) {
        if let Some(session) = self.legs.get_mut(&d.leg).and_then(|l| l.session.as_mut()) {
            if d.rtcp {
                session.handle_rtcp(d.at.into_std(), d.from, &d.bytes);
            } else {
                session.handle_rtp(d.at.into_std(), d.from, &d.bytes);
            }
        }
        self.flush(d.leg, d.at);
    }

    /// Ticks the phase this tick belongs to (derived from the tick's own instant, so
    /// a skipped tick cannot shift which bucket runs).
    fn tick(&mut self, tick: Instant, period: Duration) {
        let index =
            (tick.saturating_duration_since(self.epoch).as_micros() / period.as_micros()) as usize;
        let phase = index % self.phases.len();
        for i in 0..self.phases[phase].len() {
            let leg = self.phases[phase][i];
            // Each session reads the clock itself: late in a big batch is measured as late.
            let now = Instant::now();
            if let Some(session) = self.legs.get_mut(&leg).and_then(|l| l.session.as_mut()) {
                session.handle_tick(now.into_std());
            }
            self.flush(leg, now);
        }
    }

    /// Drains a session's outputs: datagrams, bridged frames, recording, actions.
    fn flush(&mut self, leg: LegId, now: Instant) {
        let Some(state) = self.legs.get_mut(&leg) else {
            return;
        };
        let Some(session) = state.session.as_mut() else {
            return;
        };
        // try_send_to never waits: a full socket buffer drops the packet, as a
        // congested network would, instead of stalling every other call.
        while let Some(t) = session.poll_transmit() {
            let socket = if t.rtcp {
                state.rtcp_socket.as_ref()
            } else {
                Some(&state.socket)
            };
            let Some(socket) = socket else { continue };
            if socket.try_send_to(&t.payload, t.destination).is_err() {
                self.send_failures += 1;
            }
        }
        while let Some(action) = session.poll_action() {
            let _ = self.events.send(EngineEvent::Action { leg, action });
        }
        // Recording writes are small buffered appends; a failing disk is logged and
        // reported when the recording finishes, never fatal to the call.
        let mut recording_done = None;
        if let Some(writer) = state.writer.as_mut() {
            while let Some(samples) = session.poll_recording() {
                if let Err(e) = writer.write(&samples) {
                    tracing::warn!(leg, error = %e, "recording write failed");
                }
            }
            if !session.is_recording() {
                recording_done = state.writer.take();
            }
        }
        let mut frames = Vec::new();
        while let Some(f) = session.poll_frame() {
            frames.push(f);
        }
        let peer = state.peer;
        if let Some(writer) = recording_done {
            let _ = self.events.send(EngineEvent::RecordingFinished {
                leg,
                result: writer.finish(),
            });
        }
        // Bridged audio goes straight to the peer session and out of its socket in
        // the same turn: relay latency is one pass through the engine.
        if let (Some(peer), false) = (peer, frames.is_empty()) {
            if let Some(p) = self.legs.get_mut(&peer).and_then(|l| l.session.as_mut()) {
                for f in frames {
                    p.handle_peer_frame(now.into_std(), f);
                }
            }
            self.flush(peer, now);
        }
    }
}

/// One per leg: receive, stamp, hand to the engine. Errors such as ICMP port
/// unreachable surfacing on recv are ignored; the socket stays open until the leg
/// closes.
async fn read_socket(
    leg: LegId,
    rtcp: bool,
    socket: Arc<UdpSocket>,
    datagrams: mpsc::Sender<Datagram>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let d = Datagram {
            leg,
            rtcp,
            from,
            bytes: buf[..len].to_vec(),
            at: Instant::now(),
        };
        if datagrams.send(d).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
