//! DTMF: RFC 4733 telephone-events and in-band (Goertzel) detection.
//!
//! Owns the 4-byte event payload, the rule that one key press is one digit however
//! many retransmitted end packets arrive, the packet sequence we send for a digit,
//! and the tone detector for trunks that send DTMF as audio. Does not own RTP headers
//! or pacing: [`super::session`] stamps and times the packets.
//!
//! Receiver, per RFC 4733 section 2.5.1.3 (a new event is a new RTP timestamp):
//!
//! ```text
//!   packet (ts, event) == last reported? --yes--> ignore (update, end, retransmit)
//!            | no
//!            v
//!   report digit once, remember (ts, event)
//! ```

use std::collections::VecDeque;

use thiserror::Error;

/// Payload of one RFC 4733 telephone-event (section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9, 10 = `*`, 11 = `#`, 12-15 = A-D (section 3.2).
    pub event: u8,
    /// The E bit: this is (a retransmission of) the final packet of the event.
    pub end: bool,
    /// Power level in -dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far, in timestamp units (8 kHz samples).
    pub duration: u16,
}

/// Errors from DTMF payloads and digit text.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DtmfError {
    #[error("telephone-event payload of {0} bytes is shorter than 4")]
    TooShort(usize),
    #[error("{0:?} is not a DTMF digit")]
    NotADigit(char),
}

impl TelephoneEvent {
    /// Size of one event block on the wire.
    pub const LEN: usize = 4;

    /// Parses the first event of a payload (redundant events after it are ignored).
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        let &[event, flags, d0, d1, ..] = payload else {
            return Err(DtmfError::TooShort(payload.len()));
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The 4-byte wire form.
    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            ((self.end as u8) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }

    /// The digit this event stands for, if it is a DTMF event.
    pub fn digit(self) -> Option<char> {
        event_digit(self.event)
    }
}

const DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// RFC 4733 section 3.2 event code to digit.
pub fn event_digit(event: u8) -> Option<char> {
    DIGITS.get(event as usize).copied()
}

/// Digit to RFC 4733 event code; lower-case a-d accepted.
pub fn digit_event(digit: char) -> Result<u8, DtmfError> {
    let up = digit.to_ascii_uppercase();
    DIGITS
        .iter()
        .position(|&d| d == up)
        .map(|p| p as u8)
        .ok_or(DtmfError::NotADigit(digit))
}

/// Reports each RFC 4733 event exactly once.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    last: Option<(u32, u8)>,
}

impl DtmfReceiver {
    /// Feeds one telephone-event packet (its RTP timestamp and payload). Returns the
    /// digit the first time an event is seen, whichever of its packets arrives first.
    pub fn receive(&mut self, rtp_timestamp: u32, event: TelephoneEvent) -> Option<char> {
        let key = (rtp_timestamp, event.event);
        if self.last == Some(key) {
            return None;
        }
        let digit = event.digit()?;
        self.last = Some(key);
        Some(digit)
    }
}

/// Default tone length we send: 100 ms, comfortably above the 40 ms minimum that
/// ITU-T Q.24 receivers need and short enough for fast IVR navigation.
pub const DEFAULT_DIGIT_DURATION: u16 = 800;
/// Default volume: 10 dBm0 below overload, what most phones send.
pub const DEFAULT_VOLUME: u8 = 10;
/// End packets sent per event (RFC 4733 section 2.5.1.4 recommends three).
pub const END_PACKETS: usize = 3;

/// The packets for one digit: `(payload, marker)` in sending order, one per frame.
/// All share the RTP timestamp of the event start, which the caller stamps.
pub fn event_packets(
    event: u8,
    duration: u16,
    volume: u8,
    frame_samples: u16,
) -> Vec<(TelephoneEvent, bool)> {
    let frame = frame_samples.max(1);
    let mut out = Vec::new();
    let mut elapsed = frame;
    while elapsed < duration {
        let marker = out.is_empty();
        out.push((
            TelephoneEvent {
                event,
                end: false,
                volume,
                duration: elapsed,
            },
            marker,
        ));
        elapsed = elapsed.saturating_add(frame);
    }
    let end = TelephoneEvent {
        event,
        end: true,
        volume,
        duration,
    };
    for _ in 0..END_PACKETS {
        let marker = out.is_empty();
        out.push((end, marker));
    }
    out
}

/// Goertzel block: 205 samples at 8 kHz (25.6 ms), the classic choice whose bins sit
/// close to all eight DTMF frequencies.
pub const BLOCK: usize = 205;
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Minimum per-tone mean power (amplitude^2 / 2): an amplitude of 300 of 32767,
/// about -36 dBm0, below what any trunk sends for a real key press.
const MIN_TONE_POWER: f32 = 300.0 * 300.0 / 2.0;
/// Normal twist (column tone weaker than row) up to 8 dB, reverse twist up to 4 dB
/// (ITU-T Q.24 / common receiver practice).
const MAX_NORMAL_TWIST: f32 = 6.31;
const MAX_REVERSE_TWIST: f32 = 2.51;
/// The strongest tone of a group must beat the others of that group by 6 dB.
const RELATIVE_PEAK: f32 = 4.0;
/// Row and column must carry this share of the block's energy: speech does not.
const MIN_TONE_SHARE: f32 = 0.6;

