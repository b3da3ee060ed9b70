//! The agent gateway end to end: a tonic client logs agents and a supervisor in over
//! gRPC on a real socket, agents' phones are test SIP UAs, callers dial the queue.

use std::time::Duration;

use agent_gateway::proto::agent::agent_service_client::AgentServiceClient;
use agent_gateway::proto::agent::{
    self as pb, AgentEvent, CallRequest, DispositionRequest, LoginRequest, ScreenPop,
    SetStatusRequest, TransferRequest, agent_event::Kind, transfer_request::Target,
};
use agent_gateway::proto::supervisor::supervisor_service_client::SupervisorServiceClient;
use agent_gateway::proto::supervisor::{self as sv, StreamStatusRequest, status_update};
use comm_server::sip::message::Method;
use e2e::desk::{agent_client, authed, login, next, next_call_event, set_status, stream};
use e2e::{Rtp, Server, Ua, WAIT, base_config, temp_dir};
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};

fn config() -> String {
    config_with_lease("60s")
}

fn config_with_lease(lease: &str) -> String {
    let hash = |pw: &str| agent_gateway::password::hash(pw).unwrap();
    let extra = format!(
        r#"
[customers]
default-country-code = "44"

[grpc]
lockout-after = 3
lockout-for = "60s"
lease = "{lease}"

[[queue]]
name = "support"
wrap-up = "30s"
ring-timeout = "5s"

[[agent]]
name = "bob"
queues = ["support"]
password-hash = "{}"

[[agent]]
name = "alice"
queues = []
password-hash = "{}"

[[supervisor]]
name = "sue"
password-hash = "{}"

[[route]]
number = "800"
target = {{ queue = "support" }}
"#,
        hash("bob-pw"),
        hash("alice-pw"),
        hash("sue-pw"),
    );
    base_config(&temp_dir(), &extra)
}

async fn phone(s: &Server, name: &str) -> (Ua, Rtp) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new(name, &format!("{name}-pw"), s.udp).await.unwrap();
    ua.media_port = rtp.port();
    assert_eq!(ua.register(600).await.unwrap().status, 200);
    (ua, rtp)
}

async fn caller(s: &Server) -> (Ua, e2e::Dialog) {
    caller_as(s, "customer").await
}

async fn caller_as(s: &Server, user: &str) -> (Ua, e2e::Dialog) {
    e2e::desk::caller_as(s, user, "800").await
}

