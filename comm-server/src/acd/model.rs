//! The ACD's vocabulary: ids, configuration, the inputs the host feeds in, the actions
//! it must carry out and the events it writes to the queue event log.
//!
//! Everything here is plain data. Ids are opaque numbers the host maps to its own calls,
//! agents and queues; the core never learns what a SIP dialog is.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AcdError;
use super::strategy::Strategy;

/// A unit of work: a waiting caller, a campaign call, a callback task, a voicemail task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemId(pub u64);

/// An agent, as the host (agent gateway, database) numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentId(pub u64);

/// A queue, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub u32);

/// A skill (language, product line...), numbered by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SkillId(pub u32);

/// Proficiency in a skill, 1 (novice) to 5 (expert). Checked on construction so the
/// router never sees a 0 or a 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Level(u8);

impl Level {
    /// The lowest proficiency: "has the skill at all".
    pub const MIN: Level = Level(1);
    /// The highest proficiency.
    pub const MAX: Level = Level(5);

    /// A level in 1..=5, or [`AcdError::InvalidLevel`].
    pub fn new(level: u8) -> Result<Level, AcdError> {
        if (1..=5).contains(&level) {
            Ok(Level(level))
        } else {
            Err(AcdError::InvalidLevel(level))
        }
    }

    /// The number, 1..=5.
    pub fn value(self) -> u8 {
        self.0
    }
}

/// What kind of work an item is. The kind decides how a matched agent is connected:
/// calls already on the line are offered to the agent; callback tasks reserve the agent
/// and then dial the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemKind {
    /// A caller on the line, waiting.
    InboundCall,
    /// A campaign call the customer has answered (progressive or predictive dialling).
    CampaignCall {
        /// The campaign, as the host numbers it.
        campaign: u64,
    },
    /// Call a customer back (a scheduled callback, a campaign preview): the agent is
    /// reserved first, then the customer is dialled.
    CallbackTask,
    /// A voicemail left in a queue's mailbox, to be listened to and called back. Offered
    /// like a call (the host delivers the offer to the agent's desktop, not a phone);
    /// nobody is on the line, so no music, announcements or maximum wait, and it stays
    /// when the queue empties.
    VoicemailTask {
        /// The stored message's id, as the host names it (kept in the event log so
        /// reports can join the task with the message).
        message: String,
    },
}

/// One skill an item needs, with the lowest acceptable proficiency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SkillRequirement {
    /// The skill.
    pub skill: SkillId,
    /// The lowest proficiency accepted before any widening.
    pub min_level: Level,
}

/// What the host knows about the customer, passed through to screen pops and dialling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerInfo {
    /// The number to call back, E.164 when known.
    pub number: Option<String>,
    /// A display name or customer record reference.
    pub name: Option<String>,
}

/// An item entering a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    /// The host's id; must not be in use by another item still in the ACD.
    pub id: ItemId,
    /// What kind of work this is.
    pub kind: ItemKind,
    /// The queue it waits in.
    pub queue: QueueId,
    /// Higher is served first; items of equal priority are served oldest first.
    pub priority: u8,
    /// Skills an agent must have (all of them), set by the route or script.
    pub skills: Vec<SkillRequirement>,
    /// Customer details for screen pops and callbacks.
    pub caller: CallerInfo,
}

/// Where an item goes when it leaves a queue without reaching an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OverflowTarget {
    /// Another queue: the host re-enqueues the item there (a new lifecycle).
    Queue(QueueId),
    /// A voicemail box, by name.
    Mailbox(String),
    /// A dialog script, by name.
    Script(String),
    /// Play the goodbye prompt and hang up.
    HangUp,
}

/// Why an item overflowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OverflowReason {
    /// It waited the queue's maximum wait.
    MaxWait,
    /// The queue held its maximum length when it arrived.
    QueueFull,
    /// No agent was logged in (or available) as the queue's join/leave rules demand.
    NoAgents,
    /// The caller pressed the queue's exit key.
    ExitKey,
}

