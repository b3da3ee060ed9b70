//! The agent gateway's backend: the gRPC services of `agent-gateway` reach the ACD
//! driver task through [`AcdRequest::Gateway`], and the ACD driver publishes what
//! happens to agents (offers with their screen pop, answers, hang-ups, wrap-up,
//! status) and the supervisor wallboard (agent and queue views) into the
//! [`EventHub`].
//!
//! Owns: translating between the ACD's numbers and the API's names and ids (a call's
//! id on the wire is its ACD item id), the bookkeeping the ACD core does not keep for
//! us (who rings with what, the last call of an agent in wrap-up, today's counters).
//! Must not own: routing decisions (the core) or sessions (the gateway).

use agent_gateway::proto::agent::{
    self as pb, CallConnected, CallEnded, CallOffered, ScreenPop, StatusChanged, WrapUpEnded,
    WrapUpStarted, agent_event::Kind,
};
use agent_gateway::proto::supervisor::{
    self as sv, AgentView, QueueView, Snapshot, StatusUpdate, WaitingCall,
    status_update::Kind as Update,
};
use agent_gateway::{
    Account, AgentStatus as GwStatus, Backend, BackendError, CallControl, EventHub, Role,
    SupervisorAction,
};
use tokio::sync::oneshot;

use super::*;
use crate::acd::{
    Action as AcdAction, AgentId, AgentState, AgentStatus, Event as AcdEvent, Input as AcdInput,
    ItemId, NoAnswerReason, QueueId, Tier,
};
use crate::time::Clock;

/// Waits within this are "answered in service level" for `service_level_today`.
pub const SERVICE_LEVEL_THRESHOLD: Duration = Duration::from_secs(20);
/// The break reason given to an agent whose desktop lease expired.
pub const DESKTOP_LOST: &str = "desktop-lost";

use super::screen_pop::Pops;
pub use super::screen_pop::{CustomerLookup, DEFAULT_LOOKUP_BOUND, no_customers};

type Reply<T> = oneshot::Sender<Result<T, BackendError>>;

/// What the gateway asks the ACD driver.
pub(crate) enum GatewayRequest {
    Status {
        agent: String,
        reply: Reply<AgentStatus>,
    },
    SetStatus {
        agent: String,
        status: AgentStatus,
        /// Only when the agent is available now (the lease must not end a break).
        only_if_available: bool,
        reply: Reply<()>,
    },
    HangUp {
        agent: String,
        item: ItemId,
        reply: Reply<()>,
    },
    /// Ends wrap-up; answers who the call was with, for the contact history.
    Disposition {
        agent: String,
        item: ItemId,
        code: String,
        /// Only for a campaign call (a callback is booked): refused otherwise, and
        /// wrap-up goes on.
        campaign_only: bool,
        reply: Reply<LastCall>,
    },
    SetQueues {
        agent: String,
        queues: Vec<(String, u32)>,
        reply: Reply<()>,
    },
    Snapshot {
        reply: Reply<Snapshot>,
    },
}

/// A waiting or connected call, as the screen pop and wallboard show it.
struct ItemInfo {
    caller: Option<String>,
    queue: String,
    enqueued_at: std::time::Instant,
    /// For a campaign call: the customer leg's Call-ID, which names its stored
    /// attempt (the agent's disposition is written there too).
    campaign_call: Option<String>,
    /// A voicemail task: work, not a caller on the line. Kept out of the waiting
    /// calls and the day's call counts.
    task: bool,
    /// A preview-mode campaign contact: offered for the agent to dial or skip.
    preview: bool,
}

#[derive(Debug, Default, PartialEq)]
struct QueueDay {
    answered: u32,
    answered_in_time: u32,
    abandoned: u32,
    abandoned_late: u32,
    /// Voicemail tasks agents accepted.
    tasks: u32,
}

/// What a queue's last published view held, to publish only changes: the waiting
/// calls, then agents logged in and available, answered, abandoned, tasks accepted
/// today and tasks waiting.
type QueueKey = (Vec<u64>, [u32; 6]);

/// Who an agent's last call was with (for the disposition's history row).
#[derive(Debug, Clone, Default)]
pub(crate) struct LastCall {
    /// The caller's number as it arrived.
    pub caller: Option<String>,
    /// The customer the call was linked to, if any.
    pub customer: Option<i64>,
    pub queue: Option<String>,
    /// A campaign call's Call-ID (see [`ItemInfo`]).
    pub campaign_call: Option<String>,
}

/// Per-agent bookkeeping beyond the core's.
struct DeskAgent {
    queues: Vec<String>,
    ringing: Option<ItemId>,
    connected: Option<ItemId>,
    /// The last call talked on: the one wrap-up and disposition are about.
    last_call: Option<ItemId>,
    last_with: LastCall,
    disposition: Option<String>,
    seen: Option<(AgentStatus, AgentState)>,
    state_since: std::time::Instant,
}

/// The gateway's side of the ACD driver: the hub, the clock and the bookkeeping.
pub(crate) struct Desk {
    hub: Arc<EventHub>,
    clock: Arc<dyn Clock>,
    /// Screen-pop lookups, started when items enter a queue (see `screen_pop.rs`).
    pub(super) pops: Pops,
    agents: Vec<DeskAgent>,
    queue_names: Vec<String>,
    items: HashMap<ItemId, ItemInfo>,
    /// Today's figures per queue; `today` is the site-local date they are for.
    days: HashMap<String, QueueDay>,
    today: Option<chrono::NaiveDate>,
    zone: chrono_tz::Tz,
    seen_queues: HashMap<String, QueueKey>,
    /// What callers answered in the IVR before they queued, for the screen pop.
    answers: HashMap<ItemId, HashMap<String, String>>,
    /// The agent script (its id) of each queue that has one (`agent-script`).
    agent_scripts: HashMap<String, String>,
}

