//! Queue rules end to end: a queue that takes callers only while agents are logged in
//! sends a caller to its overflow (a mailbox) at once when nobody is; a queue that
//! empties when its last agent logs out sends its waiting caller to its overflow
//! (hang up).

use std::time::Duration;

use comm_server::media::prompt::Prompt;
use comm_server::sip::message::Method;
use e2e::{Rtp, Server, Ua, base_config, pcmu, temp_dir};

const QUEUES: &str = r#"
[[queue]]
name = "staffed-only"
join = "if-agents-logged-in"
overflow = { mailbox = "support" }

[[queue]]
name = "leaves"
when-empty = "leave"
overflow = "hang-up"

[[agent]]
name = "alice"
queues = ["leaves"]

[[mailbox]]
name = "support"
pin = "1234"

[[route]]
number = "801"
target = { queue = "staffed-only" }

[[route]]
number = "802"
target = { queue = "leaves" }
"#;

fn prompt_pcmu(name: &str) -> Vec<u8> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    pcmu(
        Prompt::load(&root.join(format!("sounds/{name}.wav")), name)
            .unwrap()
            .samples(),
    )
}

/// A caller dials `number`; returns the UA, its RTP and the dialog.
async fn caller(s: &Server, number: &str) -> (Ua, Rtp, e2e::Dialog) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new("customer", "", s.udp).await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite(number).await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "the call is answered");
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    (ua, rtp, d)
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
async fn a_queue_for_logged_in_agents_only_sends_a_caller_to_its_overflow_when_nobody_is() {
    let s = Server::start(&base_config(&temp_dir(), QUEUES))
        .await
        .unwrap();
    let (mut customer, rtp, mut d) = caller(&s, "801").await;
    let heard: Vec<u8> = rtp
        .collect(Duration::from_millis(800), Duration::from_secs(6))
        .await
        .into_iter()
        .flat_map(|f| f.payload)
        .collect();
    let greeting = prompt_pcmu("voicemail/leave-message-after-tone");
    assert!(
        heard.windows(800).any(|w| w == &greeting[..800]),
        "the overflow mailbox greets the caller at once"
    );
    assert_eq!(customer.bye(&mut d).await.unwrap().status, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_queue_that_empties_sends_its_waiting_caller_to_its_overflow() {
    let s = Server::start(&base_config(&temp_dir(), QUEUES))
        .await
        .unwrap();
    // Alice is logged in but on a break: the queue is staffed and nobody is free.
    let (mut alice, _alice_rtp) = e2e::available_agent(&s, "alice").await;
    feature(&mut alice, "*2").await;
    let (mut customer, _rtp, _d) = caller(&s, "802").await;
    // Still waiting while alice is logged in.
    customer
        .expect_silence(Duration::from_millis(800))
        .await
        .unwrap();
    // Her logging out empties the queue: the caller goes to the overflow (hang up).
    feature(&mut alice, "*0").await;
    let bye = customer.request(Method::Bye).await.unwrap();
    customer.reply(&bye, 200, "c").await.unwrap();
    s.stop().await.unwrap();
}
