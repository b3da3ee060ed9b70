//! G.711 (ITU-T G.711) PCMU (mu-law) and PCMA (A-law) codecs and direct transcoding.
//!
//! Owns sample conversion only; packetisation lives in [`super::rtp`]. Encoding is
//! computed (segment search on a handful of bits, cheap enough per sample); decoding
//! and PCMU<->PCMA transcoding are 256-entry tables built at compile time, so a
//! bridged call between a mu-law and an A-law leg costs one table look-up per byte.

/// A G.711 variant, as negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// mu-law, static RTP payload type 0 (RFC 3551), North America and Japan.
    Pcmu,
    /// A-law, static RTP payload type 8 (RFC 3551), the rest of the world.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551 table 4).
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec a static payload type stands for, if it is one of ours.
    pub const fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The SDP `a=rtpmap` encoding name.
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Encodes one linear sample.
    #[inline]
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => linear_to_ulaw(sample),
            Codec::Pcma => linear_to_alaw(sample),
        }
    }

    /// Decodes one code word.
    #[inline]
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => ULAW_TO_LINEAR[code as usize],
            Codec::Pcma => ALAW_TO_LINEAR[code as usize],
        }
    }

    /// Encodes `samples`, appending one byte per sample to `out`.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        out.reserve(samples.len());
        match self {
            Codec::Pcmu => out.extend(samples.iter().map(|&s| linear_to_ulaw(s))),
            Codec::Pcma => out.extend(samples.iter().map(|&s| linear_to_alaw(s))),
        }
    }

    /// Decodes `payload`, appending one sample per byte to `out`.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        let table = match self {
            Codec::Pcmu => &ULAW_TO_LINEAR,
            Codec::Pcma => &ALAW_TO_LINEAR,
        };
        out.extend(payload.iter().map(|&b| table[b as usize]));
    }

    /// Re-encodes `payload` from `self` into `to`, appending to `out`. Same codec is a
    /// plain copy, so same-codec bridges stay bit-exact.
    pub fn transcode(self, to: Codec, payload: &[u8], out: &mut Vec<u8>) {
        match (self, to) {
            (Codec::Pcmu, Codec::Pcma) => {
                out.extend(payload.iter().map(|&b| ULAW_TO_ALAW[b as usize]))
            }
            (Codec::Pcma, Codec::Pcmu) => {
                out.extend(payload.iter().map(|&b| ALAW_TO_ULAW[b as usize]))
            }
            _ => out.extend_from_slice(payload),
        }
    }
}

/// mu-law bias added before the segment search (G.711 section 3.2, 0x84 = 132).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude mu-law represents before the bias would overflow 14 bits.
const ULAW_CLIP: i32 = 32_635;

/// Encodes a 16-bit linear sample as mu-law (the classic Sun reference algorithm).
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    // i32 so that -32768 can be negated.
    let mut pcm = sample as i32;
    // Code words are sent inverted (G.711 keeps long runs of zero bits off the line);
    // the sign goes in bit 7 of the inverted word.
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    if pcm > ULAW_CLIP {
        pcm = ULAW_CLIP;
    }
    pcm += ULAW_BIAS;
    // Segment = position of the highest set bit above bit 7 (values 0x84..=0x7FFF),
    // found with one leading-zeros count: branch-free, so encoding a frame vectorises.
    let segment = 31 - ((pcm >> 7) as u32).leading_zeros();
    // Four mantissa bits just below the segment's leading bit.
    let mantissa = ((pcm >> (segment + 3)) & 0x0F) as u8;
    (((segment as u8) << 4) | mantissa) ^ mask
}

/// Decodes a mu-law code word to 16-bit linear.
pub const fn ulaw_to_linear(code: u8) -> i16 {
    // Undo the inversion, rebuild the biased magnitude at the segment's scale, then
    // remove the bias: the middle of the quantisation interval.
    let code = !code;
    let mut t = (((code & 0x0F) as i32) << 3) + ULAW_BIAS;
    t <<= (code & 0x70) >> 4;
    (if code & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

/// Encodes a 16-bit linear sample as A-law (the classic Sun reference algorithm).
pub const fn linear_to_alaw(sample: i16) -> u8 {
    // A-law works on 13 bits.
    let mut pcm = (sample as i32) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    // Segment ends are 0x1F, 0x3F, ... 0xFFF: the segment is log2(pcm) - 4, floored
    // at 0. The 13-bit magnitude never exceeds 0xFFF, so there is no overflow segment.
    let segment = (31 - ((pcm | 1) as u32).leading_zeros()).saturating_sub(4);
    // Segments 0 and 1 share a step size, hence the shift of at least one.
    let shift = if segment < 2 { 1 } else { segment };
    let code = ((segment as u8) << 4) | ((pcm >> shift) & 0x0F) as u8;
    code ^ mask
}

/// Decodes an A-law code word to 16-bit linear.
pub const fn alaw_to_linear(code: u8) -> i16 {
    // A-law inverts even bits only (0x55); segments 0 and 1 share one step size.
    let code = code ^ 0x55;
    let mut t = ((code & 0x0F) as i32) << 4;
    let segment = (code & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= segment - 1;
        }
    }
    (if code & 0x80 != 0 { t } else { -t }) as i16
}

/// Builds the four 256-entry tables; `const fn` pointers cannot be called in const
/// context, so the variant is a flag.
const fn build_decode(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    table
}

const fn build_transcode(from_alaw: bool) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if from_alaw {
            linear_to_ulaw(alaw_to_linear(i as u8))
        } else {
            linear_to_alaw(ulaw_to_linear(i as u8))
        };
        i += 1;
    }
    table
}

