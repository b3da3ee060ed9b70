//! The media session of one call leg: a pure state machine.
//!
//! Owns what the leg sends (prompts, music on hold, bridged audio, DTMF) with one
//! continuous RTP stream, what it receives (validation, latching, digits, quality),
//! dead-media detection and the recording mix. Does not own sockets, the ticker or
//! files: the driver feeds it datagrams and ticks, and sends what it returns.
//!
//! Inputs: [`MediaSession::handle_rtp`], [`MediaSession::handle_rtcp`],
//! [`MediaSession::handle_tick`] (every 20 ms from one ticker shared by all
//! sessions), [`MediaSession::handle_command`], [`MediaSession::handle_peer_frame`]
//! (the other leg's audio while bridged). RTCP reports go out every 5 s through
//! `poll_transmit` with `rtcp: true`.
//! Outputs, drained in this order after each input: [`MediaSession::poll_transmit`],
//! [`MediaSession::poll_timeout`], [`MediaSession::poll_action`]; plus
//! [`MediaSession::poll_frame`] (audio for the other leg) and
//! [`MediaSession::poll_recording`] (mixed samples for the writer).
//!
//! ```text
//!                 Play                    sequence ends
//!      Idle ---------------------> Playing -------------> Idle  (PlaybackFinished)
//!       |  ^  LoopMusic             |  Stop / barge-in digit      (interrupted)
//!       |  +-------- Stop ------ Music (loops forever)
//!       |  Bridge
//!       +--------> Bridged: peer frames relayed as they arrive, own clock keeps
//!                  running so the stream stays continuous when the feed changes
//!
//!   Any state: SendDtmf overlays RFC 4733 events (or tones) on the tick frames;
//!   no valid RTP for media_timeout while we expect some -> MediaTimeout (once).
//! ```
//!
//! Pacing: frame `k` is due at `epoch + k * 20 ms` and carries RTP timestamp
//! `initial + k * 160`. Each tick sends every frame that is due by the session's own
//! clock, so a late or early shared tick never makes a session drift; a stall longer
//! than [`MAX_CATCH_UP`] skips frames instead of bursting them. `epoch` is the shared
//! ticker's grid ([`SessionConfig::pacing_epoch`]), so a tick finds frames exactly due
//! rather than up to 20 ms late.

use core::net::SocketAddr;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::dtmf::{self, DtmfReceiver, TelephoneEvent, ToneDetector};
use super::g711::Codec;
use super::jitter::{self, ReorderBuffer};
use super::prompt::{Playback, Prompt};
use super::recording::{self, Mixer, RecordSides};
use super::rtcp::{self, SenderInfo};
use super::rtp::{OutgoingStream, RtpError, RtpPacket, RtpReceiver, StreamQuality};
use super::sdp::{Direction, Negotiated};
use super::{FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};
use crate::campaigns::amd;

/// Default dead-media timeout: 30 s without RTP while we expect it, the common
/// carrier/PBX value (long enough for phones that pause RTP during silence).
pub const DEFAULT_MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// A tick later than this after a frame's due time counts the frame as late.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(5);
/// A stall longer than this skips frames rather than bursting them at the peer.
pub const MAX_CATCH_UP: Duration = Duration::from_millis(100);
/// Silence between digits we send: 60 ms (ITU-T Q.24 asks for at least 40 ms).
const INTER_DIGIT_FRAMES: usize = 3;
/// Received audio is mixed into a recording this long after it is due, leaving the
/// reorder buffer time to put late packets back.
const RECORDING_DELAY_SAMPLES: u64 = 200 * SAMPLE_RATE as u64 / 1000;
/// A peer timestamp further than this from where we expect it means the bridged
/// feed changed (transfer, re-INVITE): re-anchor instead of jumping.
const MAX_PEER_JUMP_SAMPLES: i64 = SAMPLE_RATE as i64;

/// RTCP report interval: RFC 3550 section 6.2's 5 s minimum. Not randomised: the
/// core has no RNG, and with one report per leg every 5 s there is no storm to avoid.
pub const DEFAULT_RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// Everything a session needs, mostly from [`super::sdp::Negotiated`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The leg's codec, from SDP.
    pub codec: Codec,
    /// Payload type that carries `codec` on this leg (static 0/8, or a dynamic one).
    pub payload_type: u8,
    /// RFC 4733 payload type, if negotiated; otherwise DTMF is sent as tones.
    pub telephone_event: Option<u8>,
    /// Where to send until symmetric RTP latches (SDP c=/m=).
    pub remote: Option<SocketAddr>,
    /// Our negotiated direction: no sending unless `has_send()`, no dead-media timer
    /// unless `has_recv()` (hold).
    pub direction: Direction,
    /// Random SSRC, first sequence number and timestamp (RFC 3550 §5.1), drawn by
    /// the driver: the core has no RNG.
    pub ssrc: u32,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
    /// No valid RTP for this long while we expect it: [`MediaAction::MediaTimeout`].
    pub media_timeout: Duration,
    /// The same while the remote does not send (hold); `None` = wait forever.
    pub hold_timeout: Option<Duration>,
    /// Listen for DTMF tones in the audio. Switched off for the rest of the call
    /// once an RFC 4733 event arrives, so one key press is never reported twice.
    pub inband_dtmf: bool,
    /// Reorder buffer depth in packets for recording and tone detection.
    pub reorder_depth: usize,
    /// An instant on the driver's tick grid (its first tick, or that plus a phase
    /// offset). Frames fall due on `pacing_epoch + k * 20 ms`, so a shared ticker
    /// on the same grid finds them due the moment it fires. `None`: the session's
    /// own start, for tests and single sessions.
    pub pacing_epoch: Option<Instant>,
    /// How often to send RTCP reports; `None` sends none.
    pub rtcp_interval: Option<Duration>,
    /// An instant and the wall-clock NTP timestamp at that instant (from the driver's
    /// injected clock). Needed for sender reports and round-trip time; without it
    /// the leg sends receiver reports only.
    pub wallclock: Option<(Instant, u64)>,
    /// RTCP CNAME (RFC 3550 section 6.5.1), e.g. `media@203.0.113.5`.
    pub cname: String,
}

