//! The ACD driver's queue features: skills by name, the exit and callback keys, overflow
//! targets, queued callbacks and voicemail tasks. The decisions stay in the pure core
//! ([`crate::acd`]); this file only translates names to the core's ids and the core's
//! actions to commands for call tasks.
//!
//! A queued callback keeps its item in the core after the caller hangs up; when an agent
//! is reserved for it the core asks for the customer to be dialled
//! ([`crate::acd::Action::DialCustomer`]): the driver finds the agent's phone and hands
//! the callback to the dialler ([`super::callback_call`]), which reports back with a
//! [`CallbackRequest`].

use std::collections::BTreeMap;

use super::acd::{AcdDriver, QueueCommand};
use super::callback_call::CallbackDue;
use super::*;
use crate::acd::{
    AgentId, EmptyRule, Input as AcdInput, ItemId, JoinRule, Level, OverflowTarget, QueueConfig,
    QueueId, SkillId, SkillRequirement,
};
use crate::config::{EmptySetting, JoinSetting, QueueExit, QueueSection};

/// A queue a script or an overflow hands the caller to: name, priority and the skills
/// required (minimum levels by skill name).
pub(super) type PendingEnqueue = (String, u8, Vec<(String, u8)>);

/// Copies a `[[queue]]`'s rules into the core's configuration. Queue targets are
/// resolved later ([`QueueFeatures::target`]): the core numbers queues in config order.
pub(super) fn apply_queue_rules(qc: &mut QueueConfig, q: &QueueSection) {
    qc.max_wait = q.max_wait.map(|d| d.0);
    qc.max_length = q.max_length.as_ref().map(|n| *n.get_ref());
    qc.join = match q.join {
        JoinSetting::Always => JoinRule::Always,
        JoinSetting::IfAgentsLoggedIn => JoinRule::IfAgentsLoggedIn,
        JoinSetting::IfAgentsAvailable => JoinRule::IfAgentsAvailable,
    };
    qc.when_empty = match q.when_empty {
        EmptySetting::Stay => EmptyRule::Stay,
        EmptySetting::Leave => EmptyRule::Leave,
    };
    if let Some(t) = &q.expected_handle_time {
        qc.expected_handle_time = t.0;
    }
    qc.overflow = q
        .overflow
        .as_ref()
        .map_or(OverflowTarget::HangUp, |t| core_target(t.get_ref()));
    qc.exit_target = q.exit_target.as_ref().map(|t| core_target(t.get_ref()));
}

/// The core's view of a target. The core never reads a queue target's name, only
/// hands it back: the driver keeps the name ([`QueueFeatures::exits`]).
fn core_target(exit: &QueueExit) -> OverflowTarget {
    match exit {
        // Placeholder id; the driver maps the queue's own exits back by name.
        QueueExit::Queue(_) => OverflowTarget::Queue(QueueId(u32::MAX)),
        QueueExit::Mailbox(m) => OverflowTarget::Mailbox(m.clone()),
        QueueExit::Script(s) => OverflowTarget::Script(s.clone()),
        QueueExit::HangUp => OverflowTarget::HangUp,
    }
}

/// A queue's keys and targets, by queue name.
struct QueueKeys {
    /// How long an agent rings, for a callback's reserved agent too.
    ring_timeout: Duration,
    exit_key: Option<char>,
    callback_key: Option<char>,
    overflow: Option<QueueExit>,
    exit_target: Option<QueueExit>,
}

/// What the driver keeps for the features above.
pub(super) struct QueueFeatures {
    skills: HashMap<String, SkillId>,
    queues: HashMap<String, QueueKeys>,
    /// The queue each waiting item is in, for its keys and targets.
    waiting: HashMap<ItemId, String>,
    /// Items whose caller hung up to be called back.
    callbacks: HashMap<ItemId, String>,
    /// Callers' numbers, by item.
    numbers: HashMap<ItemId, String>,
    /// Set while the core handles an exit key, so a queue target is the exit's.
    exit_pending: bool,
    /// Where due callbacks go to be dialled; `None` until the dialler starts.
    dialler: Option<mpsc::UnboundedSender<CallbackDue>>,
}

