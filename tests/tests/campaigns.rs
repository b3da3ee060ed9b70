//! Outbound campaigns end to end: a test UA plays the carrier behind a `[[trunk]]` and
//! answers for the customers (one answers, one is busy once, one never answers, one
//! is on the do-not-call list); an agent logs in with *1. A progressive campaign
//! calls every contact, answered calls reach the agent, the busy one is retried
//! after the (short) configured delay, the barred number is never dialled, and every
//! attempt is stored.

use std::time::Duration;

use comm_server::reports::Period;
use comm_server::reports::campaigns::campaign_report;
use comm_server::sip::header::uri_user;
use comm_server::sip::message::{Method, Request};
use comm_server::store::{CampaignAttempt, CampaignState, ContactState, NewCampaignContact};
use e2e::{Server, Ua, base_config, temp_dir};

const ANSWERS: &str = "+441110001";
const BUSY_ONCE: &str = "+441110002";
const NEVER_ANSWERS: &str = "+441110003";
const BARRED: &str = "+441110004";

fn campaign_config(carrier: std::net::SocketAddr, connect_timeout: &str) -> String {
    format!(
        r#"
[[trunk]]
name = "carrier"
address = "{carrier}"
inbound-sources = ["127.0.0.2"]

[[queue]]
name = "outbound"
wrap-up = "1s"
ring-timeout = "5s"

[[agent]]
name = "bob"
queues = ["outbound"]

[[campaign]]
name = "renewals"
queue = "outbound"
trunk = "carrier"
caller-id = "+442079460000"
mode = "progressive"
calling-hours = "00:00-23:59"
max-attempts = 3
retry-busy = "1s"
retry-no-answer = "1h"
ring-timeout = "2s"
connect-timeout = "{connect_timeout}"
"#
    )
}

/// Registers bob's phone and makes him available with *1.
async fn agent(s: &Server) -> Ua {
    let mut ua = Ua::new("bob", "bob-pw", s.udp).await.unwrap();
    assert_eq!(ua.register(600).await.unwrap().status, 200);
    let inv = ua.invite_auth("*1").await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "*1 is answered");
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    let bye = ua.request(Method::Bye).await.unwrap();
    ua.reply(&bye, 200, "fc").await.unwrap();
    ua
}

fn dialled(invite: &Request) -> String {
    uri_user(&invite.uri).unwrap_or_default().to_string()
}

fn contact(e164: &str) -> NewCampaignContact {
    NewCampaignContact {
        e164: e164.into(),
        name: format!("Customer {e164}"),
        time_zone: Some("Europe/London".into()),
        ..NewCampaignContact::default()
    }
}