#[tokio::test]
async fn a_wrong_password_or_unknown_agent_is_unauthenticated_and_repeats_lock_the_name() {
    let s = Server::start(&config()).await.unwrap();
    let mut c = agent_client(&s).await;
    let try_login = |agent: &str, pw: &str| {
        let mut c = c.clone();
        let (agent, pw) = (agent.to_string(), pw.to_string());
        async move {
            c.login(LoginRequest {
                agent_id: agent,
                password: pw,
            })
            .await
        }
    };
    let wrong = try_login("bob", "nope").await.unwrap_err();
    let unknown = try_login("mallory", "nope").await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(
        wrong.message(),
        unknown.message(),
        "an unknown agent looks like a wrong password"
    );
    // Third consecutive failure for bob locks the name: even the right password fails.
    try_login("bob", "nope").await.unwrap_err();
    let locking = try_login("bob", "nope").await.unwrap_err();
    assert!(locking.message().contains("locked"), "{locking:?}");
    let locked = try_login("bob", "bob-pw").await.unwrap_err();
    assert_eq!(locked.code(), Code::Unauthenticated);
    assert!(locked.message().contains("locked"), "{locked:?}");
    // Other names are not affected; a token works, and no token is refused.
    let token = login(&mut c, "alice", "alice-pw").await;
    assert!(!token.is_empty());
    let no_token = c
        .set_status(Request::new(SetStatusRequest {
            status: pb::AgentStatus::Available.into(),
            break_reason: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_agent_gets_the_offer_with_its_screen_pop_answers_and_a_disposition_ends_wrap_up() {
    let s = Server::start(&config()).await.unwrap();
    let mut c = agent_client(&s).await;
    let (mut bob, _bob_rtp) = phone(&s, "bob").await;
    let token = login(&mut c, "bob", "bob-pw").await;
    let mut events = stream(&mut c, &token, None).await;
    set_status(&mut c, &token, pb::AgentStatus::Available).await;
    match next(&mut events).await.kind {
        Some(Kind::StatusChanged(sc)) => assert_eq!(sc.status(), pb::AgentStatus::Available),
        other => panic!("expected the status change, got {other:?}"),
    }

    let (mut customer, mut d) = caller(&s).await;
    let offered = next_call_event(&mut events).await;
    let Some(Kind::CallOffered(offer)) = offered.kind else {
        panic!("expected an offer, got {offered:?}");
    };
    let pop = offer.screen_pop.unwrap();
    assert_eq!(pop.caller_number, "customer");
    assert_eq!(pop.queue, "support");
    assert_eq!(offer.ring_timeout_ms, 5000);

    let invite = bob.request(Method::Invite).await.unwrap();
    bob.reply(&invite, 200, "bobtag").await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    let connected = next_call_event(&mut events).await;
    assert!(
        matches!(&connected.kind, Some(Kind::CallConnected(c)) if c.call_id == offer.call_id),
        "{connected:?}"
    );
    assert!(connected.id > offered.id, "ids increase");

    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();
    let ended = next_call_event(&mut events).await;
    assert!(
        matches!(&ended.kind, Some(Kind::CallEnded(e)) if e.call_id == offer.call_id && e.reason == "hung-up"),
        "{ended:?}"
    );
    let wrap = next_call_event(&mut events).await;
    assert!(
        matches!(&wrap.kind, Some(Kind::WrapUpStarted(w)) if w.call_id == offer.call_id && w.duration_ms == 30_000),
        "{wrap:?}"
    );

    c.disposition(authed(
        &token,
        DispositionRequest {
            call_id: offer.call_id.clone(),
            code: "resolved".into(),
            notes: "reset the router".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    // Well before the 30 s wrap-up would have run out.
    let done = next_call_event(&mut events).await;
    assert!(
        matches!(&done.kind, Some(Kind::WrapUpEnded(w)) if w.call_id == offer.call_id && w.disposition_code == "resolved"),
        "{done:?}"
    );
    // The call is over for the agent: a second disposition is refused.
    let again = c
        .disposition(authed(
            &token,
            DispositionRequest {
                call_id: offer.call_id.clone(),
                code: "resolved".into(),
                notes: String::new(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::PermissionDenied);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_dropped_stream_resumes_with_the_events_it_missed() {
    let s = Server::start(&config()).await.unwrap();
    let mut c = agent_client(&s).await;
    let token = login(&mut c, "bob", "bob-pw").await;
    let mut events = stream(&mut c, &token, None).await;
    set_status(&mut c, &token, pb::AgentStatus::Available).await;
    let seen = next(&mut events).await;
    drop(events);

    // While the desktop is away: a break, then available again.
    set_status(&mut c, &token, pb::AgentStatus::OnBreak).await;
    set_status(&mut c, &token, pb::AgentStatus::Available).await;

    let mut events = stream(&mut c, &token, Some(seen.id)).await;
    let first = next(&mut events).await;
    let second = next(&mut events).await;
    assert_eq!((first.id, second.id), (seen.id + 1, seen.id + 2));
    match (first.kind, second.kind) {
        (Some(Kind::StatusChanged(a)), Some(Kind::StatusChanged(b))) => {
            assert_eq!(a.status(), pb::AgentStatus::OnBreak);
            assert_eq!(a.break_reason, "lunch");
            assert_eq!(b.status(), pb::AgentStatus::Available);
        }
        other => panic!("expected the two missed status changes, got {other:?}"),
    }
    // Then live events follow on the same stream.
    set_status(&mut c, &token, pb::AgentStatus::OnBreak).await;
    assert_eq!(next(&mut events).await.id, seen.id + 3);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_agent_cannot_hang_up_another_agents_call_but_can_hang_up_their_own() {
    let s = Server::start(&config()).await.unwrap();
    let mut c = agent_client(&s).await;
    let (mut bob, _bob_rtp) = phone(&s, "bob").await;
    let bob_token = login(&mut c, "bob", "bob-pw").await;
    let alice_token = login(&mut c, "alice", "alice-pw").await;
    let mut events = stream(&mut c, &bob_token, None).await;
    set_status(&mut c, &bob_token, pb::AgentStatus::Available).await;
    let (mut customer, _d) = caller(&s).await;
    let Some(Kind::CallOffered(offer)) = next_call_event(&mut events).await.kind else {
        panic!("expected an offer");
    };
    let invite = bob.request(Method::Invite).await.unwrap();
    bob.reply(&invite, 200, "bobtag").await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    next_call_event(&mut events).await; // connected

    let denied = c
        .hang_up(authed(
            &alice_token,
            CallRequest {
                call_id: offer.call_id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    c.hang_up(authed(
        &bob_token,
        CallRequest {
            call_id: offer.call_id.clone(),
        },
    ))
    .await
    .unwrap();
    let bye = customer.request(Method::Bye).await.unwrap();
    customer.reply(&bye, 200, "c").await.unwrap();
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();
    let ended = next_call_event(&mut events).await;
    assert!(
        matches!(&ended.kind, Some(Kind::CallEnded(e)) if e.reason == "hung-up"),
        "{ended:?}"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_supervisor_stream_starts_with_a_snapshot_and_sees_an_agents_status_change() {
    let s = Server::start(&config()).await.unwrap();
    let mut sup = SupervisorServiceClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    let mut c = agent_client(&s).await;
    // An agent token is not a supervisor's.
    let bob_token = login(&mut c, "bob", "bob-pw").await;
    let denied = sup
        .stream_status(authed(&bob_token, StreamStatusRequest {}))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let token = sup
        .login(sv::LoginRequest {
            supervisor_id: "sue".into(),
            password: "sue-pw".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut updates = sup
        .stream_status(authed(&token, StreamStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(WAIT, updates.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(status_update::Kind::Snapshot(snap)) = first.kind else {
        panic!("the first message is the snapshot: {first:?}");
    };
    let bob = snap.agents.iter().find(|a| a.agent_id == "bob").unwrap();
    assert_eq!(bob.status(), pb::AgentStatus::LoggedOut);
    assert_eq!(bob.queues, vec!["support".to_string()]);
    assert!(snap.queues.iter().any(|q| q.name == "support"));

    set_status(&mut c, &bob_token, pb::AgentStatus::Available).await;
    let view = loop {
        let u = tokio::time::timeout(WAIT, updates.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(status_update::Kind::Agent(a)) = u.kind
            && a.agent_id == "bob"
        {
            break a;
        }
    };
    assert_eq!(view.status(), pb::AgentStatus::Available);
    assert_eq!(view.state(), sv::AgentState::Idle);

    // A supervisor action reaches the agent's stream.
    let mut events = stream(&mut c, &bob_token, None).await;
    sup.force_break(authed(
        &token,
        sv::ForceBreakRequest {
            agent_id: "bob".into(),
            reason: "coaching".into(),
        },
    ))
    .await
    .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .kind
    {
        Some(Kind::StatusChanged(sc)) => {
            assert_eq!(sc.status(), pb::AgentStatus::OnBreak);
            assert_eq!(sc.break_reason, "coaching");
        }
        other => panic!("expected the forced break, got {other:?}"),
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_agent_whose_desktop_has_no_stream_for_a_lease_is_put_on_break() {
    let s = Server::start(&config_with_lease("1s")).await.unwrap();
    let mut sup = SupervisorServiceClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    let token = sup
        .login(sv::LoginRequest {
            supervisor_id: "sue".into(),
            password: "sue-pw".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut updates = sup
        .stream_status(authed(&token, StreamStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mut c = agent_client(&s).await;
    let bob_token = login(&mut c, "bob", "bob-pw").await;
    // Available, but no event stream is ever opened: the desktop is gone.
    set_status(&mut c, &bob_token, pb::AgentStatus::Available).await;
    let mut statuses = Vec::new();
    while statuses.last().map(|(s, _)| *s) != Some(pb::AgentStatus::OnBreak) {
        let u = tokio::time::timeout(WAIT, updates.message())
            .await
            .expect("the lease expires")
            .unwrap()
            .unwrap();
        if let Some(status_update::Kind::Agent(a)) = u.kind
            && a.agent_id == "bob"
        {
            statuses.push((a.status(), a.break_reason.clone()));
        }
    }
    assert!(statuses.contains(&(pb::AgentStatus::Available, String::new())));
    assert_eq!(
        statuses.last().unwrap().1,
        "desktop-lost",
        "put on break by the lease: {statuses:?}"
    );
    s.stop().await.unwrap();
}

/// A known customer calls: the offer's screen pop carries the record and the history
/// from the store, and the agent's disposition lands in that history.
#[tokio::test]
async fn a_known_callers_record_and_history_pop_and_the_disposition_is_stored() {
    use comm_server::store::{Contact, ContactKind, NewCustomer};
    let s = Server::start(&config()).await.unwrap();
    let ada = s
        .store
        .upsert_customer(
            &NewCustomer {
                name: "Ada Lovelace".into(),
                account: Some("42".into()),
                phones: vec!["+442079460958".into()],
                ..NewCustomer::default()
            },
            1_000,
        )
        .await
        .unwrap()
        .id;
    s.store
        .add_history(&Contact {
            customer_id: Some(ada),
            phone: Some("+442079460958".into()),
            kind: ContactKind::Call,
            direction: None,
            started_at_ms: 2_000,
            ended_at_ms: Some(60_000),
            queue: Some("support".into()),
            agent: Some("alice".into()),
            outcome: Some("billing-question".into()),
            call_id: Some("earlier".into()),
            details: serde_json::json!({}),
        })
        .await
        .unwrap();

    let mut c = agent_client(&s).await;
    let (mut bob, _bob_rtp) = phone(&s, "bob").await;
    let token = login(&mut c, "bob", "bob-pw").await;
    let mut events = stream(&mut c, &token, None).await;
    set_status(&mut c, &token, pb::AgentStatus::Available).await;

    // The caller ID arrives in national form; the store holds E.164.
    let (mut customer, mut d) = caller_as(&s, "02079460958").await;
    let offered = next_call_event(&mut events).await;
    let Some(Kind::CallOffered(offer)) = offered.kind else {
        panic!("expected an offer, got {offered:?}");
    };
    let pop = offer.screen_pop.unwrap();
    let record = pop.customer.expect("the caller's customer record");
    assert_eq!(record.name, "Ada Lovelace");
    assert_eq!(record.account, "42");
    assert_eq!(record.phone_numbers, ["+442079460958"]);
    assert_eq!(
        pop.last_interactions.len(),
        1,
        "{:?}",
        pop.last_interactions
    );
    assert_eq!(pop.last_interactions[0].disposition, "billing-question");
    assert_eq!(pop.last_interactions[0].agent_id, "alice");

    let invite = bob.request(Method::Invite).await.unwrap();
    bob.reply(&invite, 200, "bobtag").await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();
    loop {
        let e = next_call_event(&mut events).await;
        if matches!(e.kind, Some(Kind::WrapUpStarted(_))) {
            break;
        }
    }
    c.disposition(authed(
        &token,
        DispositionRequest {
            call_id: offer.call_id.clone(),
            code: "card-replaced".into(),
            notes: "sent a new card".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();

    let history = s.store.history_for_customer(ada, 10).await.unwrap();
    let disposition = history
        .iter()
        .find(|h| h.contact.kind == ContactKind::Disposition)
        .unwrap_or_else(|| panic!("no disposition in {history:#?}"));
    assert_eq!(
        disposition.contact.outcome.as_deref(),
        Some("card-replaced")
    );
    assert_eq!(disposition.contact.agent.as_deref(), Some("bob"));
    assert_eq!(disposition.contact.queue.as_deref(), Some("support"));
    assert_eq!(disposition.contact.details["notes"], "sent a new card");
    s.stop().await.unwrap();
}

/// Two queues with an agent each, for call control: bob serves "support" (800),
/// carol "billing"; alice serves none.
fn control_config() -> String {
    let hash = |pw: &str| agent_gateway::password::hash(pw).unwrap();
    let extra = format!(
        r#"
[[user]]
name = "carol"
password = "carol-pw"

[[queue]]
name = "support"
wrap-up = "30s"
ring-timeout = "5s"

[[queue]]
name = "billing"
wrap-up = "30s"
ring-timeout = "5s"

[[agent]]
name = "bob"
queues = ["support"]
password-hash = "{}"

[[agent]]
name = "carol"
queues = ["billing"]
password-hash = "{}"

[[agent]]
name = "alice"
queues = []
password-hash = "{}"

[[route]]
number = "800"
target = {{ queue = "support" }}
"#,
        hash("bob-pw"),
        hash("carol-pw"),
        hash("alice-pw"),
    );
    base_config(&temp_dir(), &extra)
}

/// A logged-in, available agent with a registered phone and an event stream.
struct Desk {
    token: String,
    events: Streaming<AgentEvent>,
    phone: Ua,
    rtp: Rtp,
}

async fn desk(s: &Server, c: &mut AgentServiceClient<Channel>, name: &str) -> Desk {
    let (phone, rtp) = phone(s, name).await;
    let token = login(c, name, &format!("{name}-pw")).await;
    let events = stream(c, &token, None).await;
    set_status(c, &token, pb::AgentStatus::Available).await;
    Desk {
        token,
        events,
        phone,
        rtp,
    }
}

/// The agent takes the offer on the desktop and the phone; the call id and the
/// server's media address for the agent's leg.
async fn take_offer(d: &mut Desk) -> (String, std::net::SocketAddr, ScreenPop) {
    let Some(Kind::CallOffered(offer)) = next_call_event(&mut d.events).await.kind else {
        panic!("expected an offer");
    };
    let invite = d.phone.request(Method::Invite).await.unwrap();
    d.phone.reply(&invite, 200, "agenttag").await.unwrap();
    d.phone.request(Method::Ack).await.unwrap();
    let connected = next_call_event(&mut d.events).await;
    assert!(
        matches!(&connected.kind, Some(Kind::CallConnected(c)) if c.call_id == offer.call_id),
        "{connected:?}"
    );
    (
        offer.call_id,
        e2e::sdp_audio_addr(&invite.body).unwrap(),
        offer.screen_pop.unwrap(),
    )
}

/// A caller on 800 with RTP; the server's media address for the caller's leg.
async fn caller_with_media(s: &Server) -> (Ua, Rtp, std::net::SocketAddr, e2e::Dialog) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new("customer", "", s.udp).await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite("800").await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "the queue answers the caller");
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    (ua, rtp, e2e::sdp_audio_addr(&ok.body).unwrap(), d)
}

/// Sends `e2e::talk()` from `from` to `to` while collecting at `at`: how many frames
/// arrived in all, and how many of them were the talk sent.
async fn talk_reaching(from: &mut Rtp, to: std::net::SocketAddr, at: &Rtp) -> (usize, usize) {
    let frames = e2e::talk();
    let sender = async {
        for f in &frames {
            from.send(to, 0, f).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (_, got) = tokio::join!(
        sender,
        at.collect(Duration::from_millis(400), Duration::from_secs(3))
    );
    let talk = got.iter().filter(|f| frames.contains(&f.payload)).count();
    (got.len(), talk)
}

fn call(token: &str, call_id: &str) -> Request<CallRequest> {
    authed(
        token,
        CallRequest {
            call_id: call_id.into(),
        },
    )
}

#[tokio::test]
async fn hold_plays_music_to_the_caller_and_reinvites_the_agent_and_unhold_bridges_again() {
    let s = Server::start(&control_config()).await.unwrap();
    let mut c = agent_client(&s).await;
    let mut bob = desk(&s, &mut c, "bob").await;
    let alice_token = login(&mut c, "alice", "alice-pw").await;
    let (mut customer, mut customer_rtp, to_server, mut d) = caller_with_media(&s).await;
    let (call_id, bob_to_server, _) = take_offer(&mut bob).await;
    let _ = customer_rtp
        .collect(Duration::from_millis(100), Duration::from_millis(300))
        .await; // music tail
    e2e::carries(&mut customer_rtp, to_server, &bob.rtp).await;
    e2e::carries(&mut bob.rtp, bob_to_server, &customer_rtp).await;

    // Another agent's desktop cannot touch this call.
    let denied = c.hold(call(&alice_token, &call_id)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    c.hold(call(&bob.token, &call_id)).await.unwrap();
    // Bob's phone is re-invited on hold (RFC 3264 §8.4) and says it will only listen.
    let reinvite = bob.phone.request(Method::Invite).await.unwrap();
    let offer = String::from_utf8_lossy(&reinvite.body).to_string();
    assert!(offer.contains("a=sendonly"), "{offer}");
    let held_answer = e2e::offer_sdp(bob.rtp.port()).replace("a=sendrecv", "") + "a=recvonly\r\n";
    bob.phone
        .reply_with_sdp(&reinvite, 200, "agenttag", &held_answer)
        .await
        .unwrap();
    bob.phone.request(Method::Ack).await.unwrap();
    // Holding twice is refused with a reason.
    let again = c.hold(call(&bob.token, &call_id)).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    // The caller hears music, not bob (who keeps talking into a held phone).
    let (heard, bobs) = talk_reaching(&mut bob.rtp, bob_to_server, &customer_rtp).await;
    let silence = e2e::pcmu(&[0; 160]);
    assert_eq!(bobs, 0, "bob's voice does not reach a held caller");
    assert!(heard > 20, "the held caller hears music ({heard} frames)");
    let music = customer_rtp
        .collect(Duration::from_millis(300), Duration::from_millis(600))
        .await;
    assert!(
        music.iter().filter(|f| f.payload != silence).count() > 10,
        "music, not silence"
    );
    // And bob does not hear the caller.
    let (_, callers) = talk_reaching(&mut customer_rtp, to_server, &bob.rtp).await;
    assert_eq!(
        callers, 0,
        "the caller's voice does not reach the held agent"
    );

    c.unhold(call(&bob.token, &call_id)).await.unwrap();
    let reinvite = bob.phone.request(Method::Invite).await.unwrap();
    let offer = String::from_utf8_lossy(&reinvite.body).to_string();
    assert!(offer.contains("a=sendrecv"), "{offer}");
    bob.phone.reply(&reinvite, 200, "agenttag").await.unwrap();
    bob.phone.request(Method::Ack).await.unwrap();
    let _ = customer_rtp
        .collect(Duration::from_millis(100), Duration::from_millis(300))
        .await; // music tail
    e2e::carries(&mut bob.rtp, bob_to_server, &customer_rtp).await;
    e2e::carries(&mut customer_rtp, to_server, &bob.rtp).await;

    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.phone.request(Method::Bye).await.unwrap();
    bob.phone.reply(&bye, 200, "agenttag").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_blind_transfer_to_a_queue_reaches_its_agent_and_wraps_up_the_first() {
    let s = Server::start(&control_config()).await.unwrap();
    let mut c = agent_client(&s).await;
    let mut bob = desk(&s, &mut c, "bob").await;
    let mut carol = desk(&s, &mut c, "carol").await;
    let (mut customer, mut customer_rtp, to_server, mut d) = caller_with_media(&s).await;
    let (call_id, _, _) = take_offer(&mut bob).await;

    // Carol cannot transfer bob's call, and a queue that does not exist is refused
    // before anything changes.
    let to = |token: &str, target: Target| {
        authed(
            token,
            TransferRequest {
                call_id: call_id.clone(),
                target: Some(target),
            },
        )
    };
    let denied = c
        .transfer(to(&carol.token, Target::Queue("billing".into())))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let unknown = c
        .transfer(to(&bob.token, Target::Queue("sales".into())))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert!(unknown.message().contains("sales"), "{unknown:?}");

    c.transfer(to(&bob.token, Target::Queue("billing".into())))
        .await
        .unwrap();
    let bye = bob.phone.request(Method::Bye).await.unwrap();
    bob.phone.reply(&bye, 200, "agenttag").await.unwrap();
    let ended = next_call_event(&mut bob.events).await;
    assert!(
        matches!(&ended.kind, Some(Kind::CallEnded(e)) if e.call_id == call_id && e.reason == "transferred"),
        "{ended:?}"
    );
    let wrap = next_call_event(&mut bob.events).await;
    assert!(
        matches!(&wrap.kind, Some(Kind::WrapUpStarted(w)) if w.call_id == call_id),
        "{wrap:?}"
    );

    // Carol gets the same call from the billing queue, and talks with the caller.
    let (carol_call, carol_to_server, pop) = take_offer(&mut carol).await;
    assert_eq!(carol_call, call_id);
    assert_eq!(pop.queue, "billing");
    assert_eq!(pop.caller_number, "customer");
    let _ = customer_rtp
        .collect(Duration::from_millis(100), Duration::from_millis(300))
        .await; // music tail
    e2e::carries(&mut carol.rtp, carol_to_server, &customer_rtp).await;
    e2e::carries(&mut customer_rtp, to_server, &carol.rtp).await;

    // Bob can still close his part with a disposition.
    c.disposition(authed(
        &bob.token,
        DispositionRequest {
            call_id: call_id.clone(),
            code: "transferred-to-billing".into(),
            notes: String::new(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();

    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = carol.phone.request(Method::Bye).await.unwrap();
    carol.phone.reply(&bye, 200, "agenttag").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_agent_steps_through_the_queues_script_and_each_answer_reaches_the_history() {
    use comm_server::store::{ContactKind, NewCustomer};
    let config = control_config()
        .replace(
            "name = \"support\"\nwrap-up = \"30s\"",
            "name = \"support\"\nagent-script = \"retention.xml\"\nwrap-up = \"30s\"",
        )
        .replacen(
            "[[queue]]",
            "[customers]\ndefault-country-code = \"44\"\n\n[[queue]]",
            1,
        );
    let s = Server::start(&config).await.unwrap();
    let mut attributes = serde_json::Map::new();
    attributes.insert("segment".into(), "gold".into());
    attributes.insert("since".into(), "2019".into());
    let ada = s
        .store
        .upsert_customer(
            &NewCustomer {
                name: "Ada Lovelace".into(),
                phones: vec!["+442079460958".into()],
                attributes,
                ..NewCustomer::default()
            },
            1_000,
        )
        .await
        .unwrap()
        .id;
    let mut c = agent_client(&s).await;
    let mut bob = desk(&s, &mut c, "bob").await;
    let alice_token = login(&mut c, "alice", "alice-pw").await;
    let (mut customer, mut d) = caller_as(&s, "02079460958").await;
    let (call_id, _, pop) = take_offer(&mut bob).await;
    assert_eq!(pop.script_id, "retention");

    let first = c
        .script_step(call(&bob.token, &call_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.script_id, "retention");
    assert!(!first.title.is_empty());
    assert!(
        first.steps[0].kind == "say" && first.steps[0].text.contains("Ada Lovelace"),
        "the greeting names the caller's customer: {:?}",
        first.steps
    );
    let ask = first.awaiting.clone().expect("the first question");
    assert_eq!((ask.step.as_str(), ask.kind.as_str()), ("reason", "ask"));
    assert_eq!(ask.input, "choice");
    assert!(ask.choices.iter().any(|ch| ch.value == "cancel"), "{ask:?}");
    // Asking again shows the same question and repeats no steps.
    let again = c
        .script_step(call(&bob.token, &call_id))
        .await
        .unwrap()
        .into_inner();
    assert!(again.steps.is_empty(), "{:?}", again.steps);
    assert_eq!(again.awaiting, first.awaiting);
    // Another agent's desktop cannot see or answer it.
    let denied = c
        .script_step(call(&alice_token, &call_id))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    let submit = |answer: &str| {
        authed(
            &bob.token,
            pb::SubmitAnswerRequest {
                call_id: call_id.clone(),
                answer: answer.into(),
            },
        )
    };
    let offer = c
        .submit_answer(submit("cancel"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        offer.steps.iter().any(|st| st.text.contains("25%")),
        "a gold customer gets the 25% offer: {:?}",
        offer.steps
    );
    assert_eq!(offer.awaiting.unwrap().step, "offer_response");
    let why = c
        .submit_answer(submit("declined"))
        .await
        .unwrap()
        .into_inner();
    let why = why.awaiting.unwrap();
    assert_eq!(
        (why.step.as_str(), why.input.as_str()),
        ("cancel_reason", "text")
    );
    let end = c
        .submit_answer(submit("moving abroad"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(end.outcome, "cancelled", "{end:?}");
    assert!(end.awaiting.is_none());
    assert!(
        end.steps.iter().any(|st| st.kind == "end"),
        "{:?}",
        end.steps
    );
    let over = c.submit_answer(submit("anything")).await.unwrap_err();
    assert_eq!(over.code(), Code::FailedPrecondition, "{over:?}");

    // Each answer and the outcome are in Ada's contact history, and the script's
    // <update-customer> ran for her.
    let history = s.store.history_for_customer(ada, 50).await.unwrap();
    let answers: Vec<(String, serde_json::Value)> = history
        .iter()
        .filter(|h| h.contact.kind == ContactKind::Note)
        .filter_map(|h| {
            let step = h.contact.details.get("step")?.as_str()?.to_string();
            Some((step, h.contact.details.get("answer")?.clone()))
        })
        .collect();
    for (step, answer) in [
        ("reason", "cancel"),
        ("offer_response", "declined"),
        ("cancel_reason", "moving abroad"),
    ] {
        assert!(
            answers.iter().any(|(s, a)| s == step && a == answer),
            "{step} = {answer} in {answers:?}"
        );
    }
    assert!(
        history.iter().any(|h| h.contact.kind == ContactKind::Note
            && h.contact.outcome.as_deref() == Some("cancelled")
            && h.contact.agent.as_deref() == Some("bob")
            && h.contact.call_id.as_deref() == Some(call_id.as_str())),
        "{history:#?}"
    );
    let record = s
        .store
        .customer_by_id(ada)
        .await
        .unwrap()
        .expect("ada is still there");
    assert_eq!(
        record.attributes.get("cancellation_reason"),
        Some(&serde_json::json!("moving abroad"))
    );

    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.phone.request(Method::Bye).await.unwrap();
    bob.phone.reply(&bye, 200, "agenttag").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_supervisor_gives_an_agent_a_skill_and_the_waiting_call_that_needs_it_is_offered() {
    let config = config().replace(
        "[[route]]\nnumber = \"800\"",
        "[[route]]\nnumber = \"801\"\ntarget = { queue = \"support\", skills = { billing = 2 } }\n\n\
         [[route]]\nnumber = \"800\"",
    );
    let s = Server::start(&config).await.unwrap();
    let mut sup = SupervisorServiceClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    let sue = sup
        .login(sv::LoginRequest {
            supervisor_id: "sue".into(),
            password: "sue-pw".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut updates = sup
        .stream_status(authed(&sue, StreamStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    let mut c = agent_client(&s).await;
    let (mut bob_phone, _rtp) = phone(&s, "bob").await;
    let bob = login(&mut c, "bob", "bob-pw").await;
    let mut events = stream(&mut c, &bob, None).await;
    set_status(&mut c, &bob, pb::AgentStatus::Available).await;

    // The caller needs billing, which bob lacks: the supervisor sees the call wait.
    let rtp = Rtp::bind().await.unwrap();
    let mut customer = Ua::new("customer", "", s.udp).await.unwrap();
    customer.media_port = rtp.port();
    let inv = customer.invite("801").await.unwrap();
    let ok = customer
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let mut d = customer.dialog_from_answer(&inv, &ok);
    customer.ack(&d).await.unwrap();
    loop {
        let u = tokio::time::timeout(WAIT, updates.message())
            .await
            .expect("the queue view in time")
            .unwrap()
            .unwrap();
        if let Some(status_update::Kind::Queue(q)) = u.kind
            && q.name == "support"
            && q.waiting.len() == 1
        {
            break;
        }
    }

    let set = |skills: Vec<(&str, u32)>| {
        authed(
            &sue,
            sv::SetAgentSkillsRequest {
                agent_id: "bob".into(),
                skills: skills
                    .into_iter()
                    .map(|(name, level)| sv::Skill {
                        name: name.into(),
                        level,
                    })
                    .collect(),
            },
        )
    };
    let bad = sup
        .set_agent_skills(set(vec![("billing", 9)]))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    let unknown = sup
        .set_agent_skills(authed(
            &sue,
            sv::SetAgentSkillsRequest {
                agent_id: "nobody".into(),
                skills: vec![],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    sup.set_agent_skills(set(vec![("billing", 3)]))
        .await
        .unwrap();

    let offered = next_call_event(&mut events).await;
    assert!(
        matches!(&offered.kind, Some(Kind::CallOffered(_))),
        "{offered:?}"
    );
    let invite = bob_phone.request(Method::Invite).await.unwrap();
    bob_phone.reply(&invite, 200, "bobtag").await.unwrap();
    bob_phone.request(Method::Ack).await.unwrap();
    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = bob_phone.request(Method::Bye).await.unwrap();
    bob_phone.reply(&bye, 200, "bobtag").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_blind_transfer_to_an_agent_rings_that_agent_even_outside_the_queue() {
    let s = Server::start(&control_config()).await.unwrap();
    let mut c = agent_client(&s).await;
    let mut bob = desk(&s, &mut c, "bob").await;
    let mut carol = desk(&s, &mut c, "carol").await;
    let (mut customer, mut customer_rtp, to_server, mut d) = caller_with_media(&s).await;
    let (call_id, _, _) = take_offer(&mut bob).await;
    let to = |target: Target| {
        authed(
            &bob.token,
            TransferRequest {
                call_id: call_id.clone(),
                target: Some(target),
            },
        )
    };
    // Alice is logged out: refused before anything changes, bob keeps the caller.
    let busy = c
        .transfer(to(Target::AgentId("alice".into())))
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
    assert!(busy.message().contains("alice"), "{busy:?}");
    let nobody = c
        .transfer(to(Target::AgentId("zed".into())))
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::NotFound, "{nobody:?}");

    // Carol serves billing, not support: only the transfer reaches her.
    c.transfer(to(Target::AgentId("carol".into())))
        .await
        .unwrap();
    let bye = bob.phone.request(Method::Bye).await.unwrap();
    bob.phone.reply(&bye, 200, "agenttag").await.unwrap();
    let ended = next_call_event(&mut bob.events).await;
    assert!(
        matches!(&ended.kind, Some(Kind::CallEnded(e)) if e.reason == "transferred"),
        "{ended:?}"
    );
    let (carol_call, carol_to_server, pop) = take_offer(&mut carol).await;
    assert_eq!(carol_call, call_id);
    assert_eq!(pop.queue, "support", "the call keeps its queue");
    let _ = customer_rtp
        .collect(Duration::from_millis(100), Duration::from_millis(300))
        .await; // music tail
    e2e::carries(&mut carol.rtp, carol_to_server, &customer_rtp).await;
    e2e::carries(&mut customer_rtp, to_server, &carol.rtp).await;

    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = carol.phone.request(Method::Bye).await.unwrap();
    carol.phone.reply(&bye, 200, "agenttag").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_blind_transfer_to_a_number_dials_it_through_the_trunk() {
    let carrier_sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let carrier_addr = carrier_sock.local_addr().unwrap();
    let config = control_config().replacen(
        "[[queue]]",
        &format!(
            "[customers]\ndefault-country-code = \"44\"\n\n\
             [[trunk]]\nname = \"carrier\"\naddress = \"{carrier_addr}\"\n\
             inbound-sources = [\"127.0.0.2\"]\nprefixes = [\"0\"]\n\n[[queue]]"
        ),
        1,
    );
    let s = Server::start(&config).await.unwrap();
    let carrier_rtp = Rtp::bind().await.unwrap();
    let mut carrier = Ua::new("carrier", "", s.udp).await.unwrap();
    carrier.sock = carrier_sock;
    carrier.addr = carrier_addr;
    carrier.media_port = carrier_rtp.port();
    let mut carrier_rtp = carrier_rtp;

    let mut c = agent_client(&s).await;
    let mut bob = desk(&s, &mut c, "bob").await;
    let (mut customer, mut customer_rtp, to_server, mut d) = caller_with_media(&s).await;
    let (call_id, _, _) = take_offer(&mut bob).await;
    let to = |number: &str| {
        authed(
            &bob.token,
            TransferRequest {
                call_id: call_id.clone(),
                target: Some(Target::Number(number.into())),
            },
        )
    };
    // No trunk dials +49...: refused before bob lets go.
    let no_route = c.transfer(to("+4930123456")).await.unwrap_err();
    assert_eq!(no_route.code(), Code::FailedPrecondition, "{no_route:?}");
    assert!(no_route.message().contains("no trunk"), "{no_route:?}");

    c.transfer(to("02079460000")).await.unwrap();
    let bye = bob.phone.request(Method::Bye).await.unwrap();
    bob.phone.reply(&bye, 200, "agenttag").await.unwrap();
    let ended = next_call_event(&mut bob.events).await;
    assert!(
        matches!(&ended.kind, Some(Kind::CallEnded(e)) if e.reason == "transferred"),
        "{ended:?}"
    );
    let invite = carrier.request(Method::Invite).await.unwrap();
    // Dialled in E.164, as campaigns and scripts dial.
    assert_eq!(
        invite.uri.to_string(),
        format!("sip:+442079460000@{carrier_addr}")
    );
    let carrier_to_server = e2e::sdp_audio_addr(&invite.body).unwrap();
    carrier.reply(&invite, 200, "carriertag").await.unwrap();
    carrier.request(Method::Ack).await.unwrap();
    let _ = customer_rtp
        .collect(Duration::from_millis(100), Duration::from_millis(300))
        .await; // music tail
    e2e::carries(&mut carrier_rtp, carrier_to_server, &customer_rtp).await;
    e2e::carries(&mut customer_rtp, to_server, &carrier_rtp).await;

    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = carrier.request(Method::Bye).await.unwrap();
    carrier.reply(&bye, 200, "carriertag").await.unwrap();

    // The reports count it as a transfer out of support, as for a queue or an agent.
    let data_dir = s.data_dir.clone();
    s.stop().await.unwrap();
    let store = Server::reopen_store(&data_dir).await.unwrap();
    let records = store.acd_events_between(0, i64::MAX).await.unwrap();
    store.close().await;
    let transfers: Vec<_> = records.iter().filter(|r| r.kind == "Transferred").collect();
    assert_eq!(transfers.len(), 1, "{records:#?}");
    assert_eq!(transfers[0].queue.as_deref(), Some("support"));
}
