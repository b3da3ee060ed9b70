//! The IVR end to end: a dialog script runs on a real call, and the key the caller
//! presses (RFC 4733 or an in-band tone) changes what the caller hears next.

use std::time::Duration;

use comm_server::media::dtmf::{self, TelephoneEvent};
use comm_server::media::g711::Codec;
use comm_server::media::prompt::Prompt;
use comm_server::media::rtp::RtpPacket;
use comm_server::sip::message::Method;
use e2e::{Rtp, Server, Ua, base_config, sdp_audio_addr, temp_dir};
use tokio::net::UdpSocket;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config() -> String {
    config_in(&temp_dir())
}

/// The test config with the test scripts: 700 plays a menu, 710 records.
fn config_in(dir: &std::path::Path) -> String {
    let scripts = root().join("tests/scripts");
    let routes = "[[route]]\nnumber = \"700\"\ntarget = { script = \"press.xml\" }\n\n\
                  [[route]]\nnumber = \"710\"\ntarget = { script = \"record.xml\" }\n\n\
                  [[route]]\nnumber = \"720\"\ntarget = { script = \"readback.xml\" }\n";
    base_config(dir, routes).replace(
        &format!(
            "scripts-dir = \"{}/../scripts\"",
            env!("CARGO_MANIFEST_DIR")
        ),
        &format!("scripts-dir = \"{}\"", scripts.display()),
    )
}

fn pcmu_of(prompt: &str) -> Vec<u8> {
    let p = Prompt::load(&root().join(format!("sounds/{prompt}.wav")), prompt).unwrap();
    let mut out = Vec::new();
    Codec::Pcmu.encode(p.samples(), &mut out);
    out
}

/// Our own RTP stream towards the server (from the port our SDP named, as phones
/// do), so DTMF events can share a timestamp.
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
            ssrc: 0x5eed,
            payload,
        }
        .write(&mut out);
        self.sock.send_to(&out, self.to).await.unwrap();
        self.seq = self.seq.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    async fn audio(&mut self, samples: &[i16]) {
        for frame in samples.chunks(160) {
            let mut payload = Vec::new();
            Codec::Pcmu.encode(frame, &mut payload);
            let ts = self.ts;
            self.packet(0, false, ts, &payload).await;
            self.ts = self.ts.wrapping_add(160);
        }
    }

    /// One key press as RFC 4733 events (PT 101), with the end packet sent twice
    /// more than the three the RFC asks for: still one key press.
    async fn rfc4733(&mut self, digit: char) {
        let event = dtmf::digit_event(digit).unwrap();
        let start = self.ts;
        let mut packets = dtmf::event_packets(
            event,
            dtmf::DEFAULT_DIGIT_DURATION,
            dtmf::DEFAULT_VOLUME,
            160,
        );
        let last = *packets.last().unwrap();
        packets.extend([last, last]);
        for (ev, marker) in packets {
            let ev: TelephoneEvent = ev;
            self.packet(101, marker, start, &ev.to_bytes()).await;
        }
        self.ts = self
            .ts
            .wrapping_add(u32::from(dtmf::DEFAULT_DIGIT_DURATION));
    }
}