impl SessionConfig {
    /// Defaults for everything SDP does not say: 30 s dead-media timeout, no timeout on
    /// hold, in-band DTMF on, a 5-packet reorder buffer.
    pub fn new(
        negotiated: &Negotiated,
        ssrc: u32,
        initial_sequence: u16,
        initial_timestamp: u32,
    ) -> Self {
        SessionConfig {
            codec: negotiated.codec,
            payload_type: negotiated.payload_type,
            telephone_event: negotiated.telephone_event,
            remote: negotiated.remote,
            direction: negotiated.direction,
            ssrc,
            initial_sequence,
            initial_timestamp,
            media_timeout: DEFAULT_MEDIA_TIMEOUT,
            hold_timeout: None,
            inband_dtmf: true,
            reorder_depth: jitter::DEFAULT_DEPTH,
            pacing_epoch: None,
            rtcp_interval: Some(DEFAULT_RTCP_INTERVAL),
            wallclock: None,
            cname: "comm-server".to_owned(),
        }
    }
}

/// What the B2BUA or IVR asks of the leg.
#[derive(Debug, Clone)]
pub enum MediaCommand {
    /// Play prompts back to back; `id` comes back in [`MediaAction::PlaybackFinished`].
    /// With `barge_in`, a received digit stops the playback (menus).
    Play {
        id: u64,
        prompts: Vec<Prompt>,
        barge_in: bool,
    },
    /// Loop music on hold until another command.
    LoopMusic(Prompt),
    /// Stop playback or music; the leg goes quiet.
    Stop,
    /// Relay the other leg's frames ([`MediaSession::handle_peer_frame`]) and emit ours
    /// ([`MediaSession::poll_frame`]).
    Bridge,
    Unbridge,
    StartRecording(RecordSides),
    /// While the recording runs, report [`MediaAction::Silence`] once `after` of
    /// recorded audio stays under mean absolute level `level` (voicemail ends on
    /// silence). Gaps with no packets count as silence: they are recorded as such.
    DetectSilence {
        level: u16,
        after: Duration,
    },
    /// Stops mixing; the remaining samples come out of `poll_recording`.
    StopRecording,
    /// Runs answering-machine detection ([`amd::Detector`]) over the received audio
    /// from now on; the verdict comes back once in [`MediaAction::MachineDetection`].
    DetectMachine(amd::AmdParams),
    /// Sends digits as RFC 4733 events, or as tones if the leg has no telephone-event.
    SendDtmf(String),
    /// A re-INVITE changed the media (hold, new address, new codec).
    Update(Negotiated),
}

/// How a digit arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfMethod {
    Rfc4733,
    InBand,
}

/// Events for the B2BUA / IVR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaAction {
    DigitReceived {
        digit: char,
        method: DtmfMethod,
    },
    /// `interrupted`: stopped by a command, barge-in or another Play.
    PlaybackFinished {
        id: u64,
        interrupted: bool,
    },
    /// Dead media: hang up, with this reason in the CDR.
    MediaTimeout {
        silent_for: Duration,
    },
    /// The running recording has been silent this long ([`MediaCommand::DetectSilence`]).
    Silence {
        lasted: Duration,
    },
    /// Symmetric RTP locked onto the remote's real address.
    RemoteLatched {
        address: SocketAddr,
    },
    /// What answered, by [`MediaCommand::DetectMachine`].
    MachineDetection(amd::Verdict),
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send: the latched address, else the SDP address.
    pub destination: SocketAddr,
    /// The whole datagram.
    pub payload: Vec<u8>,
    /// An RTCP report: send it from the leg's RTCP socket (RTP port + 1).
    pub rtcp: bool,
}

/// Content of a bridged frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameContent {
    Audio { codec: Codec, payload: Vec<u8> },
    Event(TelephoneEvent),
}

/// One received frame handed to the other leg, with the sender's RTP timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeFrame {
    /// The sender's RTP timestamp (re-based onto the receiving leg's clock on relay).
    pub timestamp: u32,
    /// The sender's marker bit.
    pub marker: bool,
    /// Audio or an RFC 4733 event.
    pub content: FrameContent,
}

#[derive(Debug)]
enum Source {
    Idle,
    Playing {
        id: u64,
        playback: Playback,
        barge_in: bool,
    },
    Music(Playback),
    Bridged,
}

