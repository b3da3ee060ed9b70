//! RTP (RFC 3550) for one call leg: packets, the outgoing stream and the receiver.
//!
//! Owns the wire format, sequence/timestamp/SSRC continuity of what we send, source
//! validation of what we receive (RFC 3550 appendix A.1), loss and interarrival
//! jitter (appendix A.8) and symmetric-RTP latching. Does not own sockets, codecs or
//! timing of frames (that is [`super::session`]).
//!
//! Receiver latching (symmetric RTP, for agents and phones behind NAT):
//!
//! ```text
//!            valid packet from A            MIN_SEQUENTIAL in-order packets from A
//!  Unlatched --------------------> Probation(A) --------------------------> Latched(A)
//!      ^                             |  out of order: restart probation        |
//!      |                             |  packet from B: probation moves to B    |
//!      +----------- relatch() (re-INVITE with a new address) ------------------+
//!                                                      packets from B != A: ignored
//! ```
//!
//! Once latched, packets from any other address are dropped and counted, so a third
//! party cannot take over an established stream; only signalling (a re-INVITE) can
//! move it, through [`RtpReceiver::relatch`].

use core::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_rs::{RtpReader, RtpReaderError};
use thiserror::Error;

/// RTP fixed header length (RFC 3550 section 5.1).
pub const HEADER_LEN: usize = 12;

/// Why a datagram was not accepted as RTP. Network input: counted, never a panic.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RtpError {
    #[error("datagram of {0} bytes is shorter than an RTP header")]
    TooShort(usize),
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    #[error("RTP header claims {header_len} bytes but the datagram has {buffer_len}")]
    Truncated {
        header_len: usize,
        buffer_len: usize,
    },
    #[error("RTP padding length {0} is invalid")]
    BadPadding(u8),
    #[error("payload type {0} is RTCP (RFC 5761), not RTP")]
    Rtcp(u8),
}

impl From<RtpReaderError> for RtpError {
    fn from(e: RtpReaderError) -> Self {
        match e {
            RtpReaderError::BufferTooShort(n) => RtpError::TooShort(n),
            RtpReaderError::UnsupportedVersion(v) => RtpError::BadVersion(v),
            RtpReaderError::HeadersTruncated {
                header_len,
                buffer_len,
            } => RtpError::Truncated {
                header_len,
                buffer_len,
            },
            RtpReaderError::PaddingLengthInvalid(p) => RtpError::BadPadding(p),
        }
    }
}

