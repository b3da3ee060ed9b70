//! Session tests on a simulated network: virtual `Instant`s, datagrams as bytes.

use super::*;
use crate::media::recording::RecordSides;

const CALLER: SocketAddr = SocketAddr::new(
    core::net::IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 10)),
    5004,
);
const NAT: SocketAddr = SocketAddr::new(
    core::net::IpAddr::V4(core::net::Ipv4Addr::new(198, 51, 100, 1)),
    61000,
);
const INTRUDER: SocketAddr = SocketAddr::new(
    core::net::IpAddr::V4(core::net::Ipv4Addr::new(203, 0, 113, 66)),
    4444,
);

fn negotiated(codec: Codec) -> Negotiated {
    Negotiated {
        remote: Some(CALLER),
        codec,
        payload_type: codec.payload_type(),
        telephone_event: Some(101),
        remote_ptime: None,
        direction: Direction::SendRecv,
    }
}

fn session(t0: Instant, codec: Codec) -> MediaSession {
    MediaSession::new(
        t0,
        SessionConfig::new(&negotiated(codec), 0x1234_5678, 1000, 50_000),
    )
}

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// The remote party: builds its own RTP stream.
struct Peer {
    seq: u16,
    ts: u32,
    ssrc: u32,
    codec: Codec,
}

impl Peer {
    fn new(codec: Codec) -> Self {
        Peer {
            seq: 7,
            ts: 90_000,
            ssrc: 0xABCD,
            codec,
        }
    }

    fn audio(&mut self, samples: &[i16]) -> Vec<u8> {
        let mut payload = Vec::new();
        self.codec.encode(samples, &mut payload);
        let d = self.packet(self.codec.payload_type(), &payload);
        self.ts = self.ts.wrapping_add(samples.len() as u32);
        d
    }

    fn packet(&mut self, pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        RtpPacket {
            marker: false,
            payload_type: pt,
            sequence: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
            payload,
        }
        .write(&mut out);
        self.seq = self.seq.wrapping_add(1);
        out
    }
}

/// RTP transmits and actions; RTCP reports (every 5 s) are left out.
fn drain(s: &mut MediaSession) -> (Vec<Transmit>, Vec<MediaAction>) {
    let tx = std::iter::from_fn(|| s.poll_transmit())
        .filter(|t| !t.rtcp)
        .collect();
    let actions = std::iter::from_fn(|| s.poll_action()).collect();
    (tx, actions)
}

fn parsed(t: &Transmit) -> RtpPacket<'_> {
    RtpPacket::parse(&t.payload).unwrap()
}

fn prompt(n: usize) -> Prompt {
    Prompt::from_samples(
        "test",
        (0..n)
            .map(|i| ((i as i32 * 97) % 20_000 - 10_000) as i16)
            .collect(),
    )
}

#[test]
fn playback_sends_the_prompt_in_order_then_finishes() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    let p = prompt(480);
    s.handle_command(
        t0,
        MediaCommand::Play {
            id: 9,
            prompts: vec![p.clone()],
            barge_in: false,
        },
    );
    assert_eq!(s.poll_timeout(), Some(t0));
    let mut packets = Vec::new();
    let mut actions = Vec::new();
    for k in 0..10 {
        s.handle_tick(ms(t0, 20 * k));
        let (tx, a) = drain(&mut s);
        packets.extend(tx);
        actions.extend(a);
    }
    assert_eq!(packets.len(), 3);
    assert!(packets.iter().all(|t| t.destination == CALLER));
    let mut expected = Vec::new();
    Codec::Pcmu.encode(p.samples(), &mut expected);
    let sent: Vec<u8> = packets
        .iter()
        .flat_map(|t| parsed(t).payload.to_vec())
        .collect();
    assert_eq!(sent, expected);
    let seqs: Vec<u16> = packets.iter().map(|t| parsed(t).sequence).collect();
    assert_eq!(seqs, vec![1000, 1001, 1002]);
    let ts: Vec<u32> = packets.iter().map(|t| parsed(t).timestamp).collect();
    assert_eq!(ts, vec![50_000, 50_160, 50_320]);
    assert!(parsed(&packets[0]).marker && !parsed(&packets[1]).marker);
    assert_eq!(
        actions,
        vec![MediaAction::PlaybackFinished {
            id: 9,
            interrupted: false
        }]
    );
}

#[test]
fn an_empty_sequence_finishes_at_once_and_replacing_a_playback_interrupts_it() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    s.handle_command(
        t0,
        MediaCommand::Play {
            id: 1,
            prompts: vec![prompt(8000)],
            barge_in: false,
        },
    );
    s.handle_command(
        t0,
        MediaCommand::Play {
            id: 2,
            prompts: vec![],
            barge_in: false,
        },
    );
    s.handle_tick(t0);
    let (tx, actions) = drain(&mut s);
    assert!(tx.is_empty());
    assert_eq!(
        actions,
        vec![
            MediaAction::PlaybackFinished {
                id: 1,
                interrupted: true
            },
            MediaAction::PlaybackFinished {
                id: 2,
                interrupted: false
            },
        ]
    );
}

