//! Queued callbacks end to end: a test UA plays the carrier behind a `[[trunk]]` and
//! answers for the customer. Two callers wait in a queue with no free agent; the
//! first presses the callback key and hangs up. When the agent becomes available the
//! callback (first in line) is served before the second caller: the agent's phone
//! rings with the customer's number, and once the agent answers the customer is
//! called through the trunk and talks to the agent. A busy customer frees the agent
//! for the next caller at once. An agent who does not answer the callback leaves it
//! first in line for the next agent. The agent's desktop (gRPC) pops the offer as a
//! callback with the number to call.

use std::net::SocketAddr;
use std::time::Duration;

use comm_server::media::dtmf::{self, TelephoneEvent};
use comm_server::media::prompt::Prompt;
use comm_server::sip::header::uri_user;
use comm_server::sip::message::{Method, Request};
use comm_server::store::ContactKind;
use e2e::{Dialog, Rtp, Server, Ua, base_config, carries, sdp_audio_addr, temp_dir};

const FIRST: &str = "+442071234001";
const SECOND: &str = "+442071234002";

fn config(carrier: SocketAddr) -> String {
    let hash = agent_gateway::password::hash("alice-pw").unwrap();
    format!(
        r#"
[[trunk]]
name = "carrier"
address = "{carrier}"
inbound-sources = ["127.0.0.2"]

[[queue]]
name = "support"
wrap-up = "1s"
ring-timeout = "5s"
callback-key = "*"

[[agent]]
name = "alice"
queues = ["support"]
password-hash = "{hash}"

[[agent]]
name = "bob"
queues = ["support"]

[[route]]
number = "800"
target = {{ queue = "support" }}
"#
    )
}

/// A server with the queue, and the carrier UA (with its RTP) on the trunk's address.
async fn start() -> (Server, Ua, Rtp) {
    let reserve = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let carrier_addr = reserve.local_addr().unwrap();
    drop(reserve);
    let s = Server::start(&base_config(&temp_dir(), &config(carrier_addr)))
        .await
        .unwrap();
    let rtp = Rtp::bind().await.unwrap();
    let mut carrier = Ua::new("carrier", "", s.udp).await.unwrap();
    carrier.sock = tokio::net::UdpSocket::bind(carrier_addr).await.unwrap();
    carrier.addr = carrier_addr;
    carrier.media_port = rtp.port();
    (s, carrier, rtp)
}

/// A caller from `number` dials the queue; returns the UA, its RTP, the server's RTP
/// address and the dialog.
async fn caller(s: &Server, number: &str) -> (Ua, Rtp, SocketAddr, Dialog) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new(number, "", s.udp).await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite("800").await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "the queue answers the caller");
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    (ua, rtp, sdp_audio_addr(&ok.body).unwrap(), d)
}