/// A parsed RTP packet borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Marker bit: the first packet of a talkspurt or of a new feed (RFC 3551 §4.1).
    pub marker: bool,
    /// 7-bit payload type.
    pub payload_type: u8,
    /// Sequence number, +1 per packet, wrapping.
    pub sequence: u16,
    /// Sampling instant of the first sample, in clock-rate units.
    pub timestamp: u32,
    /// Synchronisation source: identifies the stream.
    pub ssrc: u32,
    /// Payload without header, CSRCs, extension or padding.
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Parses a datagram. Any malformed input is an [`RtpError`].
    pub fn parse(datagram: &'a [u8]) -> Result<Self, RtpError> {
        let reader = RtpReader::new(datagram)?;
        let pt = reader.payload_type();
        // RTCP multiplexed on the RTP port (RFC 5761 section 4): PT 72..=76 with the
        // marker bit are RTCP packet types 200..=204.
        if (72..=76).contains(&pt) {
            return Err(RtpError::Rtcp(pt));
        }
        Ok(RtpPacket {
            marker: reader.mark(),
            payload_type: pt,
            sequence: reader.sequence_number().into(),
            timestamp: reader.timestamp(),
            ssrc: reader.ssrc(),
            payload: reader.payload(),
        })
    }

    /// Appends the packet's wire form (no CSRCs, extension or padding) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.reserve(HEADER_LEN + self.payload.len());
        out.push(0x80);
        out.push(((self.marker as u8) << 7) | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// What we send on one leg: one SSRC, one sequence space, one timestamp space, for
/// the whole call, whatever feeds it (prompt, bridged peer, hold music). A change of
/// feed sets the marker bit (RFC 3551 section 4.1) instead of resetting anything, so
/// the far end's jitter buffer sees one continuous stream.
#[derive(Debug, Clone)]
pub struct OutgoingStream {
    ssrc: u32,
    next_sequence: u16,
    packets_sent: u64,
    octets_sent: u64,
}

impl OutgoingStream {
    /// `ssrc` and `initial_sequence` should be random (RFC 3550 section 5.1); the
    /// driver draws them, the core has no RNG.
    pub fn new(ssrc: u32, initial_sequence: u16) -> Self {
        OutgoingStream {
            ssrc,
            next_sequence: initial_sequence,
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    /// Our SSRC for this leg.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Builds the next packet into a new buffer, consuming one sequence number.
    pub fn packet(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let packet = RtpPacket {
            marker,
            payload_type,
            sequence: self.next_sequence,
            timestamp,
            ssrc: self.ssrc,
            payload,
        };
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.packets_sent += 1;
        self.octets_sent += payload.len() as u64;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        packet.write(&mut out);
        out
    }

    /// RTP packets sent (for the CDR and RTCP SR).
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Payload octets sent (RTCP SR definition: headers excluded).
    pub fn octets_sent(&self) -> u64 {
        self.octets_sent
    }
}

/// RFC 3550 appendix A.1 constants.
pub const MAX_DROPOUT: u16 = 3000;
/// Sequence numbers this far behind the highest are treated as reordered, not a restart.
pub const MAX_MISORDER: u16 = 100;
/// Packets in sequence before a new source is believed (A.1 uses 2).
pub const MIN_SEQUENTIAL: u32 = 2;
const RTP_SEQ_MOD: u32 = 1 << 16;

/// Per-source sequence state, RFC 3550 appendix A.1 `source` struct.
#[derive(Debug, Clone)]
struct SourceSequence {
    max_seq: u16,
    /// Wrap count times 2^16; u64 so no packet count can overflow it.
    cycles: u64,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u64,
}

impl SourceSequence {
    fn new(seq: u16) -> Self {
        // A.1: init_seq(), then max_seq = seq - 1 so this very packet counts as the
        // first of the MIN_SEQUENTIAL in a row.
        let mut s = SourceSequence {
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            probation: MIN_SEQUENTIAL,
            received: 0,
        };
        s.init(seq);
        s.max_seq = seq.wrapping_sub(1);
        s
    }

    fn init(&mut self, seq: u16) {
        self.base_seq = seq as u32;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
    }

    /// `update_seq` from A.1: true if the packet counts as valid.
    fn update(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += RTP_SEQ_MOD as u64;
            }
            self.max_seq = seq;
        } else if udelta as u32 <= RTP_SEQ_MOD - MAX_MISORDER as u32 {
            // A very large jump: the source restarted, or it is garbage. Believe it
            // only if the next packet follows it.
            if seq as u32 == self.bad_seq {
                self.init(seq);
            } else {
                self.bad_seq = (seq as u32 + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // else: duplicate or reordered packet, counted below.
        self.received += 1;
        true
    }

    fn extended_max(&self) -> u64 {
        self.cycles + self.max_seq as u64
    }

    /// Extended sequence number of `seq`, assumed close to the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let max = self.extended_max() as i64;
        let delta = seq.wrapping_sub(self.max_seq) as i16 as i64;
        (max + delta).max(0) as u64
    }

    /// Packets expected since the base (A.3). Signed: during probation or after a
    /// restart the maximum can sit below the base, and network input must not panic.
    fn expected(&self) -> i64 {
        self.extended_max() as i64 + 1 - self.base_seq as i64
    }
}

/// Quality figures for one leg, for the CDR (RFC 3550 section 6.4.1 definitions).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamQuality {
    /// Valid packets from the latched source.
    pub packets_received: u64,
    /// Cumulative number of packets lost; negative with duplicates, as in RFC 3550.
    pub packets_lost: i64,
    /// Interarrival jitter in milliseconds (A.8 estimator).
    pub jitter_ms: f64,
    /// RTP packets we sent.
    pub packets_sent: u64,
    /// Payload octets we sent.
    pub octets_sent: u64,
    /// Datagrams dropped: malformed, from a foreign address, or failing validation.
    pub packets_rejected: u64,
    /// Tick-driven frames sent more than 5 ms after their due time.
    pub late_frames: u64,
    /// The remote's view of our stream from its last RTCP report: loss in the
    /// last interval (0.0-1.0), its jitter measure, and the round trip (needs SR).
    pub remote_fraction_lost: Option<f64>,
    pub remote_jitter_ms: Option<f64>,
    pub round_trip_ms: Option<f64>,
}

/// Where the receiver's latch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latch {
    Unlatched,
    Probation { from: SocketAddr, ssrc: u32 },
    Latched { from: SocketAddr, ssrc: u32 },
}

/// An accepted packet, with its extended sequence number for reordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// The packet itself.
    pub packet: RtpPacket<'a>,
    /// Sequence number extended with the wrap count, for reordering.
    pub extended_sequence: u64,
    /// True for the packet that completed probation and latched the source.
    pub newly_latched: bool,
}