impl Desk {
    /// `lookup_bound`: how long an offer's desktop event may wait for its screen pop.
    pub(crate) fn new(
        hub: Arc<EventHub>,
        clock: Arc<dyn Clock>,
        lookup: CustomerLookup,
        lookup_bound: Duration,
    ) -> Desk {
        Desk {
            hub,
            clock,
            pops: Pops::new(lookup, lookup_bound),
            agents: Vec::new(),
            queue_names: Vec::new(),
            items: HashMap::new(),
            days: HashMap::new(),
            today: None,
            zone: chrono_tz::Tz::UTC,
            seen_queues: HashMap::new(),
            answers: HashMap::new(),
            agent_scripts: HashMap::new(),
        }
    }

    /// The site's time zone: "today" starts at its midnight.
    pub(crate) fn set_zone(&mut self, zone: chrono_tz::Tz) {
        self.zone = zone;
    }

    fn date_now(&self) -> Option<chrono::NaiveDate> {
        chrono::DateTime::from_timestamp_millis(self.clock.unix_ms())
            .map(|t| t.with_timezone(&self.zone).date_naive())
    }

    /// Today's figures of `queue`, after forgetting yesterday's at midnight.
    fn day(&mut self, queue: String) -> &mut QueueDay {
        let date = self.date_now();
        if self.today != date {
            self.days.clear();
            self.today = date;
        }
        self.days.entry(queue).or_default()
    }

    /// Today's figures of `queue` as last counted; none when they are from an
    /// earlier day (nothing happened in the queue since midnight).
    fn day_figures(&self, queue: &str) -> Option<&QueueDay> {
        (self.today == self.date_now())
            .then(|| self.days.get(queue))
            .flatten()
    }

    /// The agent script id of each queue that has one, for the screen pop.
    pub(super) fn set_agent_scripts(&mut self, scripts: HashMap<String, String>) {
        self.agent_scripts = scripts;
    }

    /// The caller's IVR answers, shown with every offer of this call.
    pub(super) fn ivr_answers(&mut self, item: ItemId, answers: HashMap<String, String>) {
        self.answers.insert(item, answers);
    }

    /// Agents are added in ACD id order (id = index).
    pub(super) fn add_agent(&mut self, now: std::time::Instant, queues: Vec<String>) {
        self.agents.push(DeskAgent {
            queues,
            ringing: None,
            connected: None,
            last_call: None,
            last_with: LastCall::default(),
            disposition: None,
            seen: None,
            state_since: now,
        });
    }

    pub(super) fn set_queues(&mut self, names: impl Iterator<Item = String>) {
        self.queue_names = names.collect();
    }

    pub(super) fn enqueued(
        &mut self,
        now: std::time::Instant,
        item: ItemId,
        caller: Option<String>,
        queue: &str,
    ) {
        self.pops.start(item, caller.as_deref());
        self.items.insert(
            item,
            ItemInfo {
                caller,
                queue: queue.to_string(),
                enqueued_at: now,
                campaign_call: None,
                task: false,
                preview: false,
            },
        );
    }

    /// Marks a waiting item as a voicemail task.
    pub(super) fn task(&mut self, item: ItemId) {
        if let Some(info) = self.items.get_mut(&item) {
            info.task = true;
        }
    }

    /// Marks a waiting item as the campaign call with this Call-ID.
    pub(super) fn campaign_call(&mut self, item: ItemId, call_id: String) {
        if let Some(info) = self.items.get_mut(&item) {
            info.campaign_call = Some(call_id);
        }
    }

    /// Marks a waiting item as a campaign preview.
    pub(super) fn preview(&mut self, item: ItemId) {
        if let Some(info) = self.items.get_mut(&item) {
            info.preview = true;
        }
    }

    fn agent_mut(&mut self, agent: AgentId) -> Option<&mut DeskAgent> {
        self.agents.get_mut(agent.0 as usize)
    }

    /// `agent` is offered `item` (its phone rings).
    pub(super) fn ringing(&mut self, agent: AgentId, item: ItemId) {
        if let Some(a) = self.agent_mut(agent) {
            a.ringing = Some(item);
        }
    }

    /// Whether `agent` is offered `item` or already talking on it.
    pub(super) fn is_on(&self, agent: AgentId, item: ItemId) -> bool {
        self.agents
            .get(agent.0 as usize)
            .is_some_and(|a| a.ringing == Some(item) || a.connected == Some(item))
    }
}

/// What voicemail tasks (`voicemail_work.rs`) need of the desk.
impl AcdDriver {
    /// Offers a task on the agent's desktop, tracked like a ringing call so timeouts
    /// and withdrawals end it the same way; its screen pop is the caller's.
    pub(super) fn desk_offer_task(
        &mut self,
        agent: AgentId,
        item: ItemId,
        caller: &str,
        offer: Kind,
    ) {
        self.offer_with_pop(agent, item, caller, offer);
    }

    /// What `agent`'s desktop shows ringing.
    pub(super) fn desk_ringing(&mut self, agent: AgentId) -> Option<ItemId> {
        self.desk.agent_mut(agent).and_then(|a| a.ringing)
    }
}

fn call_id(item: ItemId) -> String {
    item.0.to_string()
}

fn parse_call(call: &str) -> Result<ItemId, BackendError> {
    call.parse()
        .map(ItemId)
        .map_err(|_| BackendError::NotFound(format!("no call {call:?}")))
}

