//! ACD (automatic call distribution): which waiting item reaches which agent, and when.
//!
//! # What this module owns
//! Queues of waiting work items, agents with their *status* (what the agent chose:
//! logged out, available, on break with a reason) apart from their *state* (what the
//! system is doing with them: idle, ringing, reserved, on a call, wrap-up, resting), the
//! routing decision, ring timeouts, wrap-up and no-answer delays, queue rules (maximum
//! wait and length, join/leave rules, exit key, skill widening), position and estimated
//! wait announcements, and queued callbacks that keep their place in line.
//!
//! # What it must not own
//! SIP, media, sockets, tasks and clocks. [`Acd`] is a pure state machine in the house
//! style: the host feeds [`Input`]s with `handle_input(now, input)` and expiries with
//! `handle_timeout(now)`, then drains `poll_timeout()`, `poll_action()` and
//! `poll_event()`. Work items are opaque ids ([`ItemId`]) the host maps to a caller's
//! call, a campaign call, a callback task or a voicemail task ([`ItemKind`]).
//!
//! # Driving the core
//! ```text
//! let mut acd = Acd::new(now, seed);
//! acd.add_queue(QueueConfig::new(QueueId(1)))?;            // knobs: see QueueConfig
//! acd.add_agent(now, AgentConfig { tiers, skills, .. })?;  // logged out
//! acd.handle_input(now, Input::Login(agent))?;
//! acd.handle_input(now, Input::Enqueue(NewItem { .. }))?;
//! // after every input or timeout, in this order:
//! let wake_at = acd.poll_timeout();              // call handle_timeout(wake_at) then
//! while let Some(action) = acd.poll_action() {}  // ring the agent, bridge, announce...
//! while let Some(event) = acd.poll_event() {}    // the queue event log
//! ```
//! Refused inputs ([`AcdError`]) change nothing: a late answer racing the ring timeout is
//! normal traffic, not a fault.
//!
//! # Item lifecycle
//! ```text
//!              Enqueue                     all offers time out / rejected
//!   ──────────────────► Waiting ◄──────────────────────────────────────┐
//!   (join rule, full:     │  │  callback requested: stays Waiting,      │
//!    Overflowed at once)  │  │  same place, caller gone                 │
//!                         │  └──► max wait, exit key, leave-when-empty: │
//!                         │        Overflowed (terminal)                │
//!      match: call/task   │ match: callback                             │
//!          ┌──────────────┴───────────────┐                             │
//!          ▼                              ▼                             │
//!   Offered(agents ringing) ─────────────────────────────────────────────┘
//!          │ OfferAnswered         Reserved(agent), DialCustomer
//!          │                              │ (OfferNotAnswered: back to Waiting)
//!          ▼                              │ CustomerAnswered (CalledBack, terminal)
//!   Connected(agent) ◄────────────────────┘ CustomerNotReached (Abandoned, terminal)
//!  (Answered, terminal)
//!          │ ItemEnded: agent to wrap-up      Transfer: a new wait in another queue
//!          ▼
//!        gone
//! ```
//! A caller hanging up while Waiting or Offered is Abandoned (terminal). Every item
//! therefore ends its wait exactly once: Answered, Abandoned, Overflowed or CalledBack.
//!
//! # Agent state (status Available is required to leave Idle)
//! ```text
//!        offer              answer              call ends (wrap-up > 0)
//!  Idle ───────► Ringing ─────────► OnCall ───────────────────────► WrapUp
//!   ▲ ▲  match      │ no answer /       ▲                               │ timer or
//!   │ │ callback    │ reject / fail     │ customer answers              │ disposition
//!   │ └─ Reserved ──┼───────────────────┘                               │
//!   │               ▼                                                   │
//!   ├──────────  Resting (no-answer, reject or busy delay)              │
//!   └───────────────────────────────────────────────────────────────────┘
//! ```
//! A persistent-line agent ([`AgentConfig::persistent_line`]) goes from Idle straight to
//! OnCall: the line is already open, nothing rings.
//! After N consecutive unanswered offers the ACD sets the agent's status to on break
//! with reason [`NO_ANSWER_REASON`] and tells the host with [`Action::PutOnBreak`].
//!
//! # Routing
//! Routing happens only when something changes, never by polling: a free agent and a
//! waiting item they qualify for never coexist after an input is handled.
//! * **An item becomes routable** (enqueued, back from an unanswered offer, or a widening
//!   step reached): the queue's free agents, indexed per queue in a sorted set keyed by
//!   `(tier level, strategy key)`, are walked in order and the first qualified one is
//!   offered (ring-all offers to all of them, round-robin and random choose within the
//!   best level). See [`strategy`].
//! * **An agent becomes free** (available, wrap-up or rest over, offer withdrawn): for each
//!   queue the agent serves, items are indexed by their skill requirements; within one
//!   requirement group the oldest item of a priority is the most widened, so one check per
//!   (group, priority) finds the group's best. Across queues the agent takes the highest
//!   priority, then the longest wait multiplied by the queue's weight.
//!
//! Both directions cost about `O(queues served × requirement groups × log n)`, not
//! `O(agents × items)`: see `benches/acd.rs` for figures with 2,000 agents, 50 queues and
//! 10,000 waiting items.
//!
//! # Tiers
//! An agent serves a queue at a tier level (1 first). Free agents of a lower level are
//! always tried first; with the queue's `tier_delay` set, level `L` is not tried at all
//! until the item has waited `(L − 1) × tier_delay` (a timer re-routes the item then),
//! so backup agents only take what the first line could not.
//!
//! # Skill widening
//! A queue lists [`WideningStep`]s: once an item has waited `after`, every minimum level
//! drops by `lower_by` (cumulative, never below 1), or skills stop mattering. A timer per
//! item fires at each step so a newly qualified free agent is offered the item at once.
//!
//! # Estimated wait time (EWT)
//! For the item at position `p` (1 = next) in its queue,
//! `EWT = p × (AHT + ring) / N + ring`, where
//! * `N` is the queue's staffing: agents serving it whose status is available (whatever
//!   their state), each counted `1/k` if they serve `k` queues, since they split their
//!   time between them;
//! * AHT (average handle time: talk plus wrap-up) is an exponentially weighted average
//!   (weight 1/20) over the queue's finished calls, seeded with `expected_handle_time`;
//! * `ring` is the same kind of average of the time from offer to answer.
//!
//! The reasoning: with all agents busy and handle times roughly memoryless, an agent
//! frees up for this queue every `(AHT + ring) / N` on average (ringing occupies the
//! agent too), the caller needs `p` of them, and then the agent's phone rings. It ignores
//! skills and callers ahead who will abandon (both make it over-estimate) and uneven
//! queue loads (an agent's real share follows the traffic, not `1/k`).
//!
//! Measured with the simulator ([`sim`], `cargo bench --bench acd`): with one queue of 25
//! agents, AHT 120 s exponential, 600 to 800 calls/h, with and without abandonment and
//! ring time, the entry estimate is biased by +1 to +5 s and off by 7 to 25 s on
//! average. Most of that spread is the wait's own randomness: with `N` busy agents and
//! memoryless handle times the next caller's wait has a standard deviation equal to its
//! mean. With no agent available the estimate is `None` and the announcement should say
//! only the position.
//!
//! # Queued callback
//! A waiting caller may ask to be called back ([`Input::CallbackRequested`]) and hang up.
//! The item keeps its key (priority, enqueue order) in the queue, so it keeps its exact
//! place. When it is matched, the agent is reserved ([`AgentState::Reserved`]) and
//! [`Action::DialCustomer`] is produced; the customer answering connects them
//! ([`Event::CalledBack`]). Callback tasks ([`ItemKind::CallbackTask`]) take the same path
//! from the start. Callbacks never overflow on maximum wait: nobody is on hold.
//! The host may ring the reserved agent before dialling (the server does, so the
//! customer never waits for an agent): [`Input::OfferNotAnswered`] for a reserved agent
//! is an ordinary no-answer (the agent rests or goes on break) and the callback goes
//! back to Waiting at its place.