/// The receiving half of a leg: validation, latching, loss and jitter.
#[derive(Debug, Clone)]
pub struct RtpReceiver {
    latch: Latch,
    source: Option<SourceSequence>,
    /// Stats of earlier SSRCs from the same address, kept for the CDR.
    carried_received: u64,
    carried_lost: i64,
    clock_rate: u32,
    epoch: Instant,
    last_transit: Option<i64>,
    /// Jitter in timestamp units, scaled by 16 as in A.8.
    jitter_q4: u64,
    rejected: u64,
    last_valid: Option<Instant>,
    /// Expected/received at the previous reception report (A.3 interval loss).
    expected_prior: i64,
    received_prior: u64,
}

impl RtpReceiver {
    /// A receiver with no source yet; `clock_rate` converts arrival times for jitter.
    pub fn new(now: Instant, clock_rate: u32) -> Self {
        RtpReceiver {
            latch: Latch::Unlatched,
            source: None,
            carried_received: 0,
            carried_lost: 0,
            clock_rate,
            epoch: now,
            last_transit: None,
            jitter_q4: 0,
            rejected: 0,
            last_valid: None,
            expected_prior: 0,
            received_prior: 0,
        }
    }

    /// Current latch state.
    pub fn latch(&self) -> Latch {
        self.latch
    }

    /// The address we send to if latched.
    pub fn latched_address(&self) -> Option<SocketAddr> {
        match self.latch {
            Latch::Latched { from, .. } => Some(from),
            _ => None,
        }
    }

    /// When the latched source last sent a valid packet.
    pub fn last_valid(&self) -> Option<Instant> {
        self.last_valid
    }

    /// Signalling moved the peer (re-INVITE): forget the latch, keep the statistics.
    pub fn relatch(&mut self) {
        self.carry_source();
        self.latch = Latch::Unlatched;
    }

    /// Counts a datagram that was dropped before reaching the receiver (malformed).
    pub fn count_rejected(&mut self) {
        self.rejected += 1;
    }

    fn carry_source(&mut self) {
        // A source still on probation has delivered nothing: nothing to carry.
        if let Some(s) = self.source.take().filter(|s| s.probation == 0) {
            self.carried_received += s.received;
            self.carried_lost += s.expected() - s.received as i64;
        }
        self.last_transit = None;
        self.expected_prior = 0;
        self.received_prior = 0;
    }