fn proto_status(s: &AgentStatus) -> (pb::AgentStatus, String) {
    match s {
        AgentStatus::Available => (pb::AgentStatus::Available, String::new()),
        AgentStatus::OnBreak { reason } => (pb::AgentStatus::OnBreak, reason.clone()),
        AgentStatus::LoggedOut => (pb::AgentStatus::LoggedOut, String::new()),
    }
}

fn proto_state(s: AgentState) -> sv::AgentState {
    match s {
        AgentState::Idle => sv::AgentState::Idle,
        AgentState::Resting => sv::AgentState::Resting,
        AgentState::Ringing(_) => sv::AgentState::Ringing,
        AgentState::Reserved(_) => sv::AgentState::Reserved,
        AgentState::OnCall(_) => sv::AgentState::OnCall,
        AgentState::WrapUp => sv::AgentState::WrapUp,
    }
}

impl AcdDriver {
    pub(super) fn agent_id(&self, name: &str) -> Result<AgentId, BackendError> {
        self.agents
            .iter()
            .position(|a| a == name)
            .map(|i| AgentId(i as u64))
            .ok_or_else(|| BackendError::NotFound(format!("no agent {name:?}")))
    }

    pub(super) fn publish(&self, agent: AgentId, kind: Kind) {
        if let Some(name) = self.agents.get(agent.0 as usize) {
            self.desk
                .hub
                .publish_agent(name, self.desk.clock.unix_ms(), kind);
        }
    }

    /// Ends what an agent was ringing with, once.
    fn end_ringing(&mut self, agent: AgentId, item: ItemId, reason: &str) {
        let Some(a) = self.desk.agent_mut(agent) else {
            return;
        };
        if a.ringing != Some(item) {
            return;
        }
        a.ringing = None;
        if self.desk.pops.withdraw(agent, item) {
            return; // the desktop never saw the offer
        }
        self.publish(
            agent,
            Kind::CallEnded(CallEnded {
                call_id: call_id(item),
                reason: reason.into(),
            }),
        );
    }

    pub(super) fn desk_action(&mut self, action: &AcdAction) {
        match action {
            AcdAction::Offer {
                item,
                agent,
                ring_timeout,
            } => {
                let (caller, queue, waited, preview) = match self.desk.items.get(item) {
                    Some(i) => (
                        i.caller.clone().unwrap_or_default(),
                        i.queue.clone(),
                        now().saturating_duration_since(i.enqueued_at),
                        i.preview,
                    ),
                    None => (String::new(), String::new(), Duration::ZERO, false),
                };
                let offer = Kind::CallOffered(CallOffered {
                    call_id: call_id(*item),
                    screen_pop: Some(ScreenPop {
                        caller_number: caller.clone(),
                        customer: None,
                        last_interactions: Vec::new(),
                        ivr_answers: self.desk.answers.get(item).cloned().unwrap_or_default(),
                        script_id: self
                            .desk
                            .agent_scripts
                            .get(&queue)
                            .cloned()
                            .unwrap_or_default(),
                        queue,
                        wait_ms: waited.as_millis() as u64,
                        callback_number: self.features.callback_number(*item),
                    }),
                    ring_timeout_ms: ring_timeout.as_millis() as u64,
                    preview,
                });
                self.offer_with_pop(*agent, *item, &caller, offer);
            }
            AcdAction::CancelOffer { item, agent } => self.end_ringing(*agent, *item, "withdrawn"),
            AcdAction::StartWrapUp { agent, duration } => {
                let last = self.desk.agent_mut(*agent).and_then(|a| a.last_call);
                if let Some(item) = last {
                    self.publish(
                        *agent,
                        Kind::WrapUpStarted(WrapUpStarted {
                            call_id: call_id(item),
                            duration_ms: duration.as_millis() as u64,
                        }),
                    );
                }
            }
            AcdAction::EndWrapUp { agent } => {
                let (last, code) = match self.desk.agent_mut(*agent) {
                    Some(a) => (a.last_call, a.disposition.take()),
                    None => (None, None),
                };
                if let Some(item) = last {
                    self.publish(
                        *agent,
                        Kind::WrapUpEnded(WrapUpEnded {
                            call_id: call_id(item),
                            disposition_code: code.unwrap_or_default(),
                        }),
                    );
                }
            }
            _ => {}
        }
    }

    pub(super) fn desk_event(&mut self, event: &AcdEvent) {
        match event {
            AcdEvent::Answered {
                item,
                agent,
                waited,
            }
            | AcdEvent::CalledBack {
                item,
                agent,
                waited,
            } => {
                let with = LastCall {
                    caller: self.desk.items.get(item).and_then(|i| i.caller.clone()),
                    customer: self.customers.get(item).copied(),
                    queue: self.desk.items.get(item).map(|i| i.queue.clone()),
                    campaign_call: self
                        .desk
                        .items
                        .get(item)
                        .and_then(|i| i.campaign_call.clone()),
                };
                // Answered before its pop was ready (a phone that answers at once):
                // the connection waits behind the offer, and both go out when the
                // lookup ends (within its bound), so the desktop still gets the pop
                // and never hears of a connection before the call.
                let pop_pending = self.desk.pops.has_unshown(*agent, *item);
                if let Some(a) = self.desk.agent_mut(*agent) {
                    a.ringing = None;
                    a.connected = Some(*item);
                    a.last_call = Some(*item);
                    a.last_with = with;
                }
                if let Some(info) = self.desk.items.get(item) {
                    let task = info.task;
                    let day = self.desk.day(info.queue.clone());
                    if task {
                        day.tasks += 1;
                    } else {
                        day.answered += 1;
                        if *waited <= SERVICE_LEVEL_THRESHOLD {
                            day.answered_in_time += 1;
                        }
                    }
                }
                let connected = Kind::CallConnected(CallConnected {
                    call_id: call_id(*item),
                });
                if pop_pending {
                    self.desk.pops.after_offer(*agent, *item, connected);
                } else {
                    self.publish(*agent, connected);
                }
            }
            AcdEvent::NoAnswer {
                item,
                agent,
                reason,
            } => {
                let reason = match reason {
                    NoAnswerReason::Failed => "failed",
                    _ => "not-answered",
                };
                self.end_ringing(*agent, *item, reason);
            }
            AcdEvent::Abandoned { item, waited, .. } => {
                for i in 0..self.desk.agents.len() {
                    self.end_ringing(AgentId(i as u64), *item, "withdrawn");
                }
                if let Some(q) = self
                    .desk
                    .items
                    .get(item)
                    .filter(|i| !i.task)
                    .map(|i| i.queue.clone())
                {
                    let day = self.desk.day(q);
                    day.abandoned += 1;
                    if *waited > SERVICE_LEVEL_THRESHOLD {
                        day.abandoned_late += 1;
                    }
                }
            }
            _ => {}
        }
    }

