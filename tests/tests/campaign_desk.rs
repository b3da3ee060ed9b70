//! Campaign calls from the agent's desktop, end to end: a test UA plays the carrier
//! behind a `[[trunk]]`, bob works the campaign with his phone (a test UA) and his
//! desktop (the gRPC agent API). A callback bob books in his disposition is dialled
//! again at its time, past the attempts limit, and reaches him with the booking in
//! the screen pop. In preview mode bob sees each contact before anything is dialled:
//! a skipped one is never dialled, a dialled one rings his phone, then the customer.
//! With answering-machine detection, a machine-like greeting (generated as in the
//! detector's accuracy tests) hears the campaign's message and is hung up on, and a
//! person's "hello" reaches bob.

use std::time::Duration;

use agent_gateway::proto::agent::agent_service_client::AgentServiceClient;
use agent_gateway::proto::agent::{self as pb, agent_event::Kind as Ev};
use comm_server::sip::header::uri_user;
use comm_server::sip::message::{Method, Request};
use comm_server::store::{CampaignState, NewCampaignContact};
use comm_server::time::Clock as _;
use e2e::{Server, Ua, WAIT, authed, base_config, temp_dir};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const CONTACT: &str = "+441110001";
const SECOND: &str = "+441110002";

/// `campaign`: extra keys for the `[[campaign]]` section (its mode, say).
fn config(carrier: std::net::SocketAddr, campaign: &str) -> String {
    format!(
        r#"
[[trunk]]
name = "carrier"
address = "{carrier}"
inbound-sources = ["127.0.0.2"]

[[queue]]
name = "outbound"
wrap-up = "30s"

[[agent]]
name = "bob"
queues = ["outbound"]
password-hash = "{}"

[[campaign]]
name = "renewals"
queue = "outbound"
trunk = "carrier"
caller-id = "+442079460000"
calling-hours = "00:00-23:59"
max-attempts = 1
{campaign}
"#,
        agent_gateway::password::hash("bob-pw").unwrap(),
    )
}

/// Bob's desktop, logged in and listening.
struct Desk {
    api: AgentServiceClient<Channel>,
    token: String,
    events: Streaming<pb::AgentEvent>,
}

