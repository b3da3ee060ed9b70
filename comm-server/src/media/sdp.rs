//! SDP offer/answer (RFC 3264) for one audio stream, on top of `sdp-types`.
//!
//! Owns codec choice (PCMU/PCMA in the offerer's order, RFC 3264 section 6.1), the
//! RFC 4733 telephone-event payload type, `ptime`, direction (hold), and the remote
//! RTP address. Does not own SIP: it tells the B2BUA which status to send
//! ([`SdpError::sip_status`]: malformed SDP is 400, nothing usable is 488) so a call
//! is never half-created.
//!
//! ```text
//!   INVITE with offer --answer()--> Ok((Negotiated, answer body)) -> 200 OK
//!                                   Err(e) -> e.sip_status() (400 / 488), no media
//!   our INVITE offer() ---------->  remote 200 OK body --parse_answer()--> Negotiated
//! ```

use core::net::{IpAddr, SocketAddr};

/// Media direction (RFC 3264 §5.1), re-exported so callers need not depend on `sdp-types`.
pub use sdp_types::Direction;
use sdp_types::{Attribute, Connection, Media, MediaType, Origin, Session, Time, TransportProto};
use thiserror::Error;

use super::g711::Codec;

/// Our telephone-event payload type in offers (the value nearly every UA uses).
pub const DEFAULT_TELEPHONE_EVENT_PT: u8 = 101;
/// Packetisation we send, in ms: the session frames audio every 20 ms.
pub const PTIME_MS: u32 = 20;

/// Why an SDP body cannot be used; each maps to one SIP status.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("SDP has no audio stream")]
    NoAudio,
    #[error("no common audio codec (we support PCMU and PCMA over RTP/AVP)")]
    NoUsableCodec,
    #[error("the remote rejected the audio stream (port 0)")]
    Rejected,
}

impl SdpError {
    /// The SIP final response for an INVITE carrying this SDP (RFC 3261 21.4.1,
    /// RFC 3264 section 6: 488 Not Acceptable Here when no media can be agreed).
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Malformed(_) => 400,
            SdpError::NoAudio | SdpError::NoUsableCodec | SdpError::Rejected => 488,
        }
    }
}

/// What we offer or can answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Address the remote should send RTP to (our public media address).
    pub address: IpAddr,
    /// Our RTP port for this leg (even, from the driver's port range).
    pub port: u16,
    /// Codecs we accept, in our order of preference for offers.
    pub codecs: Vec<Codec>,
    /// Payload type we offer for RFC 4733 events.
    pub telephone_event_pt: u8,
    /// Our direction before intersection: `SendOnly` to put the remote on hold.
    pub direction: Direction,
    /// `o=` session id and version; bump the version for every new offer (RFC 3264 §8).
    pub session_id: u64,
    pub session_version: u64,
}

impl LocalMedia {
    /// Offers PCMU then PCMA, telephone-event 101, sendrecv.
    pub fn new(address: IpAddr, port: u16) -> Self {
        LocalMedia {
            address,
            port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event_pt: DEFAULT_TELEPHONE_EVENT_PT,
            direction: Direction::SendRecv,
            session_id: 0,
            session_version: 0,
        }
    }
}

/// The outcome of a negotiation: everything a [`super::session::MediaSession`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP until symmetric RTP latches; `None` for `c=0.0.0.0` hold.
    pub remote: Option<SocketAddr>,
    /// The chosen codec: the offerer's first that we support.
    pub codec: Codec,
    /// The payload type used for `codec` on this leg.
    pub payload_type: u8,
    /// RFC 4733 payload type, if both sides support telephone-events.
    pub telephone_event: Option<u8>,
    /// The remote's `a=ptime`, if it asked for one (we send 20 ms regardless).
    pub remote_ptime: Option<u32>,
    /// Our direction after intersection: `has_send()` = we send, `has_recv()` = we expect RTP.
    pub direction: Direction,
}

/// One offered format, resolved through `a=rtpmap` or the static table.
/// An explicit rtpmap wins over the static table: some UAs remap static numbers.
fn resolve(media: &Media, pt: u8) -> Option<(String, u32)> {
    for rtpmap in media.attributes_typed::<sdp_types::RtpMap>().flatten() {
        if rtpmap.payload_type == pt {
            return Some((rtpmap.encoding_name.to_ascii_uppercase(), rtpmap.clock_rate));
        }
    }
    Codec::from_payload_type(pt).map(|c| (c.encoding_name().to_string(), 8000))
}

/// The m= line's formats as payload types; anything else in an RTP profile is a
/// malformed body (400), not a codec mismatch.
fn payload_types(media: &Media) -> Result<Vec<u8>, SdpError> {
    media
        .fmt
        .split_ascii_whitespace()
        .map(|f| {
            f.parse::<u8>()
                .ok()
                .filter(|pt| *pt < 128)
                .ok_or_else(|| SdpError::Malformed(format!("bad payload type {f:?}")))
        })
        .collect()
}

