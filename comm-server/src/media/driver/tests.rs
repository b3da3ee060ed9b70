//! The driver over real loopback sockets: a test phone talks RTP to the engine.

use super::*;
use crate::media::dtmf;
use crate::media::g711::Codec;
use crate::media::prompt::Prompt;
use crate::media::rtp::RtpPacket;
use crate::media::sdp::{Direction, Negotiated};

fn engine() -> (MediaEngine, mpsc::UnboundedReceiver<EngineEvent>) {
    let (engine, events, _task) =
        MediaEngine::spawn(EngineConfig::new(IpAddr::from([127, 0, 0, 1]), None));
    (engine, events)
}

async fn phone() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

fn config(codec: Codec, remote: SocketAddr) -> SessionConfig {
    let n = Negotiated {
        remote: Some(remote),
        codec,
        payload_type: codec.payload_type(),
        telephone_event: Some(101),
        remote_ptime: None,
        direction: Direction::SendRecv,
    };
    SessionConfig::new(&n, 77, 1, 1)
}

async fn recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 1500];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .expect("RTP within 2 s")
        .unwrap();
    buf[..len].to_vec()
}

async fn next_action(events: &mut mpsc::UnboundedReceiver<EngineEvent>) -> (LegId, MediaAction) {
    loop {
        match tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("event within 2 s")
        {
            Some(EngineEvent::Action { leg, action }) => return (leg, action),
            Some(_) => continue,
            None => panic!("engine stopped"),
        }
    }
}

fn rtp(seq: u16, ts: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    RtpPacket {
        marker: false,
        payload_type: pt,
        sequence: seq,
        timestamp: ts,
        ssrc: 5,
        payload,
    }
    .write(&mut out);
    out
}

#[tokio::test]
async fn prompt_audio_arrives_bit_exact_and_playback_finishes() {
    let (engine, mut events) = engine();
    let phone = phone().await;
    let local = engine.open(1).await.unwrap();
    engine
        .start(1, config(Codec::Pcmu, phone.local_addr().unwrap()))
        .unwrap();
    let samples: Vec<i16> = (0..800)
        .map(|i| ((i * 131) % 16_000 - 8000) as i16)
        .collect();
    engine
        .command(
            1,
            MediaCommand::Play {
                id: 3,
                prompts: vec![Prompt::from_samples("p", samples.clone())],
                barge_in: false,
            },
        )
        .unwrap();
    let mut decoded = Vec::new();
    for _ in 0..5 {
        let d = recv(&phone).await;
        Codec::Pcmu.decode(RtpPacket::parse(&d).unwrap().payload, &mut decoded);
    }
    let expected: Vec<i16> = samples
        .iter()
        .map(|&s| Codec::Pcmu.decode_sample(Codec::Pcmu.encode_sample(s)))
        .collect();
    assert_eq!(decoded, expected);
    assert_eq!(
        next_action(&mut events).await,
        (
            1,
            MediaAction::PlaybackFinished {
                id: 3,
                interrupted: false
            }
        )
    );
    // The phone answers from its socket: RFC 4733 digit, sent with retransmissions.
    for (i, (event, _)) in dtmf::event_packets(9, 800, 10, 160).into_iter().enumerate() {
        phone
            .send_to(&rtp(i as u16, 1000, 101, &event.to_bytes()), local)
            .await
            .unwrap();
    }
    assert_eq!(
        next_action(&mut events).await,
        (
            1,
            MediaAction::RemoteLatched {
                address: phone.local_addr().unwrap()
            }
        )
    );
    assert_eq!(
        next_action(&mut events).await.1,
        MediaAction::DigitReceived {
            digit: '9',
            method: crate::media::session::DtmfMethod::Rfc4733
        }
    );
    let quality = engine.close(1).await.unwrap();
    assert_eq!(quality.packets_sent, 5);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), events.recv())
            .await
            .is_err(),
        "digit reported once"
    );
}

#[tokio::test]
async fn bridge_relays_between_two_phones_across_codecs() {
    let (engine, _events) = engine();
    let (caller, agent) = (phone().await, phone().await);
    let caller_leg = engine.open(10).await.unwrap();
    let _agent_leg = engine.open(11).await.unwrap();
    engine
        .start(10, config(Codec::Pcmu, caller.local_addr().unwrap()))
        .unwrap();
    engine
        .start(11, config(Codec::Pcma, agent.local_addr().unwrap()))
        .unwrap();
    engine.bridge(10, 11).unwrap();
    let mut payload = Vec::new();
    Codec::Pcmu.encode(&[4000; 160], &mut payload);
    for i in 0..4u16 {
        caller
            .send_to(&rtp(i, i as u32 * 160, 0, &payload), caller_leg)
            .await
            .unwrap();
    }
    // Probation takes the first packet; the rest arrive at the agent as A-law.
    for _ in 0..3 {
        let d = recv(&agent).await;
        let p = RtpPacket::parse(&d).unwrap();
        assert_eq!(p.payload_type, 8);
        assert!(
            p.payload
                .iter()
                .all(|&b| (Codec::Pcma.decode_sample(b) - 4000).abs() < 200)
        );
    }
}