impl Desk {
    async fn open(s: &Server) -> Desk {
        let mut api = AgentServiceClient::connect(format!("http://{}", s.grpc))
            .await
            .unwrap();
        let token = api
            .login(pb::LoginRequest {
                agent_id: "bob".into(),
                password: "bob-pw".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        let events = api
            .stream_events(authed(&token, pb::StreamEventsRequest::default()))
            .await
            .unwrap()
            .into_inner();
        Desk { api, token, events }
    }

    /// The next event `pick` accepts.
    async fn until<T>(&mut self, pick: impl Fn(Ev) -> Option<T>) -> T {
        loop {
            let e = tokio::time::timeout(WAIT, self.events.message())
                .await
                .expect("the expected desktop event never came")
                .unwrap()
                .unwrap();
            if let Some(t) = e.kind.and_then(&pick) {
                return t;
            }
        }
    }

    async fn disposition(
        &mut self,
        call_id: &str,
        code: &str,
        callback_at_unix_ms: i64,
    ) -> Result<(), tonic::Status> {
        let request = pb::DispositionRequest {
            call_id: call_id.into(),
            code: code.into(),
            notes: String::new(),
            callback_at_unix_ms,
        };
        self.api
            .disposition(authed(&self.token, request))
            .await
            .map(|_| ())
    }
}

/// A server with the campaign (`campaign`: extra keys) and its `contacts`, and the
/// carrier UA on the trunk's address.
async fn start(campaign: &str, contacts: &[&str]) -> (Server, Ua) {
    let carrier_addr = e2e::free_udp_addr().await;
    let s = Server::start(&base_config(&temp_dir(), &config(carrier_addr, campaign)))
        .await
        .unwrap();
    let carrier = e2e::carrier_at(carrier_addr, s.udp).await;
    let contacts: Vec<_> = contacts
        .iter()
        .map(|e164| NewCampaignContact {
            e164: e164.to_string(),
            name: format!("Customer {e164}"),
            ..NewCampaignContact::default()
        })
        .collect();
    s.store
        .import_campaign_contacts("renewals", &contacts, 0, &mut |_| {})
        .await
        .unwrap();
    (s, carrier)
}

/// Waits for the driver to record the campaign, then runs it.
async fn run_campaign(s: &Server) {
    for _ in 0..50 {
        if s.store.campaign_state("renewals").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.store
        .set_campaign_state("renewals", CampaignState::Running, 0)
        .await
        .unwrap();
}

/// The carrier's next INVITE, for `number`.
async fn dialled(carrier: &mut Ua, number: &str, within: Duration) -> Request {
    let invite = tokio::time::timeout(within, carrier.request(Method::Invite))
        .await
        .expect("the contact was not dialled")
        .unwrap();
    assert_eq!(uri_user(&invite.uri).as_deref(), Some(number));
    invite
}

/// The customer answers, bob's phone answers the offer; returns the desktop's offer.
async fn answered_by_bob(
    carrier: &mut Ua,
    invite: &Request,
    bob: &mut Ua,
    desk: &mut Desk,
) -> (e2e::Dialog, pb::CallOffered) {
    let ok = carrier.reply(invite, 200, "cust").await.unwrap();
    let customer = carrier.dialog_as_callee(invite, &ok);
    let offer = bob.request(Method::Invite).await.unwrap();
    bob.reply(&offer, 200, "bob-a").await.unwrap();
    let offered = desk
        .until(|e| match e {
            Ev::CallOffered(o) => Some(o),
            _ => None,
        })
        .await;
    (customer, offered)
}

/// The customer hangs up; bob's phone gets the BYE.
async fn hang_up(carrier: &mut Ua, customer: &mut e2e::Dialog, bob: &mut Ua) {
    assert_eq!(carrier.bye(customer).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bob-a").await.unwrap();
}

/// The campaign's attempts, once there are `n` (polling the store).
async fn attempts(s: &Server, n: usize) -> Vec<comm_server::store::CampaignAttempt> {
    for _ in 0..50 {
        let attempts = s.store.campaign_attempts("renewals").await.unwrap();
        if attempts.len() >= n {
            return attempts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the campaign never had {n} attempts");
}

#[tokio::test]
async fn a_callback_booked_in_the_disposition_is_dialled_at_its_time() {
    let (s, mut carrier) = start(r#"mode = "progressive""#, &[CONTACT]).await;
    let mut desk = Desk::open(&s).await;
    let (mut bob, _bob_rtp) = e2e::available_agent(&s, "bob").await;
    run_campaign(&s).await;

    // The customer answers, talks to bob and asks to be called back later.
    let invite = dialled(&mut carrier, CONTACT, WAIT).await;
    let (mut customer, offered) = answered_by_bob(&mut carrier, &invite, &mut bob, &mut desk).await;
    hang_up(&mut carrier, &mut customer, &mut bob).await;
    desk.until(|e| matches!(e, Ev::WrapUpStarted(_)).then_some(()))
        .await;

    // A time in the past is refused, and the wrap-up goes on.
    let now_ms = comm_server::time::SystemClock.unix_ms();
    let e = desk
        .disposition(&offered.call_id, "call-back", now_ms - 1000)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let at = comm_server::time::SystemClock.unix_ms() + 2000;
    desk.disposition(&offered.call_id, "call-back", at)
        .await
        .unwrap();

    // One attempt was all the campaign allows, yet the booking is dialled, not before
    // its time.
    let invite = dialled(&mut carrier, CONTACT, WAIT + Duration::from_secs(2)).await;
    assert!(
        comm_server::time::SystemClock.unix_ms() >= at,
        "dialled before the booked time"
    );
    let (_customer, offered) = answered_by_bob(&mut carrier, &invite, &mut bob, &mut desk).await;
    let pop = offered.screen_pop.expect("a screen pop");
    assert_eq!(pop.caller_number, CONTACT);
    assert!(
        pop.last_interactions
            .iter()
            .any(|i| i.disposition == "call-back" && i.agent_id == "bob"),
        "the booking is in the pop: {:?}",
        pop.last_interactions
    );

    // The contact history holds the booking, and the second dial is marked a callback.
    let history = s.store.history_for_phone(CONTACT, 10).await.unwrap();
    let booking = history
        .iter()
        .find(|h| h.contact.outcome.as_deref() == Some("call-back"))
        .expect("the disposition in the history");
    assert_eq!(booking.contact.details["callback_at_ms"], at);
    let attempts = s.store.campaign_attempts("renewals").await.unwrap();
    assert_eq!(attempts[0].disposition.as_deref(), Some("call-back"));
    s.stop().await.unwrap();
}

/// The next preview offered on the desktop.
async fn previewed(desk: &mut Desk) -> pb::CallOffered {
    let offer = desk
        .until(|e| match e {
            Ev::CallOffered(o) => Some(o),
            _ => None,
        })
        .await;
    assert!(offer.preview, "a preview, not a call: {offer:?}");
    offer
}

async fn decide(desk: &mut Desk, call_id: &str, dial: bool) -> Result<(), tonic::Status> {
    let request = authed(
        &desk.token,
        pb::CallRequest {
            call_id: call_id.into(),
        },
    );
    let r = if dial {
        desk.api.preview_dial(request).await
    } else {
        desk.api.preview_skip(request).await
    };
    r.map(|_| ())
}

#[tokio::test]
async fn in_preview_mode_the_agent_dials_or_skips_each_contact() {
    let (s, mut carrier) = start(r#"mode = "preview""#, &[CONTACT, SECOND]).await;
    let mut desk = Desk::open(&s).await;
    let (mut bob, _bob_rtp) = e2e::available_agent(&s, "bob").await;
    run_campaign(&s).await;

    // The first contact pops on bob's desktop; nobody is dialled while he reads it.
    let first = previewed(&mut desk).await;
    let pop = first.screen_pop.clone().unwrap();
    assert_eq!(pop.caller_number, CONTACT);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), carrier.request(Method::Invite))
            .await
            .is_err(),
        "a preview dials nobody by itself"
    );
    // He skips it: it is withdrawn, and the second contact pops.
    decide(&mut desk, &first.call_id, false).await.unwrap();
    let second = previewed(&mut desk).await;
    assert_eq!(second.screen_pop.unwrap().caller_number, SECOND);

    // He dials it: his phone rings first, showing the customer's number, and only once
    // he answers is the customer dialled.
    decide(&mut desk, &second.call_id, true).await.unwrap();
    let e = decide(&mut desk, &second.call_id, false).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "decided already: {e:?}");
    let ring = bob.request(Method::Invite).await.unwrap();
    assert!(
        ring.headers
            .get("From")
            .is_some_and(|f| f.contains(SECOND.trim_start_matches('+'))),
        "bob's phone shows the customer: {:?}",
        ring.headers.get("From")
    );
    bob.reply(&ring, 200, "bob-a").await.unwrap();
    let invite = dialled(&mut carrier, SECOND, WAIT).await;
    let ok = carrier.reply(&invite, 200, "cust").await.unwrap();
    let mut customer = carrier.dialog_as_callee(&invite, &ok);
    desk.until(|e| matches!(e, Ev::CallConnected(_)).then_some(()))
        .await;
    hang_up(&mut carrier, &mut customer, &mut bob).await;

    // The dialled contact has its answered attempt, by bob; the skipped one none.
    let attempts = attempts(&s, 1).await;
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].outcome, "answered");
    assert_eq!(attempts[0].agent.as_deref(), Some("bob"));
    let contacts = s.store.campaign_contacts("renewals").await.unwrap();
    let skipped = contacts.iter().find(|c| c.e164 == CONTACT).unwrap();
    assert_eq!(skipped.last_outcome.as_deref(), Some("skipped"));
    s.stop().await.unwrap();
}

/// Sends `samples` as PCMU at the real pace to `to`, then line noise for ever (the
/// caller stops listening by dropping this future).
async fn speak(rtp: &mut e2e::Rtp, to: std::net::SocketAddr, samples: &[i16]) {
    for frame in samples.chunks(160) {
        rtp.send(to, 0, &e2e::pcmu(frame)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hiss: Vec<i16> = (0..160)
        .map(|i| if i % 2 == 0 { 40 } else { -40 })
        .collect();
    loop {
        rtp.send(to, 0, &e2e::pcmu(&hiss)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The carrier answers `invite` with its media on `rtp`; returns where our audio goes.
async fn answer_with_media(
    carrier: &mut Ua,
    invite: &Request,
    rtp: &e2e::Rtp,
) -> (e2e::Dialog, std::net::SocketAddr) {
    carrier.media_port = rtp.port();
    let ok = carrier.reply(invite, 200, "cust").await.unwrap();
    let to = e2e::sdp_audio_addr(&invite.body).expect("our offer has an address");
    (carrier.dialog_as_callee(invite, &ok), to)
}

#[tokio::test]
async fn a_machine_hears_the_message_and_a_person_reaches_the_agent() {
    use comm_server::campaigns::amd::samples;
    const MACHINE: &str = CONTACT;
    const PERSON: &str = SECOND;
    let campaign = r#"mode = "progressive"
amd = "message"
amd-message = "general/goodbye""#;
    let (s, mut carrier) = start(campaign, &[MACHINE, PERSON]).await;
    let (mut bob, _bob_rtp) = e2e::available_agent(&s, "bob").await;
    run_campaign(&s).await;

    // A machine answers and talks on: it hears the message, then we hang up; bob's
    // phone never rings for it.
    let mut rtp = e2e::Rtp::bind().await.unwrap();
    let invite = dialled(&mut carrier, MACHINE, WAIT).await;
    let (_machine, to) = answer_with_media(&mut carrier, &invite, &rtp).await;
    let greeting = samples::machine(7);
    let bye = tokio::select! {
        bye = carrier.request(Method::Bye) => bye.unwrap(),
        _ = speak(&mut rtp, to, &greeting) => unreachable!(),
        _ = tokio::time::sleep(Duration::from_secs(15)) => panic!("the machine was never hung up on"),
    };
    carrier.reply(&bye, 200, "cust").await.unwrap();
    let message = rtp
        .collect(Duration::from_millis(200), Duration::from_secs(2))
        .await;
    assert!(
        message.len() > 10,
        "the machine heard the message: {} frames",
        message.len()
    );

    // A person says hello and waits: bob's phone rings with them.
    let invite = dialled(&mut carrier, PERSON, WAIT).await;
    let (mut person, to) = answer_with_media(&mut carrier, &invite, &rtp).await;
    let hello = samples::human(7);
    let offer = tokio::select! {
        offer = bob.request(Method::Invite) => offer.unwrap(),
        _ = speak(&mut rtp, to, &hello) => unreachable!(),
        _ = tokio::time::sleep(Duration::from_secs(15)) => panic!("the person never reached bob"),
    };
    assert!(
        offer
            .headers
            .get("From")
            .is_some_and(|f| f.contains(PERSON.trim_start_matches('+'))),
        "bob is offered the person, not the machine: {:?}",
        offer.headers.get("From")
    );
    bob.reply(&offer, 200, "bob-a").await.unwrap();
    hang_up(&mut carrier, &mut person, &mut bob).await;

    // The attempts: the machine's outcome is "machine", the person's "answered".
    let attempts = attempts(&s, 2).await;
    let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["machine", "answered"]);
    assert_eq!(attempts[0].agent, None);
    assert_eq!(attempts[1].agent.as_deref(), Some("bob"));
    let history = s.store.history_for_phone(MACHINE, 10).await.unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.contact.outcome.as_deref() == Some("machine")),
        "the machine is in the contact history"
    );
    s.stop().await.unwrap();
}