/// Calls the menu script, presses a key, and returns what was heard, in order.
async fn press(send_key: impl AsyncFnOnce(&mut Sender<'_>)) -> Vec<u8> {
    call_and_press("700", send_key).await
}

/// Calls a script route, presses keys, and returns what was heard, in order.
async fn call_and_press(number: &str, send_key: impl AsyncFnOnce(&mut Sender<'_>)) -> Vec<u8> {
    let s = Server::start(&config()).await.unwrap();
    let rtp = Rtp::bind().await.unwrap();
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    alice.media_port = rtp.port();
    let inv = alice.invite(number).await.unwrap();
    let ok = alice
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let d = alice.dialog_from_answer(&inv, &ok);
    alice.ack(&d).await.unwrap();
    let mut sender = Sender {
        sock: &rtp.sock,
        to: sdp_audio_addr(&ok.body).unwrap(),
        seq: 100,
        ts: 8000,
    };
    let listen = async {
        rtp.collect(Duration::from_millis(1500), Duration::from_secs(20))
            .await
    };
    let talk = async {
        sender.audio(&[0; 160 * 5]).await; // latch the stream first (RFC 3550 probation)
        tokio::time::sleep(Duration::from_millis(500)).await; // the menu is playing
        send_key(&mut sender).await;
        sender.audio(&[0; 160 * 10]).await;
    };
    let (frames, _) = tokio::join!(listen, talk);
    let bye = alice.request(Method::Bye).await.unwrap();
    alice.reply(&bye, 200, "t").await.unwrap();
    s.stop().await.unwrap();
    // Arrival order: loopback does not reorder, and sorting by the 16-bit sequence
    // number would break at its wrap.
    frames.iter().flat_map(|f| f.payload.clone()).collect()
}

fn contains(heard: &[u8], prompt: &[u8]) -> bool {
    heard.windows(prompt.len()).any(|w| w == prompt)
}

#[tokio::test]
async fn an_rfc4733_key_press_picks_the_menu_branch() {
    let heard = press(async |s: &mut Sender<'_>| s.rfc4733('2').await).await;
    assert!(
        contains(&heard, &pcmu_of("digits/2")),
        "pressing 2 plays the prompt for two"
    );
    assert!(
        !contains(&heard, &pcmu_of("digits/1")),
        "and not the one for one"
    );
    assert!(
        contains(&heard, &pcmu_of("general/goodbye")),
        "then the script ends politely"
    );
}

#[tokio::test]
async fn an_in_band_tone_picks_the_menu_branch() {
    let heard = press(async |s: &mut Sender<'_>| {
        let tone = dtmf::tone_samples('1', 160 * 6, 4000.0).unwrap();
        s.audio(&tone).await;
    })
    .await;
    assert!(
        contains(&heard, &pcmu_of("digits/1")),
        "a DTMF tone for 1 plays the prompt for one"
    );
    assert!(!contains(&heard, &pcmu_of("digits/2")));
}

#[tokio::test]
async fn a_recording_keeps_the_callers_tone_at_its_frequency() {
    let dir = temp_dir();
    let s = Server::start(&config_in(&dir)).await.unwrap();
    let rtp = Rtp::bind().await.unwrap();
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    alice.media_port = rtp.port();
    let inv = alice.invite("710").await.unwrap();
    let ok = alice
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    let d = alice.dialog_from_answer(&inv, &ok);
    alice.ack(&d).await.unwrap();
    let mut sender = Sender {
        sock: &rtp.sock,
        to: sdp_audio_addr(&ok.body).unwrap(),
        seq: 7,
        ts: 160,
    };
    let tone: Vec<i16> = (0..8000 * 3 / 2)
        .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16)
        .collect();
    sender.audio(&[0; 160 * 5]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // the prompt plays first
    sender.audio(&tone).await;
    sender.rfc4733('#').await;
    let bye = alice.request(Method::Bye).await.unwrap();
    alice.reply(&bye, 200, "t").await.unwrap();
    s.stop().await.unwrap();

    let recordings: Vec<_> = std::fs::read_dir(dir.join("recordings"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(
        recordings.len(),
        1,
        "one finished recording, no .part left: {recordings:?}"
    );
    assert_eq!(recordings[0].extension().unwrap(), "wav");
    let mut reader = hound_free::Wav::open(&recordings[0]);
    let samples = reader.samples();
    let loud: Vec<i16> = samples
        .iter()
        .copied()
        .skip_while(|s| s.abs() < 1000)
        .take(8000)
        .collect();
    assert!(
        loud.len() >= 6000,
        "at least 0.75 s of the tone was recorded ({} samples)",
        loud.len()
    );
    let crossings = loud.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let hz = crossings as f64 / 2.0 / (loud.len() as f64 / 8000.0);
    assert!(
        (hz - 1000.0).abs() < 15.0,
        "the recorded tone is at {hz:.1} Hz"
    );
}

/// Reads a 16-bit mono PCM WAV without a dependency (the server wrote it with hound).
mod hound_free {
    pub struct Wav(Vec<u8>);
    impl Wav {
        pub fn open(path: &std::path::Path) -> Wav {
            Wav(std::fs::read(path).unwrap())
        }
        pub fn samples(&mut self) -> Vec<i16> {
            let data = self
                .0
                .windows(4)
                .position(|w| w == b"data")
                .expect("data chunk")
                + 8;
            assert_eq!(&self.0[0..4], b"RIFF");
            self.0[data..]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect()
        }
    }
}

/// How many times `prompt` occurs in `heard`.
fn count(heard: &[u8], prompt: &[u8]) -> usize {
    heard.windows(prompt.len()).filter(|w| *w == prompt).count()
}

#[tokio::test]
async fn each_rfc4733_key_press_counts_once() {
    // The 2 is sent with five end packets (RFC 4733 asks for three); it must still be
    // one key: the read-back is "2 5", not "2 2 5".
    let heard = call_and_press("720", async |s: &mut Sender<'_>| {
        s.rfc4733('2').await;
        s.rfc4733('5').await;
        s.rfc4733('#').await;
    })
    .await;
    assert_eq!(
        count(&heard, &pcmu_of("digits/2")),
        1,
        "digit 2 read back exactly once"
    );
    assert_eq!(
        count(&heard, &pcmu_of("digits/5")),
        1,
        "digit 5 read back exactly once"
    );
}