    /// Which agent script and customer `agent`'s call `item` has: the call they talk
    /// on or wrap up.
    pub(super) fn desk_script_call(
        &self,
        agent: &str,
        item: ItemId,
    ) -> Result<super::agent_script::ScriptCall, BackendError> {
        let id = self.agent_id(agent)?;
        let a = &self.desk.agents[id.0 as usize];
        if a.last_call != Some(item) {
            return Err(BackendError::FailedPrecondition(format!(
                "{agent} has not talked on call {}",
                item.0
            )));
        }
        let queue = a.last_with.queue.clone();
        let script = queue
            .as_ref()
            .and_then(|q| self.desk.agent_scripts.get(q))
            .cloned()
            .ok_or_else(|| {
                BackendError::FailedPrecondition(format!(
                    "queue {:?} has no agent script (agent-script in its [[queue]])",
                    queue.clone().unwrap_or_default()
                ))
            })?;
        Ok(super::agent_script::ScriptCall {
            script,
            caller: a.last_with.caller.clone(),
            customer: a.last_with.customer,
            queue,
        })
    }

    /// The queue a call waited in or was answered from.
    pub(super) fn desk_queue(&self, item: ItemId) -> String {
        self.desk
            .items
            .get(&item)
            .map(|i| i.queue.clone())
            .unwrap_or_default()
    }

    /// A connected call was transferred to `queue`: its agent is done with it (the
    /// call stays theirs through wrap-up), and it waits again. The caller's number.
    pub(super) fn desk_transferred(
        &mut self,
        agent: AgentId,
        item: ItemId,
        queue: &str,
    ) -> Option<String> {
        if let Some(a) = self.desk.agent_mut(agent) {
            a.connected = None;
        }
        self.flush_unshown(agent, item);
        self.publish(
            agent,
            Kind::CallEnded(CallEnded {
                call_id: call_id(item),
                reason: "transferred".into(),
            }),
        );
        let info = self.desk.items.get_mut(&item)?;
        info.queue = queue.to_string();
        info.enqueued_at = now();
        info.caller.clone()
    }

    /// What the desktop has not been shown yet about a call that ends before its pop
    /// lookup did (the offer, the connection): out now, without the pop, so the end
    /// is never news of a call.
    fn flush_unshown(&mut self, agent: AgentId, item: ItemId) {
        for event in self.desk.pops.take_all_unshown(agent, item) {
            self.publish(agent, event);
        }
    }

    /// A connected call hung up (either side): tell its agent.
    pub(super) fn desk_item_ended(&mut self, item: ItemId) {
        for i in 0..self.desk.agents.len() {
            if self.desk.agents[i].connected == Some(item) {
                self.desk.agents[i].connected = None;
                self.flush_unshown(AgentId(i as u64), item);
                self.publish(
                    AgentId(i as u64),
                    Kind::CallEnded(CallEnded {
                        call_id: call_id(item),
                        reason: "hung-up".into(),
                    }),
                );
            }
            self.end_ringing(AgentId(i as u64), item, "withdrawn");
        }
        self.desk.items.remove(&item);
        self.desk.answers.remove(&item);
        self.desk.pops.forget(item);
    }

    fn agent_view(&self, i: usize, now: std::time::Instant) -> Option<AgentView> {
        let id = AgentId(i as u64);
        let status = self.acd.agent_status(id)?;
        let state = self.acd.agent_state(id)?;
        let a = &self.desk.agents[i];
        let (status, break_reason) = proto_status(status);
        let current = match state {
            AgentState::Ringing(item) | AgentState::OnCall(item) | AgentState::Reserved(item) => {
                Some(item)
            }
            AgentState::WrapUp => a.last_call,
            _ => None,
        };
        Some(AgentView {
            agent_id: self.agents[i].clone(),
            status: status.into(),
            break_reason,
            state: proto_state(state).into(),
            current_call_id: current.map(call_id).unwrap_or_default(),
            time_in_state_ms: now.saturating_duration_since(a.state_since).as_millis() as u64,
            queues: a.queues.clone(),
        })
    }

