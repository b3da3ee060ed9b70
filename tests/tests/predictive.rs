//! A predictive campaign end to end: a test UA plays the carrier and answers every
//! call at once; alice and bob (test phones) answer their offers and talk for a
//! while. The pacer, trusting its default 50% answer rate, dials ahead of the two
//! agents, so an answered customer finds nobody within the connect timeout and is
//! abandoned; the controller then backs off, the abandoned contact is tried again,
//! and every contact is reached. The supervisor's live status counts the abandonment.

use std::collections::BTreeSet;
use std::time::Duration;

use agent_gateway::proto::supervisor::supervisor_service_client::SupervisorServiceClient;
use agent_gateway::proto::supervisor::{self as sv};
use comm_server::sip::message::{Message, Method, Request};
use comm_server::store::{CampaignState, NewCampaignContact};
use e2e::{Dialog, Server, Ua, authed, base_config, temp_dir};
use tokio::time::Instant;

const CONTACTS: [&str; 4] = ["+441110001", "+441110002", "+441110003", "+441110004"];
/// How long an agent talks before hanging up: longer than the connect timeout, so a
/// third answered call cannot wait for one of two busy agents.
const TALK: Duration = Duration::from_secs(3);

fn config(carrier: std::net::SocketAddr) -> String {
    format!(
        r#"
[[trunk]]
name = "carrier"
address = "{carrier}"
inbound-sources = ["127.0.0.2"]

[[queue]]
name = "outbound"
wrap-up = "1s"

[[agent]]
name = "alice"
queues = ["outbound"]

[[agent]]
name = "bob"
queues = ["outbound"]

[[supervisor]]
name = "sue"
password-hash = "{}"

[[campaign]]
name = "renewals"
queue = "outbound"
trunk = "carrier"
caller-id = "+442079460000"
mode = "predictive"
# A generous cap so the controller starts by dialling ahead of two agents.
abandon-cap = 0.3
calling-hours = "00:00-23:59"
max-attempts = 10
retry-abandoned = "1s"
connect-timeout = "1s"
"#,
        agent_gateway::password::hash("sue-pw").unwrap(),
    )
}

/// The next request, if one comes within the harness's wait.
async fn next_request(ua: &mut Ua) -> Option<Request> {
    match ua
        .recv_matching("a request", |m| matches!(m, Message::Request(_)))
        .await
    {
        Ok(Message::Request(r)) => Some(r),
        _ => None,
    }
}

/// The carrier: answers every call at once, and every BYE.
async fn carrier(mut ua: Ua) {
    loop {
        let Some(r) = next_request(&mut ua).await else {
            continue;
        };
        if matches!(r.method, Method::Invite | Method::Bye) {
            let tag = format!("c{}", r.call_id().len());
            ua.reply(&r, 200, &tag).await.unwrap();
        }
    }
}

/// An agent's phone: answers every offer and hangs up after [`TALK`].
async fn agent(mut ua: Ua) {
    let mut talking: Vec<(Instant, Dialog)> = Vec::new();
    let far = Instant::now() + Duration::from_secs(3600);
    loop {
        let next = talking.first().map(|(at, _)| *at);
        tokio::select! {
            r = next_request(&mut ua) => match r {
                Some(r) if r.method == Method::Invite => {
                    let ok = ua.reply(&r, 200, "agent").await.unwrap();
                    talking.push((Instant::now() + TALK, ua.dialog_as_callee(&r, &ok)));
                }
                Some(r) if r.method == Method::Bye => {
                    ua.reply(&r, 200, "agent").await.unwrap();
                    talking.retain(|(_, d)| d.call_id != r.call_id());
                }
                _ => {}
            },
            _ = tokio::time::sleep_until(next.unwrap_or(far)), if next.is_some() => {
                let (_, mut d) = talking.remove(0);
                let _ = ua.bye(&mut d).await;
            }
        }
    }
}

#[tokio::test]
async fn a_predictive_campaign_dials_ahead_abandons_counts_it_and_reaches_everyone() {
    let carrier_addr = e2e::free_udp_addr().await;
    let s = Server::start(&base_config(&temp_dir(), &config(carrier_addr)))
        .await
        .unwrap();
    let contacts: Vec<_> = CONTACTS
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
    let carrier_task = tokio::spawn(carrier(e2e::carrier_at(carrier_addr, s.udp).await));
    let (alice, _alice_rtp) = e2e::available_agent(&s, "alice").await;
    let (bob, _bob_rtp) = e2e::available_agent(&s, "bob").await;
    let agents = [tokio::spawn(agent(alice)), tokio::spawn(agent(bob))];
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

    // Until every contact has talked to an agent.
    let deadline = Instant::now() + Duration::from_secs(60);
    let attempts = loop {
        let attempts = s.store.campaign_attempts("renewals").await.unwrap();
        let reached: BTreeSet<i64> = attempts
            .iter()
            .filter(|a| a.outcome == "answered")
            .map(|a| a.contact_id)
            .collect();
        if reached.len() == CONTACTS.len() {
            break attempts;
        }
        assert!(
            Instant::now() < deadline,
            "not everybody reached: {attempts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let count = |outcome: &str| attempts.iter().filter(|a| a.outcome == outcome).count();
    let (answered, abandoned) = (count("answered"), count("abandoned"));
    assert_eq!(answered, CONTACTS.len(), "{attempts:?}");
    assert!(abandoned >= 1, "dialled ahead of the agents: {attempts:?}");
    let agents_seen: BTreeSet<_> = attempts.iter().filter_map(|a| a.agent.as_deref()).collect();
    assert_eq!(agents_seen, BTreeSet::from(["alice", "bob"]));

    // The supervisor's view counts the abandoned calls and their rate.
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
    let view = sup
        .list_campaigns(authed(&token, sv::ListCampaignsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .campaigns
        .remove(0);
    assert_eq!(
        (view.mode.as_str(), view.answered, view.abandoned),
        ("predictive", answered as u32, abandoned as u32)
    );
    let rate = abandoned as f64 / (answered + abandoned) as f64;
    assert!(
        (view.abandonment_rate - rate).abs() < 1e-9,
        "{} vs {rate}",
        view.abandonment_rate
    );
    carrier_task.abort();
    for a in agents {
        a.abort();
    }
    s.stop().await.unwrap();
}
