//! Scripts route calls end to end: a caller presses a key in a dialog script and is
//! sent to a mailbox (the message is stored), to an agent's phone or to a number
//! through a trunk (and talks to whoever answers); a target that does not exist or
//! does not answer falls through to the script's next element.

use std::path::{Path, PathBuf};
use std::time::Duration;

use comm_server::media::dtmf::{self, TelephoneEvent};
use comm_server::media::g711::Codec;
use comm_server::media::prompt::Prompt;
use comm_server::media::rtp::RtpPacket;
use comm_server::sip::message::{Method, Request};
use e2e::{Dialog, Rtp, Server, Ua, base_config, carries, sdp_audio_addr, temp_dir};
use tokio::net::UdpSocket;

/// Key 1: the "sales" mailbox; 2: agent bob; 3: a number through the trunk; 4: a
/// mailbox that does not exist. Whatever fails falls through to "nine", goodbye.
const ROUTING: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<script version="1" id="routing" title="Routing test" channels="voice">
  <menu id="main" timeout="10s" tries="2">
    <prompt audio="general/press-1-or-2.wav">Press a key.</prompt>
    <option key="1" value="message" label="Message"><voicemail mailbox="sales"/></option>
    <option key="2" value="agent" label="Agent"><transfer agent="bob"/></option>
    <option key="3" value="number" label="Number"><transfer number="+4930123456"/></option>
    <option key="4" value="nobody" label="Nobody"><voicemail mailbox="box-{{ call.caller }}"/></option>
  </menu>
  <say audio="digits/9.wav">Nine.</say>
  <hangup outcome="not-routed" audio="general/goodbye.wav">Goodbye.</hangup>
</script>
"#;

/// The config with the routing script on 900 and a trunk at `trunk`.
fn config(dir: &Path, trunk: std::net::SocketAddr) -> String {
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("routing.xml"), ROUTING).unwrap();
    let extra = format!(
        r#"
[[queue]]
name = "support"

[[agent]]
name = "bob"
queues = ["support"]

[[mailbox]]
name = "sales"
pin = "4321"
min-message = "1s"
silence-end = "4s"

[[trunk]]
name = "carrier"
address = "{trunk}"
inbound-sources = ["127.0.0.2"]
prefixes = ["+"]

[[route]]
number = "900"
target = {{ script = "routing.xml" }}
"#
    );
    base_config(dir, &extra).replace(
        &format!(
            "scripts-dir = \"{}/../scripts\"",
            env!("CARGO_MANIFEST_DIR")
        ),
        &format!("scripts-dir = \"{}\"", scripts.display()),
    )
}

fn pcmu_of(prompt: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = Prompt::load(&root.join(format!("sounds/{prompt}.wav")), prompt).unwrap();
    e2e::pcmu(p.samples())
}

fn contains(heard: &[u8], prompt: &[u8]) -> bool {
    heard.windows(prompt.len()).any(|w| w == prompt)
}

/// Our RTP stream towards the server, from the port our SDP named.
struct Sender<'a> {
    sock: &'a UdpSocket,
    to: std::net::SocketAddr,
    seq: u16,
    ts: u32,
}

impl Sender<'_> {
    async fn packet(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let mut out = Vec::new();
        RtpPacket {
            marker,
            payload_type: pt,
            sequence: self.seq,
            timestamp: ts,
            ssrc: 0x5c21,
            payload,
        }
        .write(&mut out);
        self.sock.send_to(&out, self.to).await.unwrap();
        self.seq = self.seq.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    async fn audio(&mut self, samples: &[i16]) {
        for frame in samples.chunks(160) {
            let payload = e2e::pcmu(frame);
            let ts = self.ts;
            self.packet(0, false, ts, &payload).await;
            self.ts = self.ts.wrapping_add(160);
        }
    }

    /// One key press as RFC 4733 events (PT 101).
    async fn key(&mut self, digit: char) {
        let event = dtmf::digit_event(digit).unwrap();
        let start = self.ts;
        for (ev, marker) in dtmf::event_packets(
            event,
            dtmf::DEFAULT_DIGIT_DURATION,
            dtmf::DEFAULT_VOLUME,
            160,
        ) {
            let ev: TelephoneEvent = ev;
            self.packet(101, marker, start, &ev.to_bytes()).await;
        }
        self.ts = self
            .ts
            .wrapping_add(u32::from(dtmf::DEFAULT_DIGIT_DURATION));
        self.audio(&[0; 160 * 3]).await;
    }
}

