//! Voicemail end to end: a caller leaves a message (a known tone), the owner's phone
//! gets RFC 3842 message-waiting NOTIFYs, the owner listens by phone with the PIN and
//! deletes it; three wrong PINs end the call; a crash mid-recording leaves the index
//! matching the files.

use std::path::Path;
use std::time::Duration;

use comm_server::media::dtmf::{self, TelephoneEvent};
use comm_server::media::g711::Codec;
use comm_server::media::rtp::RtpPacket;
use comm_server::sip::message::{Method, Request};
use comm_server::store::VoicemailMessage;
use e2e::{Dialog, Rtp, Server, Ua, base_config, sdp_audio_addr, temp_dir};
use tokio::net::UdpSocket;

/// The message's tone: not the beep's 1000 Hz, not a DTMF frequency.
const TONE_HZ: f64 = 600.0;

fn config(dir: &Path) -> String {
    base_config(
        dir,
        r#"
[[mailbox]]
name = "sales"
owner = "bob"
pin = "4321"
max-message = "20s"
min-message = "1s"
silence-end = "4s"

[[route]]
number = "600"
target = { mailbox = "sales" }

[[route]]
number = "601"
target = { voicemail-retrieval = "sales" }

[[mailbox]]
name = "careful"
pin = "1111"
review = true

[[route]]
number = "602"
target = { mailbox = "careful" }
"#,
    )
}

/// Our RTP stream towards the server, from the port our SDP named, paced on an
/// absolute 20 ms grid: sleeping 20 ms per packet would drift behind the timestamps
/// and late audio falls out of the recording.
struct Sender<'a> {
    sock: &'a UdpSocket,
    to: std::net::SocketAddr,
    seq: u16,
    ts: u32,
    next: tokio::time::Instant,
}

fn sender(sock: &UdpSocket, to: std::net::SocketAddr) -> Sender<'_> {
    Sender {
        sock,
        to,
        seq: 1,
        ts: 160,
        next: tokio::time::Instant::now(),
    }
}