/// Whether an item may join a queue that has nobody to answer it
/// (mod_callcenter's "tier rules" and "abandoned resume" are not copied; these are the
/// two rules supervisors ask for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum JoinRule {
    /// Always join, even when no agent is logged in.
    #[default]
    Always,
    /// Join only if at least one agent serving the queue is logged in (any status).
    IfAgentsLoggedIn,
    /// Join only if at least one agent serving the queue is available (not on break).
    IfAgentsAvailable,
}

/// What happens to waiting callers when the last agent of a queue logs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EmptyRule {
    /// Keep waiting; agents may come back.
    #[default]
    Stay,
    /// Overflow every waiting caller (not queued callbacks: they keep their place).
    Leave,
}

/// One step of skill widening: once an item has waited `after`, its minimum levels drop
/// by `lower_by` (never below 1), or skills are ignored altogether.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WideningStep {
    /// Wait after which this step applies.
    pub after: Duration,
    /// How many levels each minimum drops, cumulative with earlier steps.
    pub lower_by: u8,
    /// From this step on, any agent serving the queue qualifies.
    pub ignore_skills: bool,
}

/// Default wrap-up after a call, per queue: time to write notes and pick a disposition.
pub const DEFAULT_WRAP_UP: Duration = Duration::from_secs(10);
/// Default time an offer rings before it counts as not answered: about four rings, short
/// enough that a caller is not stuck behind an absent agent.
pub const DEFAULT_RING_TIMEOUT: Duration = Duration::from_secs(20);
/// Default handle time assumed for the estimated wait before any call has been measured.
pub const DEFAULT_EXPECTED_HANDLE_TIME: Duration = Duration::from_secs(180);
/// Default agent rest after an unanswered offer, so one absent agent does not soak every
/// call in turn.
pub const DEFAULT_NO_ANSWER_DELAY: Duration = Duration::from_secs(10);
/// Default agent rest after rejecting an offer.
pub const DEFAULT_REJECT_DELAY: Duration = Duration::from_secs(10);
/// Default agent rest after an offer failed (busy, unreachable phone).
pub const DEFAULT_BUSY_DELAY: Duration = Duration::from_secs(30);
/// Default number of consecutive unanswered offers before the agent is put on break.
pub const DEFAULT_MAX_NO_ANSWER: u32 = 3;
/// Break reason used when the ACD takes an agent out after repeated no-answers.
pub const NO_ANSWER_REASON: &str = "no answer";

/// A queue's configuration. Build with [`QueueConfig::new`] and override fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueConfig {
    /// The queue.
    pub id: QueueId,
    /// How agents are chosen for this queue's items. Default longest-idle.
    pub strategy: Strategy,
    /// Weight of this queue's waiting time when an agent serving several queues picks
    /// the next item: an item's wait is multiplied by it. Default 1 (oldest first).
    pub weight: u32,
    /// Wrap-up after each call, unless the agent overrides it. Default 10 s.
    pub wrap_up: Duration,
    /// How long an offer rings. Default 20 s.
    pub ring_timeout: Duration,
    /// Longest a caller waits before overflowing. Default none.
    pub max_wait: Option<Duration>,
    /// Most items waiting; later arrivals overflow at once. Default none.
    pub max_length: Option<usize>,
    /// Where overflowing items go. Default hang up.
    pub overflow: OverflowTarget,
    /// Whether items may join with nobody to answer. Default always.
    pub join: JoinRule,
    /// What waiting callers do when the last agent logs out. Default stay.
    pub when_empty: EmptyRule,
    /// Where the exit key (a DTMF digit the script listens for) takes the caller.
    pub exit_target: Option<OverflowTarget>,
    /// Announce position and estimated wait when an item starts waiting. Default true.
    pub announce_at_entry: bool,
    /// Repeat the announcement this often while waiting. Default none.
    pub announce_every: Option<Duration>,
    /// Music on hold class, passed to the media engine. Default none (engine default).
    pub hold_music: Option<String>,
    /// Skill widening steps, in any order. Default none.
    pub widening: Vec<WideningStep>,
    /// Wait before each further tier level is tried: agents of level `L` are offered an
    /// item once it has waited `(L − 1) ×` this, so backup agents only take calls the
    /// first line could not. Default none: every level at once, lower levels first.
    pub tier_delay: Option<Duration>,
    /// Handle time assumed by the estimated wait until calls are measured. Default 180 s.
    pub expected_handle_time: Duration,
}

