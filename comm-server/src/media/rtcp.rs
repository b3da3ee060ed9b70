//! RTCP (RFC 3550 section 6): the reports a leg sends and the ones it reads.
//!
//! Owns the wire format of SR, RR, SDES (CNAME only) and BYE, and the NTP "short"
//! time arithmetic for round-trip time (section 6.4.1). Does not own when reports
//! go out or what the figures are: [`super::session`] decides the interval and
//! [`super::rtp::RtpReceiver`] computes loss and jitter.
//!
//! Why a B2BUA bothers: carriers and SBCs read our receiver reports for their own
//! quality monitoring, and the remote's reports about *our* stream (loss, jitter,
//! round trip) complete the CDR's picture of a call.

use thiserror::Error;

/// RTCP packet types (RFC 3550 section 12.1).
const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BYE: u8 = 203;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RtcpError {
    #[error("RTCP packet shorter than its header")]
    TooShort,
    #[error("RTCP version {0} is not 2")]
    BadVersion(u8),
    #[error("RTCP length field runs past the datagram")]
    Truncated,
    #[error("not a compound packet starting with SR or RR")]
    NotCompound,
}

/// One reception report block (section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Loss since the previous report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_sequence: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from that source.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// Sender information of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

/// What one compound packet told us.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compound {
    /// SSRC of the reporter.
    pub ssrc: u32,
    /// Present when the compound started with an SR.
    pub sender: Option<SenderInfo>,
    pub reports: Vec<ReportBlock>,
    /// The remote said BYE.
    pub bye: bool,
}

/// Middle 32 bits of a 64-bit NTP timestamp: the "NTP short" format of LSR/DLSR.
pub fn ntp_short(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// NTP timestamp (seconds since 1900 in the high word) from Unix milliseconds.
pub fn ntp_from_unix_ms(unix_ms: i64) -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let ms = unix_ms.max(0) as u64;
    let seconds = ms / 1000 + NTP_UNIX_OFFSET;
    let fraction = ((ms % 1000) << 32) / 1000;
    (seconds << 32) | fraction
}

/// Parses a compound RTCP packet. The first packet must be SR or RR (section 6.1);
/// unknown packet types inside are skipped.
pub fn parse(datagram: &[u8]) -> Result<Compound, RtcpError> {
    let mut out = Compound::default();
    let mut rest = datagram;
    let mut first = true;
    while !rest.is_empty() {
        let &[b0, pt, l0, l1, ..] = rest else {
            return Err(RtcpError::TooShort);
        };
        if b0 >> 6 != 2 {
            return Err(RtcpError::BadVersion(b0 >> 6));
        }
        let len = (u16::from_be_bytes([l0, l1]) as usize + 1) * 4;
        let packet = rest.get(..len).ok_or(RtcpError::Truncated)?;
        rest = &rest[len..];
        let count = (b0 & 0x1F) as usize;
        if first && pt != SR && pt != RR {
            return Err(RtcpError::NotCompound);
        }
        first = false;
        let word = |at: usize| {
            packet
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match pt {
            SR | RR => {
                out.ssrc = word(4).ok_or(RtcpError::Truncated)?;
                let mut at = 8;
                if pt == SR {
                    let ntp_hi = word(8).ok_or(RtcpError::Truncated)?;
                    let ntp_lo = word(12).ok_or(RtcpError::Truncated)?;
                    out.sender = Some(SenderInfo {
                        ntp: ((ntp_hi as u64) << 32) | ntp_lo as u64,
                        rtp_timestamp: word(16).ok_or(RtcpError::Truncated)?,
                        packets: word(20).ok_or(RtcpError::Truncated)?,
                        octets: word(24).ok_or(RtcpError::Truncated)?,
                    });
                    at = 28;
                }
                for _ in 0..count {
                    let block = packet.get(at..at + 24).ok_or(RtcpError::Truncated)?;
                    let w = |i: usize| {
                        u32::from_be_bytes([block[i], block[i + 1], block[i + 2], block[i + 3]])
                    };
                    let lost = w(4) & 0x00FF_FFFF;
                    // Sign-extend the 24-bit cumulative loss.
                    let cumulative_lost = ((lost << 8) as i32) >> 8;
                    out.reports.push(ReportBlock {
                        ssrc: w(0),
                        fraction_lost: block[4],
                        cumulative_lost,
                        highest_sequence: w(8),
                        jitter: w(12),
                        last_sr: w(16),
                        delay_since_last_sr: w(20),
                    });
                    at += 24;
                }
            }
            BYE => out.bye = true,
            // SDES, APP, feedback: nothing we use.
            _ => {}
        }
    }
    if first {
        return Err(RtcpError::TooShort);
    }
    Ok(out)
}

fn header(out: &mut Vec<u8>, count: usize, pt: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0x80 | (count as u8 & 0x1F), pt, 0, 0]);
    start
}

