//! The bank card line end to end (issue 4, "Done means"): a caller dials route 2000
//! (`scripts/bank-card.xml`), hears the prompts, keys in account and PIN by RFC 4733,
//! hears the balance, asks for an agent and an agent's phone gets the offer; three
//! wrong PINs end the call politely (the goodbye prompt, then BYE from the server).

use std::time::Duration;

use comm_server::media::dtmf::{self, TelephoneEvent};
use comm_server::media::g711::Codec;
use comm_server::media::prompt::Prompt;
use comm_server::media::rtp::RtpPacket;
use comm_server::sip::message::Method;
use comm_server::store::{NewCustomer, Store};
use e2e::{Rtp, Server, Ua, base_config, sdp_audio_addr, temp_dir};
use tokio::net::UdpSocket;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The demo's bank line (route 2000) with the `cards` queue its script asks for, and
/// bob as the cards agent.
const BANK: &str = r#"
[[route]]
number = "2000"
target = { script = "bank-card.xml" }

[[queue]]
name = "cards"
wrap-up = "1s"
ring-timeout = "10s"

# The script asks for the cards skill at level 2 or more.
[[agent]]
name = "bob"
queues = ["cards"]
skills = { cards = 3 }
"#;

fn pcmu_of(prompt: &str) -> Vec<u8> {
    let p = Prompt::load(&root().join(format!("sounds/{prompt}.wav")), prompt).unwrap();
    let mut out = Vec::new();
    Codec::Pcmu.encode(p.samples(), &mut out);
    out
}

/// Whether `heard` holds `prompt` whole (the server sends prompts sample-exact).
fn heard_prompt(heard: &[u8], prompt: &str) -> bool {
    let p = pcmu_of(prompt);
    heard.windows(p.len()).any(|w| w == p.as_slice())
}

async fn add_customer(store: &Store) {
    let mut attributes = serde_json::Map::new();
    attributes.insert("account_number".into(), "12345678".into());
    attributes.insert("pin".into(), "4321".into());
    attributes.insert("balance".into(), serde_json::json!(250));
    attributes.insert("segment".into(), "premium".into());
    attributes.insert("card_last4".into(), "9876".into());
    let c = NewCustomer {
        name: "Ada Lovelace".into(),
        account: Some("12345678".into()),
        phones: vec!["+442079460958".into()],
        attributes,
        ..NewCustomer::default()
    };
    store.upsert_customer(&c, 1_000).await.unwrap();
}

/// The caller's RTP towards the server, from the port its SDP named.
struct Keypad<'a> {
    sock: &'a UdpSocket,
    to: std::net::SocketAddr,
    seq: u16,
    ts: u32,
}

impl Keypad<'_> {
    async fn packet(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let mut out = Vec::new();
        RtpPacket {
            marker,
            payload_type: pt,
            sequence: self.seq,
            timestamp: ts,
            ssrc: 0xba4c,
            payload,
        }
        .write(&mut out);
        self.sock.send_to(&out, self.to).await.unwrap();
        self.seq = self.seq.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// Silence for `ms` (keeps the stream alive, as a phone's would).
    async fn silence(&mut self, ms: u64) {
        let mut payload = Vec::new();
        Codec::Pcmu.encode(&[0; 160], &mut payload);
        for _ in 0..ms / 20 {
            let ts = self.ts;
            self.packet(0, false, ts, &payload).await;
            self.ts = self.ts.wrapping_add(160);
        }
    }

    /// Key presses as RFC 4733 telephone events.
    async fn keys(&mut self, keys: &str) {
        for key in keys.chars() {
            let event = dtmf::digit_event(key).unwrap();
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
        }
    }
}

/// Registers bob and makes him available for offers (*1).
async fn available_agent(s: &Server) -> (Ua, Rtp) {
    let rtp = Rtp::bind().await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    bob.media_port = rtp.port();
    assert_eq!(bob.register(600).await.unwrap().status, 200);
    let inv = bob.invite_auth("*1").await.unwrap();
    let ok = bob
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    let d = bob.dialog_from_answer(&inv, &ok);
    bob.ack(&d).await.unwrap();
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "fc").await.unwrap();
    (bob, rtp)
}