/// What the callback dialler tells the ACD driver.
pub(super) enum CallbackRequest {
    /// The dialler is running: send due callbacks here.
    Dialler(mpsc::UnboundedSender<CallbackDue>),
    /// The called-back customer answered (item).
    Answered(u64),
    /// The customer could not be reached (item); the reserved agent is free again.
    NotReached(u64),
    /// The reserved agent did not answer (item, agent): the callback waits again.
    AgentMissed(u64, u64),
}

impl QueueFeatures {
    pub(super) fn new(config: &Config) -> QueueFeatures {
        let mut skills = HashMap::new();
        let names = config.agents.iter().flat_map(|a| a.skills.keys()).chain(
            config.routes.iter().flat_map(|r| match r.target.get_ref() {
                crate::config::Target::QueueWithSkills(_, s) => s.keys().collect(),
                _ => Vec::new(),
            }),
        );
        for name in names {
            let next = SkillId(skills.len() as u32);
            skills.entry(name.clone()).or_insert(next);
        }
        let queues = config
            .queues
            .iter()
            .map(|q| {
                (
                    q.name.get_ref().clone(),
                    QueueKeys {
                        ring_timeout: q.ring_timeout.0,
                        exit_key: q.exit_key.as_ref().map(|k| *k.get_ref()),
                        callback_key: q.callback_key.as_ref().map(|k| *k.get_ref()),
                        overflow: q.overflow.as_ref().map(|t| t.get_ref().clone()),
                        exit_target: q.exit_target.as_ref().map(|t| t.get_ref().clone()),
                    },
                )
            })
            .collect();
        QueueFeatures {
            skills,
            queues,
            waiting: HashMap::new(),
            callbacks: HashMap::new(),
            numbers: HashMap::new(),
            exit_pending: false,
            dialler: None,
        }
    }

    /// An agent's skills as the core counts them; levels were checked at load.
    pub(super) fn agent_skills(
        &mut self,
        skills: &BTreeMap<String, u8>,
    ) -> anyhow::Result<Vec<(SkillId, Level)>> {
        skills
            .iter()
            .map(|(name, level)| Ok((self.skill(name), Level::new(*level)?)))
            .collect()
    }

    fn skill(&mut self, name: &str) -> SkillId {
        let next = SkillId(self.skills.len() as u32);
        *self.skills.entry(name.to_string()).or_insert(next)
    }

    /// What an item requires. A skill no agent has still counts (nobody qualifies
    /// until the queue's widening lets skills go); a level outside 1..=5 is clamped,
    /// since scripts are checked at load and routes at config load.
    pub(super) fn requirements(&mut self, skills: &[(String, u8)]) -> Vec<SkillRequirement> {
        skills
            .iter()
            .map(|(name, level)| SkillRequirement {
                skill: self.skill(name),
                min_level: Level::new((*level).clamp(1, 5)).unwrap_or(Level::MIN),
            })
            .collect()
    }

    /// The number a callback being offered will dial; empty for other items.
    pub(super) fn callback_number(&self, item: ItemId) -> String {
        self.callbacks.get(&item).cloned().unwrap_or_default()
    }

    /// The callback key of the queue a caller waits in.
    pub(super) fn callback_key(&self, item: ItemId) -> Option<char> {
        let queue = self.waiting.get(&item)?;
        self.queues.get(queue)?.callback_key
    }

    pub(super) fn waiting_in(&mut self, item: ItemId, queue: &str, caller: Option<String>) {
        self.waiting.insert(item, queue.to_string());
        if let Some(c) = caller {
            self.numbers.insert(item, c);
        }
    }

    /// The item's wait is over for good.
    pub(super) fn forget(&mut self, item: ItemId) {
        self.waiting.remove(&item);
        self.numbers.remove(&item);
        self.callbacks.remove(&item);
    }