#[tokio::test]
async fn ports_come_from_the_range_and_run_out() {
    let (engine, _events, _task) = MediaEngine::spawn(EngineConfig::new(
        IpAddr::from([127, 0, 0, 1]),
        Some(PortRange {
            first: 47_001,
            last: 47_005,
        }),
    ));
    let a = engine.open(1).await.unwrap();
    let b = engine.open(2).await.unwrap();
    assert!([47_002, 47_004].contains(&a.port()) && [47_002, 47_004].contains(&b.port()) && a != b);
    assert!(matches!(
        engine.open(3).await,
        Err(DriverError::NoFreePort { .. })
    ));
    engine.close(1).await;
    assert_eq!(engine.open(4).await.unwrap().port(), a.port());
}

#[tokio::test]
async fn recording_lands_complete_on_disk() {
    let (engine, mut events) = engine();
    let phone = phone().await;
    let local = engine.open(1).await.unwrap();
    engine
        .start(1, config(Codec::Pcma, phone.local_addr().unwrap()))
        .unwrap();
    let dir = std::env::temp_dir().join(format!("media-driver-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vm.wav");
    engine
        .record(1, path.clone(), RecordSides::Received)
        .await
        .unwrap();
    let tone: Vec<i16> = (0..8000)
        .map(|i| (5000.0 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    for (i, chunk) in tone.chunks(160).enumerate() {
        interval.tick().await;
        let mut payload = Vec::new();
        Codec::Pcma.encode(chunk, &mut payload);
        phone
            .send_to(&rtp(i as u16, i as u32 * 160, 8, &payload), local)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    engine.command(1, MediaCommand::StopRecording).unwrap();
    let finished = loop {
        match tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            EngineEvent::RecordingFinished { result, .. } => break result.unwrap(),
            _ => continue,
        }
    };
    assert_eq!(finished, path);
    let mut reader = hound::WavReader::open(&path).unwrap();
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let crossings = samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    // About a second of 500 Hz (minus the probation packet) in about 1.1 s of recording.
    assert!(
        (470..=505).contains(&crossings),
        "{crossings} crossings in {} samples",
        samples.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sends 20 ms frames of `audio` from `phone` to `to`, paced in real time.
async fn talk(phone: &UdpSocket, to: SocketAddr, codec: Codec, audio: &[i16], first_seq: u16) {
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    for (i, chunk) in audio.chunks(160).enumerate() {
        interval.tick().await;
        let mut payload = Vec::new();
        codec.encode(chunk, &mut payload);
        let seq = first_seq.wrapping_add(i as u16);
        phone
            .send_to(
                &rtp(seq, seq as u32 * 160, codec.payload_type(), &payload),
                to,
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn inband_tone_digit_is_detected_once() {
    let (engine, mut events) = engine();
    let phone = phone().await;
    let local = engine.open(1).await.unwrap();
    engine
        .start(1, config(Codec::Pcmu, phone.local_addr().unwrap()))
        .unwrap();
    let mut audio = vec![0i16; 320];
    audio.extend(dtmf::tone_samples('4', 960, 3000.0).unwrap());
    audio.extend(vec![0i16; 1600]);
    talk(&phone, local, Codec::Pcmu, &audio, 0).await;
    assert!(matches!(
        next_action(&mut events).await.1,
        MediaAction::RemoteLatched { .. }
    ));
    assert_eq!(
        next_action(&mut events).await.1,
        MediaAction::DigitReceived {
            digit: '4',
            method: crate::media::session::DtmfMethod::InBand
        }
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), events.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_third_address_cannot_take_over_the_stream() {
    let (engine, _events) = engine();
    let (phone, intruder) = (phone().await, phone().await);
    let local = engine.open(1).await.unwrap();
    // SDP said some other address: symmetric RTP must move to where packets come from.
    engine
        .start(1, config(Codec::Pcmu, "127.0.0.1:9".parse().unwrap()))
        .unwrap();
    talk(&phone, local, Codec::Pcmu, &[0; 480], 0).await;
    talk(&intruder, local, Codec::Pcmu, &[0; 1600], 5000).await;
    engine
        .command(
            1,
            MediaCommand::Play {
                id: 1,
                prompts: vec![Prompt::from_samples("p", vec![7; 160])],
                barge_in: false,
            },
        )
        .unwrap();
    let d = recv(&phone).await;
    assert_eq!(RtpPacket::parse(&d).unwrap().payload.len(), 160);
    let mut buf = [0u8; 1500];
    assert!(
        tokio::time::timeout(Duration::from_millis(100), intruder.recv_from(&mut buf))
            .await
            .is_err()
    );
    let quality = engine.close(1).await.unwrap();
    assert_eq!(quality.packets_rejected, 10 + 1);
}

#[tokio::test]
async fn dead_media_is_reported() {
    let (engine, mut events) = engine();
    let phone = phone().await;
    let local = engine.open(1).await.unwrap();
    let mut c = config(Codec::Pcma, phone.local_addr().unwrap());
    c.media_timeout = Duration::from_millis(300);
    engine.start(1, c).unwrap();
    talk(&phone, local, Codec::Pcma, &[0; 480], 0).await;
    assert!(matches!(
        next_action(&mut events).await.1,
        MediaAction::RemoteLatched { .. }
    ));
    // The phone goes silent (cable pulled): the engine reports it within a tick or two.
    match next_action(&mut events).await.1 {
        MediaAction::MediaTimeout { silent_for } => {
            assert!(
                silent_for >= Duration::from_millis(300) && silent_for < Duration::from_millis(600),
                "{silent_for:?}"
            )
        }
        other => panic!("expected MediaTimeout, got {other:?}"),
    }
}

#[tokio::test]
async fn queue_announcement_from_the_shipped_prompts_plays_gapless() {
    let library = crate::media::prompt::PromptLibrary::load_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sounds"),
    )
    .unwrap();
    let prompts = library
        .sequence(&crate::media::prompt::caller_position_prompts(3))
        .unwrap();
    let expected: Vec<i16> = prompts
        .iter()
        .flat_map(|p| {
            p.samples()
                .iter()
                .map(|&s| Codec::Pcma.decode_sample(Codec::Pcma.encode_sample(s)))
        })
        .collect();
    let (engine, mut events) = engine();
    let phone = phone().await;
    engine.open(1).await.unwrap();
    engine
        .start(1, config(Codec::Pcma, phone.local_addr().unwrap()))
        .unwrap();
    engine
        .command(
            1,
            MediaCommand::Play {
                id: 7,
                prompts,
                barge_in: true,
            },
        )
        .unwrap();
    let mut decoded = Vec::new();
    let mut last_seq = None;
    while decoded.len() < expected.len() {
        let d = recv(&phone).await;
        let p = RtpPacket::parse(&d).unwrap();
        if let Some(last) = last_seq {
            assert_eq!(p.sequence, u16::wrapping_add(last, 1));
        }
        last_seq = Some(p.sequence);
        Codec::Pcma.decode(p.payload, &mut decoded);
    }
    // "You are caller number" runs straight into "three"; the last frame is padded.
    assert_eq!(&decoded[..expected.len()], &expected[..]);
    assert!(decoded[expected.len()..].iter().all(|&s| s.abs() <= 8));
    assert_eq!(
        next_action(&mut events).await.1,
        MediaAction::PlaybackFinished {
            id: 7,
            interrupted: false
        }
    );
}

#[tokio::test]
async fn rtcp_flows_on_the_port_pair() {
    let (engine, _events, _task) = MediaEngine::spawn(EngineConfig::new(
        IpAddr::from([127, 0, 0, 1]),
        Some(PortRange {
            first: 47_010,
            last: 47_019,
        }),
    ));
    let phone_rtp = UdpSocket::bind("127.0.0.1:47102").await.unwrap();
    let phone_rtcp = UdpSocket::bind("127.0.0.1:47103").await.unwrap();
    let local = engine.open(1).await.unwrap();
    let mut c = config(Codec::Pcmu, phone_rtp.local_addr().unwrap());
    c.rtcp_interval = Some(Duration::from_millis(200));
    engine.start(1, c).unwrap();
    engine
        .command(
            1,
            MediaCommand::LoopMusic(Prompt::from_samples("m", vec![500; 800])),
        )
        .unwrap();
    // Our sender report arrives on the phone's RTCP port, from ours.
    let mut buf = [0u8; 1500];
    let (len, from) = tokio::time::timeout(Duration::from_secs(2), phone_rtcp.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from.port(), local.port() + 1);
    let report = crate::media::rtcp::parse(&buf[..len]).unwrap();
    assert_eq!(report.ssrc, 77);
    assert!(report.sender.is_some_and(|s| s.packets > 0));
    // The phone reports 25% loss on our stream.
    let block = crate::media::rtcp::ReportBlock {
        ssrc: 77,
        fraction_lost: 64,
        ..Default::default()
    };
    let rr = crate::media::rtcp::build(5, None, Some(block), "phone");
    phone_rtcp
        .send_to(&rr, SocketAddr::new(local.ip(), local.port() + 1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quality = engine.close(1).await.unwrap();
    assert_eq!(quality.remote_fraction_lost, Some(0.25));
}

/// Legs land on all four phases of the grid; each must be ticked when its frames
/// are due. (A phase mix-up makes 3 in 4 frames 5-15 ms late; the bound is loose
/// because this runs on a busy machine in real time.)
#[tokio::test]
async fn legs_on_every_phase_are_ticked_on_time() {
    let (engine, _events) = engine();
    let sink = phone().await;
    for leg in 0..8 {
        engine.open(leg).await.unwrap();
        engine
            .start(leg, config(Codec::Pcmu, sink.local_addr().unwrap()))
            .unwrap();
        engine
            .command(
                leg,
                MediaCommand::LoopMusic(Prompt::from_samples("m", vec![1; 800])),
            )
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut late, mut sent) = (0, 0);
    for leg in 0..8 {
        let q = engine.close(leg).await.unwrap();
        late += q.late_frames;
        sent += q.packets_sent;
    }
    assert!(sent >= 8 * 45, "{sent} frames");
    assert!(late * 4 < sent, "{late} of {sent} frames late");
}