#[test]
fn irregular_shared_ticks_do_not_drift() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcma);
    s.handle_command(t0, MediaCommand::LoopMusic(prompt(1000)));
    // A shared ticker that wakes 0-19 ms late, sometimes twice in one period.
    let mut sent = Vec::new();
    let mut t = 0u64;
    while t <= 10_000 {
        s.handle_tick(ms(t0, t));
        sent.extend(drain(&mut s).0);
        t += [20, 27, 13, 20, 39, 1][(t as usize / 7) % 6];
    }
    // One frame per 20 ms of session time, never more, never fewer.
    assert!((500..=501).contains(&sent.len()), "{}", sent.len());
    for w in sent.windows(2) {
        let (a, b) = (parsed(&w[0]), parsed(&w[1]));
        assert_eq!(b.sequence, a.sequence.wrapping_add(1));
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(160));
    }
    // 19 ms late is late (> 5 ms), but nothing was skipped.
    assert!(s.quality().late_frames > 0);
    assert_eq!(s.quality().packets_sent, sent.len() as u64);
}

#[test]
fn frames_fall_on_the_shared_tick_grid() {
    let t0 = crate::media::test_epoch();
    let mut config = SessionConfig::new(&negotiated(Codec::Pcmu), 1, 1, 0);
    config.pacing_epoch = Some(t0);
    // Created 7 ms into a tick period: the first frame waits for the next grid tick.
    let mut s = MediaSession::new(ms(t0, 7), config);
    s.handle_command(ms(t0, 7), MediaCommand::LoopMusic(prompt(1000)));
    assert_eq!(s.poll_timeout(), Some(ms(t0, 20)));
    s.handle_tick(ms(t0, 7));
    assert!(drain(&mut s).0.is_empty());
    for k in 1..100 {
        s.handle_tick(ms(t0, 20 * k));
    }
    assert_eq!(drain(&mut s).0.len(), 99);
    assert_eq!(s.quality().late_frames, 0);
}

#[test]
fn a_grid_point_in_the_future_keeps_the_grid() {
    let t0 = crate::media::test_epoch();
    let mut config = SessionConfig::new(&negotiated(Codec::Pcmu), 1, 1, 0);
    // The driver's phase 3 starts 15 ms after its epoch; this leg starts at 2 ms.
    config.pacing_epoch = Some(ms(t0, 15));
    let mut s = MediaSession::new(ms(t0, 2), config);
    s.handle_command(ms(t0, 2), MediaCommand::LoopMusic(prompt(1000)));
    assert_eq!(s.poll_timeout(), Some(ms(t0, 15)));
    for k in 0..50 {
        s.handle_tick(ms(t0, 15 + 20 * k));
    }
    assert_eq!(drain(&mut s).0.len(), 50);
    assert_eq!(s.quality().late_frames, 0);
}

#[test]
fn a_stall_skips_frames_instead_of_bursting() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    s.handle_command(t0, MediaCommand::LoopMusic(prompt(1000)));
    s.handle_tick(t0);
    drain(&mut s);
    s.handle_tick(ms(t0, 1000));
    let (tx, _) = drain(&mut s);
    assert_eq!(tx.len(), 1);
    // The timestamp still reflects real time, so the far end's playout stays in sync.
    assert_eq!(parsed(&tx[0]).timestamp, 50_000 + 50 * 160);
    assert!(s.quality().late_frames >= 49);
}

fn handshake(s: &mut MediaSession, peer: &mut Peer, from: SocketAddr, t: Instant) {
    for _ in 0..2 {
        let d = peer.audio(&[0; 160]);
        s.handle_rtp(t, from, &d);
    }
}

#[test]
fn symmetric_rtp_latches_and_a_third_address_cannot_take_over() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    assert_eq!(s.destination(), Some(CALLER));
    let mut phone = Peer::new(Codec::Pcmu);
    handshake(&mut s, &mut phone, NAT, t0);
    assert_eq!(
        drain(&mut s).1,
        vec![MediaAction::RemoteLatched { address: NAT }]
    );
    assert_eq!(s.destination(), Some(NAT));
    let mut attacker = Peer::new(Codec::Pcmu);
    attacker.ssrc = 1;
    for _ in 0..100 {
        let d = attacker.audio(&[0; 160]);
        s.handle_rtp(t0, INTRUDER, &d);
    }
    assert_eq!(s.destination(), Some(NAT));
    s.handle_command(
        t0,
        MediaCommand::Play {
            id: 1,
            prompts: vec![prompt(160)],
            barge_in: false,
        },
    );
    s.handle_tick(t0);
    assert_eq!(drain(&mut s).0[0].destination, NAT);
    // The intruder's 100 packets, plus the phone's first packet spent in probation.
    assert_eq!(s.quality().packets_rejected, 101);
}