/// A caller's call to the routing script: the dialog, its RTP and where to send.
async fn call_script(s: &Server) -> (Ua, Dialog, Rtp, std::net::SocketAddr) {
    let rtp = Rtp::bind().await.unwrap();
    let mut caller = Ua::new("customer", "", s.udp).await.unwrap();
    caller.media_port = rtp.port();
    let inv = caller.invite("900").await.unwrap();
    let ok = caller
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "the script answers");
    let d = caller.dialog_from_answer(&inv, &ok);
    caller.ack(&d).await.unwrap();
    let to = sdp_audio_addr(&ok.body).unwrap();
    (caller, d, rtp, to)
}

/// A UA standing in for the carrier, bound before the server so the config can name it.
async fn trunk_ua() -> Ua {
    Ua::new("carrier", "", "127.0.0.1:9".parse().unwrap())
        .await
        .unwrap()
}

/// How much of `window`'s energy is at `hz` (Goertzel): about 1 for a pure tone.
fn purity(window: &[i16], hz: f64) -> f64 {
    let n = window.len() as f64;
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2, mut energy) = (0.0f64, 0.0f64, 0.0f64);
    for &x in window {
        let x = f64::from(x);
        energy += x * x;
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    if energy < 1e6 {
        return 0.0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (energy * n / 2.0)
}

/// Keeps our stream going with silence until the server's 1 kHz beep is heard.
async fn until_beep(sender: &mut Sender<'_>, rtp: &Rtp) {
    let mut heard: Vec<i16> = Vec::new();
    let mut buf = vec![0u8; 2048];
    for _ in 0..1000 {
        sender.audio(&[0; 160]).await;
        while let Ok((n, _)) = rtp.sock.try_recv_from(&mut buf) {
            if let Ok(p) = RtpPacket::parse(&buf[..n])
                && p.payload_type == 0
            {
                Codec::Pcmu.decode(p.payload, &mut heard);
            }
        }
        if heard
            .rchunks_exact(400)
            .take(4)
            .any(|w| purity(w, 1000.0) > 0.8)
        {
            return;
        }
    }
    panic!("no beep within 20 s");
}

#[tokio::test]
async fn a_key_sends_the_caller_to_a_mailbox_and_the_message_is_stored() {
    let dir = temp_dir();
    let trunk = trunk_ua().await;
    let s = Server::start(&config(&dir, trunk.addr)).await.unwrap();
    let (mut caller, _d, rtp, to) = call_script(&s).await;
    let mut sender = Sender {
        sock: &rtp.sock,
        to,
        seq: 1,
        ts: 160,
    };
    sender.audio(&[0; 160 * 5]).await; // latch (RFC 3550 probation)
    sender.key('1').await;
    // The mailbox's greeting, then its beep: the deposit has the call.
    until_beep(&mut sender, &rtp).await;
    let tone: Vec<i16> = (0..8000 * 3 / 2)
        .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * 600.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    sender.audio(&[0; 160 * 10]).await; // the beep's tail
    sender.audio(&tone).await;
    sender.audio(&[0; 160 * 50]).await;
    sender.key('#').await;
    let bye = caller.request(Method::Bye).await.unwrap();
    caller.reply(&bye, 200, "t").await.unwrap();

    let messages = s.store.voicemails("sales").await.unwrap();
    assert_eq!(messages.len(), 1, "one message in sales: {messages:?}");
    assert_eq!(messages[0].caller, "customer");
    assert!(
        messages[0].duration_ms >= 1000,
        "the message holds the caller's audio: {:?}",
        messages[0]
    );
    s.stop().await.unwrap();
}

/// Presses `key` on the routing script and returns what was heard until the server
/// hung up (the fallback's "nine" and "goodbye" end every failed route).
async fn fallback_heard(s: &Server, key: char, on_route: impl AsyncFnOnce()) -> Vec<u8> {
    let (mut caller, _d, rtp, to) = call_script(s).await;
    let mut sender = Sender {
        sock: &rtp.sock,
        to,
        seq: 1,
        ts: 160,
    };
    let listen = async {
        rtp.collect(Duration::from_millis(1500), Duration::from_secs(25))
            .await
    };
    let talk = async {
        sender.audio(&[0; 160 * 5]).await;
        sender.key(key).await;
        on_route().await;
    };
    let (frames, _) = tokio::join!(listen, talk);
    let bye: Request = caller.request(Method::Bye).await.unwrap();
    caller.reply(&bye, 200, "t").await.unwrap();
    frames.iter().flat_map(|f| f.payload.clone()).collect()
}

#[tokio::test]
async fn an_unknown_mailbox_falls_through_to_the_scripts_next_step() {
    let trunk = trunk_ua().await;
    let s = Server::start(&config(&temp_dir(), trunk.addr))
        .await
        .unwrap();
    let heard = fallback_heard(&s, '4', async || {}).await;
    assert!(
        contains(&heard, &pcmu_of("digits/9")),
        "the fallback after the failed route plays"
    );
    assert!(contains(&heard, &pcmu_of("general/goodbye")));
    assert_eq!(
        s.store.voicemails("sales").await.unwrap(),
        vec![],
        "nothing was stored anywhere"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_transfers_the_caller_to_the_agents_phone_and_they_talk() {
    let trunk = trunk_ua().await;
    let s = Server::start(&config(&temp_dir(), trunk.addr))
        .await
        .unwrap();
    let bob_rtp = Rtp::bind().await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    bob.media_port = bob_rtp.port();
    assert_eq!(bob.register(600).await.unwrap().status, 200);
    let (mut caller, mut d, mut caller_rtp, to) = call_script(&s).await;
    let mut sender = Sender {
        sock: &caller_rtp.sock,
        to,
        seq: 1,
        ts: 160,
    };
    sender.audio(&[0; 160 * 5]).await;
    sender.key('2').await;

    let offer = bob.request(Method::Invite).await.unwrap();
    assert_eq!(
        offer.uri.to_string().split('@').next(),
        Some("sip:bob"),
        "bob's registered phone rings: {}",
        offer.uri
    );
    let ok = bob.reply(&offer, 200, "bobtag").await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    let _ = bob.dialog_as_callee(&offer, &ok);
    let _ = caller_rtp
        .collect(Duration::from_millis(100), Duration::from_millis(300))
        .await; // music while it rang
    let mut bob_rtp = bob_rtp;
    carries(&mut caller_rtp, to, &bob_rtp).await;
    carries(
        &mut bob_rtp,
        sdp_audio_addr(&offer.body).unwrap(),
        &caller_rtp,
    )
    .await;

    assert_eq!(caller.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_busy_agent_falls_through_to_the_scripts_next_step() {
    let trunk = trunk_ua().await;
    let s = Server::start(&config(&temp_dir(), trunk.addr))
        .await
        .unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    assert_eq!(bob.register(600).await.unwrap().status, 200);
    let heard = fallback_heard(&s, '2', async || {
        let offer = bob.request(Method::Invite).await.unwrap();
        bob.reply(&offer, 486, "busy").await.unwrap();
        bob.request(Method::Ack).await.unwrap();
    })
    .await;
    assert!(
        contains(&heard, &pcmu_of("digits/9")),
        "the fallback after the busy agent plays"
    );
    assert!(contains(&heard, &pcmu_of("general/goodbye")));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_unregistered_agent_falls_through_to_the_scripts_next_step() {
    let trunk = trunk_ua().await;
    let s = Server::start(&config(&temp_dir(), trunk.addr))
        .await
        .unwrap();
    let heard = fallback_heard(&s, '2', async || {}).await;
    assert!(contains(&heard, &pcmu_of("digits/9")));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_transfers_the_caller_to_a_number_through_the_trunk() {
    let mut trunk = trunk_ua().await;
    let trunk_rtp = Rtp::bind().await.unwrap();
    trunk.media_port = trunk_rtp.port();
    let s = Server::start(&config(&temp_dir(), trunk.addr))
        .await
        .unwrap();
    trunk.server = s.udp;
    let (mut caller, mut d, mut caller_rtp, to) = call_script(&s).await;
    let mut sender = Sender {
        sock: &caller_rtp.sock,
        to,
        seq: 1,
        ts: 160,
    };
    sender.audio(&[0; 160 * 5]).await;
    sender.key('3').await;

    let offer = trunk.request(Method::Invite).await.unwrap();
    assert_eq!(
        offer.uri.to_string(),
        format!("sip:+4930123456@{}", trunk.addr),
        "the number in E.164, to the trunk"
    );
    trunk.reply(&offer, 200, "carrier").await.unwrap();
    trunk.request(Method::Ack).await.unwrap();
    let _ = caller_rtp
        .collect(Duration::from_millis(100), Duration::from_millis(300))
        .await;
    let mut trunk_rtp = trunk_rtp;
    carries(&mut caller_rtp, to, &trunk_rtp).await;
    carries(
        &mut trunk_rtp,
        sdp_audio_addr(&offer.body).unwrap(),
        &caller_rtp,
    )
    .await;

    assert_eq!(caller.bye(&mut d).await.unwrap().status, 200);
    let bye = trunk.request(Method::Bye).await.unwrap();
    trunk.reply(&bye, 200, "carrier").await.unwrap();
    s.stop().await.unwrap();
}