/// Media-level direction overrides session-level; absent means sendrecv (RFC 4566 §6).
fn direction_of(session: &Session, media: &Media) -> Direction {
    let pick = |attrs: &[Attribute]| {
        attrs.iter().find_map(|a| match a.attribute.as_str() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        })
    };
    pick(&media.attributes)
        .or_else(|| pick(&session.attributes))
        .unwrap_or_default()
}

/// The remote's preferred packetisation, if it said; informational only.
fn ptime_of(session: &Session, media: &Media) -> Option<u32> {
    media
        .get_first_attribute_value("ptime")
        .or_else(|| session.get_first_attribute_value("ptime"))
        .flatten()
        .and_then(|v| v.trim().parse().ok())
}

/// The remote RTP address of a stream; `None` for the RFC 2543 `0.0.0.0` hold.
fn remote_address(session: &Session, media: &Media) -> Result<Option<SocketAddr>, SdpError> {
    let connection = media
        .connections
        .first()
        .or(session.connection.as_ref())
        .ok_or_else(|| SdpError::Malformed("no c= line for the audio stream".into()))?;
    let ip: IpAddr = connection
        .connection_address
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            SdpError::Malformed(format!(
                "connection address {:?} is not an IP address",
                connection.connection_address
            ))
        })?;
    Ok((!ip.is_unspecified()).then_some(SocketAddr::new(ip, media.port)))
}

/// Plain RTP profiles only: SRTP (SAVP) offers get 488 rather than a call whose
/// media we could not decrypt.
fn is_rtp_avp(media: &Media) -> bool {
    matches!(
        media.proto.to_ascii_uppercase().as_str(),
        "RTP/AVP" | "RTP/AVPF"
    )
}

fn parse(body: &[u8]) -> Result<Session, SdpError> {
    Session::parse(body).map_err(|e| SdpError::Malformed(e.to_string()))
}

/// Picks our codec and telephone-event from one remote audio stream.
/// Walks the formats in the remote's order (RFC 3264 §6.1: the answerer should honour
/// the offerer's preference) and keeps the remote's payload type numbers.
fn choose(media: &Media, supported: &[Codec]) -> Result<(Codec, u8, Option<u8>), SdpError> {
    let pts = payload_types(media)?;
    let mut chosen = None;
    let mut telephone_event = None;
    for &pt in &pts {
        let Some((name, rate)) = resolve(media, pt) else {
            continue;
        };
        if rate != 8000 {
            continue;
        }
        if name == "TELEPHONE-EVENT" {
            telephone_event.get_or_insert(pt);
        } else if chosen.is_none() {
            chosen = supported
                .iter()
                .find(|c| c.encoding_name() == name)
                .map(|&c| (c, pt));
        }
    }
    let (codec, pt) = chosen.ok_or(SdpError::NoUsableCodec)?;
    Ok((codec, pt, telephone_event))
}