    fn queue_view(&self, name: &str, now: std::time::Instant) -> Option<QueueView> {
        let id = *self.queues.get(name)?;
        let stats = self.acd.queue_stats(now, id)?;
        let (tasks, mut waiting): (Vec<(&ItemId, &ItemInfo)>, Vec<_>) = self
            .desk
            .items
            .iter()
            .filter(|(item, info)| info.queue == name && self.acd.position(**item).is_some())
            .partition(|(_, info)| info.task);
        waiting.sort_by_key(|(item, info)| (info.enqueued_at, item.0));
        let day = self.desk.day_figures(name);
        let (answered, in_time, abandoned, late, tasks_today) = day.map_or((0, 0, 0, 0, 0), |d| {
            (
                d.answered,
                d.answered_in_time,
                d.abandoned,
                d.abandoned_late,
                d.tasks,
            )
        });
        let counted = answered + late;
        Some(QueueView {
            name: name.to_string(),
            waiting: waiting
                .iter()
                .map(|(item, info)| WaitingCall {
                    call_id: call_id(**item),
                    caller_number: info.caller.clone().unwrap_or_default(),
                    wait_ms: now.saturating_duration_since(info.enqueued_at).as_millis() as u64,
                })
                .collect(),
            // The oldest caller's wait: a voicemail task may wait for hours and
            // would hide how long callers on the line are waiting.
            longest_wait_ms: waiting.first().map_or(0, |(_, info)| {
                now.saturating_duration_since(info.enqueued_at).as_millis() as u64
            }),
            agents_logged_in: stats.logged_in as u32,
            agents_available: stats.available as u32,
            service_level_today: if counted == 0 {
                1.0
            } else {
                f64::from(in_time) / f64::from(counted)
            },
            answered_today: answered,
            abandoned_today: abandoned,
            voicemail_tasks_waiting: tasks.len() as u32,
            voicemail_tasks_today: tasks_today,
        })
    }

    /// After each batch of actions and events: status changes to the agents, changed
    /// agents and queues to the supervisors. One pass over agents and queues per ACD
    /// input; with thousands of agents this wants the core to report who changed.
    pub(super) fn desk_publish_changes(&mut self) {
        let now = now();
        let at = self.desk.clock.unix_ms();
        for i in 0..self.agents.len() {
            let id = AgentId(i as u64);
            let (Some(status), Some(state)) =
                (self.acd.agent_status(id).cloned(), self.acd.agent_state(id))
            else {
                continue;
            };
            let seen = self.desk.agents[i].seen.clone();
            if seen.as_ref() == Some(&(status.clone(), state)) {
                continue;
            }
            if seen.as_ref().map(|s| &s.1) != Some(&state) {
                self.desk.agents[i].state_since = now;
            }
            let status_changed = seen.as_ref().map(|s| &s.0) != Some(&status);
            self.desk.agents[i].seen = Some((status.clone(), state));
            if status_changed && seen.is_some() {
                let (s, reason) = proto_status(&status);
                self.publish(
                    id,
                    Kind::StatusChanged(StatusChanged {
                        status: s.into(),
                        break_reason: reason,
                    }),
                );
            }
            if let Some(view) = self.agent_view(i, now) {
                self.desk.hub.publish_supervisor(StatusUpdate {
                    at_unix_ms: at,
                    kind: Some(Update::Agent(view)),
                });
            }
        }
        for name in self.desk.queue_names.clone() {
            let Some(view) = self.queue_view(&name, now) else {
                continue;
            };
            let key = (
                view.waiting
                    .iter()
                    .filter_map(|w| w.call_id.parse().ok())
                    .collect(),
                [
                    view.agents_logged_in,
                    view.agents_available,
                    view.answered_today,
                    view.abandoned_today,
                    view.voicemail_tasks_today,
                    view.voicemail_tasks_waiting,
                ],
            );
            if self.desk.seen_queues.get(&name) == Some(&key) {
                continue;
            }
            self.desk.seen_queues.insert(name, key);
            self.desk.hub.publish_supervisor(StatusUpdate {
                at_unix_ms: at,
                kind: Some(Update::Queue(view)),
            });
        }
    }

    fn set_status(&mut self, id: AgentId, status: AgentStatus) {
        match status {
            AgentStatus::LoggedOut => self.input(AcdInput::Logout(id)),
            other => {
                if self.acd.agent_status(id) == Some(&AgentStatus::LoggedOut) {
                    self.input(AcdInput::Login(id));
                }
                self.input(AcdInput::SetStatus(id, other));
            }
        }
    }