/// A digit being sent: RFC 4733 packets or tone samples, then a pause.
#[derive(Debug)]
struct OutgoingDigit {
    events: Vec<(TelephoneEvent, bool)>,
    tone: Vec<i16>,
    sent: usize,
    start_timestamp: Option<u32>,
    pause_frames: usize,
}

/// Received audio waiting in the reorder buffer.
#[derive(Debug)]
struct HeldAudio {
    /// Session clock position when the packet arrived: the recording anchors on
    /// arrival, not on release from the buffer (which lags by the buffer's depth).
    arrival: u64,
    timestamp: u32,
    ssrc: u32,
    codec: Codec,
    payload: Vec<u8>,
}

#[derive(Debug)]
struct Recording {
    mixer: Mixer,
    /// Session clock position when the recording started.
    started: u64,
    /// Maps the remote's RTP timestamps (per SSRC) onto our timeline.
    receive_anchor: Option<(u32, u32, u64)>,
    silence: Option<SilenceDetector>,
}

/// Counts how long the released recording has stayed quiet, per 20 ms frame.
#[derive(Debug)]
struct SilenceDetector {
    level: u16,
    after_samples: u64,
    quiet_samples: u64,
    reported: bool,
}

impl SilenceDetector {
    /// Feeds released samples; true when the silence has just lasted long enough.
    fn feed(&mut self, samples: &[i16]) -> bool {
        let mut fire = false;
        for frame in samples.chunks(FRAME_SAMPLES) {
            let sum: u64 = frame.iter().map(|s| u64::from(s.unsigned_abs())).sum();
            if sum < u64::from(self.level) * frame.len() as u64 {
                self.quiet_samples += frame.len() as u64;
            } else {
                self.quiet_samples = 0;
                self.reported = false;
            }
            if !self.reported && self.quiet_samples >= self.after_samples {
                self.reported = true;
                fire = true;
            }
        }
        fire
    }
}

/// The media state machine of one call leg.
#[derive(Debug)]
pub struct MediaSession {
    config: SessionConfig,
    /// Origin of the frame grid and of the session's sample clock.
    epoch: Instant,
    stream: OutgoingStream,
    receiver: RtpReceiver,
    source: Source,
    /// Index of the next tick-driven frame.
    next_frame: u64,
    /// Added to tick-driven timestamps so they never go backwards after relaying.
    timestamp_adjust: u32,
    /// End (timestamp + samples) of the last packet sent, for continuity.
    last_sent_end: Option<u32>,
    /// The next packet starts a new feed: set the marker bit.
    feed_changed: bool,
    /// Peer timestamp -> our timestamp offset while bridged.
    peer_offset: Option<u32>,
    digits_out: VecDeque<OutgoingDigit>,
    dtmf_receiver: DtmfReceiver,
    /// De-duplicates bridged events that this leg must turn into tones.
    relayed_events: DtmfReceiver,
    tone_detector: Option<ToneDetector>,
    /// Answering-machine detection, until its verdict.
    machine_detector: Option<amd::Detector>,
    reorder: ReorderBuffer<HeldAudio>,
    recording: Option<Recording>,
    last_activity: Instant,
    timed_out: bool,
    late_frames: u64,
    /// When the next RTCP report is due.
    next_report: Option<Instant>,
    /// Packets sent at the last report: an SR only if we sent since (§6.4).
    sent_at_last_report: u64,
    /// NTP short time of the remote's last SR and when it arrived (for LSR/DLSR).
    last_sr: Option<(u32, Instant)>,
    /// Where the remote's RTCP comes from (symmetric RTCP).
    rtcp_remote: Option<SocketAddr>,
    remote_fraction_lost: Option<f64>,
    remote_jitter_ms: Option<f64>,
    round_trip_ms: Option<f64>,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<MediaAction>,
    frames: VecDeque<BridgeFrame>,
    recorded: Vec<i16>,
    pcm: Vec<i16>,
    encoded: Vec<u8>,
}