impl QueueConfig {
    /// A queue with every knob at its documented default.
    pub fn new(id: QueueId) -> QueueConfig {
        QueueConfig {
            id,
            strategy: Strategy::default(),
            weight: 1,
            wrap_up: DEFAULT_WRAP_UP,
            ring_timeout: DEFAULT_RING_TIMEOUT,
            max_wait: None,
            max_length: None,
            overflow: OverflowTarget::HangUp,
            join: JoinRule::Always,
            when_empty: EmptyRule::Stay,
            exit_target: None,
            announce_at_entry: true,
            announce_every: None,
            hold_music: None,
            widening: Vec::new(),
            tier_delay: None,
            expected_handle_time: DEFAULT_EXPECTED_HANDLE_TIME,
        }
    }
}

/// A queue's live figures for supervisors' wallboards and the gRPC status stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// The queue.
    pub queue: QueueId,
    /// Items waiting (not ringing an agent), queued callbacks included.
    pub waiting: usize,
    /// Of those, queued callbacks.
    pub callbacks: usize,
    /// How long the oldest waiting item has waited.
    pub longest_wait: Duration,
    /// Agents serving the queue who are logged in.
    pub logged_in: usize,
    /// Agents serving the queue who are available (any state).
    pub available: usize,
    /// Agents serving the queue who are available and idle right now.
    pub idle: usize,
    /// Average handle time (talk plus wrap-up) the estimates use.
    pub average_handle_time: Duration,
    /// What a caller arriving now would be told.
    pub estimated_wait: Option<Duration>,
}

/// An agent's membership in a queue (mod_callcenter's "tier").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// The queue served.
    pub queue: QueueId,
    /// 1 is tried first; higher levels are backups, offered only when no agent of a
    /// lower level qualifies.
    pub level: u8,
    /// Order within the level for the linear and round-robin strategies.
    pub position: u32,
}

/// An agent's configuration. Build with [`AgentConfig::new`] and override fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    /// The agent.
    pub id: AgentId,
    /// Skills with proficiency.
    pub skills: Vec<(SkillId, Level)>,
    /// Queues served.
    pub tiers: Vec<Tier>,
    /// Wrap-up for this agent, overriding every queue's. Default none.
    pub wrap_up: Option<Duration>,
    /// Rest after an unanswered offer. Default 10 s.
    pub no_answer_delay: Duration,
    /// Rest after a rejected offer. Default 10 s.
    pub reject_delay: Duration,
    /// Rest after a failed offer (busy, unreachable). Default 30 s.
    pub busy_delay: Duration,
    /// Consecutive unanswered offers before a forced break; 0 never. Default 3.
    pub max_no_answer: u32,
    /// Persistent-line mode: the agent called in once and stays connected, so work is
    /// bridged onto the open line at once ([`Action::Bridge`] with no [`Action::Offer`]).
    /// Default false (every offer rings).
    pub persistent_line: bool,
}

impl AgentConfig {
    /// An agent with no skills or tiers and every knob at its default.
    pub fn new(id: AgentId) -> AgentConfig {
        AgentConfig {
            id,
            skills: Vec::new(),
            tiers: Vec::new(),
            wrap_up: None,
            no_answer_delay: DEFAULT_NO_ANSWER_DELAY,
            reject_delay: DEFAULT_REJECT_DELAY,
            busy_delay: DEFAULT_BUSY_DELAY,
            max_no_answer: DEFAULT_MAX_NO_ANSWER,
            persistent_line: false,
        }
    }
}