#[test]
fn a_reinvite_moves_the_stream_and_changes_codec() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    let mut phone = Peer::new(Codec::Pcmu);
    handshake(&mut s, &mut phone, CALLER, t0);
    assert_eq!(s.destination(), Some(CALLER));
    // Transfer: the new party is at NAT and speaks A-law.
    let mut n = negotiated(Codec::Pcma);
    n.remote = Some(NAT);
    s.handle_command(t0, MediaCommand::Update(n));
    assert_eq!(s.destination(), Some(NAT));
    let mut agent = Peer::new(Codec::Pcma);
    agent.ssrc = 0x5555;
    handshake(&mut s, &mut agent, NAT, ms(t0, 40));
    assert!(
        drain(&mut s)
            .1
            .contains(&MediaAction::RemoteLatched { address: NAT })
    );
    // The old party can no longer reach the leg.
    let d = phone.audio(&[0; 160]);
    s.handle_rtp(ms(t0, 60), CALLER, &d);
    assert_eq!(s.destination(), Some(NAT));
    s.handle_command(
        ms(t0, 60),
        MediaCommand::Play {
            id: 1,
            prompts: vec![prompt(160)],
            barge_in: false,
        },
    );
    s.handle_tick(ms(t0, 60));
    let tx = drain(&mut s).0;
    assert_eq!((tx[0].destination, parsed(&tx[0]).payload_type), (NAT, 8));
    // Loss and packets carried across the move: 1 + 1 valid packets so far.
    assert_eq!(s.quality().packets_received, 2);
}

#[test]
fn rfc4733_digit_is_reported_once_and_disables_inband() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    let mut phone = Peer::new(Codec::Pcmu);
    handshake(&mut s, &mut phone, CALLER, t0);
    drain(&mut s);
    for (event, _) in dtmf::event_packets(3, 800, 10, 160) {
        let d = phone.packet(101, &event.to_bytes());
        s.handle_rtp(t0, CALLER, &d);
        // A retransmission.
        phone.seq = phone.seq.wrapping_sub(1);
        let d = phone.packet(101, &event.to_bytes());
        s.handle_rtp(t0, CALLER, &d);
    }
    assert_eq!(
        drain(&mut s).1,
        vec![MediaAction::DigitReceived {
            digit: '3',
            method: DtmfMethod::Rfc4733
        }]
    );
    // The same key as a tone in the audio is no longer reported.
    let tone = dtmf::tone_samples('3', 1600, 4000.0).unwrap();
    for chunk in tone.chunks(160) {
        let d = phone.audio(chunk);
        s.handle_rtp(t0, CALLER, &d);
    }
    assert!(drain(&mut s).1.is_empty());
}

#[test]
fn inband_digit_is_detected_once_and_barges_in() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcma);
    let mut phone = Peer::new(Codec::Pcma);
    s.handle_command(
        t0,
        MediaCommand::Play {
            id: 4,
            prompts: vec![prompt(80_000)],
            barge_in: true,
        },
    );
    let mut audio = vec![0i16; 320];
    audio.extend(dtmf::tone_samples('7', 800, 3000.0).unwrap());
    audio.extend(vec![0i16; 2400]);
    let mut actions = Vec::new();
    for (k, chunk) in audio.chunks(160).enumerate() {
        let now = ms(t0, 20 * k as u64);
        let d = phone.audio(chunk);
        s.handle_rtp(now, CALLER, &d);
        s.handle_tick(now);
        actions.extend(drain(&mut s).1);
    }
    assert_eq!(
        actions,
        vec![
            MediaAction::RemoteLatched { address: CALLER },
            MediaAction::DigitReceived {
                digit: '7',
                method: DtmfMethod::InBand
            },
            MediaAction::PlaybackFinished {
                id: 4,
                interrupted: true
            },
        ]
    );
}

#[test]
fn dead_media_times_out_once_and_hold_is_exempt() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    let mut phone = Peer::new(Codec::Pcmu);
    handshake(&mut s, &mut phone, CALLER, ms(t0, 1000));
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(ms(t0, 31_000)));
    s.handle_tick(ms(t0, 30_999));
    assert!(drain(&mut s).1.is_empty());
    s.handle_tick(ms(t0, 31_000));
    assert_eq!(
        drain(&mut s).1,
        vec![MediaAction::MediaTimeout {
            silent_for: Duration::from_secs(30)
        }]
    );
    s.handle_tick(ms(t0, 60_000));
    assert!(drain(&mut s).1.is_empty());

    // On hold (the remote sent a=sendonly... or inactive): no RTP is expected.
    let mut held = session(t0, Codec::Pcmu);
    let mut n = negotiated(Codec::Pcmu);
    n.direction = Direction::Inactive;
    held.handle_command(t0, MediaCommand::Update(n));
    held.handle_tick(ms(t0, 3_600_000));
    assert!(drain(&mut held).1.is_empty());
    assert_eq!(held.poll_timeout(), None);
    // Taken off hold: the clock starts again from the re-INVITE.
    n.direction = Direction::SendRecv;
    held.handle_command(ms(t0, 3_600_000), MediaCommand::Update(n));
    held.handle_tick(ms(t0, 3_630_000));
    assert!(matches!(
        drain(&mut held).1[..],
        [MediaAction::MediaTimeout { .. }]
    ));
}

