//! Customers end to end: the caller ID finds the customer before the IVR starts (the
//! script greets them by name), a script's `<lookup>` finds one by an account number
//! typed on the keypad, and every call leaves one contact-history entry.

use std::time::Duration;

use comm_server::media::dtmf::{self, TelephoneEvent};
use comm_server::media::g711::Codec;
use comm_server::media::prompt::Prompt;
use comm_server::media::rtp::RtpPacket;
use comm_server::reports::Period;
use comm_server::reports::ivr::{IvrCall, script_report};
use comm_server::sip::message::Method;
use comm_server::store::{ContactKind, Direction, HistoryEntry, NewCustomer, Store};
use e2e::{Rtp, Server, Ua, base_config, sdp_audio_addr, temp_dir};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Route 730 runs `customer.xml`; national numbers are UK numbers.
fn config() -> String {
    let scripts = root().join("tests/scripts");
    let extra = "[customers]\ndefault-country-code = \"44\"\n\n\
                 [[route]]\nnumber = \"730\"\ntarget = { script = \"customer.xml\" }\n";
    base_config(&temp_dir(), extra).replace(
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

fn contains(heard: &[u8], prompt: &[u8]) -> bool {
    heard.windows(prompt.len()).any(|w| w == prompt)
}

async fn add_ada(store: &Store) -> i64 {
    let ada = NewCustomer {
        name: "Ada Lovelace".into(),
        account: Some("42".into()),
        phones: vec!["+442079460958".into()],
        ..NewCustomer::default()
    };
    store.upsert_customer(&ada, 1_000).await.unwrap().id
}

/// Calls 730 as `caller`, presses `keys` (RFC 4733) once the first prompt plays, and
/// returns what was heard and the call's Call-ID.
async fn call(s: &Server, caller: &str, keys: &str) -> (Vec<u8>, String) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new(caller, "", s.udp).await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite("730").await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    let to = sdp_audio_addr(&ok.body).unwrap();
    let listen = async {
        rtp.collect(Duration::from_millis(1500), Duration::from_secs(20))
            .await
    };
    let talk = async {
        let mut seq = 1u16;
        let mut ts = 8000u32;
        let mut send = async |pt: u8, marker: bool, at: u32, payload: &[u8]| {
            let mut out = Vec::new();
            RtpPacket {
                marker,
                payload_type: pt,
                sequence: seq,
                timestamp: at,
                ssrc: 0xc0ffee,
                payload,
            }
            .write(&mut out);
            rtp.sock.send_to(&out, to).await.unwrap();
            seq = seq.wrapping_add(1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let silence = {
            let mut p = Vec::new();
            Codec::Pcmu.encode(&[0; 160], &mut p);
            p
        };
        for _ in 0..5 {
            send(0, false, ts, &silence).await; // latch the stream (RFC 3550 probation)
            ts += 160;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for key in keys.chars() {
            let event = dtmf::digit_event(key).unwrap();
            let start = ts;
            for (ev, marker) in dtmf::event_packets(
                event,
                dtmf::DEFAULT_DIGIT_DURATION,
                dtmf::DEFAULT_VOLUME,
                160,
            ) {
                let ev: TelephoneEvent = ev;
                send(101, marker, start, &ev.to_bytes()).await;
            }
            ts += u32::from(dtmf::DEFAULT_DIGIT_DURATION);
        }
    };
    let (frames, _) = tokio::join!(listen, talk);
    // The script hangs up after its goodbye.
    let bye = ua.request(Method::Bye).await.unwrap();
    ua.reply(&bye, 200, "t").await.unwrap();
    let heard = frames.iter().flat_map(|f| f.payload.clone()).collect();
    (heard, inv.call_id().to_string())
}

/// The history entry of one call, once the call task has written it.
async fn entry_for(store: &Store, customer: i64, call_id: &str) -> HistoryEntry {
    for _ in 0..50 {
        let history = store.history_for_customer(customer, 10).await.unwrap();
        if let Some(e) = history
            .into_iter()
            .find(|e| e.contact.call_id.as_deref() == Some(call_id))
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no contact history for {call_id}");
}

#[tokio::test]
async fn a_known_caller_is_greeted_by_name_and_the_call_is_in_their_history() {
    let s = Server::start(&config()).await.unwrap();
    let ada = add_ada(&s.store).await;
    // The caller ID in national form: normalised to +442079460958 before the lookup.
    let (heard, call_id) = call(&s, "02079460958", "").await;
    assert!(
        contains(&heard, &pcmu_of("digits/1")),
        "the script saw customer.name before it started"
    );
    assert!(
        !contains(&heard, &pcmu_of("general/main-menu")),
        "a known caller is not asked for an account"
    );
    assert!(contains(&heard, &pcmu_of("general/goodbye")));

    let entry = entry_for(&s.store, ada, &call_id).await;
    let c = &entry.contact;
    assert_eq!(c.kind, ContactKind::Call);
    assert_eq!(c.direction, Some(Direction::Inbound));
    assert_eq!(c.phone.as_deref(), Some("+442079460958"));
    assert_eq!(c.outcome.as_deref(), Some("ivr-completed"));
    assert_eq!(c.details["ivr_outcome"], "greeted");
    assert_eq!(c.details["route"], "script:customer.xml");
    assert!(c.ended_at_ms.unwrap() >= c.started_at_ms);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_caller_is_found_by_the_account_they_key_in() {
    let s = Server::start(&config()).await.unwrap();
    let ada = add_ada(&s.store).await;
    let (heard, call_id) = call(&s, "alice", "42#").await;
    // The keys barge in, so only the start of the question is heard.
    let question = pcmu_of("general/main-menu");
    assert!(contains(&heard, &question[..800]), "asked for the account");
    assert!(
        contains(&heard, &pcmu_of("digits/1")),
        "the lookup by account found Ada"
    );
    assert!(!contains(&heard, &pcmu_of("digits/2")));

    let entry = entry_for(&s.store, ada, &call_id).await;
    let c = &entry.contact;
    assert_eq!(
        c.phone.as_deref(),
        Some("alice"),
        "not a number: kept as received"
    );
    assert_eq!(c.outcome.as_deref(), Some("ivr-completed"));
    assert_eq!(
        c.details["answers"]["acct"], "42",
        "the IVR's answers are kept"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_account_takes_the_not_found_branch_and_is_logged_by_number() {
    let s = Server::start(&config()).await.unwrap();
    add_ada(&s.store).await;
    let (heard, call_id) = call(&s, "+15550001234", "99#").await;
    assert!(contains(&heard, &pcmu_of("digits/2")), "not-found prompt");
    assert!(!contains(&heard, &pcmu_of("digits/1")));

    let mut history = Vec::new();
    for _ in 0..50 {
        history = s.store.history_for_phone("+15550001234", 10).await.unwrap();
        if !history.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(history.len(), 1);
    let c = &history[0].contact;
    assert_eq!(c.call_id.as_deref(), Some(call_id.as_str()));
    assert_eq!(c.customer_id, None);
    assert_eq!(c.details["ivr_outcome"], "unknown");
    assert_eq!(c.details["path"][0], "acct", "the first step answered");

    // The IVR report reads the same row: one call through the script, completed with
    // the outcome its `<hangup>` named, with a time in the script.
    let calls: Vec<IvrCall> = s
        .store
        .history_between(ContactKind::Call, 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .filter_map(|h| {
            let c = &h.contact;
            IvrCall::from_history(c.started_at_ms, c.outcome.as_deref(), &c.details)
        })
        .collect();
    let scripts = script_report(&calls, Period::whole());
    assert_eq!(scripts.len(), 1);
    assert_eq!((scripts[0].tally.calls, scripts[0].tally.completed), (1, 1));
    assert_eq!(scripts[0].outcomes.get("unknown"), Some(&1));
    assert!(
        scripts[0]
            .tally
            .average_time()
            .is_some_and(|t| !t.is_zero())
    );
    s.stop().await.unwrap();
}

const QUEUE: &str = r#"
[customers]
default-country-code = "44"

[[queue]]
name = "support"
wrap-up = "1s"
ring-timeout = "3s"

[[agent]]
name = "bob"
queues = ["support"]

[[route]]
number = "800"
target = { queue = "support" }
"#;

/// Calls the queue as Ada (caller ID +44 20 7946 0958 in international form).
async fn ada_calls_the_queue(s: &Server) -> (Ua, e2e::Dialog, String) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new("+442079460958", "", s.udp).await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite("800").await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    (ua, d, inv.call_id().to_string())
}

#[tokio::test]
async fn a_queue_call_an_agent_answers_is_in_the_history_with_the_agent() {
    let s = Server::start(&base_config(&temp_dir(), QUEUE))
        .await
        .unwrap();
    let ada = add_ada(&s.store).await;
    let bob_rtp = Rtp::bind().await.unwrap();
    let mut bob = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    bob.media_port = bob_rtp.port();
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

    let (mut caller, mut d, call_id) = ada_calls_the_queue(&s).await;
    let offer = bob.request(Method::Invite).await.unwrap();
    bob.reply(&offer, 200, "bobtag").await.unwrap();
    bob.request(Method::Ack).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(caller.bye(&mut d).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bobtag").await.unwrap();

    let entry = entry_for(&s.store, ada, &call_id).await;
    let c = &entry.contact;
    assert_eq!(c.outcome.as_deref(), Some("answered"));
    assert_eq!(c.queue.as_deref(), Some("support"));
    assert_eq!(c.agent.as_deref(), Some("bob"));
    assert!(c.details.get("answered_at_ms").is_some());

    // What the agent gateway's screen pop reads for the next call from Ada.
    let pop = s.store.screen_pop_data("+442079460958", 5).await.unwrap();
    assert_eq!(pop.customer.map(|c| c.name), Some("Ada Lovelace".into()));
    assert_eq!(pop.history.len(), 1);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_caller_who_hangs_up_in_the_queue_is_abandoned() {
    let s = Server::start(&base_config(&temp_dir(), QUEUE))
        .await
        .unwrap();
    let ada = add_ada(&s.store).await;
    // No agent is logged in: Ada waits, then gives up.
    let (mut caller, mut d, call_id) = ada_calls_the_queue(&s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(caller.bye(&mut d).await.unwrap().status, 200);

    let entry = entry_for(&s.store, ada, &call_id).await;
    assert_eq!(entry.contact.outcome.as_deref(), Some("abandoned"));
    assert_eq!(entry.contact.agent, None);
    assert_eq!(entry.contact.queue.as_deref(), Some("support"));
    s.stop().await.unwrap();
}