/// In-band DTMF detector for 8 kHz linear PCM. One digit per key press: a digit is
/// reported when two consecutive blocks agree on it, and the press ends when two
/// consecutive blocks agree on silence (or another digit).
#[derive(Debug, Clone)]
pub struct ToneDetector {
    coeffs: [f32; 8],
    block: Vec<f32>,
    last_block: Option<char>,
    confirmed: Option<char>,
    digits: VecDeque<char>,
}

impl Default for ToneDetector {
    fn default() -> Self {
        let mut coeffs = [0.0; 8];
        for (c, f) in coeffs.iter_mut().zip(ROWS.iter().chain(COLS.iter())) {
            *c = 2.0 * (2.0 * std::f32::consts::PI * f / 8000.0).cos();
        }
        ToneDetector {
            coeffs,
            block: Vec::with_capacity(BLOCK),
            last_block: None,
            confirmed: None,
            digits: VecDeque::new(),
        }
    }
}

impl ToneDetector {
    /// A detector with no tone in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds audio of any length; detected digits queue for [`Self::poll_digit`].
    pub fn feed(&mut self, samples: &[i16]) {
        for &s in samples {
            self.block.push(s as f32);
            if self.block.len() == BLOCK {
                let digit = self.classify();
                self.block.clear();
                if digit == self.last_block && digit != self.confirmed {
                    self.confirmed = digit;
                    if let Some(d) = digit {
                        self.digits.push_back(d);
                    }
                }
                self.last_block = digit;
            }
        }
    }

    /// The next detected digit, once per key press.
    pub fn poll_digit(&mut self) -> Option<char> {
        self.digits.pop_front()
    }

    /// The digit one block holds, if it passes energy, twist and peak checks.
    fn classify(&self) -> Option<char> {
        let n = BLOCK as f32;
        // Eight partial sums so the sum vectorises (float addition is not reassociated).
        let mut lanes = [0f32; 8];
        for chunk in self.block.chunks(8) {
            for (lane, x) in lanes.iter_mut().zip(chunk) {
                *lane += x * x;
            }
        }
        let energy = lanes.iter().sum::<f32>() / n;
        if energy < MIN_TONE_POWER {
            return None;
        }
        // All eight filters advance together: independent lanes the compiler can
        // vectorise, instead of eight serial dependency chains (about 10x faster).
        let (mut s1, mut s2) = ([0f32; 8], [0f32; 8]);
        for &x in &self.block {
            for j in 0..8 {
                let s0 = x + self.coeffs[j] * s1[j] - s2[j];
                s2[j] = s1[j];
                s1[j] = s0;
            }
        }
        let mut power = [0f32; 8];
        for j in 0..8 {
            // Goertzel magnitude^2 scaled to the tone's mean power (A^2 / 2).
            power[j] =
                (s1[j] * s1[j] + s2[j] * s2[j] - self.coeffs[j] * s1[j] * s2[j]) * 2.0 / (n * n);
        }
        let (row, row_power) = strongest(&power[..4])?;
        let (col, col_power) = strongest(&power[4..])?;
        if row_power < MIN_TONE_POWER || col_power < MIN_TONE_POWER {
            return None;
        }
        if row_power > col_power * MAX_NORMAL_TWIST || col_power > row_power * MAX_REVERSE_TWIST {
            return None;
        }
        if row_power + col_power < MIN_TONE_SHARE * energy {
            return None;
        }
        Some(DIGITS_BY_POSITION[row][col])
    }
}

/// Index and power of the group's peak, if it stands out by [`RELATIVE_PEAK`].
fn strongest(group: &[f32]) -> Option<(usize, f32)> {
    let (best, &peak) = group.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    let others_ok = group
        .iter()
        .enumerate()
        .all(|(i, &p)| i == best || p * RELATIVE_PEAK < peak);
    others_ok.then_some((best, peak))
}