    /// Validates a packet from `from`. `None` means dropped (and counted).
    pub fn receive<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: RtpPacket<'a>,
    ) -> Option<Accepted<'a>> {
        let mut newly_latched = false;
        match self.latch {
            Latch::Latched { from: addr, ssrc } if addr == from => {
                if ssrc != packet.ssrc {
                    // Same peer, new SSRC (its PBX switched source): a new A.1 source,
                    // on probation, but the address stays trusted.
                    self.carry_source();
                    self.source = Some(SourceSequence::new(packet.sequence));
                    self.latch = Latch::Latched {
                        from,
                        ssrc: packet.ssrc,
                    };
                }
            }
            Latch::Latched { .. } => {
                self.rejected += 1;
                return None;
            }
            Latch::Probation { from: addr, ssrc } if addr == from && ssrc == packet.ssrc => {}
            Latch::Probation { .. } | Latch::Unlatched => {
                self.source = Some(SourceSequence::new(packet.sequence));
                self.latch = Latch::Probation {
                    from,
                    ssrc: packet.ssrc,
                };
                self.last_transit = None;
            }
        }
        let source = self.source.as_mut()?;
        let was_probation = source.probation > 0;
        if !source.update(packet.sequence) {
            self.rejected += 1;
            return None;
        }
        if let (true, Latch::Probation { from, ssrc }) = (was_probation, self.latch) {
            self.latch = Latch::Latched { from, ssrc };
            newly_latched = true;
        }
        let extended_sequence = source.extend(packet.sequence);
        self.update_jitter(now, packet.timestamp);
        self.last_valid = Some(now);
        Some(Accepted {
            packet,
            extended_sequence,
            newly_latched,
        })
    }

    /// RFC 3550 appendix A.8 interarrival jitter, in integer arithmetic.
    fn update_jitter(&mut self, now: Instant, timestamp: u32) {
        let elapsed = now.saturating_duration_since(self.epoch);
        let arrival = (elapsed.as_micros() as u64 * self.clock_rate as u64 / 1_000_000) as i64;
        // Both are modulo 2^32 in the RFC; wrapping i32 keeps the difference right.
        let transit = (arrival as u32).wrapping_sub(timestamp) as i32 as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            // J += (|D| - J) / 16, with J kept scaled by 16.
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// A reception report block about the latched source (RFC 3550 A.3), without
    /// the LSR/DLSR fields, which the session fills in. Starts a new loss interval.
    pub fn report(&mut self) -> Option<super::rtcp::ReportBlock> {
        let Latch::Latched { ssrc, .. } = self.latch else {
            return None;
        };
        let source = self.source.as_ref().filter(|s| s.probation == 0)?;
        let expected = source.expected();
        let received = source.received;
        let expected_interval = expected - self.expected_prior;
        let received_interval = received as i64 - self.received_prior as i64;
        let lost_interval = expected_interval - received_interval;
        self.expected_prior = expected;
        self.received_prior = received;
        let fraction_lost = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        Some(super::rtcp::ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: (expected - received as i64).clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_sequence: source.extended_max() as u32,
            jitter: self.jitter(),
            last_sr: 0,
            delay_since_last_sr: 0,
        })
    }

    /// Jitter in timestamp units (as reported in an RTCP RR).
    pub fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4) as u32
    }

    /// Jitter as a duration (for the CDR).
    pub fn jitter_duration(&self) -> Duration {
        Duration::from_secs_f64((self.jitter_q4 as f64 / 16.0) / self.clock_rate as f64)
    }

    /// Valid packets received over the whole call, all SSRCs.
    pub fn packets_received(&self) -> u64 {
        self.carried_received + self.source.as_ref().map_or(0, |s| s.received)
    }

    /// Cumulative lost packets (A.3): expected minus received.
    pub fn packets_lost(&self) -> i64 {
        self.carried_lost
            + self
                .source
                .as_ref()
                .filter(|s| s.probation == 0)
                .map_or(0, |s| s.expected() - s.received as i64)
    }

    /// Datagrams dropped: malformed, foreign address, or not (yet) valid.
    pub fn packets_rejected(&self) -> u64 {
        self.rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn datagram(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RtpPacket {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc,
            payload: &[0xFF; 160],
        }
        .write(&mut out);
        out
    }

    #[test]
    fn parse_and_write_round_trip() {
        let payload = [1u8, 2, 3];
        let p = RtpPacket {
            marker: true,
            payload_type: 101,
            sequence: 65535,
            timestamp: 0xDEADBEEF,
            ssrc: 42,
            payload: &payload,
        };
        let mut out = Vec::new();
        p.write(&mut out);
        assert_eq!(out.len(), 15);
        assert_eq!(RtpPacket::parse(&out).unwrap(), p);
    }

    #[test]
    fn malformed_datagrams_are_errors() {
        assert_eq!(RtpPacket::parse(&[]), Err(RtpError::TooShort(0)));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
        // CSRC count 15 with no CSRCs present.
        let mut d = datagram(1, 1, 1);
        d.truncate(12);
        d[0] = 0x8F;
        assert!(matches!(
            RtpPacket::parse(&d),
            Err(RtpError::Truncated { .. })
        ));
        // Padding flag with a padding length longer than the packet.
        let mut d = datagram(1, 1, 1);
        d[0] |= 0x20;
        *d.last_mut().unwrap() = 255;
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::BadPadding(255)));
        // Padding length zero.
        *d.last_mut().unwrap() = 0;
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::BadPadding(0)));
        // Multiplexed RTCP receiver report.
        let mut d = datagram(1, 1, 1);
        d[1] = 201;
        assert_eq!(RtpPacket::parse(&d), Err(RtpError::Rtcp(73)));
    }

    #[test]
    fn outgoing_stream_keeps_sequence_across_feeds() {
        let mut s = OutgoingStream::new(7, 65534);
        let a = s.packet(0, false, 100, &[0; 160]);
        let b = s.packet(0, true, 260, &[0; 160]);
        let c = s.packet(8, false, 420, &[0; 160]);
        let seqs: Vec<u16> = [&a, &b, &c]
            .iter()
            .map(|d| RtpPacket::parse(d).unwrap().sequence)
            .collect();
        assert_eq!(seqs, vec![65534, 65535, 0]);
        assert!(RtpPacket::parse(&b).unwrap().marker);
        assert!(
            [&a, &b, &c]
                .iter()
                .all(|d| RtpPacket::parse(d).unwrap().ssrc == 7)
        );
        assert_eq!(s.packets_sent(), 3);
        assert_eq!(s.octets_sent(), 480);
    }

    fn feed(
        rx: &mut RtpReceiver,
        now: Instant,
        from: SocketAddr,
        seq: u16,
        ts: u32,
        ssrc: u32,
    ) -> bool {
        let d = datagram(seq, ts, ssrc);
        rx.receive(now, from, RtpPacket::parse(&d).unwrap())
            .is_some()
    }

    #[test]
    fn probation_then_latch() {
        let t0 = crate::media::test_epoch();
        let mut rx = RtpReceiver::new(t0, 8000);
        // First packet only starts probation (A.1: MIN_SEQUENTIAL = 2).
        assert!(!feed(&mut rx, t0, addr(1000), 10, 0, 5));
        assert!(matches!(rx.latch(), Latch::Probation { .. }));
        assert!(feed(&mut rx, t0, addr(1000), 11, 160, 5));
        assert_eq!(rx.latched_address(), Some(addr(1000)));
        assert_eq!(rx.packets_received(), 1);
    }

    #[test]
    fn a_third_address_cannot_take_over() {
        let t0 = crate::media::test_epoch();
        let mut rx = RtpReceiver::new(t0, 8000);
        for i in 0..5 {
            feed(&mut rx, t0, addr(1000), i, i as u32 * 160, 5);
        }
        for i in 0..50 {
            assert!(!feed(&mut rx, t0, addr(6666), 100 + i, 0, 99));
        }
        assert_eq!(rx.latched_address(), Some(addr(1000)));
        assert_eq!(rx.packets_rejected(), 51);
        // Signalling can move it.
        rx.relatch();
        assert!(!feed(&mut rx, t0, addr(2000), 1, 0, 8));
        assert!(feed(&mut rx, t0, addr(2000), 2, 160, 8));
        assert_eq!(rx.latched_address(), Some(addr(2000)));
    }

    #[test]
    fn interleaved_sources_never_pass_probation() {
        let t0 = crate::media::test_epoch();
        let mut rx = RtpReceiver::new(t0, 8000);
        for i in 0..20u16 {
            let from = if i % 2 == 0 { addr(1) } else { addr(2) };
            assert!(!feed(&mut rx, t0, from, i, 0, i as u32 % 2));
        }
        assert_eq!(rx.latched_address(), None);
    }

    #[test]
    fn loss_counts_gaps_and_wraps() {
        let t0 = crate::media::test_epoch();
        let mut rx = RtpReceiver::new(t0, 8000);
        let seqs: Vec<u16> = (65530..=65535)
            .chain(0..10)
            .filter(|s| *s != 65534 && *s != 3)
            .collect();
        for s in seqs {
            feed(&mut rx, t0, addr(1), s, 0, 1);
        }
        // Probation swallowed the first packet; from 65531 on, two are missing.
        assert_eq!(rx.packets_lost(), 2);
        assert_eq!(rx.packets_received(), 13);
    }

    #[test]
    fn jitter_follows_a8() {
        let t0 = crate::media::test_epoch();
        let mut rx = RtpReceiver::new(t0, 8000);
        // Perfectly paced: zero jitter.
        for i in 0..50u32 {
            feed(
                &mut rx,
                t0 + Duration::from_millis(20 * i as u64),
                addr(1),
                i as u16,
                i * 160,
                1,
            );
        }
        assert_eq!(rx.jitter(), 0);
        // Every other packet 10 ms late: |D| = 80 units every packet, J converges to 80.
        for i in 50..400u32 {
            let skew = if i % 2 == 0 { 10 } else { 0 };
            feed(
                &mut rx,
                t0 + Duration::from_millis(20 * i as u64 + skew),
                addr(1),
                i as u16,
                i * 160,
                1,
            );
        }
        assert!((75..=80).contains(&rx.jitter()), "jitter {}", rx.jitter());
        assert!((rx.jitter_duration().as_secs_f64() * 1000.0 - 10.0).abs() < 1.0);
    }

    /// Regression (found by the session property test): an SSRC whose probation
    /// restarted below its base sequence underflowed when carried over.
    #[test]
    fn ssrc_churn_during_probation_does_not_panic() {
        let t0 = crate::media::test_epoch();
        let mut rx = RtpReceiver::new(t0, 8000);
        for (seq, ssrc) in [(43065, 0), (43066, 0), (29403, 2), (0, 2), (0, 0)] {
            feed(&mut rx, t0, addr(1), seq, 0, ssrc);
        }
        assert_eq!(rx.packets_received(), 1);
        assert!(rx.packets_lost() >= 0);
    }

    #[test]
    fn reception_report_fraction_lost_per_interval() {
        let t0 = crate::media::test_epoch();
        let mut rx = RtpReceiver::new(t0, 8000);
        assert!(rx.report().is_none());
        // 0..=101 with every 4th packet missing after the first two.
        for s in 0..=101u16 {
            if s < 2 || s % 4 != 0 {
                feed(&mut rx, t0, addr(1), s, 0, 3);
            }
        }
        let r = rx.report().unwrap();
        assert_eq!((r.ssrc, r.highest_sequence), (3, 101));
        // Probation made 1 the base: 101 expected, 4, 8, ... 100 lost.
        assert_eq!(r.cumulative_lost, 25);
        assert_eq!(r.fraction_lost, (25 * 256 / 101) as u8);
        // A clean interval next.
        for s in 102..=150u16 {
            feed(&mut rx, t0, addr(1), s, 0, 3);
        }
        let r = rx.report().unwrap();
        assert_eq!((r.fraction_lost, r.cumulative_lost), (0, 25));
    }

    #[test]
    fn big_jump_needs_two_packets() {
        let t0 = crate::media::test_epoch();
        let mut rx = RtpReceiver::new(t0, 8000);
        for i in 0..5 {
            feed(&mut rx, t0, addr(1), i, 0, 1);
        }
        assert!(!feed(&mut rx, t0, addr(1), 30_000, 0, 1));
        assert!(feed(&mut rx, t0, addr(1), 30_001, 0, 1));
    }
}
