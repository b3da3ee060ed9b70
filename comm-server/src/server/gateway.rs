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

use std::future::Future;
use std::pin::Pin;

use agent_gateway::proto::agent::{
    self as pb, CallConnected, CallEnded, CallOffered, Customer, Interaction, ScreenPop,
    StatusChanged, WrapUpEnded, WrapUpStarted, agent_event::Kind,
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
/// Longest a customer lookup may hold up an offer's screen pop.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);
/// The break reason given to an agent whose desktop lease expired.
pub const DESKTOP_LOST: &str = "desktop-lost";

/// The customer record and recent history for a caller's number, for the screen
/// pop. The server's default finds nothing; the customer store plugs in here.
pub type CustomerLookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = (Option<Customer>, Vec<Interaction>)> + Send>>
        + Send
        + Sync,
>;

/// A lookup that never finds anyone.
pub fn no_customers() -> CustomerLookup {
    Arc::new(|_| Box::pin(async { (None, Vec::new()) }))
}

/// The server's lookup: the caller's number normalised with the `[customers]` dial
/// plan, then the customer store's record and the last `limit` contacts (the number's
/// own history when nobody owns it). A number that does not normalise, or a store
/// error, finds nobody: the offer goes out without a record rather than late.
pub fn store_lookup(store: Store, plan: crate::phone::DialPlan, limit: u32) -> CustomerLookup {
    Arc::new(move |caller: String| {
        let store = store.clone();
        let plan = plan.clone();
        Box::pin(async move {
            let Ok(e164) = crate::phone::normalise(&caller, &plan) else {
                return (None, Vec::new());
            };
            match store.screen_pop_data(e164.as_str(), limit).await {
                Ok(pop) => (
                    pop.customer.map(customer_card),
                    pop.history.into_iter().map(interaction).collect(),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "screen pop lookup failed");
                    (None, Vec::new())
                }
            }
        })
    })
}

fn customer_card(c: crate::store::Customer) -> Customer {
    let attributes = c
        .attributes
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    Customer {
        id: c.id.to_string(),
        name: c.name,
        phone_numbers: c.phones,
        account: c.account.unwrap_or_default(),
        attributes,
    }
}

fn interaction(h: crate::store::HistoryEntry) -> Interaction {
    let c = h.contact;
    let notes = c
        .details
        .get("notes")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    Interaction {
        id: h.id.to_string(),
        channel: c.kind.as_str().to_string(),
        at_unix_ms: c.started_at_ms,
        agent_id: c.agent.unwrap_or_default(),
        disposition: c.outcome.unwrap_or_default(),
        notes,
    }
}

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
}

#[derive(Debug, Default, PartialEq)]
struct QueueDay {
    answered: u32,
    answered_in_time: u32,
    abandoned: u32,
    abandoned_late: u32,
}

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
    lookup: CustomerLookup,
    agents: Vec<DeskAgent>,
    queue_names: Vec<String>,
    items: HashMap<ItemId, ItemInfo>,
    /// Today's figures per queue; `today` is the site-local date they are for.
    days: HashMap<String, QueueDay>,
    today: Option<chrono::NaiveDate>,
    zone: chrono_tz::Tz,
    seen_queues: HashMap<String, (Vec<u64>, u32, u32, u32, u32)>,
    /// What callers answered in the IVR before they queued, for the screen pop.
    answers: HashMap<ItemId, HashMap<String, String>>,
    /// The agent script (its id) of each queue that has one (`agent-script`).
    agent_scripts: HashMap<String, String>,
}

impl Desk {
    pub(crate) fn new(hub: Arc<EventHub>, clock: Arc<dyn Clock>, lookup: CustomerLookup) -> Desk {
        Desk {
            hub,
            clock,
            lookup,
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
        self.items.insert(
            item,
            ItemInfo {
                caller,
                queue: queue.to_string(),
                enqueued_at: now,
                campaign_call: None,
            },
        );
    }

    /// Marks a waiting item as the campaign call with this Call-ID.
    pub(super) fn campaign_call(&mut self, item: ItemId, call_id: String) {
        if let Some(info) = self.items.get_mut(&item) {
            info.campaign_call = Some(call_id);
        }
    }

    fn agent_mut(&mut self, agent: AgentId) -> Option<&mut DeskAgent> {
        self.agents.get_mut(agent.0 as usize)
    }
}

/// What voicemail tasks (`voicemail_work.rs`) need of the desk.
impl AcdDriver {
    /// The screen pop's customer lookup.
    pub(super) fn desk_lookup(&self) -> CustomerLookup {
        self.desk.lookup.clone()
    }

    /// Offers a task on the agent's desktop, tracked like a ringing call so timeouts
    /// and withdrawals end it the same way.
    pub(super) fn desk_offer_task(&mut self, agent: AgentId, item: ItemId, offer: Kind) {
        if let Some(a) = self.desk.agent_mut(agent) {
            a.ringing = Some(item);
        }
        self.publish(agent, offer);
    }

    /// What `agent`'s desktop shows ringing.
    pub(super) fn desk_ringing(&mut self, agent: AgentId) -> Option<ItemId> {
        self.desk.agent_mut(agent).and_then(|a| a.ringing)
    }

