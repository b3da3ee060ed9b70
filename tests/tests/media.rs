//! Media through the server, end to end: real SIP and real RTP on loopback.

use std::time::Duration;

use comm_server::media::g711::Codec;
use comm_server::media::prompt::Prompt;
use comm_server::sip::message::Method;
use comm_server::store::EndReason;
use e2e::{Rtp, Server, Ua, base_config, carries, g711_sdp, pcmu, sdp_audio_addr, talk, temp_dir};

const PROMPT_ROUTE: &str =
    "[[route]]\nnumber = \"600\"\ntarget = { prompt = [\"general/welcome\"] }\n";

fn sounds() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sounds")
}

#[tokio::test]
async fn a_prompt_route_plays_the_prompt_sample_exact_then_hangs_up() {
    let s = Server::start(&base_config(&temp_dir(), PROMPT_ROUTE))
        .await
        .unwrap();
    let rtp = Rtp::bind().await.unwrap();
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    alice.media_port = rtp.port();
    let inv = alice.invite("600").await.unwrap();
    let ok = alice
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert!(
        sdp_audio_addr(&ok.body).is_some(),
        "answer names our RTP address"
    );
    let d = alice.dialog_from_answer(&inv, &ok);
    alice.ack(&d).await.unwrap();

    let frames = rtp
        .collect(Duration::from_millis(500), Duration::from_secs(10))
        .await;
    let bye = alice.request(Method::Bye).await.unwrap();
    alice.reply(&bye, 200, "t").await.unwrap();

    assert!(
        frames.iter().all(|f| f.payload_type == 0),
        "PCMU, the offer's first codec"
    );
    // Arrival order: loopback does not reorder, and sorting by the 16-bit sequence
    // number would break when the server's random start wraps during the prompt.
    let heard: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
    let prompt = Prompt::load(&sounds().join("general/welcome.wav"), "general/welcome").unwrap();
    let expected = pcmu(prompt.samples());
    assert!(expected.len() > 8000, "the prompt is real audio");
    let found = heard
        .windows(expected.len())
        .any(|w| w == expected.as_slice());
    assert!(
        found,
        "the RTP stream carries the prompt exactly ({} bytes heard, {} expected)",
        heard.len(),
        expected.len()
    );

    let store = s.store.clone();
    let c = loop {
        if let Some(c) = store.cdr(inv.call_id()).await.unwrap() {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(c.end_reason, EndReason::Answered);
    let quality: serde_json_value::Value = c
        .media_quality_json
        .as_deref()
        .map(serde_json_value::parse)
        .unwrap();
    assert!(
        quality.sent() > 100,
        "quality figures count the frames sent"
    );
    s.stop().await.unwrap();
}

/// A minimal JSON probe so the test needs no extra dependency.
mod serde_json_value {
    pub struct Value(String);
    pub fn parse(s: &str) -> Value {
        Value(s.to_string())
    }
    impl Value {
        pub fn sent(&self) -> u64 {
            let i = self.0.find("\"packets_sent\":").expect("packets_sent");
            self.0[i + 15..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .unwrap()
        }
    }
}

/// Alice calls bob through the server with RTP endpoints on both; returns everything
/// needed to talk.
struct Bridged {
    s: Server,
    alice: Ua,
    bob: Ua,
    ra: Rtp,
    rb: Rtp,
    to_server_from_alice: std::net::SocketAddr,
    to_server_from_bob: std::net::SocketAddr,
    a: e2e::Dialog,
    /// Payload types of the server's answer to alice and offer to bob.
    answer_to_alice: Vec<u8>,
    offer_to_bob: Vec<u8>,
}

async fn bridged(extra: &str) -> Bridged {
    bridged_with(extra, e2e::offer_sdp).await
}

/// As [`bridged`], bob answering with `bob_answer(his RTP port)` as his SDP.
async fn bridged_with(extra: &str, bob_answer: impl Fn(u16) -> String) -> Bridged {
    let s = Server::start(&base_config(&temp_dir(), extra))
        .await
        .unwrap();
    let (ra, rb) = (Rtp::bind().await.unwrap(), Rtp::bind().await.unwrap());
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    alice.media_port = ra.port();
    bob.media_port = rb.port();
    assert_eq!(bob.register(600).await.unwrap().status, 200);
    let inv = alice.invite("1002").await.unwrap();
    let incoming = bob.request(Method::Invite).await.unwrap();
    let to_server_from_bob = sdp_audio_addr(&incoming.body).expect("our offer to bob");
    assert!(
        !String::from_utf8_lossy(&incoming.body).contains(&format!(" {} ", ra.port())),
        "bob gets the server's address, not alice's"
    );
    bob.reply_with_sdp(&incoming, 200, "bobtag", &bob_answer(rb.port()))
        .await
        .unwrap();
    let ok = alice
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let to_server_from_alice = sdp_audio_addr(&ok.body).expect("our answer to alice");
    let a = alice.dialog_from_answer(&inv, &ok);
    alice.ack(&a).await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    Bridged {
        s,
        alice,
        bob,
        ra,
        rb,
        to_server_from_alice,
        to_server_from_bob,
        a,
        answer_to_alice: sdp_payload_types(&ok.body),
        offer_to_bob: sdp_payload_types(&incoming.body),
    }
}

#[tokio::test]
async fn a_bridge_carries_audio_both_ways_bit_exact() {
    let mut b = bridged("").await;
    carries(&mut b.ra, b.to_server_from_alice, &b.rb).await;
    carries(&mut b.rb, b.to_server_from_bob, &b.ra).await;
    assert_eq!(b.alice.bye(&mut b.a).await.unwrap().status, 200);
    let bye = b.bob.request(Method::Bye).await.unwrap();
    b.bob.reply(&bye, 200, "bobtag").await.unwrap();
    b.s.stop().await.unwrap();
}

/// The payload types of an SDP body's `m=audio` line, in its order of preference.
fn sdp_payload_types(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .expect("an m=audio line");
    line.split_whitespace()
        .skip(2)
        .map(|t| t.parse().unwrap())
        .collect()
}

/// Largest power of two not above `x` (0 for 0).
fn floor_pow2(x: i32) -> i32 {
    if x <= 0 {
        0
    } else {
        1 << (31 - x.leading_zeros())
    }
}

/// The most one G.711 quantisation in `codec` may move the 16-bit linear sample `x`:
/// half the step of the interval `x` falls in, since the encoder picks the interval
/// and the decoder returns its middle (ITU-T G.711 tables 1 and 2).
///
/// - A-law: 16 steps per segment; segments 0 and 1 (|x| < 512) have step 16, each
///   later segment [2^k, 2^(k+1)) has step 2^k / 16. Half a step: max(8, 2^k / 32).
/// - mu-law: segments are powers of two of |x| + 132 (the bias), 16 steps each:
///   half a step is floor_pow2(|x| + 132) / 32, from 4 near zero to 512 at full scale.
///
/// Transcoding a received code word is exactly one such quantisation of the decoded
/// sample, so the far end hears the sender's decoded audio within this bound and no
/// worse; anything larger (a wrong table, a byte shifted, a sample dropped) fails.
fn g711_error_bound(codec: Codec, x: i16) -> i32 {
    let m = (x as i32).abs();
    match codec {
        Codec::Pcma => (floor_pow2(m) / 32).max(8),
        Codec::Pcmu => floor_pow2(m + 132) / 32,
    }
}

/// 50 distinct 20 ms frames of linear audio: a rising tone whose loudness grows from
/// 100 to about 26,000, so the frames visit every G.711 segment (quiet and loud speech).
fn speech() -> Vec<Vec<i16>> {
    (0..50)
        .map(|k| {
            let f = 300.0 + 20.0 * k as f64;
            let amplitude = 100.0 * 1.12f64.powi(k);
            (0..160)
                .map(|i| {
                    (amplitude * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()) as i16
                })
                .collect()
        })
        .collect()
}

/// Sends 50 frames encoded in `sent_as` while collecting on the other side; checks
/// every arriving frame is in `heard_as` and decodes, frame by frame and in order, to
/// what the sender's own frames decode to, within one G.711 quantisation of `heard_as`.
async fn carries_transcoded(
    from: &mut Rtp,
    sent_as: Codec,
    to: std::net::SocketAddr,
    at: &Rtp,
    heard_as: Codec,
) {
    let encoded: Vec<Vec<u8>> = speech()
        .iter()
        .map(|samples| {
            let mut out = Vec::new();
            sent_as.encode(samples, &mut out);
            out
        })
        .collect();
    // What the sender's audio sounds like: its code words decoded.
    let reference: Vec<Vec<i16>> = encoded
        .iter()
        .map(|payload| {
            let mut out = Vec::new();
            sent_as.decode(payload, &mut out);
            out
        })
        .collect();
    let sender = async {
        for f in &encoded {
            from.send(to, sent_as.payload_type(), f).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (_, got) = tokio::join!(
        sender,
        at.collect(Duration::from_millis(400), Duration::from_secs(5))
    );
    assert!(
        got.iter()
            .all(|f| f.payload_type == heard_as.payload_type()),
        "every frame arrives as {} (payload types {:?})",
        heard_as.encoding_name(),
        got.iter().map(|f| f.payload_type).collect::<Vec<_>>()
    );
    assert!(
        got.len() >= 45,
        "only {} of 50 frames arrived (the first may be spent on RFC 3550 probation)",
        got.len()
    );
    let heard: Vec<Vec<i16>> = got
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            heard_as.decode(&f.payload, &mut out);
            out
        })
        .collect();
    // The worst excess over the bound, sample by sample; <= 0 means within G.711 error.
    let excess = |h: &[i16], r: &[i16]| -> i32 {
        assert_eq!(h.len(), r.len(), "a frame keeps its 160 samples");
        h.iter()
            .zip(r)
            .map(|(&h, &r)| (h as i32 - r as i32).abs() - g711_error_bound(heard_as, r))
            .max()
            .unwrap()
    };
    let first = reference
        .iter()
        .position(|r| excess(&heard[0], r) <= 0)
        .expect("the first frame heard is one of the frames sent, within G.711 error");
    assert!(first <= 5, "frames {first} onwards only: too many lost");
    for (i, h) in heard.iter().enumerate() {
        let r = reference.get(first + i).expect("no more frames than sent");
        assert!(
            excess(h, r) <= 0,
            "frame {} heard within one {} quantisation of the sent audio (exceeds by {})",
            first + i,
            heard_as.encoding_name(),
            excess(h, r)
        );
    }
    // Loud frames really went through a quantiser of their own: not a silent copy.
    assert!(
        heard.iter().zip(&reference[first..]).any(|(h, r)| h != r),
        "transcoding changes some samples"
    );
}

#[tokio::test]
async fn a_pcmu_to_pcma_bridge_carries_audio_both_ways_within_g711_error() {
    let mut b = bridged_with("", |port| g711_sdp(port, &[Codec::Pcma])).await;
    // Alice talks PCMU (her offer's first codec), bob only PCMA: the server transcodes.
    assert_eq!(
        b.answer_to_alice[0], 0,
        "alice's leg is PCMU: the answer's first payload type"
    );
    assert!(
        b.offer_to_bob.contains(&8),
        "the server offers bob PCMA too, so it can transcode"
    );
    carries_transcoded(
        &mut b.ra,
        Codec::Pcmu,
        b.to_server_from_alice,
        &b.rb,
        Codec::Pcma,
    )
    .await;
    carries_transcoded(
        &mut b.rb,
        Codec::Pcma,
        b.to_server_from_bob,
        &b.ra,
        Codec::Pcmu,
    )
    .await;
    assert_eq!(b.alice.bye(&mut b.a).await.unwrap().status, 200);
    let bye = b.bob.request(Method::Bye).await.unwrap();
    b.bob.reply(&bye, 200, "bobtag").await.unwrap();
    b.s.stop().await.unwrap();
}

/// What a phone plays from G.711 `frames` (in arrival order, which loopback keeps;
/// a 16-bit sequence sort would break at its wrap): each at its RTP timestamp,
/// silence where no frame covers the timeline, as a jitter buffer would.
fn play_out(codec: Codec, frames: &[e2e::RtpFrame]) -> Vec<i16> {
    let Some(base) = frames.first().map(|f| f.timestamp) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut decoded = Vec::new();
    for f in frames {
        let at = f.timestamp.wrapping_sub(base) as usize;
        assert!(at < 8000 * 60, "timestamps advance sensibly");
        decoded.clear();
        codec.decode(&f.payload, &mut decoded);
        if out.len() < at + decoded.len() {
            out.resize(at + decoded.len(), 0);
        }
        out[at..at + decoded.len()].copy_from_slice(&decoded);
    }
    out
}

#[tokio::test]
async fn an_rfc4733_digit_reaches_a_phone_without_telephone_event_as_one_tone() {
    use comm_server::media::dtmf::{self, ToneDetector};
    // Bob's phone knows PCMA only: no telephone-event, so digits must become tones.
    let mut b = bridged_with("", |port| g711_sdp(port, &[Codec::Pcma])).await;
    assert!(
        b.answer_to_alice.contains(&101),
        "alice's leg negotiated telephone-event 101"
    );
    let silence = pcmu(&[0; 160]);
    let collecting =
        b.rb.collect(Duration::from_millis(500), Duration::from_secs(5));
    let alice_talks = async {
        // Silence first (it latches alice's stream), then one key press of 5 as RFC
        // 4733 events: 200 ms of updates every 20 ms, then the three end packets, all
        // with the event's start timestamp (RFC 4733 section 2.5.1).
        for _ in 0..10 {
            b.ra.send(b.to_server_from_alice, 0, &silence)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let start = b.ra.timestamp();
        let event = dtmf::digit_event('5').unwrap();
        let packets = dtmf::event_packets(event, 1600, 10, 160);
        assert!(
            packets.iter().filter(|(e, _)| e.end).count() >= 3,
            "the end is sent three times, as phones do"
        );
        for (e, marker) in &packets {
            b.ra.send_at(b.to_server_from_alice, 101, *marker, start, &e.to_bytes())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        packets.len()
    };
    let (got, sent) = tokio::join!(collecting, alice_talks);
    assert!(sent >= 10, "one press, many packets ({sent})");
    assert!(
        got.iter().all(|f| f.payload_type == 8),
        "bob gets PCMA only, never telephone-event"
    );
    let mut detector = ToneDetector::new();
    detector.feed(&play_out(Codec::Pcma, &got));
    // A trailing silence so a tone at the very end is also released.
    detector.feed(&[0; 1600]);
    let digits: Vec<char> = std::iter::from_fn(|| detector.poll_digit()).collect();
    assert_eq!(
        digits,
        vec!['5'],
        "one key press of 5, however many event packets carried it"
    );
    assert_eq!(b.alice.bye(&mut b.a).await.unwrap().status, 200);
    let bye = b.bob.request(Method::Bye).await.unwrap();
    b.bob.reply(&bye, 200, "bobtag").await.unwrap();
    b.s.stop().await.unwrap();
}

/// One RTP packet as a third party would forge it: its own SSRC and sequence.
fn forged(sequence: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let packet = comm_server::media::rtp::RtpPacket {
        marker: false,
        payload_type: 0,
        sequence,
        timestamp: sequence as u32 * 160,
        ssrc,
        payload,
    };
    let mut out = Vec::new();
    packet.write(&mut out);
    out
}

#[tokio::test]
async fn rtp_from_a_third_address_does_not_take_over_a_latched_stream() {
    let mut b = bridged("").await;
    let frames = talk();
    // Alice talks first: her address and SSRC pass probation and latch.
    for f in &frames[..10] {
        b.ra.send(b.to_server_from_alice, 0, f).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let latched =
        b.rb.collect(Duration::from_millis(300), Duration::from_secs(2))
            .await;
    assert!(
        latched
            .iter()
            .filter(|g| frames.contains(&g.payload))
            .count()
            >= 8,
        "alice's first frames reach bob: her stream is latched"
    );

    // An intruder on another address sends its own stream (another SSRC, in-order
    // sequence numbers, so it would pass probation on an unlatched leg) to the port
    // the server gave alice, every 10 ms while alice keeps talking every 20 ms.
    let intruder = Rtp::bind().await.unwrap();
    let ssrc: u32 = rand::random::<u32>() | 1;
    let noise: Vec<Vec<u8>> = (0..80)
        .map(|k| {
            let f = 2500.0 + 10.0 * k as f64;
            let samples: Vec<i16> = (0..160)
                .map(|i| {
                    (12000.0 * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()) as i16
                })
                .collect();
            pcmu(&samples)
        })
        .collect();
    assert!(
        noise.iter().all(|n| !frames.contains(n)),
        "the intruder's audio is told apart from alice's"
    );
    let talking = async {
        for k in 0..80 {
            let packet = forged(1000 + k as u16, ssrc, &noise[k]);
            intruder
                .sock
                .send_to(&packet, b.to_server_from_alice)
                .await
                .unwrap();
            if k % 2 == 0 {
                b.ra.send(b.to_server_from_alice, 0, &frames[10 + k / 2])
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (_, got) = tokio::join!(
        talking,
        b.rb.collect(Duration::from_millis(400), Duration::from_secs(5))
    );
    assert!(
        got.iter().all(|g| !noise.contains(&g.payload)),
        "none of the intruder's {} frames reaches bob",
        got.iter().filter(|g| noise.contains(&g.payload)).count()
    );
    assert!(
        got.iter().all(|g| frames[10..].contains(&g.payload)),
        "bob hears alice and only alice"
    );
    assert!(
        got.len() >= 36,
        "alice's later frames still reach bob ({} of 40)",
        got.len()
    );
    let first = frames.iter().position(|f| *f == got[0].payload).unwrap();
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.payload, frames[first + i], "alice's frame {i} in order");
    }

    // The server still sends to alice's address, not the intruder's: bob's audio
    // reaches alice while the intruder keeps sending and hears nothing.
    let intruding = async {
        let mut heard = Vec::new();
        let mut buf = [0u8; 2048];
        for k in 0..100u16 {
            let packet = forged(2000 + k, ssrc, &noise[k as usize % noise.len()]);
            intruder
                .sock
                .send_to(&packet, b.to_server_from_alice)
                .await
                .unwrap();
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(10), intruder.sock.recv_from(&mut buf))
                    .await
            {
                heard.push(buf[..n].to_vec());
            }
        }
        heard
    };
    let (_, heard_by_intruder) =
        tokio::join!(carries(&mut b.rb, b.to_server_from_bob, &b.ra), intruding);
    assert!(
        heard_by_intruder.is_empty(),
        "the intruder receives none of bob's audio ({} packets)",
        heard_by_intruder.len()
    );

    assert_eq!(b.alice.bye(&mut b.a).await.unwrap().status, 200);
    let bye = b.bob.request(Method::Bye).await.unwrap();
    b.bob.reply(&bye, 200, "bobtag").await.unwrap();
    b.s.stop().await.unwrap();
}

#[tokio::test]
async fn hold_is_answered_by_the_server_and_the_other_side_hears_music() {
    let mut b = bridged("").await;
    carries(&mut b.ra, b.to_server_from_alice, &b.rb).await;
    // Alice holds: the server answers (recvonly) and bob gets music, not a re-INVITE.
    let offer = e2e::offer_sdp(b.ra.port()).replace("a=sendrecv", "a=sendonly");
    let hold = b
        .alice
        .send_in_dialog(&mut b.a, Method::Invite, Some(offer))
        .await
        .unwrap();
    let ok = b
        .alice
        .response(hold.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("a=recvonly"));
    b.alice.ack(&b.a).await.unwrap();
    let music =
        b.rb.collect(Duration::from_millis(400), Duration::from_secs(2))
            .await;
    assert!(
        music.len() >= 50,
        "bob hears hold music ({} frames)",
        music.len()
    );
    let silence = pcmu(&[0; 160]);
    assert!(
        music.iter().filter(|f| f.payload != silence).count() > 40,
        "music, not silence"
    );
    // Unhold: the bridge is back.
    let offer = e2e::offer_sdp(b.ra.port());
    let unhold = b
        .alice
        .send_in_dialog(&mut b.a, Method::Invite, Some(offer))
        .await
        .unwrap();
    let ok = b
        .alice
        .response(unhold.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&ok.body).contains("a=sendrecv"));
    b.alice.ack(&b.a).await.unwrap();
    let _ =
        b.rb.collect(Duration::from_millis(100), Duration::from_millis(300))
            .await; // music tail
    carries(&mut b.ra, b.to_server_from_alice, &b.rb).await;
    b.bob.expect_silence(Duration::from_millis(100)).await.ok();
    assert_eq!(b.alice.bye(&mut b.a).await.unwrap().status, 200);
    let bye = b.bob.request(Method::Bye).await.unwrap();
    b.bob.reply(&bye, 200, "bobtag").await.unwrap();
    b.s.stop().await.unwrap();
}

#[tokio::test]
async fn dead_media_hangs_up_with_that_reason_in_the_cdr() {
    let dir = temp_dir();
    let cfg = base_config(&dir, "").replace(
        "rtp-ports = \"auto\"",
        "rtp-ports = \"auto\"\nmedia-timeout = \"1s\"",
    );
    let s = Server::start(&cfg).await.unwrap();
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let inv = alice.invite("500").await.unwrap();
    let ok = alice
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    let d = alice.dialog_from_answer(&inv, &ok);
    alice.ack(&d).await.unwrap();
    // Alice never sends RTP.
    let bye = alice.request(Method::Bye).await.unwrap();
    alice.reply(&bye, 200, "t").await.unwrap();
    let c = loop {
        if let Some(c) = s.store.cdr(inv.call_id()).await.unwrap() {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(c.end_reason, EndReason::MediaTimeout);
    s.stop().await.unwrap();
}
