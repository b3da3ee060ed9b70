//! The ACD end to end: agents log in from their phones (*1), a caller waits with
//! music, an agent's phone rings, answers, and the two talk through the server; an
//! offer nobody answers moves on to the next agent.

use std::time::Duration;

use comm_server::media::prompt::Prompt;
use comm_server::sip::message::Method;
use e2e::{Rtp, Server, Ua, base_config, carries, pcmu, sdp_audio_addr, temp_dir};

const ACD: &str = r#"
[[user]]
name = "carol"
password = "carol-pw"

[[queue]]
name = "support"
wrap-up = "2s"
ring-timeout = "2s"

[[agent]]
name = "bob"
queues = ["support"]

[[agent]]
name = "carol"
queues = ["support"]

[[route]]
number = "800"
target = { queue = "support" }
"#;

/// Registers an agent's phone and makes the agent available (`*1`).
async fn agent(s: &Server, name: &str) -> (Ua, Rtp) {
    e2e::available_agent(s, name).await
}

/// A caller dials the queue; returns the UA, its RTP, the server's RTP address and dialog.
async fn caller(s: &Server) -> (Ua, Rtp, std::net::SocketAddr, e2e::Dialog) {
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
    (ua, rtp, sdp_audio_addr(&ok.body).unwrap(), d)
}