    /// Shows a task on the desktop of an agent it is already connected to (a
    /// persistent line: nothing rings, CallConnected follows).
    pub(super) fn desk_task_connected(&mut self, agent: AgentId, task: Kind) {
        self.publish(agent, task);
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
    fn agent_id(&self, name: &str) -> Result<AgentId, BackendError> {
        self.agents
            .iter()
            .position(|a| a == name)
            .map(|i| AgentId(i as u64))
            .ok_or_else(|| BackendError::NotFound(format!("no agent {name:?}")))
    }

    fn publish(&self, agent: AgentId, kind: Kind) {
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
        self.publish(
            agent,
            Kind::CallEnded(CallEnded {
                call_id: call_id(item),
                reason: reason.into(),
            }),
        );
    }

    pub(super) async fn desk_action(&mut self, action: &AcdAction) {
        match action {
            AcdAction::Offer {
                item,
                agent,
                ring_timeout,
            } => {
                let (caller, queue, waited) = match self.desk.items.get(item) {
                    Some(i) => (
                        i.caller.clone().unwrap_or_default(),
                        i.queue.clone(),
                        now().saturating_duration_since(i.enqueued_at),
                    ),
                    None => (String::new(), String::new(), Duration::ZERO),
                };
                let (customer, last_interactions) = if caller.is_empty() {
                    (None, Vec::new())
                } else {
                    tokio::time::timeout(LOOKUP_TIMEOUT, (self.desk.lookup)(caller.clone()))
                        .await
                        .unwrap_or_default()
                };
                if let Some(a) = self.desk.agent_mut(*agent) {
                    a.ringing = Some(*item);
                }
                self.publish(
                    *agent,
                    Kind::CallOffered(CallOffered {
                        call_id: call_id(*item),
                        screen_pop: Some(ScreenPop {
                            caller_number: caller,
                            customer,
                            last_interactions,
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
                    }),
                );
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
                if let Some(a) = self.desk.agent_mut(*agent) {
                    a.ringing = None;
                    a.connected = Some(*item);
                    a.last_call = Some(*item);
                    a.last_with = with;
                }
                if let Some(q) = self.desk.items.get(item).map(|i| i.queue.clone()) {
                    let day = self.desk.day(q);
                    day.answered += 1;
                    if *waited <= SERVICE_LEVEL_THRESHOLD {
                        day.answered_in_time += 1;
                    }
                }
                self.publish(
                    *agent,
                    Kind::CallConnected(CallConnected {
                        call_id: call_id(*item),
                    }),
                );
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
                if let Some(q) = self.desk.items.get(item).map(|i| i.queue.clone()) {
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

    /// A connected call hung up (either side): tell its agent.
    pub(super) fn desk_item_ended(&mut self, item: ItemId) {
        for i in 0..self.desk.agents.len() {
            if self.desk.agents[i].connected == Some(item) {
                self.desk.agents[i].connected = None;
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
        let mut waiting: Vec<(&ItemId, &ItemInfo)> = self
            .desk
            .items
            .iter()
            .filter(|(item, info)| info.queue == name && self.acd.position(**item).is_some())
            .collect();
        waiting.sort_by_key(|(item, info)| (info.enqueued_at, item.0));
        let day = self.desk.day_figures(name);
        let (answered, in_time, abandoned, late) = day.map_or((0, 0, 0, 0), |d| {
            (
                d.answered,
                d.answered_in_time,
                d.abandoned,
                d.abandoned_late,
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
            longest_wait_ms: stats.longest_wait.as_millis() as u64,
            agents_logged_in: stats.logged_in as u32,
            agents_available: stats.available as u32,
            service_level_today: if counted == 0 {
                1.0
            } else {
                f64::from(in_time) / f64::from(counted)
            },
            answered_today: answered,
            abandoned_today: abandoned,
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
                view.agents_logged_in,
                view.agents_available,
                view.answered_today,
                view.abandoned_today,
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
        let item = parse_call(call)?;
        tracing::info!(%agent, call = item.0, %code, notes_len = notes.len(), "disposition");
        let task = super::voicemail_work::finish(&self.acd, agent, item, code).await?;
        let with = match &task {
            Some((with, _)) => with.clone(),
            None => {
                let (agent, code) = (agent.to_string(), code.to_string());
                self.ask(|reply| GatewayRequest::Disposition {
                    agent,
                    item,
                    code,
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
        if let Err(e) = self.store.add_history(&contact).await {
            tracing::warn!(error = %e, call, "disposition not saved to the contact history");
        }
        if let Some(call_id) = with.campaign_call.clone() {
            super::campaign::record_disposition(self.store.clone(), call_id, code.to_string());
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

    async fn report(
        &self,
        request: agent_gateway::proto::supervisor::ReportRequest,
    ) -> Result<agent_gateway::proto::supervisor::ReportResponse, BackendError> {
        super::supervision::report(&self.store, &self.campaigns, request).await
    }

    async fn campaigns(
        &self,
    ) -> Result<Vec<agent_gateway::proto::supervisor::CampaignView>, BackendError> {
        super::supervision::campaigns(&self.store, &self.campaigns).await
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