    pub(super) fn handle_gateway(&mut self, request: GatewayRequest) {
        match request {
            GatewayRequest::Status { agent, reply } => {
                let r = self.agent_id(&agent).and_then(|id| {
                    self.acd
                        .agent_status(id)
                        .cloned()
                        .ok_or_else(|| BackendError::NotFound(format!("no agent {agent:?}")))
                });
                let _ = reply.send(r);
            }
            GatewayRequest::SetStatus {
                agent,
                status,
                only_if_available,
                reply,
            } => {
                let r = self.agent_id(&agent).map(|id| {
                    if !only_if_available
                        || self.acd.agent_status(id) == Some(&AgentStatus::Available)
                    {
                        tracing::info!(%agent, ?status, "agent status (gateway)");
                        self.set_status(id, status);
                    }
                });
                let _ = reply.send(r);
            }
            GatewayRequest::HangUp { agent, item, reply } => {
                let r = self
                    .agent_id(&agent)
                    .and_then(|id| match self.acd.agent_state(id) {
                        Some(AgentState::OnCall(i)) if i == item && self.items.contains_key(&i) => {
                            self.tell(item, QueueCommand::HangUp);
                            Ok(())
                        }
                        _ => Err(BackendError::FailedPrecondition(format!(
                            "call {} is not connected to {agent}",
                            item.0
                        ))),
                    });
                let _ = reply.send(r);
            }
            GatewayRequest::Disposition {
                agent,
                item,
                code,
                campaign_only,
                reply,
            } => {
                let r = self.agent_id(&agent).and_then(|id| {
                    let a = &self.desk.agents[id.0 as usize];
                    if self.acd.agent_state(id) != Some(AgentState::WrapUp)
                        || a.last_call != Some(item)
                    {
                        return Err(BackendError::FailedPrecondition(format!(
                            "{agent} is not wrapping up call {}",
                            item.0
                        )));
                    }
                    if campaign_only && a.last_with.campaign_call.is_none() {
                        return Err(BackendError::FailedPrecondition(format!(
                            "call {} is not a campaign call: only campaign calls take a \
                             scheduled callback",
                            item.0
                        )));
                    }
                    let with = a.last_with.clone();
                    self.desk.agents[id.0 as usize].disposition = Some(code.clone());
                    self.acd
                        .handle_input(now(), AcdInput::WrapUpDone(id, Some(code)))
                        .map_err(|e| BackendError::FailedPrecondition(e.to_string()))
                        .map(|()| with)
                });
                let _ = reply.send(r);
            }
            GatewayRequest::SetQueues {
                agent,
                queues,
                reply,
            } => {
                let r = self.agent_id(&agent).and_then(|id| {
                    let mut tiers = Vec::new();
                    for (pos, (q, level)) in queues.iter().enumerate() {
                        let queue: QueueId = *self
                            .queues
                            .get(q)
                            .ok_or_else(|| BackendError::NotFound(format!("no queue {q:?}")))?;
                        let level = u8::try_from(*level).map_err(|_| {
                            BackendError::InvalidArgument(format!(
                                "queue {q:?}: tier level {level} is too large"
                            ))
                        })?;
                        tiers.push(Tier {
                            queue,
                            level,
                            position: pos as u32,
                        });
                    }
                    self.acd
                        .set_tiers(now(), id, &tiers)
                        .map_err(|e| BackendError::InvalidArgument(e.to_string()))?;
                    self.desk.agents[id.0 as usize].queues =
                        queues.iter().map(|(q, _)| q.clone()).collect();
                    // The view changed though status and state did not.
                    self.desk.agents[id.0 as usize].seen = None;
                    Ok(())
                });
                let _ = reply.send(r);
            }
            GatewayRequest::Snapshot { reply } => {
                let now = now();
                let snapshot = Snapshot {
                    agents: (0..self.agents.len())
                        .filter_map(|i| self.agent_view(i, now))
                        .collect(),
                    queues: self
                        .desk
                        .queue_names
                        .iter()
                        .filter_map(|q| self.queue_view(q, now))
                        .collect(),
                };
                let _ = reply.send(Ok(snapshot));
            }
        }
    }
}

/// [`Backend`] over the ACD driver task.
pub struct ServerBackend {
    acd: mpsc::UnboundedSender<AcdRequest>,
    /// Dispositions land in the contact history.
    store: Store,
    plan: crate::phone::DialPlan,
    accounts: HashMap<(Role, String), Account>,
    clock: Arc<dyn Clock>,
    /// The configured campaigns, for the supervisor's list and commands.
    campaigns: Vec<crate::campaigns::settings::Campaign>,
    /// The drivers' live campaign figures (agents, dial ratio).
    campaign_board: Arc<super::campaign_board::CampaignBoard>,
    /// Agent-guided scripts (see `agent_script.rs`); none without a script library.
    scripts: Option<Arc<super::agent_script::AgentScripts>>,
    /// Agents' voicemail (see `voicemail_work.rs`); none: UNIMPLEMENTED.
    voicemail: Option<super::voicemail_work::AgentVoicemail>,
}

impl ServerBackend {
    pub(super) fn new(
        config: &Config,
        acd: mpsc::UnboundedSender<AcdRequest>,
        clock: Arc<dyn Clock>,
        store: Store,
        campaign_board: Arc<super::campaign_board::CampaignBoard>,
    ) -> ServerBackend {
        let mut accounts = HashMap::new();
        for a in &config.agents {
            if let Some(h) = &a.password_hash {
                let login = a.name.get_ref().clone();
                accounts.insert(
                    (Role::Agent, login.clone()),
                    Account {
                        login,
                        role: Role::Agent,
                        password_hash: h.get_ref().clone(),
                    },
                );
            }
        }
        for s in &config.supervisors {
            let login = s.name.get_ref().clone();
            accounts.insert(
                (Role::Supervisor, login.clone()),
                Account {
                    login,
                    role: Role::Supervisor,
                    password_hash: s.password_hash.get_ref().clone(),
                },
            );
        }
        ServerBackend {
            acd,
            accounts,
            clock,
            store,
            scripts: None,
            // Checked at start-up (`App::build`): a bad plan never gets this far.
            plan: config.customers.dial_plan().unwrap_or_default(),
            // Checked at load, like the plan.
            campaigns: config.checked_campaigns().unwrap_or_default(),
            campaign_board,
            voicemail: None,
        }
    }

    /// Serves agents' voicemail requests with this.
    pub(super) fn with_voicemail(
        mut self,
        voicemail: super::voicemail_work::AgentVoicemail,
    ) -> ServerBackend {
        self.voicemail = Some(voicemail);
        self
    }

    fn agent_voicemail(&self) -> Result<&super::voicemail_work::AgentVoicemail, BackendError> {
        self.voicemail
            .as_ref()
            .ok_or_else(|| BackendError::Unimplemented("no voicemail on this server".into()))
    }

    /// Runs agent-guided scripts from `library`, with the server's script actions.
    pub(super) fn with_agent_scripts(
        mut self,
        library: Arc<Library>,
        actions: crate::script_actions::ScriptActions,
    ) -> ServerBackend {
        self.scripts = Some(Arc::new(super::agent_script::AgentScripts::new(
            library,
            actions,
            self.store.clone(),
            self.plan.clone(),
            self.clock.clone(),
        )));
        self
    }