/// Fills in the length field of the packet that starts at `start`.
fn finish(out: &mut [u8], start: usize) {
    let words = (out.len() - start) / 4 - 1;
    out[start + 2..start + 4].copy_from_slice(&(words as u16).to_be_bytes());
}

/// Builds our compound report: SR if `sender` is given (we sent since the last
/// report), else RR; then SDES with our CNAME (required in every compound, §6.1).
pub fn build(
    ssrc: u32,
    sender: Option<SenderInfo>,
    report: Option<ReportBlock>,
    cname: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let count = report.is_some() as usize;
    let start = header(&mut out, count, if sender.is_some() { SR } else { RR });
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(s) = sender {
        out.extend_from_slice(&s.ntp.to_be_bytes());
        out.extend_from_slice(&s.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&s.packets.to_be_bytes());
        out.extend_from_slice(&s.octets.to_be_bytes());
    }
    if let Some(r) = report {
        out.extend_from_slice(&r.ssrc.to_be_bytes());
        let lost = (r.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0x00FF_FFFF;
        out.extend_from_slice(&(((r.fraction_lost as u32) << 24) | lost).to_be_bytes());
        for w in [
            r.highest_sequence,
            r.jitter,
            r.last_sr,
            r.delay_since_last_sr,
        ] {
            out.extend_from_slice(&w.to_be_bytes());
        }
    }
    finish(&mut out, start);
    let start = header(&mut out, 1, SDES);
    out.extend_from_slice(&ssrc.to_be_bytes());
    let name = &cname.as_bytes()[..cname.len().min(255)];
    out.push(1);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    // END item, then pad the chunk to a 32-bit boundary (at least one zero).
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    finish(&mut out, start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sr_with_block_round_trips() {
        let sender = SenderInfo {
            ntp: 0xE000_0000_8000_0000,
            rtp_timestamp: 1234,
            packets: 50,
            octets: 8000,
        };
        let block = ReportBlock {
            ssrc: 9,
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_sequence: 70_000,
            jitter: 80,
            last_sr: 0xABCD_0123,
            delay_since_last_sr: 65536,
        };
        let bytes = build(7, Some(sender), Some(block), "comm-server@example");
        assert_eq!(bytes.len() % 4, 0);
        let c = parse(&bytes).unwrap();
        assert_eq!(
            (c.ssrc, c.sender, c.reports, c.bye),
            (7, Some(sender), vec![block], false)
        );
    }

    #[test]
    fn rr_without_blocks_and_bye() {
        let mut bytes = build(5, None, None, "x");
        bytes.extend_from_slice(&[0x81, BYE, 0, 1, 0, 0, 0, 5]);
        let c = parse(&bytes).unwrap();
        assert!(c.sender.is_none() && c.reports.is_empty() && c.bye);
    }

    #[test]
    fn malformed_is_an_error() {
        assert_eq!(parse(&[]), Err(RtcpError::TooShort));
        assert_eq!(
            parse(&[0x40, RR, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::BadVersion(1))
        );
        assert_eq!(
            parse(&[0x80, RR, 0, 9, 0, 0, 0, 0]),
            Err(RtcpError::Truncated)
        );
        assert_eq!(
            parse(&[0x80, SDES, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::NotCompound)
        );
        // RR claiming one block but carrying none.
        assert_eq!(
            parse(&[0x81, RR, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::Truncated)
        );
    }

    #[test]
    fn ntp_conversions() {
        let ntp = ntp_from_unix_ms(1_500);
        assert_eq!(ntp >> 32, 2_208_988_801);
        assert_eq!(ntp & 0xFFFF_FFFF, 1 << 31);
        assert_eq!(ntp_short(ntp), ((2_208_988_801u64 << 16) as u32) | 0x8000);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