#[test]
fn hold_does_not_send() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    let mut n = negotiated(Codec::Pcmu);
    n.direction = Direction::RecvOnly;
    s.handle_command(t0, MediaCommand::Update(n));
    s.handle_command(t0, MediaCommand::LoopMusic(prompt(1000)));
    s.handle_tick(ms(t0, 200));
    assert!(drain(&mut s).0.is_empty());
}

/// Relays every frame `from` produced into `to`.
fn relay(from: &mut MediaSession, to: &mut MediaSession, now: Instant) {
    while let Some(f) = from.poll_frame() {
        to.handle_peer_frame(now, f);
    }
}

#[test]
fn bridge_same_codec_is_bit_exact_and_cross_codec_within_g711_error() {
    for (codec_a, codec_b) in [
        (Codec::Pcmu, Codec::Pcmu),
        (Codec::Pcmu, Codec::Pcma),
        (Codec::Pcma, Codec::Pcmu),
    ] {
        let t0 = crate::media::test_epoch();
        let mut caller = session(t0, codec_a);
        let mut agent = session(t0, codec_b);
        caller.handle_command(t0, MediaCommand::Bridge);
        agent.handle_command(t0, MediaCommand::Bridge);
        let mut phone = Peer::new(codec_a);
        let audio: Vec<i16> = (0..1600)
            .map(|i| (8000.0 * (i as f64 * 0.3).sin()) as i16)
            .collect();
        let mut received = Vec::new();
        for (k, chunk) in audio.chunks(160).enumerate() {
            let now = ms(t0, 20 * k as u64);
            let d = phone.audio(chunk);
            caller.handle_rtp(now, CALLER, &d);
            relay(&mut caller, &mut agent, now);
            received.extend(drain(&mut agent).0);
        }
        // Probation swallowed the first packet; the other nine crossed.
        assert_eq!(received.len(), 9);
        let mut decoded = Vec::new();
        for t in &received {
            let p = parsed(t);
            assert_eq!(p.payload_type, codec_b.payload_type());
            codec_b.decode(p.payload, &mut decoded);
        }
        let original = &audio[160..];
        if codec_a == codec_b {
            let mut sent = Vec::new();
            codec_a.encode(original, &mut sent);
            let relayed: Vec<u8> = received
                .iter()
                .flat_map(|t| parsed(t).payload.to_vec())
                .collect();
            assert_eq!(relayed, sent);
        } else {
            for (&o, &d) in original.iter().zip(&decoded) {
                // Two G.711 quantisations: each within ~1/16 of the value plus a step.
                assert!(
                    (o as i32 - d as i32).abs() <= (o as i32).abs() / 8 + 40,
                    "{o} vs {d}"
                );
            }
        }
    }
}

#[test]
fn bridged_dtmf_passes_through() {
    let t0 = crate::media::test_epoch();
    let mut caller = session(t0, Codec::Pcmu);
    let mut agent = session(t0, Codec::Pcma);
    caller.handle_command(t0, MediaCommand::Bridge);
    agent.handle_command(t0, MediaCommand::Bridge);
    let mut phone = Peer::new(Codec::Pcmu);
    handshake(&mut caller, &mut phone, CALLER, t0);
    relay(&mut caller, &mut agent, t0);
    drain(&mut agent);
    for (event, _) in dtmf::event_packets(11, 800, 10, 160) {
        let d = phone.packet(101, &event.to_bytes());
        caller.handle_rtp(t0, CALLER, &d);
    }
    relay(&mut caller, &mut agent, t0);
    let tx = drain(&mut agent).0;
    assert_eq!(tx.len(), 7);
    let ts = parsed(&tx[0]).timestamp;
    for t in &tx {
        let p = parsed(t);
        assert_eq!((p.payload_type, p.timestamp), (101, ts));
        assert_eq!(TelephoneEvent::parse(p.payload).unwrap().digit(), Some('#'));
    }
    assert_eq!(
        drain(&mut caller).1,
        vec![
            MediaAction::RemoteLatched { address: CALLER },
            MediaAction::DigitReceived {
                digit: '#',
                method: DtmfMethod::Rfc4733
            }
        ]
    );
}