/// Latches the caller's stream (RFC 3550 probation), then presses one key (RFC 4733).
async fn press(rtp: &mut Rtp, to: SocketAddr, digit: char) {
    for _ in 0..5 {
        rtp.send(to, 0, &[0xff; 160]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = rtp.timestamp();
    let event = dtmf::digit_event(digit).unwrap();
    for (ev, marker) in dtmf::event_packets(
        event,
        dtmf::DEFAULT_DIGIT_DURATION,
        dtmf::DEFAULT_VOLUME,
        160,
    ) {
        let ev: TelephoneEvent = ev;
        rtp.send_at(to, 101, marker, start, &ev.to_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first caller books a callback: the server says so and hangs up.
async fn book_callback(s: &Server) {
    let (mut ua, mut rtp, to, _d) = caller(s, FIRST).await;
    // The position announcement ends by offering the callback.
    let heard: Vec<u8> = rtp
        .collect(Duration::from_secs(2), Duration::from_secs(6))
        .await
        .into_iter()
        .flat_map(|f| f.payload)
        .collect();
    let offer = prompt_pcmu("general/callback-offer");
    assert!(
        heard.windows(800).any(|w| w == &offer[..800]),
        "the caller hears how to book a callback"
    );
    press(&mut rtp, to, '*').await;
    // The confirmation lasts longer than one wait for a request.
    let mut bye = None;
    for _ in 0..3 {
        if let Ok(b) = ua.request(Method::Bye).await {
            bye = Some(b);
            break;
        }
    }
    let bye = bye.expect("the server ends the call after the callback prompt");
    ua.reply(&bye, 200, "first").await.unwrap();
}

fn prompt_pcmu(name: &str) -> Vec<u8> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    e2e::pcmu(
        Prompt::load(&root.join(format!("sounds/{name}.wav")), name)
            .unwrap()
            .samples(),
    )
}

/// The next new INVITE: a retransmission of `previous` (its answer was slow to
/// arrive, RFC 3261 §17.1.1.2) is not a new offer.
async fn next_offer(ua: &mut Ua, previous: &Request) -> Request {
    loop {
        let invite = ua.request(Method::Invite).await.unwrap();
        if invite.call_id() != previous.call_id() {
            return invite;
        }
    }
}

fn from_user(req: &Request) -> String {
    req.headers.get("From").unwrap_or_default().to_string()
}

/// Polls the contact history until the callback's entry is there.
async fn callback_outcome(s: &Server, number: &str) -> Option<String> {
    for _ in 0..50 {
        let history = s.store.history_for_phone(number, 10).await.unwrap();
        if let Some(e) = history
            .iter()
            .find(|e| e.contact.kind == ContactKind::Callback)
        {
            return e.contact.outcome.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn a_callback_request_keeps_its_place_and_the_customer_is_called_back() {
    let (s, mut carrier, mut carrier_rtp) = start().await;
    book_callback(&s).await;
    let (mut second, _second_rtp, _to, mut second_d) = caller(&s, SECOND).await;

    let (mut alice, mut alice_rtp) = e2e::available_agent(&s, "alice").await;
    // The callback was first in line: alice's phone rings with its number.
    let offer = alice.request(Method::Invite).await.unwrap();
    assert!(
        from_user(&offer).contains(&FIRST[1..]),
        "alice rings for the callback first: {}",
        from_user(&offer)
    );
    // Nothing is dialled before the agent answers.
    carrier
        .expect_silence(Duration::from_millis(300))
        .await
        .unwrap();
    let ok = alice.reply(&offer, 200, "alice-cb").await.unwrap();
    let mut alice_d = alice.dialog_as_callee(&offer, &ok);
    let alice_server = sdp_audio_addr(&offer.body).unwrap();

    // Then the customer is called through the trunk, at the caller's number.
    let invite = carrier.request(Method::Invite).await.unwrap();
    assert_eq!(uri_user(&invite.uri).unwrap_or_default(), FIRST);
    let carrier_server = sdp_audio_addr(&invite.body).unwrap();
    carrier.reply(&invite, 200, "cust").await.unwrap();

    // Agent and customer hear each other.
    carries(&mut alice_rtp, alice_server, &carrier_rtp).await;
    carries(&mut carrier_rtp, carrier_server, &alice_rtp).await;

    // Alice hangs up; the customer's leg is ended by the server.
    assert_eq!(alice.bye(&mut alice_d).await.unwrap().status, 200);
    let bye = carrier.request(Method::Bye).await.unwrap();
    carrier.reply(&bye, 200, "cust").await.unwrap();
    assert_eq!(
        callback_outcome(&s, FIRST).await.as_deref(),
        Some("answered")
    );

    // After wrap-up the second caller, who waited on the line, is offered to alice.
    let offer = next_offer(&mut alice, &offer).await;
    assert!(
        from_user(&offer).contains(&SECOND[1..]),
        "then the second caller: {}",
        from_user(&offer)
    );
    alice.reply(&offer, 486, "alice-2").await.unwrap();
    assert_eq!(second.bye(&mut second_d).await.unwrap().status, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_busy_customer_frees_the_agent_for_the_next_caller() {
    let (s, mut carrier, _carrier_rtp) = start().await;
    book_callback(&s).await;
    let (mut second, _second_rtp, _to, mut second_d) = caller(&s, SECOND).await;

    let (mut alice, _alice_rtp) = e2e::available_agent(&s, "alice").await;
    let offer = alice.request(Method::Invite).await.unwrap();
    assert!(from_user(&offer).contains(&FIRST[1..]));
    alice.reply(&offer, 200, "alice-cb").await.unwrap();

    let invite = carrier.request(Method::Invite).await.unwrap();
    assert_eq!(uri_user(&invite.uri).unwrap_or_default(), FIRST);
    carrier.reply(&invite, 486, "cust").await.unwrap();

    // The server ends alice's leg, and she is offered the next caller at once.
    let bye = alice.request(Method::Bye).await.unwrap();
    alice.reply(&bye, 200, "alice-cb").await.unwrap();
    let offer = next_offer(&mut alice, &offer).await;
    assert!(
        from_user(&offer).contains(&SECOND[1..]),
        "the next caller: {}",
        from_user(&offer)
    );
    assert_eq!(callback_outcome(&s, FIRST).await.as_deref(), Some("busy"));
    alice.reply(&offer, 486, "alice-2").await.unwrap();
    assert_eq!(second.bye(&mut second_d).await.unwrap().status, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_desktop_pops_the_offer_as_a_callback_to_the_callers_number() {
    use agent_gateway::proto::agent::agent_service_client::AgentServiceClient;
    use agent_gateway::proto::agent::{
        self as pb, LoginRequest, SetStatusRequest, StreamEventsRequest, agent_event::Kind,
    };
    fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }

    let (s, mut carrier, _carrier_rtp) = start().await;
    book_callback(&s).await;
    let rtp = Rtp::bind().await.unwrap();
    let mut alice = Ua::new("alice", "alice-pw", s.udp).await.unwrap();
    alice.media_port = rtp.port();
    assert_eq!(alice.register(600).await.unwrap().status, 200);
    let mut c = AgentServiceClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    let token = c
        .login(LoginRequest {
            agent_id: "alice".into(),
            password: "alice-pw".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut events = c
        .stream_events(authed(&token, StreamEventsRequest { resume_after: None }))
        .await
        .unwrap()
        .into_inner();
    c.set_status(authed(
        &token,
        SetStatusRequest {
            status: pb::AgentStatus::Available.into(),
            break_reason: String::new(),
        },
    ))
    .await
    .unwrap();
    let mut next_call_event = async || loop {
        let e = tokio::time::timeout(e2e::WAIT, events.message())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream is open");
        if !matches!(e.kind, Some(Kind::StatusChanged(_))) {
            return e;
        }
    };

    let offered = next_call_event().await;
    let Some(Kind::CallOffered(offer)) = offered.kind else {
        panic!("expected an offer, got {offered:?}");
    };
    let pop = offer.screen_pop.unwrap();
    assert_eq!(pop.callback_number, FIRST, "the pop says it is a callback");
    assert_eq!(pop.queue, "support");

    let invite = alice.request(Method::Invite).await.unwrap();
    let ok = alice.reply(&invite, 200, "alice-cb").await.unwrap();
    let mut alice_d = alice.dialog_as_callee(&invite, &ok);
    let dial = carrier.request(Method::Invite).await.unwrap();
    carrier.reply(&dial, 200, "cust").await.unwrap();
    let connected = next_call_event().await;
    assert!(
        matches!(&connected.kind, Some(Kind::CallConnected(cc)) if cc.call_id == offer.call_id),
        "{connected:?}"
    );
    assert_eq!(alice.bye(&mut alice_d).await.unwrap().status, 200);
    let bye = carrier.request(Method::Bye).await.unwrap();
    carrier.reply(&bye, 200, "cust").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_agent_who_does_not_answer_leaves_the_callback_first_in_line() {
    let (s, mut carrier, _carrier_rtp) = start().await;
    book_callback(&s).await;
    let (mut second, _second_rtp, _to, mut second_d) = caller(&s, SECOND).await;

    // Alice's phone rings for the callback, but she does not answer: the ring
    // timeout (5 s) cancels it, and nobody is dialled.
    let (mut alice, _alice_rtp) = e2e::available_agent(&s, "alice").await;
    let offer = alice.request(Method::Invite).await.unwrap();
    assert!(from_user(&offer).contains(&FIRST[1..]));
    alice.reply(&offer, 180, "alice-cb").await.unwrap();
    let cancel = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(c) = alice.request(Method::Cancel).await {
                return c;
            }
        }
    })
    .await
    .expect("the callback's ring times out");
    alice.reply(&cancel, 200, "alice-cb").await.unwrap();
    alice.reply(&offer, 487, "alice-cb").await.unwrap();

    // The callback is still first: bob, the next agent, is rung for it, not for the
    // caller who waited on the line.
    let (mut bob, _bob_rtp) = e2e::available_agent(&s, "bob").await;
    let offer = bob.request(Method::Invite).await.unwrap();
    assert!(
        from_user(&offer).contains(&FIRST[1..]),
        "the callback kept its place: {}",
        from_user(&offer)
    );
    bob.reply(&offer, 200, "bob-cb").await.unwrap();
    let invite = carrier.request(Method::Invite).await.unwrap();
    assert_eq!(uri_user(&invite.uri).unwrap_or_default(), FIRST);
    carrier.reply(&invite, 486, "cust").await.unwrap();
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bob-cb").await.unwrap();
    let offer = next_offer(&mut bob, &offer).await;
    assert!(from_user(&offer).contains(&SECOND[1..]));
    bob.reply(&offer, 486, "bob-2").await.unwrap();
    assert_eq!(second.bye(&mut second_d).await.unwrap().status, 200);
    s.stop().await.unwrap();
}