const DIGITS_BY_POSITION: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Synthesises a DTMF tone (for in-band sending and tests): `amplitude` per tone.
pub fn tone_samples(digit: char, samples: usize, amplitude: f32) -> Result<Vec<i16>, DtmfError> {
    let up = digit.to_ascii_uppercase();
    let (row, col) = DIGITS_BY_POSITION
        .iter()
        .enumerate()
        .find_map(|(r, line)| line.iter().position(|&d| d == up).map(|c| (r, c)))
        .ok_or(DtmfError::NotADigit(digit))?;
    let (fr, fc) = (ROWS[row], COLS[col]);
    Ok((0..samples)
        .map(|i| {
            let t = i as f32 / 8000.0;
            let v = amplitude
                * ((2.0 * std::f32::consts::PI * fr * t).sin()
                    + (2.0 * std::f32::consts::PI * fc * t).sin());
            v.clamp(-32768.0, 32767.0) as i16
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::Codec;

    #[test]
    fn event_payload_round_trip() {
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 1600,
        };
        assert_eq!(e.to_bytes(), [11, 0x8A, 0x06, 0x40]);
        assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Ok(e));
        assert_eq!(e.digit(), Some('#'));
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(DtmfError::TooShort(3))
        );
        assert_eq!(digit_event('d'), Ok(15));
        assert_eq!(digit_event('x'), Err(DtmfError::NotADigit('x')));
        assert_eq!(event_digit(16), None);
    }

    #[test]
    fn one_digit_per_event_whatever_arrives() {
        let mut rx = DtmfReceiver::default();
        let packets = event_packets(5, 800, 10, 160);
        let mut seen = Vec::new();
        // Every packet twice, as a lossy retransmitting gateway might.
        for (e, _) in packets.iter().chain(packets.iter()) {
            seen.extend(rx.receive(1000, *e));
        }
        assert_eq!(seen, vec!['5']);
        // Only the end packets of the next press arrive: still reported once.
        for _ in 0..3 {
            seen.extend(rx.receive(
                9000,
                TelephoneEvent {
                    event: 5,
                    end: true,
                    volume: 10,
                    duration: 800,
                },
            ));
        }
        assert_eq!(seen, vec!['5', '5']);
        // Non-DTMF events (flash = 16) are not digits.
        assert_eq!(
            rx.receive(
                20000,
                TelephoneEvent {
                    event: 16,
                    end: false,
                    volume: 0,
                    duration: 0
                }
            ),
            None
        );
    }

    #[test]
    fn sender_sequence_shape() {
        let p = event_packets(1, 800, 10, 160);
        // 4 updates (160..640) then 3 end packets at the full duration.
        assert_eq!(p.len(), 7);
        assert!(p[0].1 && p[1..].iter().all(|(_, m)| !m));
        assert_eq!(
            p.iter().map(|(e, _)| e.duration).collect::<Vec<_>>(),
            vec![160, 320, 480, 640, 800, 800, 800]
        );
        assert!(p[4..].iter().all(|(e, _)| e.end) && p[..4].iter().all(|(e, _)| !e.end));
        // A digit shorter than a frame is three end packets, the first marked.
        let short = event_packets(1, 100, 10, 160);
        assert_eq!(short.len(), 3);
        assert!(short[0].1);
    }

    fn detect(samples: &[i16]) -> Vec<char> {
        let mut d = ToneDetector::new();
        // Fed in 20 ms frames, as the session does.
        for chunk in samples.chunks(160) {
            d.feed(chunk);
        }
        std::iter::from_fn(|| d.poll_digit()).collect()
    }

    fn silence(n: usize) -> Vec<i16> {
        vec![0; n]
    }

    #[test]
    fn detects_every_digit_once() {
        for digit in DIGITS {
            let mut audio = silence(400);
            audio.extend(tone_samples(digit, 800, 4000.0).unwrap());
            audio.extend(silence(800));
            assert_eq!(detect(&audio), vec![digit], "digit {digit}");
        }
    }

    #[test]
    fn detects_through_g711_and_repeated_presses() {
        let mut audio = Vec::new();
        for digit in ['1', '1', '9', '#'] {
            audio.extend(tone_samples(digit, 640, 2000.0).unwrap());
            audio.extend(silence(480));
        }
        let mut coded = Vec::new();
        Codec::Pcmu.encode(&audio, &mut coded);
        let mut decoded = Vec::new();
        Codec::Pcmu.decode(&coded, &mut decoded);
        assert_eq!(detect(&decoded), vec!['1', '1', '9', '#']);
    }

    #[test]
    fn rejects_weak_twisted_single_and_noise() {
        // Too quiet.
        assert!(detect(&tone_samples('5', 1600, 100.0).unwrap()).is_empty());
        // One tone only (a dial tone-like 697 Hz).
        let single: Vec<i16> = (0..1600)
            .map(|i| {
                (4000.0 * (2.0 * std::f32::consts::PI * 697.0 * i as f32 / 8000.0).sin()) as i16
            })
            .collect();
        assert!(detect(&single).is_empty());
        // Column tone 12 dB below the row tone: too much twist.
        let twisted: Vec<i16> = (0..1600)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (4000.0 * (2.0 * std::f32::consts::PI * 770.0 * t).sin()
                    + 1000.0 * (2.0 * std::f32::consts::PI * 1336.0 * t).sin())
                    as i16
            })
            .collect();
        assert!(detect(&twisted).is_empty());
        // Broadband noise (a deterministic LCG).
        let mut x: u32 = 1;
        let noise: Vec<i16> = (0..8000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as i16) / 4
            })
            .collect();
        assert!(detect(&noise).is_empty());
    }

    #[test]
    fn tone_digits_reject_garbage() {
        assert_eq!(tone_samples('x', 10, 1.0), Err(DtmfError::NotADigit('x')));
    }
}