/// What the agent chose (mod_callcenter's *status*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentStatus {
    /// Not working; never offered anything.
    LoggedOut,
    /// Ready to take work.
    Available,
    /// Logged in but not taking work, with a reason code ("lunch", "no answer").
    OnBreak {
        /// Reason code, free text from the host's list.
        reason: String,
    },
}

/// What the system is doing with the agent (mod_callcenter's *state*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentState {
    /// Free: offered work if the status is available.
    Idle,
    /// Resting after a no-answer, reject or failure; idle again when the delay ends.
    Resting,
    /// An offer rings the agent.
    Ringing(ItemId),
    /// Held for a callback while the customer is dialled.
    Reserved(ItemId),
    /// Talking.
    OnCall(ItemId),
    /// After-call work.
    WrapUp,
}

/// Why an offer did not connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoAnswerReason {
    /// The ring timeout passed.
    Timeout,
    /// The agent's phone reported no answer.
    NotAnswered,
    /// The agent declined.
    Rejected,
    /// The agent's phone was busy or unreachable.
    Failed,
}

/// What the host feeds into [`super::Acd::handle_input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An item starts waiting.
    Enqueue(NewItem),
    /// The agent logs in and becomes available.
    Login(AgentId),
    /// The agent logs out.
    Logout(AgentId),
    /// The agent (or a supervisor) sets a status.
    SetStatus(AgentId, AgentStatus),
    /// The agent answered the offer.
    OfferAnswered(ItemId, AgentId),
    /// The agent's leg ended without an answer, or the agent declined or was unreachable.
    /// Also for an agent reserved for a callback who is rung before the customer is
    /// dialled: the callback goes back in line at its place.
    OfferNotAnswered(ItemId, AgentId, NoAnswerReason),
    /// The customer of a callback answered: connect them to the reserved agent.
    CustomerAnswered(ItemId),
    /// The customer of a callback could not be reached.
    CustomerNotReached(ItemId),
    /// The waiting caller asked to be called back and hangs up, keeping their place.
    CallbackRequested(ItemId),
    /// The waiting caller pressed the queue's exit key.
    ExitKey(ItemId),
    /// The item's call ended: a waiting caller hung up (abandoned), or a connected call
    /// finished (the agent goes to wrap-up).
    ItemEnded(ItemId),
    /// The agent transfers a connected item to another queue.
    Transfer(ItemId, QueueId),
    /// The agent transfers a connected item to another agent, who must be free: it
    /// rings them at once, and waits in its queue again if they do not answer.
    TransferToAgent(ItemId, AgentId),
    /// The agent submitted a disposition, ending wrap-up early.
    WrapUpDone(AgentId, Option<String>),
}

/// What the host must do, drained with [`super::Acd::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Play hold music to the waiting item.
    Hold {
        /// The item.
        item: ItemId,
        /// Music class, `None` for the engine's default.
        music: Option<String>,
    },
    /// Ring the agent with the item (screen pop). The core itself times the offer out.
    Offer {
        /// The item.
        item: ItemId,
        /// The agent.
        agent: AgentId,
        /// How long it may ring.
        ring_timeout: Duration,
    },
    /// Stop ringing the agent.
    CancelOffer {
        /// The item.
        item: ItemId,
        /// The agent.
        agent: AgentId,
    },
    /// Connect the item's call and the agent through the media engine.
    Bridge {
        /// The item.
        item: ItemId,
        /// The agent.
        agent: AgentId,
    },
    /// The agent is reserved for a callback: dial the customer through the trunk.
    DialCustomer {
        /// The item.
        item: ItemId,
        /// The reserved agent.
        agent: AgentId,
        /// Number to dial, from the caller info.
        number: Option<String>,
    },
    /// Tell the waiting caller their position and estimated wait.
    Announce {
        /// The item.
        item: ItemId,
        /// 1 is next.
        position: usize,
        /// `None` when no agent is staffed and no honest estimate exists.
        estimated_wait: Option<Duration>,
    },
    /// Send the item to its overflow or exit target.
    Overflow {
        /// The item.
        item: ItemId,
        /// Where to.
        target: OverflowTarget,
    },
    /// The agent starts after-call work for this long (desktop shows the disposition form).
    StartWrapUp {
        /// The agent.
        agent: AgentId,
        /// Wrap-up length.
        duration: Duration,
    },
    /// The agent's wrap-up is over.
    EndWrapUp {
        /// The agent.
        agent: AgentId,
    },
    /// The ACD put the agent on break (repeated no-answers); tell the desktop.
    PutOnBreak {
        /// The agent.
        agent: AgentId,
        /// Reason code, [`NO_ANSWER_REASON`].
        reason: String,
    },
}