mod core;
mod model;
mod rng;
pub mod sim;
pub mod strategy;

#[cfg(test)]
mod tests;

pub use self::core::Acd;
pub use self::model::*;
pub use self::rng::Rng;
pub use self::strategy::Strategy;

/// Why the ACD refused an input or a configuration change. Refusals leave the state as it
/// was; the host logs them and carries on (a late answer racing a timeout is normal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    /// Proficiency outside 1..=5.
    #[error("skill level {0} is outside 1..=5")]
    InvalidLevel(u8),
    /// A queue weight of zero would starve the queue forever.
    #[error("queue {0:?} has weight 0")]
    ZeroWeight(QueueId),
    /// No such queue.
    #[error("unknown queue {0:?}")]
    UnknownQueue(QueueId),
    /// No such agent.
    #[error("unknown agent {0:?}")]
    UnknownAgent(AgentId),
    /// No such item (never enqueued, or already gone).
    #[error("unknown item {0:?}")]
    UnknownItem(ItemId),
    /// The queue is already configured.
    #[error("queue {0:?} already exists")]
    DuplicateQueue(QueueId),
    /// The agent is already configured.
    #[error("agent {0:?} already exists")]
    DuplicateAgent(AgentId),
    /// The agent lists the same queue twice.
    #[error("agent {agent:?} has two tiers in queue {queue:?}")]
    DuplicateTier {
        /// The agent.
        agent: AgentId,
        /// The queue.
        queue: QueueId,
    },
    /// The item id is still in use.
    #[error("item {0:?} is already in the ACD")]
    DuplicateItem(ItemId),
    /// The agent is not ringing with this item (late answer after a timeout, say).
    #[error("item {item:?} is not offered to agent {agent:?}")]
    NotOffered {
        /// The item.
        item: ItemId,
        /// The agent.
        agent: AgentId,
    },
    /// The item is not in a phase that accepts this input.
    #[error("item {item:?} cannot take this input now: {why}")]
    WrongPhase {
        /// The item.
        item: ItemId,
        /// What was expected.
        why: &'static str,
    },
    /// The agent is not in wrap-up.
    #[error("agent {0:?} is not in wrap-up")]
    NotInWrapUp(AgentId),
    /// Login while logged in.
    #[error("agent {0:?} is already logged in")]
    AlreadyLoggedIn(AgentId),
    /// The queue has no exit target configured.
    #[error("queue {0:?} has no exit target")]
    NoExitTarget(QueueId),
    /// A callback needs a number to call.
    #[error("item {0:?} has no number to call back")]
    NoCallbackNumber(ItemId),
    /// A transfer to an agent who is not available and idle.
    #[error("agent {0:?} is not free to take a call")]
    AgentNotFree(AgentId),
}
