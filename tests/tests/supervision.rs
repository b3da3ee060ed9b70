//! The supervisor's campaign control and reports over gRPC, end to end: a supervisor
//! lists the configured campaign, starts it with an agent free (a test UA on the
//! trunk's address plays the carrier and answers busy), watches its progress arrive on the status stream, stops
//! it for good, and reads the campaign report, which counts what the carrier saw.

use std::time::Duration;

use agent_gateway::proto::supervisor::supervisor_service_client::SupervisorServiceClient;
use agent_gateway::proto::supervisor::{
    self as sv, CampaignCommand, CampaignView, ReportKind, ReportRequest, StreamStatusRequest,
    report_value::Value, status_update,
};
use comm_server::sip::header::uri_user;
use comm_server::sip::message::Method;
use comm_server::store::NewCampaignContact;
use e2e::{Server, Ua, WAIT, authed, base_config, temp_dir};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const CONTACT: &str = "+441110001";

fn config(carrier: std::net::SocketAddr) -> String {
    let hash = |pw: &str| agent_gateway::password::hash(pw).unwrap();
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

[[supervisor]]
name = "sue"
password-hash = "{}"

[[campaign]]
name = "renewals"
queue = "outbound"
trunk = "carrier"
caller-id = "+442079460000"
mode = "progressive"
calling-hours = "00:00-23:59"
retry-busy = "1h"
"#,
        hash("bob-pw"),
        hash("sue-pw"),
    )
}

async fn supervisor(s: &Server) -> (SupervisorServiceClient<Channel>, String) {
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
    (sup, token)
}

async fn command(
    sup: &mut SupervisorServiceClient<Channel>,
    token: &str,
    campaign: &str,
    command: CampaignCommand,
) -> Result<(), tonic::Status> {
    sup.set_campaign_state(authed(
        token,
        sv::SetCampaignStateRequest {
            campaign: campaign.into(),
            command: command.into(),
        },
    ))
    .await
    .map(|_| ())
}

/// A report over all time.
async fn whole_report(
    sup: &mut SupervisorServiceClient<Channel>,
    token: &str,
    kind: ReportKind,
) -> sv::ReportResponse {
    sup.get_report(authed(
        token,
        ReportRequest {
            kind: kind.into(),
            from_unix_ms: 0,
            to_unix_ms: i64::MAX,
            ..ReportRequest::default()
        },
    ))
    .await
    .unwrap()
    .into_inner()
}

/// The next campaign list on the stream that satisfies `done`.
async fn campaigns_until(
    updates: &mut Streaming<sv::StatusUpdate>,
    done: impl Fn(&CampaignView) -> bool,
) -> CampaignView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let update = tokio::time::timeout_at(deadline, updates.message())
            .await
            .expect("the campaign never reached the expected figures")
            .unwrap()
            .unwrap();
        if let Some(status_update::Kind::Campaigns(list)) = update.kind
            && let Some(c) = list.campaigns.into_iter().find(|c| c.name == "renewals")
            && done(&c)
        {
            return c;
        }
    }
}

/// A server with the campaign and its one contact, and the carrier UA on the trunk's
/// address.
async fn start_with_one_contact() -> (Server, Ua) {
    let carrier_addr = e2e::free_udp_addr().await;
    let s = Server::start(&base_config(&temp_dir(), &config(carrier_addr)))
        .await
        .unwrap();
    let carrier = e2e::carrier_at(carrier_addr, s.udp).await;
    let contact = NewCampaignContact {
        e164: CONTACT.into(),
        name: "Ada".into(),
        ..NewCampaignContact::default()
    };
    s.store
        .import_campaign_contacts("renewals", &[contact], 0, &mut |_| {})
        .await
        .unwrap();
    (s, carrier)
}