/// The closed list of ACD events for the queue event log, drained with
/// [`super::Acd::poll_event`]. The host stamps them with the time it passed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// An item started waiting.
    Enqueued {
        /// The item.
        item: ItemId,
        /// Its queue.
        queue: QueueId,
        /// Its kind.
        kind: ItemKind,
        /// Its priority.
        priority: u8,
    },
    /// An offer rings an agent.
    Offered {
        /// The item.
        item: ItemId,
        /// The agent.
        agent: AgentId,
    },
    /// An agent answered (terminal for the item's wait).
    Answered {
        /// The item.
        item: ItemId,
        /// The agent.
        agent: AgentId,
        /// Time from enqueue to answer.
        waited: Duration,
    },
    /// An offer did not connect.
    NoAnswer {
        /// The item.
        item: ItemId,
        /// The agent.
        agent: AgentId,
        /// Why.
        reason: NoAnswerReason,
    },
    /// The item left before reaching an agent (terminal).
    Abandoned {
        /// The item.
        item: ItemId,
        /// Its queue.
        queue: QueueId,
        /// Time from enqueue to abandon.
        waited: Duration,
        /// It was a callback whose customer could not be reached or was cancelled.
        callback: bool,
    },
    /// The item left for its overflow or exit target (terminal).
    Overflowed {
        /// The item.
        item: ItemId,
        /// Its queue.
        queue: QueueId,
        /// Where to.
        target: OverflowTarget,
        /// Why.
        reason: OverflowReason,
    },
    /// A connected item was transferred to another queue; a new wait starts.
    Transferred {
        /// The item.
        item: ItemId,
        /// Queue it was answered from.
        from: QueueId,
        /// Queue it now waits in.
        to: QueueId,
    },
    /// The caller hung up to be called back, keeping their place.
    CallbackRequested {
        /// The item.
        item: ItemId,
    },
    /// An agent is reserved and the customer is being dialled.
    CallbackDialing {
        /// The item.
        item: ItemId,
        /// The agent.
        agent: AgentId,
    },
    /// The called-back customer answered and is connected (terminal).
    CalledBack {
        /// The item.
        item: ItemId,
        /// The agent.
        agent: AgentId,
        /// Time from enqueue to connection.
        waited: Duration,
    },
    /// A connected call ended.
    CallEnded {
        /// The item.
        item: ItemId,
        /// The agent.
        agent: AgentId,
        /// Talk time.
        talk: Duration,
    },
    /// After-call work started.
    WrapUpStarted {
        /// The agent.
        agent: AgentId,
        /// Its planned length.
        duration: Duration,
    },
    /// After-call work ended, with the disposition if one was submitted.
    WrapUpEnded {
        /// The agent.
        agent: AgentId,
        /// Disposition code.
        disposition: Option<String>,
    },
    /// The agent's status changed.
    StatusChanged {
        /// The agent.
        agent: AgentId,
        /// Before.
        from: AgentStatus,
        /// After.
        to: AgentStatus,
    },
    /// The agent's state changed.
    StateChanged {
        /// The agent.
        agent: AgentId,
        /// Before.
        from: AgentState,
        /// After.
        to: AgentState,
    },
    /// The number of items waiting in a queue changed.
    QueueDepth {
        /// The queue.
        queue: QueueId,
        /// Items waiting (not ringing an agent).
        waiting: usize,
    },
}