/// Calls the bank line; the caller's UA, its dialog, RTP socket and the server's
/// media address.
async fn call_bank(s: &Server) -> (Ua, e2e::Dialog, Rtp, std::net::SocketAddr) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new("+442079460958", "", s.udp).await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite("2000").await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    let to = sdp_audio_addr(&ok.body).unwrap();
    (ua, d, rtp, to)
}

#[tokio::test]
async fn a_caller_hears_the_balance_and_reaches_an_agent() {
    let s = Server::start(&base_config(&temp_dir(), BANK))
        .await
        .unwrap();
    add_customer(&s.store).await;
    let (mut bob, _bob_rtp) = available_agent(&s).await;
    let (mut caller, mut d, rtp, to) = call_bank(&s).await;
    let mut keypad = Keypad {
        sock: &rtp.sock,
        to,
        seq: 1,
        ts: 8000,
    };
    let listen = rtp.collect(Duration::from_secs(5), Duration::from_secs(34));
    let talk = async {
        // Welcome (3 s), then the account prompt (4 s): listen to both whole.
        keypad.silence(7_500).await;
        keypad.keys("12345678").await;
        // The PIN prompt (2.4 s), whole.
        keypad.silence(3_000).await;
        keypad.keys("4321").await;
        // The main menu (6.3 s), whole; then balance.
        keypad.silence(7_000).await;
        keypad.keys("1").await;
        // The balance (about 4 s), then "anything else?": yes, then 0 for an agent.
        keypad.silence(5_500).await;
        keypad.keys("1").await;
        keypad.silence(1_000).await;
        keypad.keys("0").await;
        keypad.silence(4_000).await;
        // Queued: the agent's phone rings with the offer.
        bob.request(Method::Invite).await.unwrap()
    };
    let (frames, offer) = tokio::join!(listen, talk);
    let heard: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
    for prompt in [
        "bank/welcome",
        "bank/enter-account-number",
        "bank/enter-pin",
        "bank/main-menu",
        "bank/your-balance-is",
        "currency/eur",
        "general/connecting-agent",
    ] {
        assert!(heard_prompt(&heard, prompt), "{prompt} was not heard");
    }
    assert!(
        !heard_prompt(&heard, "bank/pin-locked"),
        "a right PIN is not refused"
    );
    // The agent's phone rings with the offer from the cards queue; bob answers.
    bob.reply(&offer, 200, "bobtag").await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(caller.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();

    // The call joined the cards queue with the premium priority the script set (8;
    // others get 5): the ACD's event log says so once the server has flushed it.
    let data_dir = s.data_dir.clone();
    s.stop().await.unwrap();
    let store = Server::reopen_store(&data_dir).await.unwrap();
    let records = store.acd_events_between(0, i64::MAX).await.unwrap();
    store.close().await;
    let enqueued: Vec<serde_json::Value> = records
        .iter()
        .filter(|r| r.kind == "Enqueued" && r.queue.as_deref() == Some("cards"))
        .map(|r| serde_json::from_str(&r.details_json).unwrap())
        .collect();
    assert_eq!(enqueued.len(), 1, "{records:#?}");
    assert_eq!(enqueued[0]["Enqueued"]["priority"], 8, "{enqueued:?}");
}

#[tokio::test]
async fn three_wrong_pins_end_the_call_politely() {
    let s = Server::start(&base_config(&temp_dir(), BANK))
        .await
        .unwrap();
    add_customer(&s.store).await;
    let (mut caller, _d, rtp, to) = call_bank(&s).await;
    let mut keypad = Keypad {
        sock: &rtp.sock,
        to,
        seq: 1,
        ts: 8000,
    };
    let listen = rtp.collect(Duration::from_secs(4), Duration::from_secs(60));
    let talk = async {
        keypad.silence(7_500).await;
        keypad.keys("12345678").await;
        keypad.silence(3_000).await;
        // Three wrong PINs, each after "wrong PIN" (3.6 s) and the PIN prompt (2.4 s).
        for pin in ["0000", "1111", "2222"] {
            keypad.keys(pin).await;
            keypad.silence(6_500).await;
        }
        keypad.silence(2_000).await;
        // After the goodbye the server hangs up.
        caller.request(Method::Bye).await.unwrap()
    };
    let (frames, bye) = tokio::join!(listen, talk);
    let heard: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
    for prompt in ["bank/enter-pin", "bank/wrong-pin", "bank/pin-locked"] {
        assert!(heard_prompt(&heard, prompt), "{prompt} was not heard");
    }
    assert!(
        !heard_prompt(&heard, "bank/main-menu"),
        "a wrong PIN does not reach the menu"
    );
    // The server hangs up after the goodbye.
    caller.reply(&bye, 200, "t").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_agents_screen_pop_shows_what_the_caller_answered_and_the_queues_agent_script() {
    use agent_gateway::proto::agent::agent_service_client::AgentServiceClient;
    use agent_gateway::proto::agent::{
        LoginRequest, SetStatusRequest, StreamEventsRequest, agent_event::Kind,
    };
    let hash = agent_gateway::password::hash("bob-desk").unwrap();
    let extra = BANK.replace(
        "skills = { cards = 3 }",
        &format!("skills = {{ cards = 3 }}\npassword-hash = \"{hash}\""),
    ) + "\n[customers]\ndefault-country-code = \"44\"\n";
    let extra = extra.replace(
        "ring-timeout = \"10s\"",
        "ring-timeout = \"10s\"\nagent-script = \"retention.xml\"",
    );
    let s = Server::start(&base_config(&temp_dir(), &extra))
        .await
        .unwrap();
    add_customer(&s.store).await;
    let rtp = Rtp::bind().await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    bob.media_port = rtp.port();
    assert_eq!(bob.register(600).await.unwrap().status, 200);
    let mut desk = AgentServiceClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    let token = desk
        .login(LoginRequest {
            agent_id: "bob".into(),
            password: "bob-desk".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }
    let mut events = desk
        .stream_events(authed(&token, StreamEventsRequest { resume_after: None }))
        .await
        .unwrap()
        .into_inner();
    let available = authed(
        &token,
        SetStatusRequest {
            status: agent_gateway::proto::agent::AgentStatus::Available.into(),
            break_reason: String::new(),
        },
    );
    desk.set_status(available).await.unwrap();

    let (mut caller, mut d, rtp, to) = call_bank(&s).await;
    let mut keypad = Keypad {
        sock: &rtp.sock,
        to,
        seq: 1,
        ts: 8000,
    };
    // Account, PIN, then 0 for an agent from the main menu.
    keypad.silence(7_500).await;
    keypad.keys("12345678").await;
    keypad.silence(3_000).await;
    keypad.keys("4321").await;
    keypad.silence(7_000).await;
    keypad.keys("0").await;
    keypad.silence(3_000).await;
    let offer = bob.request(Method::Invite).await.unwrap();
    let pop = loop {
        let event = tokio::time::timeout(e2e::WAIT, events.message())
            .await
            .expect("an offer in time")
            .unwrap()
            .expect("the stream is open");
        if let Some(Kind::CallOffered(o)) = event.kind {
            break o.screen_pop.unwrap();
        }
    };
    assert_eq!(pop.queue, "cards");
    assert_eq!(pop.script_id, "retention");
    assert_eq!(
        pop.ivr_answers.get("account").map(String::as_str),
        Some("12345678"),
        "{:?}",
        pop.ivr_answers
    );
    // The PIN is a sensitive answer: the screen pop never shows it.
    assert!(
        pop.ivr_answers.values().all(|v| !v.contains("4321")),
        "{:?}",
        pop.ivr_answers
    );
    assert_eq!(
        pop.customer.map(|c| c.name).as_deref(),
        Some("Ada Lovelace")
    );

    bob.reply(&offer, 200, "bobtag").await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    assert_eq!(caller.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();
    s.stop().await.unwrap();
}
