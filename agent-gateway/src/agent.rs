//! `callcenter.agent.v1.AgentService`: what an agent's desktop calls.

use std::sync::Arc;

use callcenter_proto::agent::agent_event::Kind;
use callcenter_proto::agent::agent_service_server::AgentService;
use callcenter_proto::agent::{
    self as pb, AgentEvent, CallControlResponse, CallRequest, DispositionRequest,
    DispositionResponse, EventsLost, ListVoicemailRequest, ListVoicemailResponse, LoginRequest,
    LoginResponse, LogoutRequest, LogoutResponse, ScriptStepResponse, SetStatusRequest,
    SetStatusResponse, StreamEventsRequest, SubmitAnswerRequest, TransferRequest, VoicemailAudio,
    VoicemailMessageRequest, VoicemailMessageResponse, transfer_request::Target,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::backend::{Backend, CallControl, Status as AgentStatus, TransferTarget};
use crate::{Role, Shared, now, status_of};

/// Events queued for one desktop before the stream waits for it to read.
const STREAM_BUFFER: usize = 64;

/// The agent service over a [`Backend`].
pub struct AgentApi<B> {
    shared: Arc<Shared<B>>,
}

impl<B: Backend> AgentApi<B> {
    pub(crate) fn new(shared: Arc<Shared<B>>) -> AgentApi<B> {
        AgentApi { shared }
    }

    /// The agent behind the request, who must have `call` as their current call.
    fn own_call<T>(&self, request: &Request<T>, call: &str) -> Result<String, Status> {
        let session = self.shared.authorize(request, Role::Agent)?;
        if call.is_empty() {
            return Err(Status::invalid_argument("call_id is required"));
        }
        match self.shared.hub.current_call(&session.login) {
            Some(c) if c == call => Ok(session.login),
            _ => Err(Status::permission_denied(format!(
                "call {call} is not your current call"
            ))),
        }
    }

    /// Dial or skip the preview the agent was offered.
    async fn preview(
        &self,
        request: Request<CallRequest>,
        dial: bool,
    ) -> Result<Response<CallControlResponse>, Status> {
        let call = &request.get_ref().call_id;
        let agent = self.own_call(&request, call)?;
        self.shared
            .backend
            .preview(&agent, call, dial)
            .await
            .map_err(status_of)?;
        Ok(Response::new(CallControlResponse {}))
    }

    async fn control(
        &self,
        request: Request<CallRequest>,
        control: CallControl,
    ) -> Result<Response<CallControlResponse>, Status> {
        let agent = self.own_call(&request, &request.get_ref().call_id)?;
        self.shared
            .backend
            .call_control(&agent, &request.get_ref().call_id, control)
            .await
            .map_err(status_of)?;
        Ok(Response::new(CallControlResponse {}))
    }
}

pub(crate) fn to_proto_status(s: &AgentStatus) -> (pb::AgentStatus, String) {
    match s {
        AgentStatus::Available => (pb::AgentStatus::Available, String::new()),
        AgentStatus::OnBreak { reason } => (pb::AgentStatus::OnBreak, reason.clone()),
        AgentStatus::LoggedOut => (pb::AgentStatus::LoggedOut, String::new()),
    }
}

#[tonic::async_trait]
impl<B: Backend> AgentService for AgentApi<B> {
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let from = request.remote_addr().map(|a| a.ip());
        let r = request.into_inner();
        let (token, ttl) = self
            .shared
            .login(Role::Agent, &r.agent_id, &r.password, from)
            .await?;
        let status = self
            .shared
            .backend
            .status(&r.agent_id)
            .await
            .map(|s| to_proto_status(&s).0)
            .unwrap_or(pb::AgentStatus::Unspecified);
        Ok(Response::new(LoginResponse {
            token,
            expires_in_seconds: ttl.as_secs(),
            status: status.into(),
        }))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let session = self.shared.authorize(&request, Role::Agent)?;
        self.shared.logout(&request)?;
        self.shared
            .backend
            .set_status(&session.login, AgentStatus::LoggedOut)
            .await
            .map_err(status_of)?;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn set_status(
        &self,
        request: Request<SetStatusRequest>,
    ) -> Result<Response<SetStatusResponse>, Status> {
        let session = self.shared.authorize(&request, Role::Agent)?;
        let r = request.into_inner();
        let status = match pb::AgentStatus::try_from(r.status) {
            Ok(pb::AgentStatus::Available) => AgentStatus::Available,
            Ok(pb::AgentStatus::OnBreak) if r.break_reason.trim().is_empty() => {
                return Err(Status::invalid_argument(
                    "break_reason is required with AGENT_STATUS_ON_BREAK",
                ));
            }
            Ok(pb::AgentStatus::OnBreak) => AgentStatus::OnBreak {
                reason: r.break_reason.trim().to_string(),
            },
            Ok(pb::AgentStatus::LoggedOut) => AgentStatus::LoggedOut,
            Ok(pb::AgentStatus::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "status {} is not one of AVAILABLE, ON_BREAK, LOGGED_OUT",
                    r.status
                )));
            }
        };
        self.shared
            .backend
            .set_status(&session.login, status)
            .await
            .map_err(status_of)?;
        Ok(Response::new(SetStatusResponse {}))
    }

    type StreamEventsStream = ReceiverStream<Result<AgentEvent, Status>>;

    async fn stream_events(
        &self,
        request: Request<StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let session = self.shared.authorize(&request, Role::Agent)?;
        let slot = self.shared.open_stream(&session)?;
        let agent = session.login;
        let resume_after = request.into_inner().resume_after;
        let sub = self.shared.hub.subscribe_agent(&agent, resume_after);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        self.shared
            .with_sessions(|s| s.handle_stream_opened(now(), &agent));
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut last = resume_after.unwrap_or(0);
            forward(&shared, &agent, sub, &tx, &mut last).await;
            shared.with_sessions(|s| s.handle_stream_closed(now(), &agent));
            tracing::debug!(%agent, last, "agent event stream closed");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn hold(
        &self,
        request: Request<CallRequest>,
    ) -> Result<Response<CallControlResponse>, Status> {
        self.control(request, CallControl::Hold).await
    }

    async fn unhold(
        &self,
        request: Request<CallRequest>,
    ) -> Result<Response<CallControlResponse>, Status> {
        self.control(request, CallControl::Unhold).await
    }

    async fn transfer(
        &self,
        request: Request<TransferRequest>,
    ) -> Result<Response<CallControlResponse>, Status> {
        let agent = self.own_call(&request, &request.get_ref().call_id)?;
        let r = request.into_inner();
        let target = match r.target {
            Some(Target::Queue(q)) if !q.is_empty() => TransferTarget::Queue(q),
            Some(Target::AgentId(a)) if !a.is_empty() => TransferTarget::Agent(a),
            Some(Target::Number(n)) if !n.is_empty() => TransferTarget::Number(n),
            _ => {
                return Err(Status::invalid_argument(
                    "one non-empty target (queue, agent_id or number) is required",
                ));
            }
        };
        self.shared
            .backend
            .call_control(&agent, &r.call_id, CallControl::Transfer(target))
            .await
            .map_err(status_of)?;
        Ok(Response::new(CallControlResponse {}))
    }

    async fn hang_up(
        &self,
        request: Request<CallRequest>,
    ) -> Result<Response<CallControlResponse>, Status> {
        self.control(request, CallControl::HangUp).await
    }

    async fn disposition(
        &self,
        request: Request<DispositionRequest>,
    ) -> Result<Response<DispositionResponse>, Status> {
        let agent = self.own_call(&request, &request.get_ref().call_id)?;
        let r = request.into_inner();
        if r.code.trim().is_empty() {
            return Err(Status::invalid_argument("code is required"));
        }
        let backend = &self.shared.backend;
        let code = r.code.trim();
        if r.callback_at_unix_ms == 0 {
            backend
                .disposition(&agent, &r.call_id, code, &r.notes)
                .await
        } else if r.callback_at_unix_ms <= backend.unix_ms() {
            return Err(Status::invalid_argument(format!(
                "callback_at_unix_ms {} is not in the future",
                r.callback_at_unix_ms
            )));
        } else {
            backend
                .disposition_with_callback(
                    &agent,
                    &r.call_id,
                    code,
                    &r.notes,
                    r.callback_at_unix_ms,
                )
                .await
        }
        .map_err(status_of)?;
        Ok(Response::new(DispositionResponse {}))
    }

    async fn script_step(
        &self,
        request: Request<CallRequest>,
    ) -> Result<Response<ScriptStepResponse>, Status> {
        let agent = self.own_call(&request, &request.get_ref().call_id)?;
        let step = self
            .shared
            .backend
            .script_step(&agent, &request.get_ref().call_id, None)
            .await
            .map_err(status_of)?;
        Ok(Response::new(step))
    }

    async fn submit_answer(
        &self,
        request: Request<SubmitAnswerRequest>,
    ) -> Result<Response<ScriptStepResponse>, Status> {
        let agent = self.own_call(&request, &request.get_ref().call_id)?;
        let r = request.into_inner();
        let step = self
            .shared
            .backend
            .script_step(&agent, &r.call_id, Some(r.answer))
            .await
            .map_err(status_of)?;
        Ok(Response::new(step))
    }

    async fn accept_task(
        &self,
        request: Request<CallRequest>,
    ) -> Result<Response<CallControlResponse>, Status> {
        let agent = self.own_call(&request, &request.get_ref().call_id)?;
        self.shared
            .backend
            .accept_task(&agent, &request.get_ref().call_id)
            .await
            .map_err(status_of)?;
        Ok(Response::new(CallControlResponse {}))
    }

    async fn preview_dial(
        &self,
        request: Request<CallRequest>,
    ) -> Result<Response<CallControlResponse>, Status> {
        self.preview(request, true).await
    }

    async fn preview_skip(
        &self,
        request: Request<CallRequest>,
    ) -> Result<Response<CallControlResponse>, Status> {
        self.preview(request, false).await
    }

    async fn list_voicemail(
        &self,
        request: Request<ListVoicemailRequest>,
    ) -> Result<Response<ListVoicemailResponse>, Status> {
        let session = self.shared.authorize(&request, Role::Agent)?;
        let messages = self
            .shared
            .backend
            .list_voicemail(&session.login)
            .await
            .map_err(status_of)?;
        Ok(Response::new(ListVoicemailResponse { messages }))
    }

    async fn get_voicemail_audio(
        &self,
        request: Request<VoicemailMessageRequest>,
    ) -> Result<Response<VoicemailAudio>, Status> {
        let (agent, message) = self.voicemail_request(&request)?;
        let wav = self
            .shared
            .backend
            .voicemail_audio(&agent, &message)
            .await
            .map_err(status_of)?;
        Ok(Response::new(VoicemailAudio { wav }))
    }

    async fn mark_voicemail_heard(
        &self,
        request: Request<VoicemailMessageRequest>,
    ) -> Result<Response<VoicemailMessageResponse>, Status> {
        let (agent, message) = self.voicemail_request(&request)?;
        self.shared
            .backend
            .mark_voicemail_heard(&agent, &message)
            .await
            .map_err(status_of)?;
        Ok(Response::new(VoicemailMessageResponse {}))
    }

    async fn delete_voicemail(
        &self,
        request: Request<VoicemailMessageRequest>,
    ) -> Result<Response<VoicemailMessageResponse>, Status> {
        let (agent, message) = self.voicemail_request(&request)?;
        self.shared
            .backend
            .delete_voicemail(&agent, &message)
            .await
            .map_err(status_of)?;
        Ok(Response::new(VoicemailMessageResponse {}))
    }
}