/// Waits (polling the store) until `done` holds for the campaign's attempts.
async fn attempts_until(
    s: &Server,
    done: impl Fn(&[CampaignAttempt]) -> bool,
) -> Vec<CampaignAttempt> {
    for _ in 0..100 {
        let attempts = s.store.campaign_attempts("renewals").await.unwrap();
        if done(&attempts) {
            return attempts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("campaign attempts never reached the expected state");
}

/// A server with the campaign, and the carrier UA on the trunk's address.
async fn start(connect_timeout: &str) -> (Server, Ua) {
    let dir = temp_dir();
    let reserve = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let carrier_addr = reserve.local_addr().unwrap();
    drop(reserve);
    let config = campaign_config(carrier_addr, connect_timeout);
    let s = Server::start(&base_config(&dir, &config)).await.unwrap();
    let mut carrier = Ua::new("carrier", "", s.udp).await.unwrap();
    carrier.sock = tokio::net::UdpSocket::bind(carrier_addr).await.unwrap();
    carrier.addr = carrier_addr;
    (s, carrier)
}

#[tokio::test]
async fn a_progressive_campaign_calls_every_contact_through_the_trunk() {
    let (s, mut carrier) = start("10s").await;
    let mut bob = agent(&s).await;

    let contacts: Vec<_> = [ANSWERS, BUSY_ONCE, NEVER_ANSWERS, BARRED]
        .into_iter()
        .map(contact)
        .collect();
    s.store
        .import_campaign_contacts("renewals", &contacts, 0, &mut |_| {})
        .await
        .unwrap();
    s.store.add_do_not_call(BARRED, None, 0).await.unwrap();
    // Nothing is dialled before the campaign is started.
    carrier
        .expect_silence(Duration::from_millis(800))
        .await
        .unwrap();
    s.store
        .set_campaign_state("renewals", CampaignState::Running, 0)
        .await
        .unwrap();

    // 1. The first contact answers and reaches bob, with the customer's number.
    let invite = carrier.request(Method::Invite).await.unwrap();
    assert_eq!(dialled(&invite), ANSWERS);
    assert!(
        invite
            .headers
            .get("From")
            .is_some_and(|f| f.contains("+442079460000")),
        "the campaign's caller id"
    );
    let ok = carrier.reply(&invite, 200, "cust-a").await.unwrap();
    let mut customer = carrier.dialog_as_callee(&invite, &ok);
    let offer = bob.request(Method::Invite).await.unwrap();
    assert!(
        offer
            .headers
            .get("From")
            .is_some_and(|f| f.contains("441110001")),
        "bob sees who he is connected to"
    );
    bob.reply(&offer, 200, "bob-a").await.unwrap();
    // The customer hangs up; bob's leg is ended by the server.
    assert_eq!(carrier.bye(&mut customer).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bob-a").await.unwrap();

    // 2. The next contact is busy.
    let invite = carrier.request(Method::Invite).await.unwrap();
    assert_eq!(dialled(&invite), BUSY_ONCE);
    carrier.reply(&invite, 486, "cust-b").await.unwrap();

    // 3. The third rings out: the server cancels after the ring timeout.
    let invite = carrier.request(Method::Invite).await.unwrap();
    assert_eq!(dialled(&invite), NEVER_ANSWERS);
    carrier.reply(&invite, 180, "cust-c").await.unwrap();
    let cancel = carrier.request(Method::Cancel).await.unwrap();
    carrier.reply(&cancel, 200, "cust-c").await.unwrap();
    carrier.reply(&invite, 487, "cust-c").await.unwrap();

    // 4. The busy contact is retried after its one-second delay, answers, reaches
    //    bob, and bob hangs up.
    let invite = carrier.request(Method::Invite).await.unwrap();
    assert_eq!(
        dialled(&invite),
        BUSY_ONCE,
        "busy is retried; barred never dialled"
    );
    let ok = carrier.reply(&invite, 200, "cust-b2").await.unwrap();
    let _customer = carrier.dialog_as_callee(&invite, &ok);
    let offer = bob.request(Method::Invite).await.unwrap();
    let ok = bob.reply(&offer, 200, "bob-b").await.unwrap();
    let mut agent_leg = bob.dialog_as_callee(&offer, &ok);
    assert_eq!(bob.bye(&mut agent_leg).await.unwrap().status, 200);
    let bye = carrier.request(Method::Bye).await.unwrap();
    carrier.reply(&bye, 200, "cust-b2").await.unwrap();

    let attempts = attempts_until(&s, |a| a.len() == 4).await;
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, ["answered", "busy", "no-answer", "answered"]);
    assert_eq!(attempts[0].agent.as_deref(), Some("bob"));
    assert_eq!(attempts[3].agent.as_deref(), Some("bob"));
    assert!(attempts.iter().all(|a| a.ended_at_ms >= a.started_at_ms));

    // The campaign report (`comm-server report campaigns`) says what the test did:
    // four dials to three contacts, two reached, one busy, one rang out, none
    // abandoned.
    let report = campaign_report(
        "renewals",
        &attempts.iter().cloned().map(Into::into).collect::<Vec<_>>(),
        Period::whole(),
    );
    assert_eq!(
        (report.attempts, report.contacts_dialled, report.reached),
        (4, 3, 2)
    );
    assert_eq!(
        (
            report.answered,
            report.busy,
            report.no_answer,
            report.abandoned
        ),
        (2, 1, 1, 0)
    );
    assert_eq!(report.abandonment_rate(), Some(0.0));

    // The barred number is closed without a dial; the rest are where the retry rules
    // put them.
    let mut contacts = Vec::new();
    for _ in 0..50 {
        contacts = s.store.campaign_contacts("renewals").await.unwrap();
        if contacts[3].state == ContactState::Done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let by = |n: &str| contacts.iter().find(|c| c.e164 == n).unwrap().clone();
    assert_eq!(by(BARRED).state, ContactState::Done);
    assert_eq!(by(BARRED).attempts, 0);
    assert_eq!(by(BARRED).last_outcome.as_deref(), Some("do-not-call"));
    assert_eq!(
        (by(ANSWERS).state, by(ANSWERS).attempts),
        (ContactState::Done, 1)
    );
    assert_eq!(
        (by(BUSY_ONCE).state, by(BUSY_ONCE).attempts),
        (ContactState::Done, 2)
    );
    let no_answer = by(NEVER_ANSWERS);
    assert_eq!(
        (no_answer.state, no_answer.attempts),
        (ContactState::Pending, 1)
    );
    assert_eq!(no_answer.last_outcome.as_deref(), Some("no-answer"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_answered_call_no_agent_takes_hears_who_called_and_counts_as_abandoned() {
    let (s, mut carrier) = start("1s").await;
    let mut bob = agent(&s).await;
    s.store
        .import_campaign_contacts("renewals", &[contact(ANSWERS)], 0, &mut |_| {})
        .await
        .unwrap();
    s.store
        .set_campaign_state("renewals", CampaignState::Running, 0)
        .await
        .unwrap();

    let invite = carrier.request(Method::Invite).await.unwrap();
    assert_eq!(dialled(&invite), ANSWERS);
    carrier.reply(&invite, 200, "cust").await.unwrap();
    // Bob's phone rings but he does not pick up within the connect timeout: the
    // offer is withdrawn.
    let offer = bob.request(Method::Invite).await.unwrap();
    bob.reply(&offer, 180, "bob").await.unwrap();
    let cancel = bob.request(Method::Cancel).await.unwrap();
    bob.reply(&cancel, 200, "bob").await.unwrap();
    bob.reply(&offer, 487, "bob").await.unwrap();
    // The customer hears the identification prompt (about 6 s), then we hang up.
    let mut bye = None;
    for _ in 0..3 {
        if let Ok(b) = carrier.request(Method::Bye).await {
            bye = Some(b);
            break;
        }
    }
    let bye = bye.expect("the server hangs up after the identification prompt");
    carrier.reply(&bye, 200, "cust").await.unwrap();

    let attempts = attempts_until(&s, |a| a.len() == 1).await;
    assert_eq!(attempts[0].outcome, "abandoned");
    assert_eq!(attempts[0].agent, None);
    assert!(
        attempts[0].ended_at_ms - attempts[0].started_at_ms >= 1_000,
        "abandoned only after the connect timeout"
    );
    let contact = &s.store.campaign_contacts("renewals").await.unwrap()[0];
    assert_eq!(
        contact.state,
        ContactState::Pending,
        "abandoned calls are retried"
    );
    assert_eq!(contact.last_outcome.as_deref(), Some("abandoned"));
    // The attempt is in the customer's contact history.
    let history = s.store.history_for_phone(ANSWERS, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].contact.outcome.as_deref(), Some("abandoned"));
    s.stop().await.unwrap();
}