    /// Records a disposition (and a booked callback, for a campaign call): ends
    /// wrap-up, then writes the contact history and the campaign attempt.
    async fn dispose(
        &self,
        agent: &str,
        call: &str,
        code: &str,
        notes: &str,
        callback_at_ms: Option<i64>,
    ) -> Result<(), BackendError> {
        let item = parse_call(call)?;
        tracing::info!(%agent, call = item.0, %code, notes_len = notes.len(), ?callback_at_ms, "disposition");
        // A callback is only for a campaign call, which is never a voicemail task.
        let task = match callback_at_ms {
            None => super::voicemail_work::finish(&self.acd, agent, item, code).await?,
            Some(_) => None,
        };
        let with = match &task {
            Some((with, _)) => with.clone(),
            None => {
                let (agent, code) = (agent.to_string(), code.to_string());
                self.ask(|reply| GatewayRequest::Disposition {
                    agent,
                    item,
                    code,
                    campaign_only: callback_at_ms.is_some(),
                    reply,
                })
                .await?
            }
        };

        // Wrap-up has ended either way; a history write that fails is logged, not
        // turned into an error the agent would retry against a finished wrap-up.
        let phone = with.caller.as_deref().map(|c| {
            crate::phone::normalise(c, &self.plan)
                .map_or_else(|_| c.to_string(), |e| e.into_string())
        });
        let mut contact = crate::store::Contact {
            customer_id: with.customer,
            phone,
            kind: crate::store::ContactKind::Disposition,
            direction: None,
            started_at_ms: self.clock.unix_ms(),
            ended_at_ms: None,
            queue: with.queue,
            agent: Some(agent.to_string()),
            outcome: Some(code.to_string()),
            call_id: Some(call.to_string()),
            details: serde_json::json!({ "notes": notes }),
        };
        if let Some((_, message)) = &task {
            contact.details["voicemail"] = message.clone().into();
        }
        if let Some(at) = callback_at_ms {
            // The booking, as the customer's history (and the next screen pop) shows it.
            contact.details["callback_at_ms"] = at.into();
        }
        if let Err(e) = self.store.add_history(&contact).await {
            tracing::warn!(error = %e, call, "disposition not saved to the contact history");
        }
        if let Some(call_id) = with.campaign_call.clone() {
            super::campaign::record_disposition(
                self.store.clone(),
                call_id,
                code.to_string(),
                callback_at_ms,
            );
        }
        if let Some(scripts) = &self.scripts {
            scripts.forget(agent, item.0);
        }
        if let Some((_, message)) = task {
            let handling = crate::store::VoicemailHandling {
                agent: agent.to_string(),
                at_ms: contact.started_at_ms,
                outcome: code.to_string(),
            };
            super::voicemail_work::mark_handled(&self.store, &message, handling).await;
        }
        Ok(())
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> GatewayRequest,
    ) -> Result<T, BackendError> {
        let (tx, rx) = oneshot::channel();
        self.acd
            .send(AcdRequest::Gateway(make(tx)))
            .map_err(|_| BackendError::Unavailable("the ACD is stopping".into()))?;
        rx.await
            .map_err(|_| BackendError::Unavailable("the ACD is stopping".into()))?
    }

    async fn set(
        &self,
        agent: &str,
        status: AgentStatus,
        only_if_available: bool,
    ) -> Result<(), BackendError> {
        let agent = agent.to_string();
        self.ask(|reply| GatewayRequest::SetStatus {
            agent,
            status,
            only_if_available,
            reply,
        })
        .await
    }
}

fn acd_status(s: GwStatus) -> AgentStatus {
    match s {
        GwStatus::Available => AgentStatus::Available,
        GwStatus::OnBreak { reason } => AgentStatus::OnBreak { reason },
        GwStatus::LoggedOut => AgentStatus::LoggedOut,
    }
}

impl Backend for ServerBackend {
    fn account(&self, role: Role, login: &str) -> Option<Account> {
        self.accounts.get(&(role, login.to_string())).cloned()
    }

    fn unix_ms(&self) -> i64 {
        self.clock.unix_ms()
    }

    async fn status(&self, agent: &str) -> Result<GwStatus, BackendError> {
        let agent = agent.to_string();
        let s = self
            .ask(|reply| GatewayRequest::Status { agent, reply })
            .await?;
        Ok(match s {
            AgentStatus::Available => GwStatus::Available,
            AgentStatus::OnBreak { reason } => GwStatus::OnBreak { reason },
            AgentStatus::LoggedOut => GwStatus::LoggedOut,
        })
    }

    async fn set_status(&self, agent: &str, status: GwStatus) -> Result<(), BackendError> {
        self.set(agent, acd_status(status), false).await
    }

    async fn agent_unreachable(&self, agent: &str) {
        let lost = AgentStatus::OnBreak {
            reason: DESKTOP_LOST.into(),
        };
        if let Err(e) = self.set(agent, lost, true).await {
            tracing::warn!(%agent, error = %e, "could not make the agent unavailable");
        }
    }

    async fn call_control(
        &self,
        agent: &str,
        call: &str,
        control: CallControl,
    ) -> Result<(), BackendError> {
        let item = parse_call(call)?;
        let agent = agent.to_string();
        match control {
            CallControl::HangUp => {
                self.ask(|reply| GatewayRequest::HangUp { agent, item, reply })
                    .await
            }
            other => super::call_control::control(&self.acd, &agent, item, other).await,
        }
    }

    async fn disposition(
        &self,
        agent: &str,
        call: &str,
        code: &str,
        notes: &str,
    ) -> Result<(), BackendError> {
        self.dispose(agent, call, code, notes, None).await
    }

    async fn disposition_with_callback(
        &self,
        agent: &str,
        call: &str,
        code: &str,
        notes: &str,
        callback_at_unix_ms: i64,
    ) -> Result<(), BackendError> {
        self.dispose(agent, call, code, notes, Some(callback_at_unix_ms))
            .await
    }