#[test]
fn bridged_dtmf_becomes_a_tone_on_a_leg_without_telephone_event() {
    let t0 = crate::media::test_epoch();
    let mut caller = session(t0, Codec::Pcmu);
    let mut n = negotiated(Codec::Pcma);
    n.telephone_event = None;
    let mut trunk = MediaSession::new(t0, SessionConfig::new(&n, 3, 3, 3));
    caller.handle_command(t0, MediaCommand::Bridge);
    trunk.handle_command(t0, MediaCommand::Bridge);
    let mut phone = Peer::new(Codec::Pcmu);
    handshake(&mut caller, &mut phone, CALLER, t0);
    for (event, _) in dtmf::event_packets(8, 800, 10, 160) {
        let d = phone.packet(101, &event.to_bytes());
        caller.handle_rtp(t0, CALLER, &d);
    }
    relay(&mut caller, &mut trunk, t0);
    let mut audio = Vec::new();
    for k in 0..20 {
        trunk.handle_tick(ms(t0, 20 * k));
        for t in drain(&mut trunk).0 {
            assert_eq!(parsed(&t).payload_type, 8);
            Codec::Pcma.decode(parsed(&t).payload, &mut audio);
        }
    }
    let mut detector = ToneDetector::new();
    detector.feed(&audio);
    detector.feed(&[0; 800]);
    assert_eq!(
        (detector.poll_digit(), detector.poll_digit()),
        (Some('8'), None)
    );
}

#[test]
fn continuity_across_prompt_bridge_and_music() {
    let t0 = crate::media::test_epoch();
    let mut caller = session(t0, Codec::Pcmu);
    let mut agent_leg = session(t0, Codec::Pcmu);
    agent_leg.handle_command(t0, MediaCommand::Bridge);
    let mut agent_phone = Peer::new(Codec::Pcmu);
    agent_phone.ts = 3_000_000_000;
    let mut sent = Vec::new();
    caller.handle_command(
        t0,
        MediaCommand::Play {
            id: 1,
            prompts: vec![prompt(1600)],
            barge_in: false,
        },
    );
    for k in 0..300u64 {
        let now = ms(t0, 20 * k);
        match k {
            100 => caller.handle_command(now, MediaCommand::Bridge),
            200 => caller.handle_command(now, MediaCommand::LoopMusic(prompt(500))),
            _ => {}
        }
        if (100..200).contains(&k) {
            let d = agent_phone.audio(&[100; 160]);
            agent_leg.handle_rtp(now, NAT, &d);
            relay(&mut agent_leg, &mut caller, now);
        }
        caller.handle_tick(now);
        sent.extend(drain(&mut caller).0);
    }
    let packets: Vec<RtpPacket> = sent.iter().map(parsed).collect();
    assert!(packets.iter().all(|p| p.ssrc == 0x1234_5678));
    for w in packets.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
        let step = w[1].timestamp.wrapping_sub(w[0].timestamp) as i32;
        assert!(
            step >= 160,
            "timestamp went from {} to {}",
            w[0].timestamp,
            w[1].timestamp
        );
    }
    // Marker bits exactly where the feed changed: prompt start, bridge, music.
    let markers = packets.iter().filter(|p| p.marker).count();
    assert_eq!(markers, 3);
}

#[test]
fn sends_dtmf_as_events_then_resumes() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    s.handle_command(t0, MediaCommand::LoopMusic(prompt(1000)));
    s.handle_command(t0, MediaCommand::SendDtmf("1#".into()));
    let mut sent = Vec::new();
    for k in 0..30 {
        s.handle_tick(ms(t0, 20 * k));
        sent.extend(drain(&mut s).0);
    }
    let packets: Vec<RtpPacket> = sent.iter().map(parsed).collect();
    let events: Vec<&RtpPacket> = packets.iter().filter(|p| p.payload_type == 101).collect();
    assert_eq!(events.len(), 14);
    let mut rx = DtmfReceiver::default();
    let digits: Vec<char> = events
        .iter()
        .filter_map(|p| rx.receive(p.timestamp, TelephoneEvent::parse(p.payload).unwrap()))
        .collect();
    assert_eq!(digits, vec!['1', '#']);
    assert_eq!(events.iter().filter(|p| p.marker).count(), 2);
    // Music resumed after the digits and the pause, continuing the stream.
    assert_eq!(packets.last().unwrap().payload_type, 0);
    for w in packets.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
    }
}

#[test]
fn sends_dtmf_as_tones_without_telephone_event() {
    let t0 = crate::media::test_epoch();
    let mut n = negotiated(Codec::Pcma);
    n.telephone_event = None;
    let mut s = MediaSession::new(t0, SessionConfig::new(&n, 1, 1, 1));
    s.handle_command(t0, MediaCommand::SendDtmf("5".into()));
    let mut audio = Vec::new();
    for k in 0..20 {
        s.handle_tick(ms(t0, 20 * k));
        for t in drain(&mut s).0 {
            Codec::Pcma.decode(parsed(&t).payload, &mut audio);
        }
    }
    let mut detector = ToneDetector::new();
    detector.feed(&audio);
    detector.feed(&[0; 800]);
    assert_eq!(detector.poll_digit(), Some('5'));
    assert_eq!(detector.poll_digit(), None);
}

