//! What the gateway needs from the server behind it, as a trait the server implements.
//!
//! The gateway knows nothing of SIP or of the ACD's internals: it checks passwords
//! against [`Account`]s, forwards agents' and supervisors' requests here, and relays
//! the events the server publishes into the [`crate::EventHub`].

use std::future::Future;

use callcenter_proto::agent::{ScriptStepResponse, VoicemailMessage};
use callcenter_proto::supervisor::{
    CampaignCommand, CampaignView, ReportRequest, ReportResponse, Snapshot,
};

use crate::sessions::Role;

/// A login the gateway may open a session for.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The agent's or supervisor's name.
    pub login: String,
    /// What it may do.
    pub role: Role,
    /// The argon2 PHC string of the password (`$argon2id$v=19$...`).
    pub password_hash: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("login", &self.login)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// An agent's status as the backend applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Ready to take calls.
    Available,
    /// Logged in, taking no calls.
    OnBreak {
        /// Reason code.
        reason: String,
    },
    /// Not working.
    LoggedOut,
}

/// Where a blind transfer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// Wait again in this queue.
    Queue(String),
    /// Ring this agent.
    Agent(String),
    /// Dial this number through the routes and trunks.
    Number(String),
}

/// A call-control request on the agent's own call (already checked to be theirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallControl {
    /// Music for the caller, the agent's line muted.
    Hold,
    /// Back to talking.
    Unhold,
    /// Blind transfer.
    Transfer(TransferTarget),
    /// End the call.
    HangUp,
}

/// A supervisor's action on an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorAction {
    /// Put the agent on break with this reason.
    ForceBreak {
        /// Reason code.
        reason: String,
    },
    /// Log the agent out.
    ForceLogout,
    /// Replace the queues the agent serves: `(queue, tier level)`, in preference order.
    SetQueues(Vec<(String, u32)>),
    /// Replace the agent's skills: `(skill, level 1..=5)`.
    SetSkills(Vec<(String, u8)>),
}

/// Why the backend refused; mapped to a gRPC status in one place
/// ([`crate::status_of`]) without leaking internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No such agent, queue or call.
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but wrong for the current state (no wrap-up to end).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A value in the request is invalid (skill level 9).
    #[error("{0}")]
    InvalidArgument(String),
    /// The server does not offer this yet.
    #[error("{0}")]
    Unimplemented(String),
    /// The server is shutting down or an internal task is gone.
    #[error("{0}")]
    Unavailable(String),
}