    /// The name-level target behind the core's, for the item's current queue.
    fn target(&self, item: ItemId, target: &OverflowTarget) -> QueueExit {
        match target {
            OverflowTarget::Queue(_) => {
                let keys = self.waiting.get(&item).and_then(|q| self.queues.get(q));
                // An exit key and an overflow may both name queues; the core tells
                // us which fired only through the target, so prefer the overflow's
                // unless only the exit target is a queue.
                let named = keys.and_then(|k| match (&k.overflow, &k.exit_target) {
                    (Some(QueueExit::Queue(q)), _) => Some(q.clone()),
                    (_, Some(QueueExit::Queue(q))) => Some(q.clone()),
                    _ => None,
                });
                named.map_or(QueueExit::HangUp, QueueExit::Queue)
            }
            OverflowTarget::Mailbox(m) => QueueExit::Mailbox(m.clone()),
            OverflowTarget::Script(s) => QueueExit::Script(s.clone()),
            OverflowTarget::HangUp => QueueExit::HangUp,
        }
    }
}

impl AcdDriver {
    /// A waiting caller pressed a key: the queue's exit or callback key, or nothing.
    pub(super) fn key(&mut self, item: ItemId, digit: char) {
        let Some(keys) = self
            .features
            .waiting
            .get(&item)
            .and_then(|q| self.features.queues.get(q))
        else {
            return;
        };
        if keys.exit_key == Some(digit) {
            self.features.exit_pending = true;
            self.input(AcdInput::ExitKey(item));
            self.features.exit_pending = false;
        } else if keys.callback_key == Some(digit) {
            match self
                .acd
                .handle_input(now(), AcdInput::CallbackRequested(item))
            {
                Ok(()) => {
                    tracing::info!(?item, "callback requested; the item keeps its place");
                    let number = self.features.numbers.get(&item).cloned();
                    self.features
                        .callbacks
                        .insert(item, number.unwrap_or_default());
                    self.tell(item, QueueCommand::CallbackBooked);
                    // The caller's call is going: its inbox is no longer the item's.
                    self.items.remove(&item);
                }
                Err(e) => tracing::info!(error = %e, "callback refused"),
            }
        }
    }

    /// Whether a call's end is the caller leaving after booking a callback: then the
    /// item stays in the core.
    pub(super) fn is_callback(&self, item: ItemId) -> bool {
        self.features.callbacks.contains_key(&item)
    }

    /// The core sends the item to its overflow or exit target.
    pub(super) fn overflow(&mut self, item: ItemId, target: OverflowTarget) {
        if self.preview_refused(item) {
            return;
        }
        let mut exit = self.features.target(item, &target);
        if self.features.exit_pending
            && let Some(QueueExit::Queue(q)) = self
                .features
                .waiting
                .get(&item)
                .and_then(|q| self.features.queues.get(q))
                .and_then(|k| k.exit_target.clone())
        {
            exit = QueueExit::Queue(q);
        }
        tracing::info!(?item, ?exit, "caller leaves the queue");
        self.features.waiting.remove(&item);
        self.features.numbers.remove(&item);
        self.tell(item, QueueCommand::Leave(exit));
    }

    /// An agent is reserved for a callback: ring the agent, whose answer dials the
    /// customer ([`super::callback_call`]). The item stays a callback until the
    /// customer is reached or not, so an agent who does not answer sends it back in
    /// line as a callback.
    pub(super) async fn dial_customer(
        &mut self,
        item: ItemId,
        agent: AgentId,
        number: Option<String>,
    ) {
        // A campaign preview is offered on the desktop first (see `preview.rs`).
        if self.offer_preview(item, agent).await {
            return;
        }
        let preview = self.previews.dialling(item);
        let number = number
            .or_else(|| self.features.callbacks.get(&item).cloned())
            .filter(|n| !n.is_empty());
        let queue = self
            .features
            .waiting
            .get(&item)
            .cloned()
            .unwrap_or_default();
        let (Some(number), Some(dialler)) = (number, self.features.dialler.clone()) else {
            tracing::warn!(?item, "callback due, but there is no number or no dialler");
            self.features.forget(item);
            self.input(AcdInput::CustomerNotReached(item));
            return;
        };
        let agent_name = self
            .agents
            .get(agent.0 as usize)
            .cloned()
            .unwrap_or_default();
        let Ok(Some((flow, uri))) = self.registrar.locate(&agent_name).await else {
            tracing::info!(agent = %agent_name, "agent has no registered phone for the callback");
            self.input(AcdInput::OfferNotAnswered(
                item,
                agent,
                crate::acd::NoAnswerReason::Failed,
            ));
            return;
        };
        // The agent's desktop pops the customer as for a call offer (a preview's
        // already has).
        let ring_timeout = self
            .features
            .queues
            .get(&queue)
            .map_or(Duration::from_secs(15), |k| k.ring_timeout);
        if preview.is_none() {
            self.desk_action(&crate::acd::Action::Offer {
                item,
                agent,
                ring_timeout,
            });
        }
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        self.items.insert(item, inbox_tx.clone());
        let due = CallbackDue {
            item: item.0,
            agent: agent.0,
            agent_name,
            flow,
            uri,
            number,
            queue,
            customer: self.customers.get(&item).copied(),
            ring_timeout,
            inbox,
            inbox_tx,
            preview,
        };
        if dialler.send(due).is_err() {
            self.items.remove(&item);
            self.features.forget(item);
            self.input(AcdInput::CustomerNotReached(item));
        }
    }

