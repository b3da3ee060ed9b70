//! ACD features end to end: skills keep a caller for a qualified agent while they hear
//! their estimated wait; maximum wait sends a caller to another queue; the exit key
//! takes a caller to a mailbox; the callback key books a callback and ends the call.

use std::time::Duration;

use comm_server::media::dtmf::{self, TelephoneEvent};
use comm_server::media::prompt::Prompt;
use comm_server::sip::message::Method;
use e2e::{Rtp, Server, Ua, base_config, pcmu, sdp_audio_addr, temp_dir};

const QUEUES: &str = r#"
[[user]]
name = "carol"
password = "carol-pw"

[[queue]]
name = "support"
ring-timeout = "5s"
expected-handle-time = "120s"
max-wait = "3s"
overflow = { queue = "sales" }
exit-key = "0"
exit-target = { mailbox = "support" }
callback-key = "*"

[[queue]]
name = "billing"
ring-timeout = "5s"
expected-handle-time = "120s"

[[queue]]
name = "sales"
ring-timeout = "5s"

[[agent]]
name = "bob"
queues = ["billing"]

[[agent]]
name = "carol"
queues = ["billing", "sales"]
skills = { billing = 3 }

[[mailbox]]
name = "support"
pin = "1234"

[[route]]
number = "800"
target = { queue = "support" }

[[route]]
number = "801"
target = { queue = "billing", skills = { billing = 2 } }
"#;

/// Registers an agent's phone and makes the agent available (`*1`).
async fn agent(s: &Server, name: &str) -> (Ua, Rtp) {
    e2e::available_agent(s, name).await
}

/// A caller dials `number`; returns the UA, its RTP, the server's RTP address, dialog.
async fn caller(s: &Server, number: &str) -> (Ua, Rtp, std::net::SocketAddr, e2e::Dialog) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new("customer", "", s.udp).await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite(number).await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "the queue answers the caller");
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    (ua, rtp, sdp_audio_addr(&ok.body).unwrap(), d)
}

fn prompt_pcmu(name: &str) -> Vec<u8> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    pcmu(
        Prompt::load(&root.join(format!("sounds/{name}.wav")), name)
            .unwrap()
            .samples(),
    )
}

fn contains(heard: &[u8], prompt: &[u8]) -> bool {
    heard.windows(prompt.len()).any(|w| w == prompt)
}

/// Latches the caller's stream (RFC 3550 probation), then presses one key (RFC 4733).
async fn press(rtp: &mut Rtp, to: std::net::SocketAddr, digit: char) {
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
    for _ in 0..5 {
        rtp.send(to, 0, &[0xff; 160]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn payload(frames: Vec<e2e::RtpFrame>) -> Vec<u8> {
    frames.into_iter().flat_map(|f| f.payload).collect()
}

#[tokio::test]
async fn a_caller_needing_a_skill_hears_the_estimated_wait_and_reaches_the_skilled_agent() {
    let s = Server::start(&base_config(&temp_dir(), QUEUES))
        .await
        .unwrap();
    // bob serves billing but has no billing skill: available, never offered this call.
    let (mut bob, _bob_rtp) = agent(&s, "bob").await;
    let (mut customer, customer_rtp, _to, mut d) = caller(&s, "801").await;
    let heard = payload(
        customer_rtp
            .collect(Duration::from_millis(500), Duration::from_secs(8))
            .await,
    );
    assert!(contains(
        &heard,
        &prompt_pcmu("general/you-are-caller-number")
    ));
    assert!(
        contains(&heard, &prompt_pcmu("general/your-estimated-wait-is")),
        "the estimated wait follows the position"
    );
    // One available agent, 120 s assumed handle time: "two minutes".
    assert!(contains(&heard, &prompt_pcmu("general/minutes")));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), bob.request(Method::Invite))
            .await
            .is_err(),
        "an agent without the skill is not offered the call"
    );
    let (mut carol, _carol_rtp) = agent(&s, "carol").await;
    let offer = carol.request(Method::Invite).await.unwrap();
    assert!(
        offer.uri.to_string().contains("carol"),
        "carol has billing 3"
    );
    carol.reply(&offer, 486, "busy").await.unwrap();
    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_caller_past_max_wait_overflows_to_the_other_queue() {
    let s = Server::start(&base_config(&temp_dir(), QUEUES))
        .await
        .unwrap();
    let (mut carol, _carol_rtp) = agent(&s, "carol").await;
    // Nobody serves support: after max-wait the caller moves on to sales (carol).
    let (mut customer, _rtp, _to, mut d) = caller(&s, "800").await;
    let offer = tokio::time::timeout(Duration::from_secs(8), carol.request(Method::Invite))
        .await
        .expect("offered from sales after support's max wait")
        .unwrap();
    carol.reply(&offer, 486, "busy").await.unwrap();
    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_exit_key_takes_the_caller_to_the_mailbox() {
    let s = Server::start(&base_config(&temp_dir(), QUEUES))
        .await
        .unwrap();
    let (mut customer, mut rtp, to, mut d) = caller(&s, "800").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    press(&mut rtp, to, '0').await;
    let heard = payload(
        rtp.collect(Duration::from_millis(800), Duration::from_secs(6))
            .await,
    );
    assert!(
        contains(
            &heard,
            &prompt_pcmu("voicemail/leave-message-after-tone")[..800]
        ),
        "the mailbox greeting plays after the exit key"
    );
    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_callback_key_books_a_callback_and_ends_the_call() {
    let s = Server::start(&base_config(&temp_dir(), QUEUES))
        .await
        .unwrap();
    let (mut customer, mut rtp, to, _d) = caller(&s, "800").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    press(&mut rtp, to, '*').await;
    let heard = payload(
        rtp.collect(Duration::from_millis(800), Duration::from_secs(8))
            .await,
    );
    assert!(
        contains(&heard, &prompt_pcmu("general/callback-booked")[..800]),
        "the caller hears that they will be called back"
    );
    let bye = tokio::time::timeout(Duration::from_secs(5), customer.request(Method::Bye))
        .await
        .expect("the server ends the call after the prompt")
        .unwrap();
    customer.reply(&bye, 200, "cb").await.unwrap();
    s.stop().await.unwrap();
}