/// Counts upward zero crossings per second of a recording.
fn frequency(samples: &[i16]) -> f64 {
    let crossings = samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    crossings as f64 * 8000.0 / samples.len() as f64
}

#[test]
fn recording_puts_reordered_audio_back_in_order() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    s.handle_command(t0, MediaCommand::StartRecording(RecordSides::Received));
    let mut phone = Peer::new(Codec::Pcmu);
    let tone: Vec<i16> = (0..16_000)
        .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    let datagrams: Vec<Vec<u8>> = tone.chunks(160).map(|c| phone.audio(c)).collect();
    let mut order: Vec<usize> = (0..datagrams.len()).collect();
    for pair in order[2..].chunks_mut(2) {
        pair.reverse();
    }
    for (k, &i) in order.iter().enumerate() {
        let now = ms(t0, 20 * k as u64);
        s.handle_rtp(now, CALLER, &datagrams[i]);
        s.handle_tick(now);
    }
    s.handle_command(ms(t0, 2000), MediaCommand::StopRecording);
    let recorded: Vec<i16> = std::iter::from_fn(|| s.poll_recording())
        .flatten()
        .collect();
    assert!(!s.is_recording());
    // 2 s of call; the first packet went to probation, so ~1.98 s of tone.
    assert_eq!(recorded.len(), 16_000);
    let voiced: Vec<i16> = recorded
        .iter()
        .copied()
        .skip_while(|&x| x == 0)
        .take(14_000)
        .collect();
    assert!(
        (frequency(&voiced) - 1000.0).abs() < 2.0,
        "{}",
        frequency(&voiced)
    );
    // In order means no discontinuities: consecutive samples never jump by more
    // than a 1 kHz sine can move in one sample (plus G.711 error).
    assert!(
        voiced
            .windows(2)
            .all(|w| (w[0] as i32 - w[1] as i32).abs() < 5000)
    );
}

/// `#` stops the recording the moment the last packet arrives, with the final
/// packets reordered: everything still in the reorder buffer lands in the WAV.
#[test]
fn stopping_flushes_reordered_packets_into_the_recording() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    s.handle_command(t0, MediaCommand::StartRecording(RecordSides::Received));
    let mut phone = Peer::new(Codec::Pcmu);
    // Packet k is a flat level, its sign alternating: each packet a run in the WAV.
    let levels: Vec<i16> = (0..30)
        .map(|k| (1000 + 100 * k) * if k % 2 == 0 { 1 } else { -1 })
        .collect();
    let datagrams: Vec<Vec<u8>> = levels.iter().map(|&l| phone.audio(&[l; 160])).collect();
    let mut order: Vec<usize> = (0..datagrams.len()).collect();
    order[26..].reverse(); // the last four arrive backwards
    let mut now = t0;
    for (k, &i) in order.iter().enumerate() {
        now = ms(t0, 20 * k as u64);
        s.handle_rtp(now, CALLER, &datagrams[i]);
        s.handle_tick(now);
    }
    s.handle_command(now, MediaCommand::StopRecording);
    let recorded: Vec<i16> = std::iter::from_fn(|| s.poll_recording())
        .flatten()
        .collect();
    // Each run of equal samples is one packet (as G.711 decodes its level). Only
    // the first packet may be missing: it went to the RTP probation.
    let mut runs: Vec<i16> = recorded.iter().copied().filter(|&x| x != 0).collect();
    runs.dedup();
    let mut expected = Vec::new();
    for &l in &levels[1..] {
        let mut payload = Vec::new();
        Codec::Pcmu.encode(&[l], &mut payload);
        Codec::Pcmu.decode(&payload, &mut expected);
    }
    assert_eq!(runs, expected);
    assert_eq!(
        recorded.iter().filter(|&&x| x != 0).count(),
        runs.len() * 160
    );
}

/// Audio still in the reorder buffer from before the recording started is not part
/// of it, and does not anchor it: a phone whose timestamps did not advance during a
/// pause (before the beep) is still recorded from when it speaks.
#[test]
fn audio_from_before_the_recording_neither_enters_nor_anchors_it() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    let mut phone = Peer::new(Codec::Pcmu);
    for k in 0..10u64 {
        let d = phone.audio(&[500; 160]);
        s.handle_rtp(ms(t0, 20 * k), CALLER, &d);
    }
    s.handle_command(
        ms(t0, 2000),
        MediaCommand::StartRecording(RecordSides::Received),
    );
    let mut now = t0;
    for k in 0..20u64 {
        now = ms(t0, 2000 + 20 * k);
        let d = phone.audio(&[3000; 160]);
        s.handle_rtp(now, CALLER, &d);
        s.handle_tick(now);
    }
    s.handle_command(now, MediaCommand::StopRecording);
    let recorded: Vec<i16> = std::iter::from_fn(|| s.poll_recording())
        .flatten()
        .collect();
    assert!(
        recorded.iter().all(|&x| x == 0 || x > 2500),
        "nothing from before"
    );
    assert_eq!(recorded.iter().filter(|&&x| x > 2500).count(), 20 * 160);
    assert!(recorded[..160].iter().all(|&x| x > 2500), "from the start");
}