    /// The dialler's reports.
    pub(super) fn callback_request(&mut self, request: CallbackRequest) {
        match request {
            CallbackRequest::Dialler(tx) => self.features.dialler = Some(tx),
            CallbackRequest::Answered(item) => {
                // From here the item ends like any answered call.
                self.features.forget(ItemId(item));
                self.previews.forget(ItemId(item));
                self.input(AcdInput::CustomerAnswered(ItemId(item)));
            }
            CallbackRequest::AgentMissed(item, agent) => {
                // The dial is over; the item waits again as a callback with no call.
                self.items.remove(&ItemId(item));
                self.previews.agent_missed(ItemId(item));
                self.input(AcdInput::OfferNotAnswered(
                    ItemId(item),
                    AgentId(agent),
                    crate::acd::NoAnswerReason::NotAnswered,
                ));
            }
            CallbackRequest::NotReached(item) => {
                let item = ItemId(item);
                self.features.forget(item);
                self.previews.forget(item);
                self.items.remove(&item);
                self.desk_item_ended(item);
                self.customers.remove(&item);
                self.input(AcdInput::CustomerNotReached(item));
            }
        }
    }
}

/// Starts a dialog script for a caller leaving a queue for it (overflow, exit key).
pub(super) fn start_script(
    shared: &Shared,
    file: &str,
    invite: &Request,
    contact: &CallContact,
) -> Option<Ivr> {
    let script = script_for(&shared.scripts, file)?;
    let context = script_engine::SessionContext {
        channel: script_engine::Channel::Voice,
        customer: contact.customer_json(),
        call: serde_json::json!({
            "caller": invite.headers.get("From").and_then(registrar::user_of),
            "caller_id": contact.caller_id(),
            "dialed": header::uri_user(&invite.uri),
            "call_id": invite.call_id(),
        }),
    };
    match Ivr::start(
        shared.scripts.clone(),
        &script,
        context,
        call_task::wall_now(shared),
    ) {
        Ok(i) => Some(i),
        Err(e) => {
            tracing::error!(error = %e, "overflow script did not start");
            None
        }
    }
}

/// The skills a route's queue target requires.
pub(super) fn route_skills(shared: &Shared, invite: &Request) -> Vec<(String, u8)> {
    let number = header::uri_user(&invite.uri).unwrap_or_default();
    match shared.config.route(&number) {
        Some(crate::config::Target::QueueWithSkills(_, skills)) => {
            skills.iter().map(|(k, v)| (k.clone(), *v)).collect()
        }
        _ => Vec::new(),
    }
}

/// Said to a caller who booked a callback, before we hang up.
pub(super) const CALLBACK_BOOKED: &str = "general/callback-booked";

/// "To hang up and be called back ... press" + the key, after a queue announcement.
pub(super) fn callback_offer_prompts(key: char) -> Vec<String> {
    let digit = match key {
        '*' => "star".to_owned(),
        '#' => "hash".to_owned(),
        d => d.to_string(),
    };
    vec![
        "general/callback-offer".to_owned(),
        format!("digits/{digit}"),
    ]
}

/// Minutes to announce: 0 ("less than one minute") under a minute, else the nearest
/// whole minute.
pub(super) fn whole_minutes(wait: Duration) -> u32 {
    let secs = wait.as_secs();
    if secs < 60 {
        0
    } else {
        ((secs + 30) / 60).min(u64::from(u32::MAX)) as u32
    }
}
