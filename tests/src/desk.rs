//! An agent's desktop over the real gRPC socket, and callers that dial a queue: what
//! the gateway, CRM and supervision suites share.

use agent_gateway::proto::agent::agent_service_client::AgentServiceClient;
use agent_gateway::proto::agent::{
    self as pb, AgentEvent, LoginRequest, SetStatusRequest, StreamEventsRequest, agent_event::Kind,
};
use comm_server::sip::message::Method;
use tonic::transport::Channel;
use tonic::{Request, Streaming};

use crate::{Dialog, Rtp, Server, Ua, WAIT};

pub async fn agent_client(s: &Server) -> AgentServiceClient<Channel> {
    AgentServiceClient::connect(format!("http://{}", s.grpc))
        .await
        .unwrap()
}

/// `message` with the session token as a bearer credential.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Logs `agent` in; the session token.
pub async fn login(c: &mut AgentServiceClient<Channel>, agent: &str, pw: &str) -> String {
    c.login(LoginRequest {
        agent_id: agent.into(),
        password: pw.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .token
}

/// Sets the agent's status (a break is "lunch").
pub async fn set_status(c: &mut AgentServiceClient<Channel>, token: &str, status: pb::AgentStatus) {
    c.set_status(authed(
        token,
        SetStatusRequest {
            status: status.into(),
            break_reason: if status == pb::AgentStatus::OnBreak {
                "lunch".into()
            } else {
                String::new()
            },
        },
    ))
    .await
    .unwrap();
}

pub async fn stream(
    c: &mut AgentServiceClient<Channel>,
    token: &str,
    resume_after: Option<u64>,
) -> Streaming<AgentEvent> {
    c.stream_events(authed(token, StreamEventsRequest { resume_after }))
        .await
        .unwrap()
        .into_inner()
}

pub async fn next(events: &mut Streaming<AgentEvent>) -> AgentEvent {
    tokio::time::timeout(WAIT, events.message())
        .await
        .expect("an event in time")
        .unwrap()
        .expect("the stream is open")
}

/// The next event that is not a status change.
pub async fn next_call_event(events: &mut Streaming<AgentEvent>) -> AgentEvent {
    loop {
        let e = next(events).await;
        if !matches!(e.kind, Some(Kind::StatusChanged(_))) {
            return e;
        }
    }
}

/// A caller whose From user is `user` (a phone number, for customer lookups) dials
/// `number`, a queue that answers at once.
pub async fn caller_as(s: &Server, user: &str, number: &str) -> (Ua, Dialog) {
    let rtp = Rtp::bind().await.unwrap();
    let mut ua = Ua::new(user, "", s.udp).await.unwrap();
    ua.media_port = rtp.port();
    let inv = ua.invite(number).await.unwrap();
    let ok = ua
        .response(inv.call_id(), Method::Invite, false)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "the queue answers the caller");
    let d = ua.dialog_from_answer(&inv, &ok);
    ua.ack(&d).await.unwrap();
    (ua, d)
}