impl Sender<'_> {
    async fn packet(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let mut out = Vec::new();
        RtpPacket {
            marker,
            payload_type: pt,
            sequence: self.seq,
            timestamp: ts,
            ssrc: 0x600d,
            payload,
        }
        .write(&mut out);
        self.sock.send_to(&out, self.to).await.unwrap();
        self.seq = self.seq.wrapping_add(1);
        self.next += Duration::from_millis(20);
        tokio::time::sleep_until(self.next).await;
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

    /// Keys as RFC 4733 events.
    async fn keys(&mut self, keys: &str) {
        for digit in keys.chars() {
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
}

fn tone(seconds: f64) -> Vec<i16> {
    tone_at(TONE_HZ, seconds)
}

fn tone_at(hz: f64, seconds: f64) -> Vec<i16> {
    (0..(8000.0 * seconds) as usize)
        .map(|i| (6000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// How much of `window`'s energy is at `hz` (Goertzel): about 1 for a pure tone,
/// far less for speech, silence or another tone.
fn purity(window: &[i16], hz: f64) -> f64 {
    let n = window.len() as f64;
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0;
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
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / (energy * n / 2.0)
}

/// Milliseconds of `samples` that are the tone, in 50 ms windows.
fn tone_ms(samples: &[i16]) -> usize {
    tone_ms_at(samples, TONE_HZ)
}

fn tone_ms_at(samples: &[i16], hz: f64) -> usize {
    samples
        .chunks_exact(400)
        .filter(|w| purity(w, hz) > 0.8)
        .count()
        * 50
}

/// Calls `number` with a fresh RTP socket; the dialog, the socket and where to send.
async fn call(ua: &mut Ua, number: &str) -> (Dialog, Rtp, std::net::SocketAddr) {
    let rtp = Rtp::bind().await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite(number).await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{number} answers");
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    let to = sdp_audio_addr(&ok.body).unwrap();
    (d, rtp, to)
}

/// Listens on `rtp` until a second of the message's tone has been played to us;
/// panics with `what` if that takes longer than `within`.
async fn hear_tone(rtp: &Rtp, within: Duration, what: &str) {
    let mut heard = Vec::new();
    let mut buf = vec![0u8; 2048];
    let deadline = tokio::time::Instant::now() + within;
    while tone_ms(&heard) < 1000 {
        let (n, _) = tokio::time::timeout_at(deadline, rtp.sock.recv_from(&mut buf))
            .await
            .expect(what)
            .unwrap();
        if let Ok(p) = RtpPacket::parse(&buf[..n])
            && p.payload_type == 0
        {
            Codec::Pcmu.decode(p.payload, &mut heard);
        }
    }
}

/// The next message-summary NOTIFY to `ua`, answered 200; its body.
async fn notify(ua: &mut Ua) -> String {
    let n: Request = ua.request(Method::Notify).await.unwrap();
    assert_eq!(n.headers.get("Event"), Some("message-summary"));
    assert_eq!(
        n.headers.get("Content-Type"),
        Some("application/simple-message-summary")
    );
    ua.reply(&n, 200, "mwi").await.unwrap();
    String::from_utf8(n.body).unwrap()
}

fn wav_samples(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[0..4], b"RIFF");
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk")
        + 8;
    bytes[data..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Leaves a message of `seconds` of tone in "sales" as caller 5551234: a key skips
/// the greeting, '#' ends the message; the server says goodbye and hangs up.
async fn leave_message(s: &Server, seconds: f64) {
    leave_message_as(s, "5551234", seconds).await;
}

/// [`leave_message`] from another caller ID.
async fn leave_message_as(s: &Server, from: &str, seconds: f64) {
    let mut caller = Ua::new(from, "unused", s.udp).await.unwrap();
    let (_d, rtp, to) = call(&mut caller, "600").await;
    let mut sender = sender(&rtp.sock, to);
    sender.audio(&[0; 160 * 5]).await; // latch (RFC 3550 probation)
    sender.keys("1").await; // skip the greeting
    sender.audio(&[0; 160 * 40]).await; // the beep plays
    sender.audio(&tone(seconds)).await;
    // '#' straight after the tone: the stop flushes what is still in the media
    // session's reorder buffer into the message, so the tail is kept.
    sender.keys("#").await;
    let bye = caller.request(Method::Bye).await.unwrap();
    caller.reply(&bye, 200, "t").await.unwrap();
}

#[tokio::test]
async fn a_message_is_left_notified_played_back_by_pin_and_deleted() {
    let dir = temp_dir();
    let s = Server::start(&config(&dir)).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    assert_eq!(bob.register(300).await.unwrap().status, 200);

    leave_message(&s, 1.5).await;
    let body = notify(&mut bob).await;
    assert!(body.contains("Messages-Waiting: yes\r\n"), "{body}");
    assert!(body.contains("Voice-Message: 1/0\r\n"), "{body}");
    assert!(body.contains("Message-Account: sip:sales@"), "{body}");

    let messages = s.store.voicemails("sales").await.unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m.caller, "5551234");
    assert!(!m.heard);
    let file = dir.join(&m.file);
    let recorded = wav_samples(&file);
    assert!(
        tone_ms(&recorded) >= 1400,
        "the stored message holds the caller's {TONE_HZ} Hz tone ({} ms of it)",
        tone_ms(&recorded)
    );
    assert_eq!(
        std::fs::read_dir(dir.join("voicemail/.tmp"))
            .unwrap()
            .count(),
        0,
        "nothing left behind in the temporary directory"
    );

    // The owner listens from another phone with the PIN (typed over its prompt).
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let (_d, rtp, to) = call(&mut alice, "601").await;
    let mut sender = sender(&rtp.sock, to);
    sender.audio(&[0; 160 * 5]).await;
    sender.keys("4321#").await;
    hear_tone(
        &rtp,
        Duration::from_secs(30),
        "the message's tone is played back",
    )
    .await;
    // Delete it (a key during the message or its menu acts at once).
    sender.keys("3").await;
    let bye = alice.request(Method::Bye).await.unwrap();
    alice.reply(&bye, 200, "t").await.unwrap();
    // Listening may first report it heard (0/1); deleting leaves nothing waiting.
    let mut body = notify(&mut bob).await;
    if body.contains("Voice-Message: 0/1") {
        body = notify(&mut bob).await;
    }
    assert!(body.contains("Messages-Waiting: no\r\n"), "{body}");
    assert!(body.contains("Voice-Message: 0/0\r\n"), "{body}");
    assert_eq!(s.store.voicemails("sales").await.unwrap(), vec![]);
    assert!(!file.exists(), "the deleted message's file is gone");
    s.stop().await.unwrap();
}

/// The second take's tone: apart from the first's, the beep's and DTMF's.
const SECOND_TONE_HZ: f64 = 450.0;

#[tokio::test]
async fn with_review_the_caller_listens_records_again_and_sends_only_the_second_take() {
    let dir = temp_dir();
    let s = Server::start(&config(&dir)).await.unwrap();
    let mut caller = Ua::new("5559876", "unused", s.udp).await.unwrap();
    let (_d, rtp, to) = call(&mut caller, "602").await;
    let mut sender = sender(&rtp.sock, to);
    sender.audio(&[0; 160 * 5]).await;
    sender.keys("1").await; // skip the greeting
    sender.audio(&[0; 160 * 40]).await; // the beep
    sender.audio(&tone(1.5)).await;
    sender.keys("#").await;
    // The take is completed; the review menu starts ("to listen press 1, ...").
    sender.audio(&[0; 160 * 50]).await;
    sender.keys("1").await;
    // What we hear now is our own first take.
    hear_tone(
        &rtp,
        Duration::from_secs(20),
        "the first take is played back for review",
    )
    .await;
    // Record again: the beep, then a different tone.
    // We were only listening: pace on from now rather than burst to catch up.
    sender.next = tokio::time::Instant::now();
    sender.keys("2").await;
    sender.audio(&[0; 160 * 40]).await;
    sender.audio(&tone_at(SECOND_TONE_HZ, 1.5)).await;
    sender.keys("#").await;
    sender.audio(&[0; 160 * 50]).await;
    sender.keys("3").await; // send
    let bye = caller.request(Method::Bye).await.unwrap();
    caller.reply(&bye, 200, "t").await.unwrap();

    let messages = s.store.voicemails("careful").await.unwrap();
    assert_eq!(
        messages.len(),
        1,
        "only the sent take is listed: {messages:?}"
    );
    let recorded = wav_samples(&dir.join(&messages[0].file));
    assert!(
        tone_ms_at(&recorded, SECOND_TONE_HZ) >= 1400,
        "the stored message is the second take ({} ms of its tone)",
        tone_ms_at(&recorded, SECOND_TONE_HZ)
    );
    assert_eq!(tone_ms(&recorded), 0, "nothing of the first take");
    assert_eq!(
        std::fs::read_dir(dir.join("voicemail/.tmp"))
            .unwrap()
            .count(),
        0,
        "the first take is gone from the temporary directory"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn three_wrong_pins_end_the_call_with_bye() {
    let s = Server::start(&config(&temp_dir())).await.unwrap();
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let (_d, rtp, to) = call(&mut alice, "601").await;
    let mut sender = sender(&rtp.sock, to);
    sender.audio(&[0; 160 * 5]).await;
    for pin in ["1#", "12#", "4322#"] {
        sender.keys(pin).await;
        // "That PIN is not correct" (1.9 s) plays; the next try types over the
        // "enter your PIN" prompt after it.
        sender.audio(&[0; 160 * 125]).await;
    }
    let bye = alice.request(Method::Bye).await.unwrap();
    alice.reply(&bye, 200, "t").await.unwrap();
    s.stop().await.unwrap();
}

/// A row as a crashed server may have left it: listed, but its file never landed.
fn ghost_row() -> VoicemailMessage {
    VoicemailMessage {
        id: "1800000000000-dead-42".into(),
        mailbox: "sales".into(),
        caller: "42".into(),
        duration_ms: 3000,
        created_at_ms: 1_800_000_000_000,
        heard: false,
        file: "voicemail/sales/1800000000000-dead-42.wav".into(),
    }
}

#[tokio::test]
async fn a_crash_mid_recording_lists_no_partial_message_and_the_index_matches_the_files() {
    let dir = temp_dir();
    let cfg = config(&dir);
    // The server runs on a runtime of its own, so dropping that runtime kills every
    // one of its tasks mid-flight: no BYE, no drain, no recording finished.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let crashed = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let s = rt.block_on(Server::start(&cfg)).unwrap();
        addr_tx.send(s.udp).unwrap();
        let _ = kill_rx.recv();
        rt.shutdown_background();
        drop(s);
    });
    let udp = tokio::task::spawn_blocking(move || addr_rx.recv().unwrap())
        .await
        .unwrap();
    let mut caller = Ua::new("5551234", "unused", udp).await.unwrap();
    let (_d, rtp, to) = call(&mut caller, "600").await;
    let mut sender = sender(&rtp.sock, to);
    sender.audio(&[0; 160 * 5]).await;
    sender.keys("1").await;
    sender.audio(&[0; 160 * 40]).await;
    sender.audio(&tone(1.0)).await;
    let recording: Vec<_> = std::fs::read_dir(dir.join("voicemail/.tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(recording.len(), 1, "recording in progress: {recording:?}");
    kill_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || crashed.join().unwrap())
        .await
        .unwrap();

    // What a harder crash (power loss between the steps) can leave besides: a partial
    // file, a row whose file never landed, a complete file whose row was never
    // written, and a file that is not a message at all.
    let sales = dir.join("voicemail/sales");
    std::fs::create_dir_all(&sales).unwrap();
    std::fs::write(dir.join("voicemail/.tmp/1-ab-9.wav.part"), b"RIFF").unwrap();
    let store = Server::reopen_store(&dir).await.unwrap();
    store.insert_voicemail(&ghost_row()).await.unwrap();
    store.close().await;
    let beep = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sounds/voicemail/beep.wav");
    let orphan = sales.join("1800000005000-beef-777.wav");
    std::fs::copy(&beep, &orphan).unwrap();
    std::fs::write(sales.join("1800000006000-f00d-1.wav"), b"not a wav").unwrap();

    let s = Server::start(&config(&dir)).await.unwrap();
    let listed = s.store.voicemails("sales").await.unwrap();
    assert_eq!(listed.len(), 1, "only the complete orphan: {listed:?}");
    assert_eq!(listed[0].id, "1800000005000-beef-777");
    assert_eq!(listed[0].caller, "777");
    assert_eq!(listed[0].duration_ms, 500);
    assert_eq!(listed[0].file, "voicemail/sales/1800000005000-beef-777.wav");
    let on_disk: Vec<String> = std::fs::read_dir(&sales)
        .unwrap()
        .flatten()
        .map(|e| format!("voicemail/sales/{}", e.file_name().to_string_lossy()))
        .collect();
    assert_eq!(
        on_disk,
        vec![listed[0].file.clone()],
        "the index matches the files"
    );
    assert_eq!(
        std::fs::read_dir(dir.join("voicemail/.tmp"))
            .unwrap()
            .count(),
        0,
        "no recording in progress survives a restart"
    );
    s.stop().await.unwrap();
}

// ---- voicemail as work ----------------------------------------------------------

/// "sales" is worked by the "sales" queue's agents: bob serves it.
fn work_config(dir: &Path) -> String {
    let hash = agent_gateway::password::hash("bob-pw").unwrap();
    base_config(
        dir,
        &format!(
            r#"
[customers]
default-country-code = "44"

[[queue]]
name = "sales"
wrap-up = "30s"
ring-timeout = "10s"

[[agent]]
name = "bob"
queues = ["sales"]
password-hash = "{hash}"

[[mailbox]]
name = "sales"
pin = "4321"
max-message = "20s"
silence-end = "4s"
work-queue = "sales"

[[route]]
number = "600"
target = {{ mailbox = "sales" }}
"#
        ),
    )
}

mod desk {
    use agent_gateway::proto::agent::agent_service_client::AgentServiceClient;
    use agent_gateway::proto::agent::{
        AgentEvent, LoginRequest, StreamEventsRequest, agent_event::Kind,
    };
    use e2e::Server;
    use tonic::transport::Channel;
    use tonic::{Request, Streaming};

    pub struct Desk {
        pub client: AgentServiceClient<Channel>,
        pub token: String,
        pub events: Streaming<AgentEvent>,
    }

    pub fn authed<T>(token: &str, message: T) -> Request<T> {
        let mut r = Request::new(message);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }

    /// The agent's desktop: logged in over gRPC with its event stream open.
    pub async fn open(s: &Server, agent: &str) -> Desk {
        let mut client = AgentServiceClient::connect(format!("http://{}", s.grpc))
            .await
            .unwrap();
        let token = client
            .login(LoginRequest {
                agent_id: agent.into(),
                password: format!("{agent}-pw"),
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        let events = client
            .stream_events(authed(&token, StreamEventsRequest { resume_after: None }))
            .await
            .unwrap()
            .into_inner();
        Desk {
            client,
            token,
            events,
        }
    }

    impl Desk {
        /// The next event that is not a status change, within `wait`.
        pub async fn next(&mut self, wait: std::time::Duration) -> Kind {
            loop {
                let e = tokio::time::timeout(wait, self.events.message())
                    .await
                    .expect("an event in time")
                    .unwrap()
                    .expect("the stream is open");
                match e.kind {
                    Some(Kind::StatusChanged(_)) | None => {}
                    Some(k) => return k,
                }
            }
        }
    }
}

/// Issue 7, "voicemail as work": a caller leaves a message in a queue's mailbox; the
/// available agent is offered it over gRPC with a screen pop naming the customer and
/// the message, accepts it, and the disposition marks it handled and lands in the
/// customer's contact history.
#[tokio::test]
async fn a_queue_mailbox_message_is_offered_to_an_agent_accepted_and_handled() {
    use agent_gateway::proto::agent::{CallRequest, DispositionRequest, agent_event::Kind};
    use comm_server::store::{ContactKind, NewCustomer};

    let dir = temp_dir();
    let s = Server::start(&work_config(&dir)).await.unwrap();
    let ada = s
        .store
        .upsert_customer(
            &NewCustomer {
                name: "Ada Lovelace".into(),
                phones: vec!["+442079460958".into()],
                ..NewCustomer::default()
            },
            1_000,
        )
        .await
        .unwrap()
        .id;
    let mut desk = desk::open(&s, "bob").await;
    let (_bob, _bob_rtp) = e2e::available_agent(&s, "bob").await;

    // The caller ID arrives in national form; the customer store holds E.164.
    leave_message_as(&s, "02079460958", 1.5).await;
    let task = match desk.next(Duration::from_secs(20)).await {
        Kind::VoicemailTask(t) => t,
        other => panic!("expected a voicemail task, got {other:?}"),
    };
    let stored = s.store.voicemails("sales").await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let m = &stored[0];
    assert_eq!(task.message_id, m.id);
    assert_eq!(task.mailbox, "sales");
    assert_eq!(task.caller_number, "02079460958");
    assert_eq!(task.duration_ms, m.duration_ms as u64);
    assert_eq!(task.left_at_unix_ms, m.created_at_ms);
    assert_eq!(task.ring_timeout_ms, 10_000);
    let pop = task.screen_pop.expect("a screen pop");
    assert_eq!(pop.queue, "sales");
    let customer = pop.customer.expect("the caller's customer record");
    assert_eq!(customer.name, "Ada Lovelace");
    assert_eq!(customer.id, ada.to_string());

    // A disposition before accepting is refused; accepting connects the task.
    let early = desk
        .client
        .disposition(desk::authed(
            &desk.token,
            DispositionRequest {
                call_id: task.task_id.clone(),
                code: "called-back".into(),
                notes: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(early.code(), tonic::Code::FailedPrecondition, "{early:?}");
    desk.client
        .accept_task(desk::authed(
            &desk.token,
            CallRequest {
                call_id: task.task_id.clone(),
            },
        ))
        .await
        .unwrap();
    match desk.next(e2e::WAIT).await {
        Kind::CallConnected(c) => assert_eq!(c.call_id, task.task_id),
        other => panic!("expected the task connected, got {other:?}"),
    }
    desk.client
        .disposition(desk::authed(
            &desk.token,
            DispositionRequest {
                call_id: task.task_id.clone(),
                code: "called-back".into(),
                notes: "card on its way".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    // The desktop sees the task end and its wrap-up close with the code.
    let mut ended = None;
    while ended.is_none() {
        if let Kind::WrapUpEnded(w) = desk.next(e2e::WAIT).await {
            ended = Some(w);
        }
    }
    let ended = ended.unwrap();
    assert_eq!(ended.call_id, task.task_id);
    assert_eq!(ended.disposition_code, "called-back");

    let handled = s
        .store
        .voicemail_handling(&m.id)
        .await
        .unwrap()
        .expect("the message is marked handled");
    assert_eq!(handled.agent, "bob");
    assert_eq!(handled.outcome, "called-back");
    assert!(handled.at_ms >= m.created_at_ms);
    assert!(
        s.store
            .unhandled_voicemails("sales")
            .await
            .unwrap()
            .is_empty()
    );
    let history = s.store.history_for_customer(ada, 10).await.unwrap();
    let row = history
        .iter()
        .find(|h| h.contact.kind == ContactKind::Disposition)
        .unwrap_or_else(|| panic!("no disposition in {history:#?}"));
    assert_eq!(row.contact.outcome.as_deref(), Some("called-back"));
    assert_eq!(row.contact.agent.as_deref(), Some("bob"));
    assert_eq!(row.contact.queue.as_deref(), Some("sales"));
    assert_eq!(row.contact.details["voicemail"], m.id.as_str());
    assert_eq!(row.contact.details["notes"], "card on its way");

    // The voicemail report (CLI, gRPC and page alike) counts the message handled.
    let query = comm_server::server::reports::ReportQuery {
        kind: comm_server::server::reports::Kind::Voicemail,
        period: comm_server::reports::Period::whole(),
        settings: comm_server::reports::Settings {
            service_level: comm_server::reports::DEFAULT_SERVICE_LEVEL,
            short_abandon: Duration::from_secs(5),
        },
        only: Some("sales".into()),
        campaigns: Vec::new(),
        interval: None,
    };
    let (columns, rows) = comm_server::server::reports::compute(&s.store, &query)
        .await
        .unwrap();
    let cell = |name: &str| rows[0][columns.iter().position(|c| c == name).unwrap()].clone();
    use comm_server::reports::format::Cell;
    assert_eq!(rows.len(), 1);
    assert_eq!(cell("mailbox"), Cell::Text("sales".into()));
    assert_eq!(
        (cell("left"), cell("handled"), cell("open")),
        (Cell::Count(1), Cell::Count(1), Cell::Count(0))
    );
    assert!(matches!(cell("avg_time_to_handle_s"), Cell::Secs(Some(_))));
    s.stop().await.unwrap();
}

/// Restart safety: a message no agent handled before the server stopped is offered
/// again when it starts; one already handled is not.
#[tokio::test]
async fn unhandled_queue_messages_are_offered_again_after_a_restart() {
    use agent_gateway::proto::agent::agent_event::Kind;
    use comm_server::store::VoicemailHandling;

    let dir = temp_dir();
    let sales = dir.join("voicemail/sales");
    std::fs::create_dir_all(&sales).unwrap();
    let beep = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sounds/voicemail/beep.wav");
    // Complete files the last run left: start-up lists them (see the crash test).
    std::fs::copy(&beep, sales.join("1800000005000-beef-777.wav")).unwrap();
    std::fs::copy(&beep, sales.join("1800000006000-cafe-888.wav")).unwrap();
    let store = Server::reopen_store(&dir).await.unwrap();
    store
        .insert_voicemail(&VoicemailMessage {
            id: "1800000006000-cafe-888".into(),
            mailbox: "sales".into(),
            caller: "888".into(),
            duration_ms: 500,
            created_at_ms: 1_800_000_006_000,
            heard: false,
            file: "voicemail/sales/1800000006000-cafe-888.wav".into(),
        })
        .await
        .unwrap();
    store
        .mark_voicemail_handled(
            "1800000006000-cafe-888",
            &VoicemailHandling {
                agent: "bob".into(),
                at_ms: 1_800_000_007_000,
                outcome: "called-back".into(),
            },
        )
        .await
        .unwrap();
    store.close().await;

    let s = Server::start(&work_config(&dir)).await.unwrap();
    let mut desk = desk::open(&s, "bob").await;
    let (_bob, _bob_rtp) = e2e::available_agent(&s, "bob").await;
    match desk.next(e2e::WAIT).await {
        Kind::VoicemailTask(t) => {
            assert_eq!(t.message_id, "1800000005000-beef-777");
            assert_eq!(t.caller_number, "777");
        }
        other => panic!("expected the unhandled message's task, got {other:?}"),
    }
    s.stop().await.unwrap();
}

// ---- RFC 3842 / RFC 6665 message-summary subscriptions ------------------------------

/// One subscription dialog as the subscriber sees it.
struct Subscriber {
    call_id: String,
    from: String,
    /// The To of the next request: without a tag until the 200 gives the server's.
    to: String,
    cseq: u32,
}

impl Subscriber {
    fn new(ua: &Ua, watched: &str) -> Subscriber {
        Subscriber {
            call_id: comm_server::sip::random_token(),
            from: format!(
                "<sip:{}@{}>;tag={}",
                ua.user,
                ua.addr,
                comm_server::sip::random_token()
            ),
            to: format!("<sip:{watched}@{}>", ua.server.ip()),
            cseq: 0,
        }
    }

    fn request(&mut self, ua: &Ua, uri: &str, event: &str, expires: u32) -> Request {
        use comm_server::sip::message::Headers;
        self.cseq += 1;
        let mut h = Headers::default();
        h.push(
            "Via",
            format!(
                "SIP/2.0/UDP {};branch=z9hG4bK{};rport",
                ua.addr,
                comm_server::sip::random_token()
            ),
        );
        h.push("Max-Forwards", "70");
        h.push("From", self.from.clone());
        h.push("To", self.to.clone());
        h.push("Call-ID", self.call_id.clone());
        h.push("CSeq", format!("{} SUBSCRIBE", self.cseq));
        h.push("Contact", ua.contact());
        h.push("Event", event);
        h.push("Expires", expires.to_string());
        h.push("Accept", "application/simple-message-summary");
        Request {
            method: Method::Subscribe,
            uri: comm_server::sip::header::parse_request_uri(uri).unwrap(),
            headers: h,
            body: Vec::new(),
        }
    }

    /// SUBSCRIBE, answering the digest challenge with `ua`'s credentials; the final
    /// response. A 2xx fixes the dialog's To (with the server's tag).
    async fn subscribe(
        &mut self,
        ua: &mut Ua,
        watched: &str,
        event: &str,
        expires: u32,
    ) -> comm_server::sip::message::Response {
        use comm_server::sip::digest::Challenge;
        let uri = format!("sip:{watched}@{}", ua.server);
        let req = self.request(ua, &uri, event, expires);
        ua.send_request(&req).await.unwrap();
        let mut resp = ua
            .response(&self.call_id, Method::Subscribe, false)
            .await
            .unwrap();
        if resp.status == 401 {
            let ch = resp
                .headers
                .all("WWW-Authenticate")
                .filter_map(Challenge::parse)
                .next()
                .expect("a usable challenge");
            let mut again = self.request(ua, &uri, event, expires);
            again.headers.push(
                "Authorization",
                ch.answer(&ua.user, &ua.password, "SUBSCRIBE", &uri, 1),
            );
            ua.send_request(&again).await.unwrap();
            resp = ua
                .response(&self.call_id, Method::Subscribe, false)
                .await
                .unwrap();
        }
        if (200..300).contains(&resp.status) {
            self.to = resp.headers.get("To").unwrap().to_string();
        }
        resp
    }
}

/// The next message-summary NOTIFY to `ua`, answered 200: (Subscription-State, body).
async fn summary(ua: &mut Ua, sub: &Subscriber) -> (String, String) {
    let n: Request = ua.request(Method::Notify).await.unwrap();
    assert_eq!(
        n.call_id(),
        sub.call_id,
        "the NOTIFY is in the subscription's dialog"
    );
    assert_eq!(n.headers.get("Event"), Some("message-summary"));
    assert_eq!(
        n.headers.get("Content-Type"),
        Some("application/simple-message-summary")
    );
    // Our From (with our tag) is the NOTIFY's To; its From is the 200's To.
    assert_eq!(n.headers.get("To"), Some(sub.from.as_str()));
    assert_eq!(n.headers.get("From"), Some(sub.to.as_str()));
    ua.reply(&n, 200, "unused").await.unwrap();
    (
        n.headers.get("Subscription-State").unwrap().to_string(),
        String::from_utf8(n.body).unwrap(),
    )
}

#[tokio::test]
async fn rfc3842_subscribe_gets_counts_now_and_on_change_until_unsubscribed() {
    let s = Server::start(&config(&temp_dir())).await.unwrap();
    // bob owns "sales" but has no registered phone: every NOTIFY he gets is the
    // subscription's, none unsolicited.
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    let mut sub = Subscriber::new(&bob, "sales");
    let ok = sub
        .subscribe(&mut bob, "sales", "message-summary", 600)
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.headers.get("Expires"), Some("600"));
    let (state, body) = summary(&mut bob, &sub).await;
    assert_eq!(state, "active;expires=600");
    assert!(body.contains("Messages-Waiting: no\r\n"), "{body}");
    assert!(body.contains("Voice-Message: 0/0\r\n"), "{body}");
    assert!(body.contains("Message-Account: sip:sales@"), "{body}");

    leave_message(&s, 1.5).await;
    let (state, body) = summary(&mut bob, &sub).await;
    assert!(state.starts_with("active;expires="), "{state}");
    assert!(body.contains("Messages-Waiting: yes\r\n"), "{body}");
    assert!(body.contains("Voice-Message: 1/0\r\n"), "{body}");

    // A refresh is answered and notified again.
    let ok = sub
        .subscribe(&mut bob, "sales", "message-summary", 300)
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.headers.get("Expires"), Some("300"));
    let (state, body) = summary(&mut bob, &sub).await;
    assert_eq!(state, "active;expires=300");
    assert!(body.contains("Voice-Message: 1/0\r\n"), "{body}");

    // Unsubscribing ends it with a final NOTIFY; a later refresh finds nothing.
    let ok = sub.subscribe(&mut bob, "sales", "message-summary", 0).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let (state, body) = summary(&mut bob, &sub).await;
    assert!(state.starts_with("terminated"), "{state}");
    assert!(body.contains("Voice-Message: 1/0\r\n"), "{body}");
    let gone = sub
        .subscribe(&mut bob, "sales", "message-summary", 300)
        .await;
    assert_eq!(gone.status, 481, "{gone:?}");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn rfc3842_subscribe_is_refused_for_other_events_and_other_peoples_mailboxes() {
    let s = Server::start(&config(&temp_dir())).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();

    // RFC 6665 §8.3.1: an event package we do not serve is 489 with what we do serve.
    let mut presence = Subscriber::new(&bob, "sales");
    let bad = presence.subscribe(&mut bob, "sales", "presence", 600).await;
    assert_eq!(bad.status, 489, "{bad:?}");
    assert_eq!(bad.headers.get("Allow-Events"), Some("message-summary"));

    // Only the owner may watch a mailbox; an unknown one is 404.
    let mut theirs = Subscriber::new(&alice, "sales");
    let denied = theirs
        .subscribe(&mut alice, "sales", "message-summary", 600)
        .await;
    assert_eq!(denied.status, 403, "{denied:?}");
    let mut none = Subscriber::new(&bob, "nope");
    let missing = none
        .subscribe(&mut bob, "nope", "message-summary", 600)
        .await;
    assert_eq!(missing.status, 404, "{missing:?}");

    // Wrong credentials never get a subscription: the challenge comes again.
    let mut impostor = Ua::new("bob", "wrong", s.udp).await.unwrap();
    let mut sub = Subscriber::new(&impostor, "sales");
    let again = sub
        .subscribe(&mut impostor, "sales", "message-summary", 600)
        .await;
    assert_eq!(again.status, 401, "{again:?}");

    // The owner's own address watches every mailbox they own.
    let mut own = Subscriber::new(&bob, "bob");
    let ok = own.subscribe(&mut bob, "bob", "message-summary", 600).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let (state, body) = summary(&mut bob, &own).await;
    assert_eq!(state, "active;expires=600");
    assert!(body.contains("Voice-Message: 0/0\r\n"), "{body}");
    assert!(body.contains("Message-Account: sip:bob@"), "{body}");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn rfc3842_a_subscription_not_refreshed_ends_with_a_timeout_notify() {
    // Subscriptions obey [sip] min-expires; one second lets the expiry come quickly.
    let cfg = config(&temp_dir()).replace("[sip]\n", "[sip]\nmin-expires = \"1s\"\n");
    let s = Server::start(&cfg).await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    let mut sub = Subscriber::new(&bob, "sales");
    let ok = sub.subscribe(&mut bob, "sales", "message-summary", 2).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let (state, _) = summary(&mut bob, &sub).await;
    assert_eq!(state, "active;expires=2");
    let (state, body) = summary(&mut bob, &sub).await;
    assert_eq!(state, "terminated;reason=timeout");
    assert!(body.contains("Voice-Message: 0/0\r\n"), "{body}");
    let gone = sub
        .subscribe(&mut bob, "sales", "message-summary", 60)
        .await;
    assert_eq!(
        gone.status, 481,
        "the expired subscription is gone: {gone:?}"
    );
    s.stop().await.unwrap();
}

/// Issue 7, "over gRPC": an agent lists the messages of the mailboxes their queues
/// work, downloads one's audio, marks it heard and deletes it; messages elsewhere
/// are not found.
#[tokio::test]
async fn agents_list_download_mark_and_delete_their_queues_voicemail_over_grpc() {
    use agent_gateway::proto::agent::{ListVoicemailRequest, VoicemailMessageRequest};

    let dir = temp_dir();
    let sales = dir.join("voicemail/sales");
    std::fs::create_dir_all(&sales).unwrap();
    let beep = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sounds/voicemail/beep.wav");
    let file = sales.join("1800000005000-beef-777.wav");
    std::fs::copy(&beep, &file).unwrap();
    let s = Server::start(&work_config(&dir)).await.unwrap();
    let mut desk = desk::open(&s, "bob").await;
    let id = "1800000005000-beef-777".to_string();
    let message = |id: &str| VoicemailMessageRequest {
        message_id: id.into(),
    };

    let listed = desk
        .client
        .list_voicemail(desk::authed(&desk.token, ListVoicemailRequest {}))
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].mailbox, "sales");
    assert_eq!(listed[0].caller_number, "777");
    assert_eq!(listed[0].duration_ms, 500);
    assert!(!listed[0].heard);
    assert_eq!(listed[0].handled_by, "");

    let wav = desk
        .client
        .get_voicemail_audio(desk::authed(&desk.token, message(&id)))
        .await
        .unwrap()
        .into_inner()
        .wav;
    assert_eq!(
        wav,
        std::fs::read(&file).unwrap(),
        "the stored WAV, byte for byte"
    );

    desk.client
        .mark_voicemail_heard(desk::authed(&desk.token, message(&id)))
        .await
        .unwrap();
    assert!(s.store.voicemails("sales").await.unwrap()[0].heard);

    let unknown = desk
        .client
        .get_voicemail_audio(desk::authed(&desk.token, message("1-nope-1")))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let empty = desk
        .client
        .delete_voicemail(desk::authed(&desk.token, message(" ")))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument, "{empty:?}");

    desk.client
        .delete_voicemail(desk::authed(&desk.token, message(&id)))
        .await
        .unwrap();
    assert_eq!(s.store.voicemails("sales").await.unwrap(), vec![]);
    assert!(!file.exists(), "the deleted message's file is gone");
    s.stop().await.unwrap();
}

/// Issue 7, retention per mailbox: at start-up the sweep deletes a message older than
/// the mailbox's `retention-days` (file and row), keeps a recent one and the messages
/// of a mailbox without a policy.
#[tokio::test]
async fn messages_past_their_mailboxs_retention_are_deleted_by_the_sweep() {
    use comm_server::time::{Clock, SystemClock};
    let dir = temp_dir();
    let now_ms = SystemClock.unix_ms();
    let day_ms = 86_400_000;
    let prompt = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sounds/voicemail/beep.wav");
    let plant = |mailbox: &str, left_ms: i64| {
        let file = dir
            .join("voicemail")
            .join(mailbox)
            .join(format!("{left_ms}-ab12-5551234.wav"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::copy(&prompt, &file).unwrap();
        file
    };
    // Start-up lists files without rows; the sweep then applies the policy.
    let expired = plant("sales", now_ms - 8 * day_ms);
    let recent = plant("sales", now_ms - day_ms);
    let unlimited = plant("careful", now_ms - 400 * day_ms);
    let config = config(&dir).replace(
        "silence-end = \"4s\"",
        "silence-end = \"4s\"\nretention-days = 7",
    );
    let s = Server::start(&config).await.unwrap();
    let deadline = tokio::time::Instant::now() + e2e::WAIT;
    while expired.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!expired.exists(), "the 8-day-old message's file is deleted");
    let left: Vec<i64> = s
        .store
        .voicemails("sales")
        .await
        .unwrap()
        .iter()
        .map(|m| m.created_at_ms)
        .collect();
    assert_eq!(left, vec![now_ms - day_ms], "only the recent row remains");
    assert!(recent.exists());
    assert!(
        unlimited.exists(),
        "a mailbox without retention keeps everything"
    );
    assert_eq!(s.store.voicemails("careful").await.unwrap().len(), 1);
    s.stop().await.unwrap();
}

/// Issue 7, "call the customer back" from retrieval: during a message the owner
/// presses 4; the caller's number is dialled through the trunk and the two talk.
#[tokio::test]
async fn the_owner_calls_a_messages_caller_back_through_the_trunk() {
    const CUSTOMER: &str = "+442071234001";
    let dir = temp_dir();
    let reserve = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let carrier_addr = reserve.local_addr().unwrap();
    drop(reserve);
    let config = format!(
        "{}\n[[trunk]]\nname = \"carrier\"\naddress = \"{carrier_addr}\"\n\
         inbound-sources = [\"127.0.0.2\"]\nprefixes = [\"+\"]\n",
        config(&dir)
    );
    let s = Server::start(&config).await.unwrap();
    let mut carrier_rtp = Rtp::bind().await.unwrap();
    let mut carrier = Ua::new("carrier", "", s.udp).await.unwrap();
    carrier.sock = UdpSocket::bind(carrier_addr).await.unwrap();
    carrier.addr = carrier_addr;
    carrier.media_port = carrier_rtp.port();

    leave_message_as(&s, CUSTOMER, 1.5).await;
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    let (mut alice_d, mut alice_rtp, to) = call(&mut alice, "601").await;
    let mut sender = sender(&alice_rtp.sock, to);
    sender.audio(&[0; 160 * 5]).await;
    sender.keys("4321#").await;
    // "You have one new message" (keys do not cut it), then the announcement.
    sender.audio(&[0; 160 * 150]).await;
    sender.keys("4").await;

    let invite = carrier.request(Method::Invite).await.unwrap();
    assert_eq!(
        comm_server::sip::header::uri_user(&invite.uri).unwrap_or_default(),
        CUSTOMER,
        "the message's caller is dialled through the trunk"
    );
    let carrier_server = sdp_audio_addr(&invite.body).unwrap();
    carrier.reply(&invite, 200, "cust").await.unwrap();
    // Owner and caller hear each other.
    e2e::carries(&mut alice_rtp, to, &carrier_rtp).await;
    e2e::carries(&mut carrier_rtp, carrier_server, &alice_rtp).await;

    assert_eq!(alice.bye(&mut alice_d).await.unwrap().status, 200);
    let bye = carrier.request(Method::Bye).await.unwrap();
    carrier.reply(&bye, 200, "cust").await.unwrap();
    let m = &s.store.voicemails("sales").await.unwrap()[0];
    assert!(m.heard, "calling back counts as listening");
    s.stop().await.unwrap();
}