impl<B: Backend> AgentApi<B> {
    /// The agent behind a voicemail request and the message it names.
    fn voicemail_request(
        &self,
        request: &Request<VoicemailMessageRequest>,
    ) -> Result<(String, String), Status> {
        let session = self.shared.authorize(request, Role::Agent)?;
        let message = request.get_ref().message_id.trim();
        if message.is_empty() {
            return Err(Status::invalid_argument("message_id is required"));
        }
        Ok((session.login, message.to_string()))
    }
}

/// Sends the replay, then live events, until the desktop goes away. A stream that
/// falls behind the live channel catches up from the log (ids stay in order, none
/// sent twice).
async fn forward<B: Backend>(
    shared: &Shared<B>,
    agent: &str,
    sub: crate::hub::Subscription,
    tx: &mpsc::Sender<Result<AgentEvent, Status>>,
    last: &mut u64,
) {
    let mut live = sub.live;
    let mut replay = sub.replay;
    loop {
        if let Some(oldest) = replay.lost {
            let lost = AgentEvent {
                id: 0,
                at_unix_ms: shared.backend.unix_ms(),
                kind: Some(Kind::EventsLost(EventsLost {
                    oldest_available: oldest,
                })),
            };
            if tx.send(Ok(lost)).await.is_err() {
                return;
            }
            // The replay starts at the oldest held event, whatever the desktop said.
            *last = oldest.saturating_sub(1);
        }
        for (id, event) in replay.events {
            if id <= *last {
                continue;
            }
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
            *last = id;
        }
        loop {
            let event = tokio::select! {
                e = live.recv() => e,
                _ = tx.closed() => return,
            };
            match event {
                Ok(e) if e.id <= *last => {}
                Ok(e) => {
                    let id = e.id;
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                    *last = id;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        let sub = shared.hub.subscribe_agent(agent, Some(*last));
        live = sub.live;
        replay = sub.replay;
    }
}
