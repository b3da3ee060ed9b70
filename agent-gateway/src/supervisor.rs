//! `callcenter.supervisor.v1.SupervisorService`: the wallboard and actions on agents.

use std::sync::Arc;

use callcenter_proto::supervisor::supervisor_service_server::SupervisorService;
use callcenter_proto::supervisor::{
    ActionResponse, CampaignCommand, ForceBreakRequest, ForceLogoutRequest, ListCampaignsRequest,
    ListCampaignsResponse, LoginRequest, LoginResponse, LogoutRequest, LogoutResponse, ReportKind,
    ReportRequest, ReportResponse, SetAgentQueuesRequest, SetAgentSkillsRequest,
    SetCampaignStateRequest, StatusUpdate, StreamStatusRequest, status_update::Kind,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::backend::{Backend, SupervisorAction};
use crate::{Role, Shared, status_of};

/// Updates queued for one supervisor before the stream waits for it to read.
const STREAM_BUFFER: usize = 256;

/// The supervisor service over a [`Backend`].
pub struct SupervisorApi<B> {
    shared: Arc<Shared<B>>,
}

impl<B: Backend> SupervisorApi<B> {
    pub(crate) fn new(shared: Arc<Shared<B>>) -> SupervisorApi<B> {
        SupervisorApi { shared }
    }

    async fn act<T>(
        &self,
        request: &Request<T>,
        agent: &str,
        action: SupervisorAction,
    ) -> Result<Response<ActionResponse>, Status> {
        let session = self.shared.authorize(request, Role::Supervisor)?;
        if agent.is_empty() {
            return Err(Status::invalid_argument("agent_id is required"));
        }
        tracing::info!(supervisor = %session.login, %agent, ?action, "supervisor action");
        self.shared
            .backend
            .supervise(&session.login, agent, action)
            .await
            .map_err(status_of)?;
        Ok(Response::new(ActionResponse {}))
    }

    /// Snapshot first, then changes; a stream that falls behind gets a fresh snapshot.
    async fn stream(&self, tx: mpsc::Sender<Result<StatusUpdate, Status>>) {
        loop {
            // Subscribe before the snapshot so no change falls between them; a change
            // seen twice is harmless (updates replace what the client has).
            let mut live = self.shared.hub.subscribe_supervisor();
            let snapshot = match self.shared.backend.snapshot().await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(status_of(e))).await;
                    return;
                }
            };
            let first = StatusUpdate {
                at_unix_ms: self.shared.backend.unix_ms(),
                kind: Some(Kind::Snapshot(snapshot)),
            };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            // The campaigns' latest status; later ones arrive with the live updates.
            if let Some(campaigns) = self.shared.hub.campaigns()
                && tx.send(Ok(campaigns)).await.is_err()
            {
                return;
            }
            loop {
                let update = tokio::select! {
                    u = live.recv() => u,
                    _ = tx.closed() => return,
                };
                match update {
                    Ok(u) => {
                        if tx.send(Ok(u)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }
}

#[tonic::async_trait]
impl<B: Backend> SupervisorService for SupervisorApi<B> {
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let from = request.remote_addr().map(|a| a.ip());
        let r = request.into_inner();
        let (token, ttl) = self
            .shared
            .login(Role::Supervisor, &r.supervisor_id, &r.password, from)
            .await?;
        Ok(Response::new(LoginResponse {
            token,
            expires_in_seconds: ttl.as_secs(),
        }))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        self.shared.authorize(&request, Role::Supervisor)?;
        self.shared.logout(&request)?;
        Ok(Response::new(LogoutResponse {}))
    }

    type StreamStatusStream = ReceiverStream<Result<StatusUpdate, Status>>;

    async fn stream_status(
        &self,
        request: Request<StreamStatusRequest>,
    ) -> Result<Response<Self::StreamStatusStream>, Status> {
        let session = self.shared.authorize(&request, Role::Supervisor)?;
        let slot = self.shared.open_stream(&session)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let me = SupervisorApi {
            shared: self.shared.clone(),
        };
        tokio::spawn(async move {
            let _slot = slot;
            me.stream(tx).await
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn force_break(
        &self,
        request: Request<ForceBreakRequest>,
    ) -> Result<Response<ActionResponse>, Status> {
        let r = request.get_ref();
        let reason = if r.reason.trim().is_empty() {
            "supervisor".to_string()
        } else {
            r.reason.trim().to_string()
        };
        let agent = r.agent_id.clone();
        self.act(&request, &agent, SupervisorAction::ForceBreak { reason })
            .await
    }

    async fn force_logout(
        &self,
        request: Request<ForceLogoutRequest>,
    ) -> Result<Response<ActionResponse>, Status> {
        let agent = request.get_ref().agent_id.clone();
        let out = self
            .act(&request, &agent, SupervisorAction::ForceLogout)
            .await?;
        self.shared
            .with_sessions(|s| s.handle_logout_all(Role::Agent, &agent));
        Ok(out)
    }

    async fn set_agent_queues(
        &self,
        request: Request<SetAgentQueuesRequest>,
    ) -> Result<Response<ActionResponse>, Status> {
        let r = request.get_ref();
        let mut queues = Vec::with_capacity(r.queues.len());
        for q in &r.queues {
            if q.queue.is_empty() {
                return Err(Status::invalid_argument("queue name is required"));
            }
            queues.push((q.queue.clone(), q.level.max(1)));
        }
        let agent = r.agent_id.clone();
        self.act(&request, &agent, SupervisorAction::SetQueues(queues))
            .await
    }

    async fn set_agent_skills(
        &self,
        request: Request<SetAgentSkillsRequest>,
    ) -> Result<Response<ActionResponse>, Status> {
        let r = request.get_ref();
        let mut skills = Vec::with_capacity(r.skills.len());
        for s in &r.skills {
            let level = u8::try_from(s.level)
                .ok()
                .filter(|l| (1..=5).contains(l))
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "skill {:?}: level {} is outside 1..=5",
                        s.name, s.level
                    ))
                })?;
            if s.name.is_empty() {
                return Err(Status::invalid_argument("skill name is required"));
            }
            skills.push((s.name.clone(), level));
        }
        let agent = r.agent_id.clone();
        self.act(&request, &agent, SupervisorAction::SetSkills(skills))
            .await
    }
    async fn get_report(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<ReportResponse>, Status> {
        self.shared.authorize(&request, Role::Supervisor)?;
        let r = request.into_inner();
        if r.kind() == ReportKind::Unspecified {
            return Err(Status::invalid_argument("report kind is required"));
        }
        if r.from_unix_ms >= r.to_unix_ms {
            return Err(Status::invalid_argument(format!(
                "the period is empty: from {} is not before to {}",
                r.from_unix_ms, r.to_unix_ms
            )));
        }
        let report = self.shared.backend.report(r).await.map_err(status_of)?;
        Ok(Response::new(report))
    }

    async fn list_campaigns(
        &self,
        request: Request<ListCampaignsRequest>,
    ) -> Result<Response<ListCampaignsResponse>, Status> {
        self.shared.authorize(&request, Role::Supervisor)?;
        let campaigns = self.shared.backend.campaigns().await.map_err(status_of)?;
        Ok(Response::new(ListCampaignsResponse { campaigns }))
    }

    async fn set_campaign_state(
        &self,
        request: Request<SetCampaignStateRequest>,
    ) -> Result<Response<ActionResponse>, Status> {
        let session = self.shared.authorize(&request, Role::Supervisor)?;
        let r = request.get_ref();
        let command = r.command();
        if command == CampaignCommand::Unspecified {
            return Err(Status::invalid_argument("campaign command is required"));
        }
        if r.campaign.is_empty() {
            return Err(Status::invalid_argument("campaign name is required"));
        }
        tracing::info!(supervisor = %session.login, campaign = %r.campaign, ?command, "campaign command");
        self.shared
            .backend
            .set_campaign_state(&session.login, &r.campaign, command)
            .await
            .map_err(status_of)?;
        Ok(Response::new(ActionResponse {}))
    }
}