#[tokio::test]
async fn a_supervisor_runs_a_campaign_watches_it_and_reads_its_report() {
    let (s, mut carrier) = start_with_one_contact().await;
    let (mut sup, token) = supervisor(&s).await;

    // The list: configured, not started, one contact to dial.
    let list = sup
        .list_campaigns(authed(&token, sv::ListCampaignsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .campaigns;
    assert_eq!(list.len(), 1);
    let c = &list[0];
    assert_eq!(
        (
            c.name.as_str(),
            c.state.as_str(),
            c.mode.as_str(),
            c.queue.as_str()
        ),
        ("renewals", "draft", "progressive", "outbound")
    );
    assert_eq!((c.contacts, c.pending, c.attempts), (1, 1, 0));

    // Commands that cannot apply say why; agents cannot run campaigns.
    let e = command(&mut sup, &token, "renewals", CampaignCommand::Pause)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = command(&mut sup, &token, "nope", CampaignCommand::Start)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = command(&mut sup, &token, "renewals", CampaignCommand::Unspecified)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // The stream carries the campaigns after its snapshot; nobody is on it yet.
    let mut updates = sup
        .stream_status(authed(&token, StreamStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    let c = campaigns_until(&mut updates, |c| c.state == "draft" && c.pending == 1).await;
    assert_eq!((c.agents, c.dial_ratio), (0, 0.0));

    // Start with bob free (progressive dials one call per free agent): the carrier
    // is dialled and answers busy; the stream shows the attempt.
    let (_bob, _bob_rtp) = e2e::available_agent(&s, "bob").await;
    command(&mut sup, &token, "renewals", CampaignCommand::Start)
        .await
        .unwrap();
    let invite = tokio::time::timeout(WAIT, carrier.request(Method::Invite))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(uri_user(&invite.uri).as_deref(), Some(CONTACT));
    // While it rings the stream shows bob on the campaign and one call per agent.
    let c = campaigns_until(&mut updates, |c| c.state == "running" && c.in_progress == 1).await;
    assert_eq!((c.agents, c.dial_ratio), (1, 1.0));
    carrier.reply(&invite, 486, "busy").await.unwrap();
    let c = campaigns_until(&mut updates, |c| c.busy == 1).await;
    assert_eq!((c.agents, c.dial_ratio), (1, 0.0), "nothing in progress");
    assert_eq!(
        (c.state.as_str(), c.attempts, c.answered),
        ("running", 1, 0)
    );
    assert_eq!(c.pending, 1, "busy: due again after the retry delay");

    // Stop is for good.
    command(&mut sup, &token, "renewals", CampaignCommand::Stop)
        .await
        .unwrap();
    campaigns_until(&mut updates, |c| c.state == "stopped").await;
    let e = command(&mut sup, &token, "renewals", CampaignCommand::Resume)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // The campaign report counts the one busy attempt.
    let report = whole_report(&mut sup, &token, ReportKind::Campaigns).await;
    assert_eq!(report.rows.len(), 1);
    let cell = |name: &str| {
        let i = report.columns.iter().position(|c| c == name).unwrap();
        report.rows[0].values[i].value.clone()
    };
    assert_eq!(cell("campaign"), Some(Value::Text("renewals".into())));
    assert_eq!(cell("attempts"), Some(Value::Count(1)));
    assert_eq!(cell("busy"), Some(Value::Count(1)));
    assert_eq!(cell("answered"), Some(Value::Count(0)));
    assert_eq!(cell("abandonment_rate"), None, "nobody answered");

    // A report needs a kind and a period.
    for bad in [
        ReportRequest {
            kind: ReportKind::Calls.into(),
            from_unix_ms: 10,
            to_unix_ms: 10,
            ..ReportRequest::default()
        },
        ReportRequest {
            to_unix_ms: 10,
            ..ReportRequest::default()
        },
    ] {
        let e = sup.get_report(authed(&token, bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }
    // The calls report answers with its columns, whatever the traffic.
    let calls = whole_report(&mut sup, &token, ReportKind::Calls).await;
    assert_eq!(calls.columns[0], "queue");
    assert!(calls.columns.iter().any(|c| c == "service_level"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn agents_cannot_run_campaigns_or_read_reports() {
    let s = Server::start(&base_config(
        &temp_dir(),
        &config("127.0.0.1:9".parse().unwrap()),
    ))
    .await
    .unwrap();
    let mut agent = agent_gateway::proto::agent::agent_service_client::AgentServiceClient::connect(
        format!("http://{}", s.grpc),
    )
    .await
    .unwrap();
    let token = agent
        .login(agent_gateway::proto::agent::LoginRequest {
            agent_id: "bob".into(),
            password: "bob-pw".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let (mut sup, _) = supervisor(&s).await;
    let e = command(&mut sup, &token, "renewals", CampaignCommand::Start)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = sup
        .get_report(authed(
            &token,
            ReportRequest {
                kind: ReportKind::Calls.into(),
                to_unix_ms: 10,
                ..ReportRequest::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = sup
        .list_campaigns(authed(&token, sv::ListCampaignsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_agents_disposition_lands_on_the_campaign_attempt_and_in_the_report() {
    use agent_gateway::proto::agent::agent_service_client::AgentServiceClient;
    use agent_gateway::proto::agent::{self as pb, agent_event::Kind as Ev};

    let (s, mut carrier) = start_with_one_contact().await;

    // Bob's desktop is logged in and listening; his phone makes him available.
    let mut desk = AgentServiceClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap();
    let bob_token = desk
        .login(pb::LoginRequest {
            agent_id: "bob".into(),
            password: "bob-pw".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut events = desk
        .stream_events(authed(&bob_token, pb::StreamEventsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let (mut bob, _bob_rtp) = e2e::available_agent(&s, "bob").await;
    let (mut sup, token) = supervisor(&s).await;
    command(&mut sup, &token, "renewals", CampaignCommand::Start)
        .await
        .unwrap();

    // The customer answers and reaches bob; the customer hangs up.
    let invite = tokio::time::timeout(WAIT, carrier.request(Method::Invite))
        .await
        .unwrap()
        .unwrap();
    let ok = carrier.reply(&invite, 200, "cust").await.unwrap();
    let mut customer = carrier.dialog_as_callee(&invite, &ok);
    let offer = bob.request(Method::Invite).await.unwrap();
    bob.reply(&offer, 200, "bob-a").await.unwrap();
    let call_id = loop {
        let e = tokio::time::timeout(WAIT, events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(Ev::CallOffered(o)) = e.kind {
            break o.call_id;
        }
    };
    assert_eq!(carrier.bye(&mut customer).await.unwrap().status, 200);
    let bye = bob.request(Method::Bye).await.unwrap();
    bob.reply(&bye, 200, "bob-a").await.unwrap();
    loop {
        let e = tokio::time::timeout(WAIT, events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if matches!(e.kind, Some(Ev::WrapUpStarted(_))) {
            break;
        }
    }
    desk.disposition(authed(
        &bob_token,
        pb::DispositionRequest {
            call_id,
            code: "sale".into(),
            notes: String::new(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();

    // The attempt holds the disposition, and the campaign report counts it.
    let mut attempts = Vec::new();
    for _ in 0..50 {
        attempts = s.store.campaign_attempts("renewals").await.unwrap();
        if attempts.first().is_some_and(|a| a.disposition.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "answered");
    assert_eq!(attempts[0].agent.as_deref(), Some("bob"));
    assert_eq!(attempts[0].disposition.as_deref(), Some("sale"));
    let report = whole_report(&mut sup, &token, ReportKind::Campaigns).await;
    let i = report
        .columns
        .iter()
        .position(|c| c == "disposition_sale")
        .expect("a column per disposition code");
    assert_eq!(report.rows[0].values[i].value, Some(Value::Count(1)));
    s.stop().await.unwrap();
}