/// Answers an offer. On success returns the negotiated stream and the answer body;
/// every non-audio or unusable stream is refused with port 0 (RFC 3264 section 6).
pub fn answer(offer: &[u8], local: &LocalMedia) -> Result<(Negotiated, Vec<u8>), SdpError> {
    let session = parse(offer)?;
    let mut negotiated = None;
    let mut saw_audio = false;
    let mut first_error = None;
    let mut medias = Vec::with_capacity(session.medias.len());
    for media in &session.medias {
        let is_audio = media.media.eq_ignore_ascii_case("audio");
        saw_audio |= is_audio;
        if negotiated.is_none() && is_audio && media.port != 0 {
            let attempt = if is_rtp_avp(media) {
                choose(media, &local.codecs)
            } else {
                Err(SdpError::NoUsableCodec)
            };
            match attempt {
                Ok((codec, payload_type, telephone_event)) => {
                    let mut remote = remote_address(&session, media)?;
                    let mut offered = direction_of(&session, media);
                    if remote.is_none() {
                        // c=0.0.0.0: "do not send to me", the old way of saying hold.
                        offered = if offered.has_send() {
                            Direction::SendOnly
                        } else {
                            Direction::Inactive
                        };
                        remote = None;
                    }
                    let direction = local.direction.intersect_with_remote(offered);
                    let n = Negotiated {
                        remote,
                        codec,
                        payload_type,
                        telephone_event,
                        remote_ptime: ptime_of(&session, media),
                        direction,
                    };
                    medias.push(audio_media(
                        local.port,
                        &[(codec, payload_type)],
                        telephone_event,
                        direction,
                        &media.proto,
                    ));
                    negotiated = Some(n);
                    continue;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        medias.push(Media::new(
            media.try_parse_mediatype().unwrap_or(MediaType::Audio),
            0,
            media.parse_transport_proto(),
            &media.fmt,
        ));
    }
    let Some(negotiated) = negotiated else {
        return Err(if saw_audio {
            first_error.unwrap_or(SdpError::NoUsableCodec)
        } else {
            SdpError::NoAudio
        });
    };
    Ok((negotiated, write(local, medias)))
}

/// Builds our offer: every supported codec, telephone-event, ptime and direction.
pub fn offer(local: &LocalMedia) -> Vec<u8> {
    let formats: Vec<(Codec, u8)> = local
        .codecs
        .iter()
        .map(|&c| (c, c.payload_type()))
        .collect();
    write(
        local,
        vec![audio_media(
            local.port,
            &formats,
            Some(local.telephone_event_pt),
            local.direction,
            "RTP/AVP",
        )],
    )
}

/// Reads the answer to our [`offer`].
pub fn parse_answer(body: &[u8], local: &LocalMedia) -> Result<Negotiated, SdpError> {
    let session = parse(body)?;
    let media = session
        .medias
        .iter()
        .find(|m| m.media.eq_ignore_ascii_case("audio"))
        .ok_or(SdpError::NoAudio)?;
    if media.port == 0 {
        return Err(SdpError::Rejected);
    }
    let (codec, payload_type, telephone_event) = choose(media, &local.codecs)?;
    let remote = remote_address(&session, media)?;
    let answered = direction_of(&session, media);
    Ok(Negotiated {
        remote,
        codec,
        payload_type,
        telephone_event,
        remote_ptime: ptime_of(&session, media),
        direction: local.direction.intersect_with_remote(answered),
    })
}

/// Our m=audio section: formats, rtpmaps, telephone-event 0-15 (the DTMF events),
/// ptime and direction.
fn audio_media(
    port: u16,
    formats: &[(Codec, u8)],
    telephone_event: Option<u8>,
    direction: Direction,
    proto: &str,
) -> Media {
    let mut fmt: Vec<String> = formats.iter().map(|(_, pt)| pt.to_string()).collect();
    fmt.extend(telephone_event.map(|pt| pt.to_string()));
    let proto = if proto.eq_ignore_ascii_case("RTP/AVPF") {
        TransportProto::RtpAvpf
    } else {
        TransportProto::RtpAvp
    };
    let mut media = Media::new(MediaType::Audio, port, proto, fmt.join(" "));
    for &(codec, pt) in formats {
        media.add_attribute(sdp_types::RtpMap::new(pt, codec.encoding_name(), 8000));
    }
    if let Some(pt) = telephone_event {
        media.add_attribute(sdp_types::RtpMap::new(pt, "telephone-event", 8000));
        media.add_attribute_with_value("fmtp", format!("{pt} 0-15"));
    }
    media.add_attribute_with_value("ptime", PTIME_MS);
    media.add_attribute(direction);
    media
}

/// A complete body with session-level c= and t=0 0 (a permanent session).
fn write(local: &LocalMedia, medias: Vec<Media>) -> Vec<u8> {
    let mut session = Session::new(
        Origin::with_ip_addr(local.session_id, local.session_version, local.address),
        "-",
    );
    session.set_connection(Connection::from_ip_addr(local.address));
    session.add_time(Time::new(0, 0));
    session.add_medias(medias);
    let mut out = Vec::with_capacity(256);
    // Writing to a Vec cannot fail.
    let _ = session.write(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia::new(IpAddr::from([203, 0, 113, 5]), 40_000)
    }

    fn sdp(media_lines: &str) -> Vec<u8> {
        format!("v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=call\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n{media_lines}").into_bytes()
    }

    #[test]
    fn answers_in_offerers_order_with_telephone_event() {
        let offer = sdp(
            "m=audio 5004 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=ptime:30\r\n",
        );
        let (n, body) = answer(&offer, &local()).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.payload_type, 8);
        assert_eq!(n.telephone_event, Some(96));
        assert_eq!(n.remote, Some(SocketAddr::from(([192, 0, 2, 10], 5004))));
        assert_eq!(n.remote_ptime, Some(30));
        assert_eq!(n.direction, Direction::SendRecv);
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("m=audio 40000 RTP/AVP 8 96\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:96 telephone-event/8000"), "{text}");
        assert!(text.contains("c=IN IP4 203.0.113.5"), "{text}");
        assert!(text.contains("a=sendrecv"), "{text}");
        // Our own answer parses back to the same choice.
        let back = parse_answer(text.as_bytes(), &local()).unwrap();
        assert_eq!((back.codec, back.telephone_event), (Codec::Pcma, Some(96)));
    }

    #[test]
    fn dynamic_payload_types_resolve_by_rtpmap() {
        let offer = sdp(
            "m=audio 5004 RTP/AVP 111 97\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:97 pcmu/8000\r\n",
        );
        let (n, _) = answer(&offer, &local()).unwrap();
        assert_eq!(
            (n.codec, n.payload_type, n.telephone_event),
            (Codec::Pcmu, 97, None)
        );
    }

    #[test]
    fn errors_map_to_400_and_488() {
        let e = answer(b"this is not sdp", &local()).unwrap_err();
        assert_eq!(e.sip_status(), 400);
        let e = answer(
            &sdp("m=audio 5004 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"),
            &local(),
        )
        .unwrap_err();
        assert_eq!((e.clone(), e.sip_status()), (SdpError::NoUsableCodec, 488));
        let e = answer(&sdp("m=video 5006 RTP/AVP 96\r\n"), &local()).unwrap_err();
        assert_eq!(e, SdpError::NoAudio);
        let e = answer(&sdp("m=audio 5004 RTP/SAVP 0\r\n"), &local()).unwrap_err();
        assert_eq!(e.sip_status(), 488);
        let e = answer(&sdp("m=audio 5004 RTP/AVP 0 abc\r\n"), &local()).unwrap_err();
        assert_eq!(e.sip_status(), 400);
        let bad_c = b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 pbx.example.com\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        assert_eq!(answer(bad_c, &local()).unwrap_err().sip_status(), 400);
    }

    #[test]
    fn other_streams_are_refused_with_port_zero() {
        let offer = sdp(
            "m=video 5006 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=audio 0 RTP/AVP 0\r\nm=audio 5004 RTP/AVP 0\r\n",
        );
        let (n, body) = answer(&offer, &local()).unwrap();
        assert_eq!(n.remote.unwrap().port(), 5004);
        let text = String::from_utf8(body).unwrap();
        let m_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            vec![
                "m=video 0 RTP/AVP 96",
                "m=audio 0 RTP/AVP 0",
                "m=audio 40000 RTP/AVP 0"
            ]
        );
    }

    #[test]
    fn hold_directions() {
        let cases = [
            ("a=sendonly\r\n", Direction::RecvOnly),
            ("a=recvonly\r\n", Direction::SendOnly),
            ("a=inactive\r\n", Direction::Inactive),
            ("", Direction::SendRecv),
        ];
        for (attr, ours) in cases {
            let (n, body) =
                answer(&sdp(&format!("m=audio 5004 RTP/AVP 0\r\n{attr}")), &local()).unwrap();
            assert_eq!(n.direction, ours, "{attr}");
            assert!(
                String::from_utf8(body)
                    .unwrap()
                    .contains(&format!("a={}", ours.as_str()))
            );
        }
        // RFC 2543 hold: c=0.0.0.0.
        let offer = b"v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        let (n, _) = answer(offer, &local()).unwrap();
        assert_eq!((n.remote, n.direction), (None, Direction::RecvOnly));
        // We put the remote on hold: our sendonly meets their sendrecv.
        let mut holding = local();
        holding.direction = Direction::SendOnly;
        let (n, _) = answer(&sdp("m=audio 5004 RTP/AVP 0\r\n"), &holding).unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
    }

    #[test]
    fn our_offer_and_a_rejecting_answer() {
        let body = String::from_utf8(offer(&local())).unwrap();
        assert!(body.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{body}");
        assert!(body.contains("a=fmtp:101 0-15"));
        assert!(body.contains("a=ptime:20"));
        let rejected = sdp("m=audio 0 RTP/AVP 0\r\n");
        assert_eq!(parse_answer(&rejected, &local()), Err(SdpError::Rejected));
        let media_level_c = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8\r\nc=IN IP4 198.51.100.7\r\na=sendonly\r\n";
        let n = parse_answer(media_level_c, &local()).unwrap();
        assert_eq!(n.remote, Some(SocketAddr::from(([198, 51, 100, 7], 7000))));
        assert_eq!(n.direction, Direction::RecvOnly);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const VALID: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n";

        proptest! {
            /// Any bytes: an answer or a 400/488, never a panic.
            #[test]
            fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
                if let Err(e) = answer(&body, &local()) {
                    prop_assert!([400, 488].contains(&e.sip_status()));
                }
                let _ = parse_answer(&body, &local());
            }

            /// A valid offer with one line replaced by printable junk.
            #[test]
            fn mutated_offers_never_panic(line in 0usize..9, junk in "[ -~]{0,60}") {
                let mut lines: Vec<String> = VALID.split("\r\n").map(str::to_owned).collect();
                lines[line] = junk;
                let body = lines.join("\r\n");
                if let Err(e) = answer(body.as_bytes(), &local()) {
                    prop_assert!([400, 488].contains(&e.sip_status()));
                }
            }
        }
    }
}