    async fn preview(&self, agent: &str, call: &str, dial: bool) -> Result<(), BackendError> {
        let item = parse_call(call)?;
        let (reply, rx) = oneshot::channel();
        self.acd
            .send(AcdRequest::Preview {
                agent: agent.to_string(),
                item,
                dial,
                reply,
            })
            .map_err(|_| BackendError::Unavailable("the ACD is stopping".into()))?;
        rx.await
            .map_err(|_| BackendError::Unavailable("the ACD is stopping".into()))?
    }

    async fn report(
        &self,
        request: agent_gateway::proto::supervisor::ReportRequest,
    ) -> Result<agent_gateway::proto::supervisor::ReportResponse, BackendError> {
        super::supervision::report(&self.store, &self.campaigns, request).await
    }

    async fn campaigns(
        &self,
    ) -> Result<Vec<agent_gateway::proto::supervisor::CampaignView>, BackendError> {
        super::supervision::campaigns(&self.store, &self.campaigns, &self.campaign_board).await
    }

    async fn set_campaign_state(
        &self,
        supervisor: &str,
        campaign: &str,
        command: agent_gateway::proto::supervisor::CampaignCommand,
    ) -> Result<(), BackendError> {
        tracing::info!(%supervisor, %campaign, ?command, "campaign command");
        super::supervision::set_campaign_state(
            &self.store,
            &self.campaigns,
            self.clock.unix_ms(),
            campaign,
            command,
        )
        .await
    }

    async fn script_step(
        &self,
        agent: &str,
        call: &str,
        answer: Option<String>,
    ) -> Result<pb::ScriptStepResponse, BackendError> {
        let item = parse_call(call)?;
        let Some(scripts) = &self.scripts else {
            return Err(BackendError::Unimplemented(
                "agent scripts are not available on this server".into(),
            ));
        };
        scripts.step(&self.acd, agent, item.0, answer).await
    }

    async fn accept_task(&self, agent: &str, task: &str) -> Result<(), BackendError> {
        super::voicemail_work::accept(&self.acd, agent, parse_call(task)?).await
    }

    async fn list_voicemail(&self, agent: &str) -> Result<Vec<pb::VoicemailMessage>, BackendError> {
        self.agent_voicemail()?.list(agent).await
    }

    async fn voicemail_audio(&self, agent: &str, message: &str) -> Result<Vec<u8>, BackendError> {
        self.agent_voicemail()?.audio(agent, message).await
    }

    async fn mark_voicemail_heard(&self, agent: &str, message: &str) -> Result<(), BackendError> {
        self.agent_voicemail()?.mark_heard(agent, message).await
    }

    async fn delete_voicemail(&self, agent: &str, message: &str) -> Result<(), BackendError> {
        self.agent_voicemail()?.delete(agent, message).await
    }

    async fn snapshot(&self) -> Result<Snapshot, BackendError> {
        self.ask(|reply| GatewayRequest::Snapshot { reply }).await
    }

    async fn supervise(
        &self,
        supervisor: &str,
        agent: &str,
        action: SupervisorAction,
    ) -> Result<(), BackendError> {
        tracing::info!(%supervisor, %agent, ?action, "supervisor action");
        match action {
            SupervisorAction::ForceBreak { reason } => {
                self.set(agent, AgentStatus::OnBreak { reason }, false)
                    .await
            }
            SupervisorAction::ForceLogout => self.set(agent, AgentStatus::LoggedOut, false).await,
            SupervisorAction::SetQueues(queues) => {
                let agent = agent.to_string();
                self.ask(|reply| GatewayRequest::SetQueues {
                    agent,
                    queues,
                    reply,
                })
                .await
            }
            SupervisorAction::SetSkills(skills) => {
                super::call_control::set_skills(&self.acd, agent, skills).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    struct TestClock(AtomicI64);

    impl Clock for TestClock {
        fn unix_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// 2026-03-10T23:30:00Z: 23:30 in London (GMT), 19:30 in New York (EDT).
    const LATE_MS: i64 = 1_773_185_400_000;
    const HOUR_MS: i64 = 3_600_000;

    fn desk(zone: chrono_tz::Tz) -> (Desk, Arc<TestClock>) {
        let clock = Arc::new(TestClock(AtomicI64::new(LATE_MS)));
        let mut desk = Desk::new(
            Arc::new(agent_gateway::EventHub::default()),
            clock.clone(),
            no_customers(),
            DEFAULT_LOOKUP_BOUND,
        );
        desk.set_zone(zone);
        (desk, clock)
    }

    #[test]
    fn todays_figures_start_again_at_the_sites_midnight() {
        let (mut desk, clock) = desk(chrono_tz::Europe::London);
        desk.day("support".into()).answered += 3;
        assert_eq!(desk.day_figures("support").map(|d| d.answered), Some(3));
        // 00:30 the next day in London: yesterday's calls are not today's.
        clock.0.fetch_add(HOUR_MS, Ordering::SeqCst);
        assert_eq!(desk.day_figures("support"), None, "nothing since midnight");
        desk.day("support".into()).abandoned += 1;
        let today = desk.day_figures("support").unwrap();
        assert_eq!((today.answered, today.abandoned), (0, 1));
    }

    #[test]
    fn midnight_is_the_sites_not_utcs() {
        let (mut desk, clock) = desk(chrono_tz::America::New_York);
        desk.day("support".into()).answered += 2;
        // 00:30 UTC is still 20:30 the same evening in New York.
        clock.0.fetch_add(HOUR_MS, Ordering::SeqCst);
        desk.day("support".into()).answered += 1;
        assert_eq!(desk.day_figures("support").map(|d| d.answered), Some(3));
    }
}
