//! Media through the server, end to end: real SIP and real RTP on loopback.

use std::time::Duration;

use comm_server::media::g711::Codec;
use comm_server::media::prompt::Prompt;
use comm_server::sip::message::Method;
use comm_server::store::EndReason;
use e2e::{Rtp, Server, Ua, base_config, sdp_audio_addr, temp_dir};

const PROMPT_ROUTE: &str =
    "[[route]]\nnumber = \"600\"\ntarget = { prompt = [\"general/welcome\"] }\n";

fn sounds() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sounds")
}

fn pcmu(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    Codec::Pcmu.encode(samples, &mut out);
    out
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
    let mut frames = frames;
    frames.sort_by_key(|f| f.sequence);
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
}

async fn bridged(extra: &str) -> Bridged {
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
    bob.reply(&incoming, 200, "bobtag").await.unwrap();
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
    }
}

/// 50 distinct PCMU frames: a rising tone, so every frame differs.
fn talk() -> Vec<Vec<u8>> {
    (0..50)
        .map(|k| {
            let f = 300.0 + 20.0 * k as f64;
            let samples: Vec<i16> = (0..160)
                .map(|i| {
                    (8000.0 * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()) as i16
                })
                .collect();
            pcmu(&samples)
        })
        .collect()
}

/// Sends `frames` every 20 ms while collecting on the other side; checks what arrived
/// is the sent frames, bit-exact and in order (the first ones may be spent on RFC 3550
/// probation).
async fn carries(from: &mut Rtp, to: std::net::SocketAddr, at: &Rtp) {
    let frames = talk();
    let sender = async {
        for f in &frames {
            from.send(to, 0, f).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (_, mut got) = tokio::join!(
        sender,
        at.collect(Duration::from_millis(400), Duration::from_secs(5))
    );
    got.retain(|f| frames.contains(&f.payload));
    assert!(
        got.len() >= 45,
        "only {} of 50 frames arrived intact",
        got.len()
    );
    let first = frames.iter().position(|f| *f == got[0].payload).unwrap();
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            g.payload,
            frames[first + i],
            "frame {i} in order and bit-exact"
        );
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