impl MediaSession {
    /// A quiet session (no playback, not bridged) whose clock starts now.
    pub fn new(now: Instant, config: SessionConfig) -> Self {
        let epoch = match config.pacing_epoch {
            Some(grid) if grid <= now => grid,
            // A grid point still in the future (a phase offset early in the driver's
            // life): the same grid, whole frames earlier.
            Some(grid) => {
                let frames = (grid - now)
                    .as_micros()
                    .div_ceil(FRAME_DURATION.as_micros());
                grid.checked_sub(FRAME_DURATION * frames as u32)
                    .unwrap_or(now)
            }
            None => now,
        };
        let since = now.saturating_duration_since(epoch).as_micros();
        // First frame on the grid at or after now.
        let next_frame = since.div_ceil(FRAME_DURATION.as_micros()) as u64;
        let next_report = config.rtcp_interval.map(|i| now + i);
        MediaSession {
            stream: OutgoingStream::new(config.ssrc, config.initial_sequence),
            receiver: RtpReceiver::new(now, SAMPLE_RATE),
            tone_detector: config.inband_dtmf.then(ToneDetector::new),
            machine_detector: None,
            reorder: ReorderBuffer::new(config.reorder_depth),
            config,
            epoch,
            source: Source::Idle,
            next_frame,
            timestamp_adjust: 0,
            last_sent_end: None,
            feed_changed: true,
            peer_offset: None,
            digits_out: VecDeque::new(),
            dtmf_receiver: DtmfReceiver::default(),
            relayed_events: DtmfReceiver::default(),
            recording: None,
            last_activity: now,
            timed_out: false,
            late_frames: 0,
            next_report,
            sent_at_last_report: 0,
            last_sr: None,
            rtcp_remote: None,
            remote_fraction_lost: None,
            remote_jitter_ms: None,
            round_trip_ms: None,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            frames: VecDeque::new(),
            recorded: Vec::new(),
            pcm: vec![0; FRAME_SAMPLES],
            encoded: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    // ----- inputs -------------------------------------------------------------------

    /// A datagram arrived on this leg's socket from `from`. Never panics on any input.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let packet = match RtpPacket::parse(datagram) {
            Ok(packet) => packet,
            // RTCP multiplexed on the RTP port (RFC 5761): read it as RTCP.
            Err(RtpError::Rtcp(_)) => return self.handle_rtcp(now, from, datagram),
            Err(_) => {
                self.receiver.count_rejected();
                return;
            }
        };
        // Validation and latching first: nothing from an unproven or foreign source
        // reaches the IVR, the recording or the other leg.
        let Some(accepted) = self.receiver.receive(now, from, packet) else {
            return;
        };
        if accepted.newly_latched {
            self.actions
                .push_back(MediaAction::RemoteLatched { address: from });
        }
        // Any valid packet, audio or event, proves the media path is alive.
        self.last_activity = now;
        let packet = accepted.packet;
        let bridged = matches!(self.source, Source::Bridged);
        if Some(packet.payload_type) == self.config.telephone_event {
            let Ok(event) = TelephoneEvent::parse(packet.payload) else {
                return;
            };
            // RFC 4733 is in use: tones in the audio are now duplicates.
            self.tone_detector = None;
            if let Some(digit) = self.dtmf_receiver.receive(packet.timestamp, event) {
                self.digit(digit, DtmfMethod::Rfc4733);
            }
            if bridged {
                self.frames.push_back(BridgeFrame {
                    timestamp: packet.timestamp,
                    marker: packet.marker,
                    content: FrameContent::Event(event),
                });
            }
            return;
        }
        let codec = if packet.payload_type == self.config.payload_type {
            self.config.codec
        } else if let Some(codec) = Codec::from_payload_type(packet.payload_type) {
            // A static G.711 type we did not negotiate: harmless to understand.
            codec
        } else {
            // Comfort noise (13) and anything else: nothing to play or record.
            return;
        };
        // Relay first and untouched: the other leg transcodes only if it must, so a
        // same-codec bridge stays bit-exact and adds no decoding work.
        if bridged {
            self.frames.push_back(BridgeFrame {
                timestamp: packet.timestamp,
                marker: packet.marker,
                content: FrameContent::Audio {
                    codec,
                    payload: packet.payload.to_vec(),
                },
            });
        }
        // Decoding is only paid for when someone listens: the tone detector or a
        // recording. Both need packets in order, hence the reorder buffer.
        if self.tone_detector.is_some() || self.recording.is_some() {
            let held = HeldAudio {
                arrival: self.position(now),
                timestamp: packet.timestamp,
                ssrc: packet.ssrc,
                codec,
                payload: packet.payload.to_vec(),
            };
            self.reorder.push(accepted.extended_sequence, held);
            while let Some((_, held)) = self.reorder.pop() {
                self.consume_received(held);
            }
        }
    }