/// The server side of the gateway. Methods return `Send` futures so the tonic
/// services can await them; a server implements them with `async fn`.
pub trait Backend: Send + Sync + 'static {
    /// The account for a login name in a role, `None` when there is none (the gateway
    /// then answers exactly as for a wrong password).
    fn account(&self, role: Role, login: &str) -> Option<Account>;

    /// Wall-clock time, milliseconds since the Unix epoch (the server's injected clock).
    fn unix_ms(&self) -> i64;

    /// The agent's current status (for the login response).
    fn status(&self, agent: &str) -> impl Future<Output = Result<Status, BackendError>> + Send;

    /// Sets an agent's status as the agent asked.
    fn set_status(
        &self,
        agent: &str,
        status: Status,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The agent's desktop has had no event stream for a whole lease: stop offering
    /// them calls (the server chooses how: a break with reason "desktop-lost").
    fn agent_unreachable(&self, agent: &str) -> impl Future<Output = ()> + Send;

    /// Call control on `call`, which the gateway checked is the agent's current call.
    fn call_control(
        &self,
        agent: &str,
        call: &str,
        control: CallControl,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Records the outcome of the agent's call and ends their wrap-up.
    fn disposition(
        &self,
        agent: &str,
        call: &str,
        code: &str,
        notes: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// As [`Backend::disposition`], and books a callback to the campaign contact of
    /// `call` at `callback_at_unix_ms` (the gateway checked it is in the future). A
    /// call that is not a campaign call is refused before wrap-up ends. Servers
    /// without campaigns keep the default.
    fn disposition_with_callback(
        &self,
        agent: &str,
        call: &str,
        code: &str,
        notes: &str,
        callback_at_unix_ms: i64,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = (agent, call, code, notes, callback_at_unix_ms);
        async {
            Err(BackendError::Unimplemented(
                "scheduled callbacks are not offered".into(),
            ))
        }
    }

    /// The agent takes the voicemail task offered to them (`task`, checked to be the
    /// agent's current offer). Servers without voicemail tasks keep the default.
    fn accept_task(
        &self,
        agent: &str,
        task: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = (agent, task);
        async {
            Err(BackendError::Unimplemented(
                "no voicemail tasks on this server".into(),
            ))
        }
    }

    /// The agent's decision on the preview offered to them (`call`, checked to be
    /// the agent's current offer): dial the contact (`dial`) or skip it. Servers
    /// without preview campaigns keep the default.
    fn preview(
        &self,
        agent: &str,
        call: &str,
        dial: bool,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = (agent, call, dial);
        async {
            Err(BackendError::Unimplemented(
                "no preview campaigns on this server".into(),
            ))
        }
    }

    /// The messages of the mailboxes the agent works, oldest first.
    fn list_voicemail(
        &self,
        agent: &str,
    ) -> impl Future<Output = Result<Vec<VoicemailMessage>, BackendError>> + Send {
        let _ = agent;
        async {
            Err(BackendError::Unimplemented(
                "no voicemail on this server".into(),
            ))
        }
    }

    /// A message's WAV, if it is in one of the agent's mailboxes.
    fn voicemail_audio(
        &self,
        agent: &str,
        message: &str,
    ) -> impl Future<Output = Result<Vec<u8>, BackendError>> + Send {
        let _ = (agent, message);
        async {
            Err(BackendError::Unimplemented(
                "no voicemail on this server".into(),
            ))
        }
    }

    /// Marks a message of the agent's mailboxes heard.
    fn mark_voicemail_heard(
        &self,
        agent: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = (agent, message);
        async {
            Err(BackendError::Unimplemented(
                "no voicemail on this server".into(),
            ))
        }
    }

    /// Deletes a message of the agent's mailboxes.
    fn delete_voicemail(
        &self,
        agent: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = (agent, message);
        async {
            Err(BackendError::Unimplemented(
                "no voicemail on this server".into(),
            ))
        }
    }

    /// Every agent and queue now, for a supervisor stream's first message.
    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, BackendError>> + Send;

    /// A supervisor's action on an agent.
    fn supervise(
        &self,
        supervisor: &str,
        agent: &str,
        action: SupervisorAction,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// A historical report; the gateway checked the kind and that the period is not
    /// empty. Default: not offered.
    fn report(
        &self,
        request: ReportRequest,
    ) -> impl Future<Output = Result<ReportResponse, BackendError>> + Send {
        let _ = request;
        async {
            Err(BackendError::Unimplemented(
                "reports are not offered".into(),
            ))
        }
    }

    /// Every configured campaign now. Default: none.
    fn campaigns(&self) -> impl Future<Output = Result<Vec<CampaignView>, BackendError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// A supervisor starts, pauses, resumes or stops a campaign (the gateway checked
    /// the command is specified). Default: not offered.
    fn set_campaign_state(
        &self,
        supervisor: &str,
        campaign: &str,
        command: CampaignCommand,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = (supervisor, campaign, command);
        async {
            Err(BackendError::Unimplemented(
                "campaigns are not offered".into(),
            ))
        }
    }

    /// The agent-guided script of `call`, which the gateway checked is the agent's:
    /// started on first use, then where it stands; with `answer`, its open question
    /// is answered first. A server without agent scripts keeps this default.
    fn script_step(
        &self,
        agent: &str,
        call: &str,
        answer: Option<String>,
    ) -> impl Future<Output = Result<ScriptStepResponse, BackendError>> + Send {
        let _ = (agent, call, answer);
        async {
            Err(BackendError::Unimplemented(
                "agent scripts are not available on this server".into(),
            ))
        }
    }
}