static ULAW_TO_LINEAR: [i16; 256] = build_decode(false);
static ALAW_TO_LINEAR: [i16; 256] = build_decode(true);
static ULAW_TO_ALAW: [u8; 256] = build_transcode(false);
static ALAW_TO_ULAW: [u8; 256] = build_transcode(true);

#[cfg(test)]
mod tests {
    use super::*;

    /// Half a quantisation step of the segment `x` falls in, plus the clip region.
    fn ulaw_bound(x: i32) -> i32 {
        if x.abs() > ULAW_CLIP {
            return x.abs() - 32_124 + 1024;
        }
        (x.abs() + ULAW_BIAS) / 32 + 4
    }

    fn alaw_bound(x: i32) -> i32 {
        (x.abs() / 32).max(8) + 8
    }

    /// The Sun reference encoders, written with plain segment-search loops.
    fn reference_ulaw(sample: i16) -> u8 {
        let (mut pcm, mask) = if sample < 0 {
            (-(sample as i32), 0x7F)
        } else {
            (sample as i32, 0xFF)
        };
        pcm = pcm.min(ULAW_CLIP) + ULAW_BIAS;
        let ends = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];
        let seg = ends.iter().position(|&e| pcm <= e).unwrap() as i32;
        ((seg << 4) as u8 | ((pcm >> (seg + 3)) & 0x0F) as u8) ^ mask
    }

    fn reference_alaw(sample: i16) -> u8 {
        let pcm = (sample as i32) >> 3;
        let (pcm, mask) = if pcm >= 0 {
            (pcm, 0xD5)
        } else {
            (-pcm - 1, 0x55)
        };
        let ends = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
        let Some(seg) = ends.iter().position(|&e| pcm <= e) else {
            return 0x7F ^ mask;
        };
        let mantissa = if seg < 2 {
            (pcm >> 1) & 0x0F
        } else {
            (pcm >> seg) & 0x0F
        };
        (((seg as u8) << 4) | mantissa as u8) ^ mask
    }

    #[test]
    fn encoders_match_the_reference_for_every_sample() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_ulaw(x), reference_ulaw(x), "mu-law {x}");
            assert_eq!(linear_to_alaw(x), reference_alaw(x), "A-law {x}");
        }
    }

    #[test]
    fn known_code_words() {
        // Reference values from the G.711 tables.
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32_124);
        assert_eq!(ulaw_to_linear(0x80), 32_124);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32_256);
        assert_eq!(alaw_to_linear(0x2A), -32_256);
    }

    #[test]
    fn every_code_word_round_trips() {
        for code in 0..=255u8 {
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#x}"
            );
            // 0x7F is mu-law's negative zero; it decodes to 0, which encodes as 0xFF.
            if code != 0x7F {
                assert_eq!(
                    linear_to_ulaw(ulaw_to_linear(code)),
                    code,
                    "mu-law {code:#x}"
                );
            }
        }
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        for x in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(x)) as i32;
            let a = alaw_to_linear(linear_to_alaw(x)) as i32;
            let x = x as i32;
            assert!((u - x).abs() <= ulaw_bound(x), "mu-law {x} -> {u}");
            assert!((a - x).abs() <= alaw_bound(x), "A-law {x} -> {a}");
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(x));
            assert!(u >= last);
            last = u;
        }
    }

    #[test]
    fn transcoding_matches_decode_then_encode() {
        for code in 0..=255u8 {
            let mut out = Vec::new();
            Codec::Pcmu.transcode(Codec::Pcma, &[code], &mut out);
            assert_eq!(out[0], linear_to_alaw(ulaw_to_linear(code)));
            out.clear();
            Codec::Pcma.transcode(Codec::Pcmu, &[code], &mut out);
            assert_eq!(out[0], linear_to_ulaw(alaw_to_linear(code)));
        }
        // A same-codec "transcode" is a copy: bridges between equal codecs stay bit-exact.
        let payload: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        Codec::Pcmu.transcode(Codec::Pcmu, &payload, &mut out);
        assert_eq!(out, payload);
    }

    #[test]
    fn slice_helpers_agree_with_per_sample() {
        let samples: Vec<i16> = (0..160)
            .map(|i| ((i * 409) as i16).wrapping_mul(7))
            .collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut enc = Vec::new();
            codec.encode(&samples, &mut enc);
            let mut dec = Vec::new();
            codec.decode(&enc, &mut dec);
            for (i, &s) in samples.iter().enumerate() {
                assert_eq!(enc[i], codec.encode_sample(s));
                assert_eq!(dec[i], codec.decode_sample(enc[i]));
            }
        }
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(18), None);
    }
}