    /// An RTCP datagram from the leg's RTCP socket. Reports are believed only from
    /// the IP address the media comes from, so nobody else can skew the CDR.
    pub fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.destination().is_none_or(|d| d.ip() != from.ip()) {
            self.receiver.count_rejected();
            return;
        }
        let Ok(compound) = rtcp::parse(datagram) else {
            self.receiver.count_rejected();
            return;
        };
        self.rtcp_remote = Some(from);
        if let Some(sender) = compound.sender {
            self.last_sr = Some((rtcp::ntp_short(sender.ntp), now));
        }
        let ours = self.stream.ssrc();
        for block in compound.reports.iter().filter(|b| b.ssrc == ours) {
            self.remote_fraction_lost = Some(block.fraction_lost as f64 / 256.0);
            self.remote_jitter_ms = Some(block.jitter as f64 * 1000.0 / SAMPLE_RATE as f64);
            // RTT = arrival - LSR - DLSR, all in 1/65536 s (RFC 3550 section 6.4.1).
            if let (Some(arrival), true) = (self.ntp_at(now), block.last_sr != 0) {
                let rtt = rtcp::ntp_short(arrival)
                    .wrapping_sub(block.last_sr)
                    .wrapping_sub(block.delay_since_last_sr);
                if rtt < 1 << 31 {
                    self.round_trip_ms = Some(rtt as f64 * 1000.0 / 65536.0);
                }
            }
        }
    }

    /// The shared 20 ms tick. Sends every frame due by this session's own clock.
    pub fn handle_tick(&mut self, now: Instant) {
        self.check_media_timeout(now);
        self.send_report_if_due(now);
        let mut due = self.frame_due(self.next_frame);
        if now.saturating_duration_since(due) > MAX_CATCH_UP {
            // Stalled (the process was descheduled): skip rather than burst.
            let behind =
                now.saturating_duration_since(self.epoch).as_micros() / FRAME_DURATION.as_micros();
            let skip_to = behind as u64;
            if self.ticks_frames() {
                self.late_frames += skip_to.saturating_sub(self.next_frame);
            }
            self.next_frame = skip_to.max(self.next_frame);
            due = self.frame_due(self.next_frame);
        }
        // Normally exactly one frame is due per tick; after a slightly late tick,
        // two. Idle sessions still advance `next_frame` so the clock stays aligned.
        while due <= now {
            if self.ticks_frames() {
                if now.saturating_duration_since(due) > LATE_THRESHOLD {
                    self.late_frames += 1;
                }
                self.send_tick_frame();
            }
            self.next_frame += 1;
            due = self.frame_due(self.next_frame);
        }
        self.release_recording(now, false);
    }

    /// Applies a command from the B2BUA or IVR; results come out of the poll methods.
    pub fn handle_command(&mut self, now: Instant, command: MediaCommand) {
        match command {
            MediaCommand::Play {
                id,
                prompts,
                barge_in,
            } => {
                let playback = Playback::sequence(prompts);
                if playback.is_finished() {
                    // Nothing to play (empty sequence or empty prompts): finish now
                    // rather than send a frame of silence.
                    self.replace_source(Source::Idle);
                    self.actions.push_back(MediaAction::PlaybackFinished {
                        id,
                        interrupted: false,
                    });
                    return;
                }
                self.replace_source(Source::Playing {
                    id,
                    playback,
                    barge_in,
                });
                self.align_clock(now);
            }
            MediaCommand::LoopMusic(prompt) => {
                self.replace_source(Source::Music(Playback::looping(prompt)));
                self.align_clock(now);
            }
            MediaCommand::Stop => self.replace_source(Source::Idle),
            MediaCommand::Bridge => {
                self.replace_source(Source::Bridged);
                self.peer_offset = None;
            }
            MediaCommand::Unbridge => {
                if matches!(self.source, Source::Bridged) {
                    self.replace_source(Source::Idle);
                }
            }
            MediaCommand::StartRecording(sides) => {
                let position = self.position(now);
                self.recording = Some(Recording {
                    mixer: Mixer::new(position, sides),
                    started: position,
                    receive_anchor: None,
                    silence: None,
                });
            }
            MediaCommand::DetectSilence { level, after } => {
                if let Some(rec) = self.recording.as_mut() {
                    rec.silence = Some(SilenceDetector {
                        level,
                        after_samples: after.as_millis() as u64 * u64::from(SAMPLE_RATE) / 1000,
                        quiet_samples: 0,
                        reported: false,
                    });
                }
            }
            MediaCommand::StopRecording => self.release_recording(now, true),
            MediaCommand::DetectMachine(params) => {
                self.machine_detector = Some(amd::Detector::new(params));
            }
            MediaCommand::SendDtmf(digits) => {
                for digit in digits.chars() {
                    let Ok(event) = dtmf::digit_event(digit) else {
                        continue;
                    };
                    let (events, tone) = match self.config.telephone_event {
                        Some(_) => (
                            dtmf::event_packets(
                                event,
                                dtmf::DEFAULT_DIGIT_DURATION,
                                dtmf::DEFAULT_VOLUME,
                                FRAME_SAMPLES as u16,
                            ),
                            Vec::new(),
                        ),
                        None => (
                            Vec::new(),
                            dtmf::tone_samples(
                                digit,
                                dtmf::DEFAULT_DIGIT_DURATION as usize,
                                5000.0,
                            )
                            .unwrap_or_default(),
                        ),
                    };
                    self.digits_out.push_back(OutgoingDigit {
                        events,
                        tone,
                        sent: 0,
                        start_timestamp: None,
                        pause_frames: INTER_DIGIT_FRAMES,
                    });
                }
                self.align_clock(now);
            }
            MediaCommand::Update(n) => {
                if n.remote != self.config.remote {
                    self.receiver.relatch();
                }
                self.config.codec = n.codec;
                self.config.payload_type = n.payload_type;
                self.config.telephone_event = n.telephone_event;
                self.config.remote = n.remote;
                self.config.direction = n.direction;
                self.last_activity = now;
                self.timed_out = false;
                self.feed_changed = true;
            }
        }
    }

    /// A frame from the bridged peer leg: relayed at once, transcoded if needed.
    pub fn handle_peer_frame(&mut self, now: Instant, frame: BridgeFrame) {
        if !matches!(self.source, Source::Bridged) || !self.digits_out.is_empty() {
            return;
        }
        // Peer timestamps are re-based, not copied: the far end must see one stream
        // whose timestamps keep advancing with our clock, whatever fed it before.
        let expected = self.clock_timestamp(now);
        let offset = match self.peer_offset {
            Some(o)
                if (frame.timestamp.wrapping_add(o).wrapping_sub(expected) as i32 as i64).abs()
                    <= MAX_PEER_JUMP_SAMPLES =>
            {
                o
            }
            _ => {
                // New feed: anchor its timestamps to our clock, never going backwards.
                let anchored = self.continuous(expected);
                self.feed_changed = true;
                let o = anchored.wrapping_sub(frame.timestamp);
                self.peer_offset = Some(o);
                o
            }
        };
        let timestamp = frame.timestamp.wrapping_add(offset);
        let marker = frame.marker || std::mem::take(&mut self.feed_changed);
        match frame.content {
            FrameContent::Audio { codec, payload } => {
                // A copy for equal codecs, one table look-up per byte otherwise.
                let mut out = Vec::with_capacity(payload.len());
                codec.transcode(self.config.codec, &payload, &mut out);
                if self.recording.is_some() {
                    self.pcm.clear();
                    self.config.codec.decode(&out, &mut self.pcm);
                    let pcm = std::mem::take(&mut self.pcm);
                    self.record_sent(timestamp, &pcm);
                    self.pcm = pcm;
                }
                self.send(
                    self.config.payload_type,
                    marker,
                    timestamp,
                    &out,
                    out.len() as u32,
                );
            }
            FrameContent::Event(event) => match self.config.telephone_event {
                Some(pt) => self.send(pt, marker, timestamp, &event.to_bytes(), 0),
                // This leg cannot carry RFC 4733: play the digit as a tone instead,
                // once per event however many packets carried it.
                None => {
                    if let Some(digit) = self.relayed_events.receive(frame.timestamp, event) {
                        self.handle_command(now, MediaCommand::SendDtmf(digit.to_string()));
                    }
                }
            },
        }
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next datagram to send, in order.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next frame due, or the dead-media deadline, whichever is first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let frame = self.ticks_frames().then(|| self.frame_due(self.next_frame));
        let dead = self.media_deadline();
        match (frame, dead) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event for the B2BUA / IVR.
    pub fn poll_action(&mut self) -> Option<MediaAction> {
        self.actions.pop_front()
    }

    /// Audio and events received while bridged, for the other leg's `handle_peer_frame`.
    pub fn poll_frame(&mut self) -> Option<BridgeFrame> {
        self.frames.pop_front()
    }

    /// Mixed recording samples ready for the [`super::recording::RecordingWriter`].
    pub fn poll_recording(&mut self) -> Option<Vec<i16>> {
        (!self.recorded.is_empty()).then(|| std::mem::take(&mut self.recorded))
    }

    /// Per-leg quality figures for the CDR.
    pub fn quality(&self) -> StreamQuality {
        StreamQuality {
            packets_received: self.receiver.packets_received(),
            packets_lost: self.receiver.packets_lost(),
            jitter_ms: self.receiver.jitter_duration().as_secs_f64() * 1000.0,
            packets_sent: self.stream.packets_sent(),
            octets_sent: self.stream.octets_sent(),
            packets_rejected: self.receiver.packets_rejected(),
            late_frames: self.late_frames,
            remote_fraction_lost: self.remote_fraction_lost,
            remote_jitter_ms: self.remote_jitter_ms,
            round_trip_ms: self.round_trip_ms,
        }
    }

    /// Where RTP goes: the latched address, else the SDP address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.receiver.latched_address().or(self.config.remote)
    }

    /// True between `StartRecording` and `StopRecording`.
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    // ----- internals ----------------------------------------------------------------

    /// When frame `k` is due on this session's grid.
    fn frame_due(&self, k: u64) -> Instant {
        self.epoch + FRAME_DURATION * k as u32
    }

    /// Samples elapsed on this session's clock.
    fn position(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64 * SAMPLE_RATE as u64
            / 1_000_000
    }

    /// Our RTP timestamp for `now`, continuous with the tick-driven frames.
    fn clock_timestamp(&self, now: Instant) -> u32 {
        self.config
            .initial_timestamp
            .wrapping_add(self.timestamp_adjust)
            .wrapping_add(self.position(now) as u32)
    }

    /// `candidate`, or the end of the last packet if that is later.
    fn continuous(&self, candidate: u32) -> u32 {
        match self.last_sent_end {
            Some(end) if (candidate.wrapping_sub(end) as i32) < 0 => end,
            _ => candidate,
        }
    }

    /// True when the tick produces packets (prompt, music or DTMF); bridged audio
    /// is relayed on arrival instead, and idle legs send nothing.
    fn ticks_frames(&self) -> bool {
        matches!(self.source, Source::Playing { .. } | Source::Music(_))
            || !self.digits_out.is_empty()
    }

    /// Starting tick-driven output: skip frames that fell due while we were idle.
    fn align_clock(&mut self, now: Instant) {
        // The first grid slot at or after now: starting on a slot that is already
        // past would send the first frame late by up to 20 ms.
        let current = now
            .saturating_duration_since(self.epoch)
            .as_micros()
            .div_ceil(FRAME_DURATION.as_micros()) as u64;
        self.next_frame = self.next_frame.max(current);
    }

    /// Switches feed; an unfinished playback reports itself interrupted, so every
    /// Play gets exactly one PlaybackFinished.
    fn replace_source(&mut self, source: Source) {
        if let Source::Playing { id, .. } = std::mem::replace(&mut self.source, source) {
            self.actions.push_back(MediaAction::PlaybackFinished {
                id,
                interrupted: true,
            });
        }
        self.feed_changed = true;
    }

    /// Reports a digit; with barge-in, a menu prompt stops as soon as a key is pressed.
    fn digit(&mut self, digit: char, method: DtmfMethod) {
        self.actions
            .push_back(MediaAction::DigitReceived { digit, method });
        if let Source::Playing { barge_in: true, .. } = self.source {
            self.replace_source(Source::Idle);
        }
    }

    /// Timestamp of the frame about to go out. After relayed audio the natural grid
    /// value may lie behind what the peer's clock already used; the adjustment is
    /// kept so later frames stay on the grid, shifted, rather than jumping back.
    fn tick_timestamp(&mut self) -> u32 {
        let natural = self
            .config
            .initial_timestamp
            .wrapping_add(self.timestamp_adjust)
            .wrapping_add((self.next_frame * FRAME_SAMPLES as u64) as u32);
        let ts = self.continuous(natural);
        self.timestamp_adjust = self.timestamp_adjust.wrapping_add(ts.wrapping_sub(natural));
        ts
    }

    /// One tick-driven frame: a DTMF packet (or tone, or inter-digit pause) if
    /// digits are queued, else the next 20 ms of the prompt or music.
    fn send_tick_frame(&mut self) {
        let timestamp = self.tick_timestamp();
        if let Some(digit) = self.digits_out.front_mut() {
            if digit.sent < digit.events.len() {
                let start = *digit.start_timestamp.get_or_insert(timestamp);
                let (event, marker) = digit.events[digit.sent];
                digit.sent += 1;
                if let Some(pt) = self.config.telephone_event {
                    // The event's packets all carry its start timestamp (RFC 4733 §2.3.1);
                    // the stream end moves on with the audio clock.
                    self.send(pt, marker, start, &event.to_bytes(), 0);
                    self.last_sent_end = Some(timestamp.wrapping_add(FRAME_SAMPLES as u32));
                }
                return;
            }
            if digit.sent < digit.events.len() + digit.tone.len().div_ceil(FRAME_SAMPLES) {
                let from = (digit.sent - digit.events.len()) * FRAME_SAMPLES;
                let to = (from + FRAME_SAMPLES).min(digit.tone.len());
                self.pcm.clear();
                self.pcm.extend_from_slice(&digit.tone[from..to]);
                self.pcm.resize(FRAME_SAMPLES, 0);
                digit.sent += 1;
                self.send_pcm_frame(timestamp);
                return;
            }
            digit.pause_frames -= 1;
            if digit.pause_frames == 0 {
                self.digits_out.pop_front();
            }
            self.feed_changed = true;
            return;
        }
        self.pcm.resize(FRAME_SAMPLES, 0);
        let finished = match &mut self.source {
            Source::Playing { id, playback, .. } => {
                playback.fill(&mut self.pcm);
                playback.is_finished().then_some(*id)
            }
            Source::Music(playback) => {
                playback.fill(&mut self.pcm);
                None
            }
            Source::Idle | Source::Bridged => return,
        };
        self.send_pcm_frame(timestamp);
        if let Some(id) = finished {
            self.source = Source::Idle;
            self.feed_changed = true;
            self.actions.push_back(MediaAction::PlaybackFinished {
                id,
                interrupted: false,
            });
        }
    }

    fn send_pcm_frame(&mut self, timestamp: u32) {
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        self.config.codec.encode(&self.pcm, &mut encoded);
        if self.recording.is_some() {
            let pcm = std::mem::take(&mut self.pcm);
            self.record_sent(timestamp, &pcm);
            self.pcm = pcm;
        }
        let marker = std::mem::take(&mut self.feed_changed);
        self.send(
            self.config.payload_type,
            marker,
            timestamp,
            &encoded,
            FRAME_SAMPLES as u32,
        );
        self.encoded = encoded;
    }

    /// Stamps and queues one packet. On hold (no send direction) or with no address
    /// yet, the clock and continuity still advance but nothing goes out, so
    /// resuming needs no special case.
    fn send(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
        samples: u32,
    ) {
        self.feed_changed = false;
        if samples > 0 {
            self.last_sent_end = Some(timestamp.wrapping_add(samples));
        }
        if !self.config.direction.has_send() {
            return;
        }
        let Some(destination) = self.destination() else {
            return;
        };
        let payload = self.stream.packet(payload_type, marker, timestamp, payload);
        self.transmits.push_back(Transmit {
            destination,
            payload,
            rtcp: false,
        });
    }

    /// Received audio in sequence order: into the tone detector and the recording.
    fn consume_received(&mut self, held: HeldAudio) {
        self.pcm.clear();
        held.codec.decode(&held.payload, &mut self.pcm);
        if let Some(detector) = self.tone_detector.as_mut() {
            detector.feed(&self.pcm);
            // At most one digit per 20 ms frame: a block is 25.6 ms.
            if let Some(digit) = detector.poll_digit() {
                self.digit(digit, DtmfMethod::InBand);
            }
        }
        if let Some(detector) = self.machine_detector.as_mut() {
            let verdict = self
                .pcm
                .chunks(amd::FRAME)
                .find_map(|frame| detector.push(frame));
            if let Some(v) = verdict {
                self.machine_detector = None;
                self.actions.push_back(MediaAction::MachineDetection(v));
            }
        }
        if let Some(rec) = self.recording.as_mut() {
            if held.arrival < rec.started {
                // Said before the recording started (it waited in the reorder buffer):
                // not part of it, and no anchor for what follows.
                return;
            }
            let position = match rec.receive_anchor {
                Some((ssrc, ts, pos))
                    if ssrc == held.ssrc
                        && (held.timestamp.wrapping_sub(ts) as i32 as i64).abs()
                            < recording::MAX_AHEAD_SAMPLES as i64 =>
                {
                    (pos as i64 + held.timestamp.wrapping_sub(ts) as i32 as i64).max(0) as u64
                }
                _ => {
                    rec.receive_anchor = Some((held.ssrc, held.timestamp, held.arrival));
                    held.arrival
                }
            };
            rec.mixer
                .add(recording::Side::Received, position, &self.pcm);
        }
    }

    /// Our side goes into the mix at its RTP timestamp, which is our timeline.
    fn record_sent(&mut self, timestamp: u32, pcm: &[i16]) {
        let relative = timestamp.wrapping_sub(self.config.initial_timestamp) as u64;
        if let Some(rec) = self.recording.as_mut() {
            rec.mixer.add(recording::Side::Sent, relative, pcm);
        }
    }

    /// Hands finished recording samples to `poll_recording`. While running, audio
    /// is held back [`RECORDING_DELAY_SAMPLES`] for late packets; on stop, the reorder
    /// buffer is flushed and everything up to now is released.
    fn release_recording(&mut self, now: Instant, stop: bool) {
        if self.recording.is_none() {
            return;
        }
        if stop {
            while let Some((_, held)) = self.reorder.drain() {
                self.consume_received(held);
            }
        }
        let position = self.position(now);
        let Some(rec) = self.recording.as_mut() else {
            return;
        };
        let upto = if stop {
            // What the remote said just before the stop was placed a packet (plus
            // jitter) past now: keep it, up to the hold-back window.
            rec.mixer
                .placed_end()
                .clamp(position, position + RECORDING_DELAY_SAMPLES)
        } else {
            position.saturating_sub(RECORDING_DELAY_SAMPLES)
        };
        if upto > rec.mixer.released() {
            let from = self.recorded.len();
            rec.mixer.release(upto, &mut self.recorded);
            if let Some(detector) = rec.silence.as_mut()
                && !stop
                && detector.feed(&self.recorded[from..])
            {
                let lasted =
                    Duration::from_millis(detector.quiet_samples * 1000 / u64::from(SAMPLE_RATE));
                self.actions.push_back(MediaAction::Silence { lasted });
            }
        }
        if stop {
            self.recording = None;
        }
    }

    /// The dead-media timeout that applies now: the normal one when the remote is
    /// supposed to send, the hold one (usually none) when it is not.
    fn expects_media(&self) -> Option<Duration> {
        if self.config.direction.has_recv() {
            Some(self.config.media_timeout)
        } else {
            self.config.hold_timeout
        }
    }

    fn media_deadline(&self) -> Option<Instant> {
        if self.timed_out {
            return None;
        }
        Some(self.last_activity + self.expects_media()?)
    }

    /// Wall-clock NTP time at `now`, if the driver gave us a reference.
    fn ntp_at(&self, now: Instant) -> Option<u64> {
        let (at, ntp) = self.config.wallclock?;
        let since = now.saturating_duration_since(at);
        // NTP is 32.32 fixed point seconds.
        Some(ntp.wrapping_add(((since.as_nanos() << 32) / 1_000_000_000) as u64))
    }

    /// Queues our SR/RR + SDES every `rtcp_interval`, to where the remote's RTCP
    /// comes from, else to its RTP address + 1 (RFC 3550 section 11).
    fn send_report_if_due(&mut self, now: Instant) {
        let (Some(due), Some(interval)) = (self.next_report, self.config.rtcp_interval) else {
            return;
        };
        if now < due {
            return;
        }
        self.next_report = Some(now + interval);
        let Some(destination) = self.rtcp_remote.or_else(|| {
            self.destination()
                .map(|d| SocketAddr::new(d.ip(), d.port().wrapping_add(1)))
        }) else {
            return;
        };
        let mut report = self.receiver.report();
        if let (Some(block), Some((lsr, arrived))) = (report.as_mut(), self.last_sr) {
            block.last_sr = lsr;
            block.delay_since_last_sr =
                ((now.saturating_duration_since(arrived).as_micros() << 16) / 1_000_000) as u32;
        }
        let sent = self.stream.packets_sent();
        let sender = match (self.ntp_at(now), sent > self.sent_at_last_report) {
            (Some(ntp), true) => Some(SenderInfo {
                ntp,
                rtp_timestamp: self.clock_timestamp(now),
                packets: sent as u32,
                octets: self.stream.octets_sent() as u32,
            }),
            _ => None,
        };
        self.sent_at_last_report = sent;
        let payload = rtcp::build(self.stream.ssrc(), sender, report, &self.config.cname);
        self.transmits.push_back(Transmit {
            destination,
            payload,
            rtcp: true,
        });
    }

    /// Fires [`MediaAction::MediaTimeout`] once; the B2BUA hangs up with that reason.
    fn check_media_timeout(&mut self, now: Instant) {
        if self
            .media_deadline()
            .is_some_and(|deadline| now >= deadline)
        {
            self.timed_out = true;
            self.actions.push_back(MediaAction::MediaTimeout {
                silent_for: now - self.last_activity,
            });
        }
    }
}

#[cfg(test)]
mod tests;