#[tokio::test]
async fn a_waiting_caller_hears_music_then_talks_to_the_agent_who_answers() {
    let s = Server::start(&base_config(&temp_dir(), ACD)).await.unwrap();
    let (mut bob, mut bob_rtp) = agent(&s, "bob").await;
    let (mut customer, mut customer_rtp, to_server, mut d) = caller(&s).await;

    let offer = bob.request(Method::Invite).await.unwrap();
    // While bob's phone rings, the caller hears music on hold.
    let music = customer_rtp
        .collect(Duration::from_millis(300), Duration::from_millis(800))
        .await;
    let silence = pcmu(&[0; 160]);
    assert!(
        music.iter().filter(|f| f.payload != silence).count() > 10,
        "music while waiting"
    );
    let ok = bob.reply(&offer, 200, "bobtag").await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    let to_server_from_bob = sdp_audio_addr(&offer.body).unwrap();
    let _ = bob.dialog_as_callee(&offer, &ok);
    let _ = customer_rtp
        .collect(Duration::from_millis(100), Duration::from_millis(300))
        .await; // music tail
    carries(&mut customer_rtp, to_server, &bob_rtp).await;
    carries(&mut bob_rtp, to_server_from_bob, &customer_rtp).await;

    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_offer_nobody_answers_moves_on_to_the_next_agent() {
    let s = Server::start(&base_config(&temp_dir(), ACD)).await.unwrap();
    let (mut bob, _bob_rtp) = agent(&s, "bob").await;
    let (mut carol, _carol_rtp) = agent(&s, "carol").await;
    let (mut customer, _rtp, _to, mut d) = caller(&s).await;

    // Whoever rings first does not answer; the ring timeout (2 s) cancels it.
    let (first, second) = tokio::select! {
        r = bob.request(Method::Invite) => (("bob", r.unwrap()), "carol"),
        r = carol.request(Method::Invite) => (("carol", r.unwrap()), "bob"),
    };
    let (ignorer, next) = if first.0 == "bob" {
        (&mut bob, &mut carol)
    } else {
        (&mut carol, &mut bob)
    };
    ignorer.reply(&first.1, 180, "t1").await.unwrap();
    let cancel = ignorer.request(Method::Cancel).await.unwrap();
    ignorer.reply(&cancel, 200, "t1").await.unwrap();
    ignorer.reply(&first.1, 487, "t1").await.unwrap();

    let offer = next.request(Method::Invite).await.unwrap();
    assert_ne!(
        offer.call_id(),
        first.1.call_id(),
        "a new offer, to {second}"
    );
    next.reply(&offer, 200, "t2").await.unwrap();
    next.request(Method::Ack).await.unwrap();

    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = next.request(Method::Bye).await.unwrap();
    next.reply(&bye, 200, "t2").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_script_hands_the_caller_to_the_queue_and_an_agent_answers() {
    let scripts = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let cfg = base_config(
        &temp_dir(),
        &format!("{ACD}\n[[route]]\nnumber = \"810\"\ntarget = {{ script = \"to-agent.xml\" }}\n"),
    )
    .replace(
        &format!(
            "scripts-dir = \"{}/../scripts\"",
            env!("CARGO_MANIFEST_DIR")
        ),
        &format!("scripts-dir = \"{}\"", scripts.display()),
    );
    let s = Server::start(&cfg).await.unwrap();
    let (mut bob, mut bob_rtp) = agent(&s, "bob").await;
    let rtp = Rtp::bind().await.unwrap();
    let mut customer = Ua::new("customer", "", s.udp).await.unwrap();
    customer.media_port = rtp.port();
    let inv = customer.invite("810").await.unwrap();
    let ok = customer
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    let mut d = customer.dialog_from_answer(&inv, &ok);
    customer.ack(&d).await.unwrap();
    let mut customer_rtp = rtp;
    let to_server = sdp_audio_addr(&ok.body).unwrap();

    // The script plays "please hold" and enqueues; bob's phone rings.
    let offer = bob.request(Method::Invite).await.unwrap();
    bob.reply(&offer, 200, "bobtag").await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    let _ = customer_rtp
        .collect(Duration::from_millis(100), Duration::from_millis(300))
        .await;
    carries(&mut customer_rtp, to_server, &bob_rtp).await;
    carries(
        &mut bob_rtp,
        sdp_audio_addr(&offer.body).unwrap(),
        &customer_rtp,
    )
    .await;
    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();
    s.stop().await.unwrap();
}

fn prompt_pcmu(name: &str) -> Vec<u8> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    pcmu(
        Prompt::load(&root.join(format!("sounds/{name}.wav")), name)
            .unwrap()
            .samples(),
    )
}

/// Sets an agent's status from their phone with a feature code (*1, *2, *0).
async fn feature(ua: &mut Ua, code: &str) {
    let inv = ua.invite_auth(code).await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    let bye = ua.request(Method::Bye).await.unwrap();
    ua.reply(&bye, 200, "fc").await.unwrap();
}

#[tokio::test]
async fn a_waiting_caller_hears_its_position() {
    let s = Server::start(&base_config(&temp_dir(), ACD)).await.unwrap();
    let (mut bob, _bob_rtp) = agent(&s, "bob").await;
    feature(&mut bob, "*2").await; // logged in, on a break: the queue is staffed, nobody free
    let (mut customer, customer_rtp, _to, mut d) = caller(&s).await;
    let heard: Vec<u8> = customer_rtp
        .collect(Duration::from_millis(500), Duration::from_secs(6))
        .await
        .into_iter()
        .flat_map(|f| f.payload)
        .collect();
    let contains = |p: &[u8]| heard.windows(p.len()).any(|w| w == p);
    assert!(
        contains(&prompt_pcmu("general/you-are-caller-number")),
        "\"you are caller number\""
    );
    assert!(contains(&prompt_pcmu("numbers/1")), "\"one\"");
    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    s.stop().await.unwrap();
}

/// Answers an offer on an agent's phone and returns the agent's side of the dialog.
async fn take(agent: &mut Ua, tag: &str) -> e2e::Dialog {
    let offer = agent.request(Method::Invite).await.unwrap();
    let ok = agent.reply(&offer, 200, tag).await.unwrap();
    agent.request(Method::Ack).await.unwrap();
    agent.dialog_as_callee(&offer, &ok)
}

#[tokio::test]
async fn wrap_up_holds_the_next_offer_until_it_ends() {
    // Bob alone (wrap-up 2 s): the second caller waits out bob's wrap-up.
    let s = Server::start(&base_config(&temp_dir(), ACD)).await.unwrap();
    let (mut bob, _r) = agent(&s, "bob").await;
    let (mut first, _r1, _t1, mut d1) = caller(&s).await;
    let _ = take(&mut bob, "b1").await;
    assert_eq!(first.bye(&mut d1).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "b1").await.unwrap();
    let ended = tokio::time::Instant::now();

    let (mut second, _r2, _t2, mut d2) = caller(&s).await;
    let _ = take(&mut bob, "b2").await;
    let waited = ended.elapsed();
    assert!(
        waited >= Duration::from_millis(1800),
        "offered after {waited:?}, inside the 2 s wrap-up"
    );
    assert_eq!(second.bye(&mut d2).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "b2").await.unwrap();
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_next_call_goes_to_the_agent_not_in_wrap_up() {
    let s = Server::start(&base_config(&temp_dir(), ACD)).await.unwrap();
    let (mut bob, _rb) = agent(&s, "bob").await;
    let (mut carol, _rc) = agent(&s, "carol").await;
    let (mut first, _r1, _t1, mut d1) = caller(&s).await;
    let first_agent = tokio::select! {
        r = bob.request(Method::Invite) => ("bob", r.unwrap()),
        r = carol.request(Method::Invite) => ("carol", r.unwrap()),
    };
    let (busy, other) = if first_agent.0 == "bob" {
        (&mut bob, &mut carol)
    } else {
        (&mut carol, &mut bob)
    };
    busy.reply(&first_agent.1, 200, "a1").await.unwrap();
    busy.request(Method::Ack).await.unwrap();
    assert_eq!(first.bye(&mut d1).await.unwrap().status, 200);
    let bye = busy.request(Method::Bye).await.unwrap();
    busy.reply(&bye, 200, "a1").await.unwrap();

    // The first agent is in wrap-up: the next caller goes to the other one.
    let (mut second, _r2, _t2, mut d2) = caller(&s).await;
    let _ = take(other, "a2").await;
    assert_eq!(second.bye(&mut d2).await.unwrap().status, 200);
    let bye = other.request(Method::Bye).await.unwrap();
    other.reply(&bye, 200, "a2").await.unwrap();
    busy.expect_silence(Duration::from_millis(200))
        .await
        .unwrap();
    s.stop().await.unwrap();
}