#[test]
fn recording_both_sides_mixes_prompt_and_caller() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcma);
    s.handle_command(t0, MediaCommand::StartRecording(RecordSides::Both));
    s.handle_command(
        t0,
        MediaCommand::LoopMusic(Prompt::from_samples("dc", vec![1000; 160])),
    );
    let mut phone = Peer::new(Codec::Pcma);
    for k in 0..50u64 {
        let now = ms(t0, 20 * k);
        let d = phone.audio(&[-500; 160]);
        s.handle_rtp(now, CALLER, &d);
        s.handle_tick(now);
    }
    s.handle_command(ms(t0, 1000), MediaCommand::StopRecording);
    let recorded: Vec<i16> = std::iter::from_fn(|| s.poll_recording())
        .flatten()
        .collect();
    assert_eq!(recorded.len(), 8000);
    // Middle of the call: both sides present, summed. Our side is recorded before
    // encoding (1000), the caller's after decoding (A-law of -500 is -504).
    assert_eq!(recorded[4000], 1000 - 504);
}

#[test]
fn silence_while_recording_is_reported_once_and_rearms_on_speech() {
    let t0 = crate::media::test_epoch();
    let mut s = session(t0, Codec::Pcmu);
    s.handle_command(t0, MediaCommand::StartRecording(RecordSides::Received));
    s.handle_command(
        t0,
        MediaCommand::DetectSilence {
            level: 100,
            after: Duration::from_millis(1000),
        },
    );
    let mut phone = Peer::new(Codec::Pcmu);
    let mut silences = Vec::new();
    // 1 s of speech-level audio, 1.5 s of packets with near silence, 1 s of speech,
    // then no packets at all (a phone that stops sending) for 1.5 s.
    for k in 0..250u64 {
        let now = ms(t0, 20 * k);
        let level = match k {
            0..50 => Some(3000),
            50..125 => Some(20),
            125..175 => Some(-3000),
            _ => None,
        };
        if let Some(v) = level {
            let d = phone.audio(&[v; 160]);
            s.handle_rtp(now, CALLER, &d);
        }
        s.handle_tick(now);
        let (_, actions) = drain(&mut s);
        for a in actions {
            if let MediaAction::Silence { lasted } = a {
                silences.push((k, lasted));
            }
        }
    }
    assert_eq!(silences.len(), 2, "{silences:?}");
    // Each after a second of quiet (plus the recording's 200 ms hold-back).
    assert!((105..=120).contains(&silences[0].0), "{silences:?}");
    assert!((225..=240).contains(&silences[1].0), "{silences:?}");
    assert!(
        silences
            .iter()
            .all(|(_, l)| *l >= Duration::from_millis(1000))
    );
}

/// The received audio goes through answering-machine detection once asked: the
/// generated greetings of the detector's accuracy tests, sent as PCMU, get their
/// verdict once.
#[test]
fn machine_detection_runs_on_received_audio_and_answers_once() {
    use crate::campaigns::amd::{self, AmdParams, Verdict};
    for (samples, expected) in [
        (amd::samples::machine(3), Verdict::Machine),
        (amd::samples::human(3), Verdict::Human),
    ] {
        let t0 = crate::media::test_epoch();
        let mut s = session(t0, Codec::Pcmu);
        s.handle_command(t0, MediaCommand::DetectMachine(AmdParams::default()));
        let mut phone = Peer::new(Codec::Pcmu);
        let mut verdicts = Vec::new();
        for (k, frame) in samples.chunks(160).enumerate() {
            let now = ms(t0, 20 * k as u64);
            s.handle_rtp(now, CALLER, &phone.audio(frame));
            s.handle_tick(now);
            let (_, actions) = drain(&mut s);
            verdicts.extend(actions.into_iter().filter_map(|a| match a {
                MediaAction::MachineDetection(v) => Some(v),
                _ => None,
            }));
        }
        assert_eq!(verdicts, [expected]);
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Network input never panics, whatever the bytes and addresses.
        #[test]
        fn arbitrary_datagrams_never_panic(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..50), port in 1u16..4) {
            let t0 = crate::media::test_epoch();
            let mut s = session(t0, Codec::Pcmu);
            s.handle_command(t0, MediaCommand::Bridge);
            s.handle_command(t0, MediaCommand::StartRecording(RecordSides::Both));
            for (i, d) in datagrams.iter().enumerate() {
                let now = ms(t0, 20 * i as u64);
                s.handle_rtp(now, SocketAddr::from(([10, 0, 0, 1], port + (i as u16 % 2))), d);
                s.handle_tick(now);
                while s.poll_frame().is_some() {}
                drain(&mut s);
            }
            s.handle_command(ms(t0, 5000), MediaCommand::StopRecording);
        }

        /// Valid RTP with random headers (sequence jumps, SSRC changes, wild
        /// timestamps) also never panics and never records unbounded audio.
        #[test]
        fn wild_rtp_never_panics(headers in proptest::collection::vec((any::<u16>(), any::<u32>(), 0u32..3, any::<u8>()), 0..80)) {
            let t0 = crate::media::test_epoch();
            let mut s = session(t0, Codec::Pcmu);
            s.handle_command(t0, MediaCommand::StartRecording(RecordSides::Received));
            for (i, (seq, ts, ssrc, pt)) in headers.iter().enumerate() {
                let mut d = Vec::new();
                let pt = [0u8, 8, 101, 13][*pt as usize % 4];
                RtpPacket { marker: false, payload_type: pt, sequence: *seq, timestamp: *ts, ssrc: *ssrc, payload: &[0x55; 160] }.write(&mut d);
                let now = ms(t0, 20 * i as u64);
                s.handle_rtp(now, CALLER, &d);
                s.handle_tick(now);
            }
            s.handle_command(ms(t0, 2000), MediaCommand::StopRecording);
            let recorded: usize = std::iter::from_fn(|| s.poll_recording()).map(|r| r.len()).sum();
            prop_assert!(recorded <= 16_000);
        }
    }
}

#[test]
fn rtcp_reports_carry_loss_jitter_and_round_trip_both_ways() {
    let t0 = crate::media::test_epoch();
    let ntp = crate::media::rtcp::ntp_from_unix_ms(1_700_000_000_000);
    let addr_a = CALLER;
    let addr_b = NAT;
    let make = |ssrc: u32, remote: SocketAddr| {
        let mut n = negotiated(Codec::Pcmu);
        n.remote = Some(remote);
        let mut c = SessionConfig::new(&n, ssrc, 1, 1);
        c.wallclock = Some((t0, ntp));
        MediaSession::new(t0, c)
    };
    let (mut a, mut b) = (make(0xA, addr_b), make(0xB, addr_a));
    a.handle_command(t0, MediaCommand::LoopMusic(prompt(1000)));
    b.handle_command(t0, MediaCommand::LoopMusic(prompt(1000)));
    let mut rtcp_seen = 0;
    // In flight: (arrival, to_b, rtcp, from, bytes). 30 ms one way; every 10th RTP
    // packet from a is lost.
    let mut flight: Vec<(Instant, bool, bool, SocketAddr, Vec<u8>)> = Vec::new();
    for k in 0..600u64 {
        let now = ms(t0, 20 * k);
        flight.sort_by_key(|f| f.0);
        let due = flight.iter().take_while(|f| f.0 <= now).count();
        for (at, to_b, rtcp, from, bytes) in flight.drain(..due) {
            let to = if to_b { &mut b } else { &mut a };
            if rtcp {
                to.handle_rtcp(at, from, &bytes);
            } else {
                to.handle_rtp(at, from, &bytes);
            }
        }
        for (session, own, peer, to_b) in [
            (&mut a, addr_a, addr_b, true),
            (&mut b, addr_b, addr_a, false),
        ] {
            session.handle_tick(now);
            while let Some(t) = session.poll_transmit() {
                if t.rtcp {
                    // RTCP goes to the RTP port + 1 and comes from ours + 1.
                    assert_eq!(t.destination.port(), peer.port() + 1);
                    rtcp_seen += 1;
                    flight.push((
                        now + Duration::from_millis(30),
                        to_b,
                        true,
                        SocketAddr::new(own.ip(), own.port() + 1),
                        t.payload,
                    ));
                } else if !(to_b && parsed(&t).sequence.is_multiple_of(10)) {
                    flight.push((now + Duration::from_millis(30), to_b, false, own, t.payload));
                }
            }
        }
    }
    // 12 s: two reports each way.
    assert_eq!(rtcp_seen, 4);
    let qa = a.quality();
    // b saw a's stream lose 10%: a learns it from b's report.
    let loss = qa.remote_fraction_lost.unwrap();
    assert!((loss - 0.1).abs() < 0.01, "{loss}");
    assert!(qa.remote_jitter_ms.unwrap() < 1.0);
    // 30 ms each way.
    let rtt = qa.round_trip_ms.unwrap();
    assert!((rtt - 60.0).abs() < 1.0, "{rtt}");
    assert_eq!(b.quality().remote_fraction_lost, Some(0.0));
    // Reports from an address that is not the media peer are ignored.
    let mut c = make(0xC, addr_b);
    let bogus = crate::media::rtcp::build(0xB, None, None, "x");
    c.handle_rtcp(t0, INTRUDER, &bogus);
    assert_eq!(c.quality().packets_rejected, 1);
}
