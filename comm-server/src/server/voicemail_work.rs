//! Voicemail as work: a message left in a mailbox with a `work-queue` becomes a
//! voicemail task ([`ItemKind::VoicemailTask`]) that the ACD routes like a call through
//! the queue's strategy, tiers, ring timeout and wrap-up, but offers over the agent
//! gateway only, since no phone leg exists to ring.
//!
//! Owns: turning stored messages into tasks (live from the voicemail event stream, and
//! at start-up for every unhandled message, so a restart loses none), the task's
//! offer (a `VoicemailTask` event whose screen pop carries the customer and the
//! message), its acceptance (`AcceptTask`), and its end (the agent's `Disposition`
//! marks the message handled: who, when, outcome). Must not own routing (the core) or
//! sessions (the gateway).
//!
//! ```text
//!  message stored ──► Enqueue ──► Waiting ──offer──► desktop rings (VoicemailTask)
//!  (or unhandled at start-up)        ▲                 │ AcceptTask        │ timeout
//!                                    └─────────────────┼───────────────────┘
//!                                                      ▼
//!                               Connected (CallConnected) ──Disposition──► wrap-up
//!                                                   message handled, history row
//! ```
//! The ACD event log records the task like a call (Enqueued with the message id,
//! Offered, Answered, CallEnded, WrapUpEnded), so reports compute time to handle from
//! it; the store keeps the outcome on the message row.

use agent_gateway::BackendError;
use agent_gateway::proto::agent::{ScreenPop, VoicemailTask, agent_event::Kind};
use tokio::sync::oneshot;

use super::gateway::LastCall;
use super::*;
use crate::acd::{
    Action as AcdAction, AgentId, AgentState, CallerInfo, Input as AcdInput, ItemId, ItemKind,
    NewItem,
};
use crate::store::{VoicemailHandling, VoicemailMessage};

/// Voicemail task ids start here, far above call ids (which count from 1), so the two
/// never meet in the ACD or on the desktop.
const TASK_ID_BASE: u64 = 1 << 52;

/// What the voicemail side and the gateway ask the ACD driver about tasks.
pub(super) enum VoicemailRequest {
    /// A message to work on; ignored when it already has a task.
    Enqueue {
        message: VoicemailMessage,
        queue: String,
        customer: Option<i64>,
    },
    /// The agent takes the offered task.
    Accept {
        agent: String,
        item: ItemId,
        reply: oneshot::Sender<Result<(), BackendError>>,
    },
    /// The agent's disposition: ends the task if `item` is one. `None` when it is not
    /// a voicemail task (the ordinary call disposition applies).
    Finish {
        agent: String,
        item: ItemId,
        code: String,
        reply: oneshot::Sender<Result<Option<(LastCall, String)>, BackendError>>,
    },
    /// The owner deleted the message: a waiting task goes too.
    Deleted { message: String },
}

/// One task the ACD holds.
struct Task {
    message: VoicemailMessage,
    queue: String,
    customer: Option<i64>,
    enqueued_at: std::time::Instant,
}

/// The ACD driver's voicemail tasks.
#[derive(Default)]
pub(super) struct VoicemailTasks {
    tasks: HashMap<ItemId, Task>,
    by_message: HashMap<String, ItemId>,
    next: u64,
}

impl VoicemailTasks {
    fn is_task(&self, item: ItemId) -> bool {
        self.tasks.contains_key(&item)
    }

    fn forget(&mut self, item: ItemId) -> Option<Task> {
        let task = self.tasks.remove(&item)?;
        self.by_message.remove(&task.message.id);
        Some(task)
    }
}

impl AcdDriver {
    pub(super) fn handle_voicemail(&mut self, request: VoicemailRequest) {
        match request {
            VoicemailRequest::Enqueue {
                message,
                queue,
                customer,
            } => self.enqueue_task(message, queue, customer),
            VoicemailRequest::Accept { agent, item, reply } => {
                let r = self.accept_task(&agent, item);
                let _ = reply.send(r);
            }
            VoicemailRequest::Finish {
                agent,
                item,
                code,
                reply,
            } => {
                let r = self.finish_task(&agent, item, code);
                let _ = reply.send(r);
            }
            VoicemailRequest::Deleted { message } => {
                if let Some(&item) = self.voicemail.by_message.get(&message) {
                    // Only a task nobody works on yet: an agent on it keeps it to the end.
                    if self.acd.position(item).is_some() {
                        tracing::info!(%message, "voicemail deleted: its task leaves the queue");
                        self.voicemail.forget(item);
                        self.desk_item_ended(item);
                        self.input(AcdInput::ItemEnded(item));
                    }
                }
            }
        }
    }

    fn enqueue_task(&mut self, message: VoicemailMessage, queue: String, customer: Option<i64>) {
        if self.voicemail.by_message.contains_key(&message.id) {
            return;
        }
        let Some(&q) = self.queues.get(&queue) else {
            tracing::warn!(%queue, "voicemail task for an unknown queue: not enqueued");
            return;
        };
        self.voicemail.next += 1;
        let item = ItemId(TASK_ID_BASE + self.voicemail.next);
        let caller = (!message.caller.is_empty()).then(|| message.caller.clone());
        tracing::info!(message = %message.id, %queue, item = item.0, "voicemail task enqueued");
        self.desk.enqueued(now(), item, caller.clone(), &queue);
        self.desk.task(item);
        if let Some(c) = customer {
            self.customers.insert(item, c);
        }
        self.voicemail.by_message.insert(message.id.clone(), item);
        let kind = ItemKind::VoicemailTask {
            message: message.id.clone(),
        };
        self.voicemail.tasks.insert(
            item,
            Task {
                message,
                queue,
                customer,
                enqueued_at: now(),
            },
        );
        self.input(AcdInput::Enqueue(NewItem {
            id: item,
            kind,
            queue: q,
            priority: 0,
            skills: Vec::new(),
            caller: CallerInfo {
                number: caller,
                name: None,
            },
        }));
    }

    fn agent_named(&self, name: &str) -> Result<AgentId, BackendError> {
        self.agents
            .iter()
            .position(|a| a == name)
            .map(|i| AgentId(i as u64))
            .ok_or_else(|| BackendError::NotFound(format!("no agent {name:?}")))
    }

    fn accept_task(&mut self, agent: &str, item: ItemId) -> Result<(), BackendError> {
        let id = self.agent_named(agent)?;
        if !self.voicemail.is_task(item) {
            return Err(BackendError::FailedPrecondition(format!(
                "{} is not a voicemail task; answer calls on the phone",
                item.0
            )));
        }
        if self.acd.agent_state(id) != Some(AgentState::Ringing(item)) {
            return Err(BackendError::FailedPrecondition(format!(
                "voicemail task {} is no longer offered to {agent}",
                item.0
            )));
        }
        self.acd
            .handle_input(now(), AcdInput::OfferAnswered(item, id))
            .map_err(|e| BackendError::FailedPrecondition(e.to_string()))
    }

    fn finish_task(
        &mut self,
        agent: &str,
        item: ItemId,
        code: String,
    ) -> Result<Option<(LastCall, String)>, BackendError> {
        if !self.voicemail.is_task(item) {
            return Ok(None);
        }
        let id = self.agent_named(agent)?;
        if self.acd.agent_state(id) != Some(AgentState::OnCall(item)) {
            return Err(BackendError::FailedPrecondition(format!(
                "{agent} has not accepted voicemail task {}",
                item.0
            )));
        }
        let task = self.voicemail.forget(item).expect("checked above");
        self.desk_item_ended(item);
        self.customers.remove(&item);
        self.input(AcdInput::ItemEnded(item));
        if self.acd.agent_state(id) == Some(AgentState::WrapUp) {
            // The ordinary disposition ends the wrap-up the task's end started, so the
            // desktop sees WrapUpStarted then WrapUpEnded with the code, as for a call.
            let (tx, _) = oneshot::channel();
            self.handle_gateway(super::gateway::GatewayRequest::Disposition {
                agent: agent.to_string(),
                item,
                code,
                campaign_only: false,
                reply: tx,
            });
        }
        let with = LastCall {
            caller: (!task.message.caller.is_empty()).then(|| task.message.caller.clone()),
            customer: task.customer,
            queue: Some(task.queue),
            campaign_call: None,
        };
        Ok(Some((with, task.message.id)))
    }

    /// The `VoicemailTask` event for a task (the screen pop's record is filled in
    /// from the lookup begun at enqueue), and the caller it is about.
    fn task_event(&self, item: ItemId, ring_timeout: Option<Duration>) -> (String, Kind) {
        let task = &self.voicemail.tasks[&item];
        let m = task.message.clone();
        let queue = task.queue.clone();
        let waited = now().saturating_duration_since(task.enqueued_at);
        let caller = m.caller.clone();
        let event = Kind::VoicemailTask(VoicemailTask {
            task_id: item.0.to_string(),
            mailbox: m.mailbox,
            caller_number: m.caller.clone(),
            duration_ms: u64::try_from(m.duration_ms).unwrap_or_default(),
            left_at_unix_ms: m.created_at_ms,
            screen_pop: Some(ScreenPop {
                caller_number: m.caller,
                customer: None,
                last_interactions: Vec::new(),
                ivr_answers: HashMap::new(),
                queue,
                wait_ms: waited.as_millis() as u64,
                script_id: String::new(),
                callback_number: String::new(),
            }),
            message_id: m.id,
            ring_timeout_ms: ring_timeout.map_or(0, |t| t.as_millis() as u64),
        });
        (caller, event)
    }

    /// Carries out an action about a voicemail task; false for anything else.
    pub(super) fn voicemail_action(&mut self, action: &AcdAction) -> bool {
        if let Some((item, agent, ring_timeout)) = pops_up(action)
            && self.voicemail.is_task(item)
        {
            if ring_timeout.is_none() && self.desk_ringing(agent) == Some(item) {
                // An accepted offer being connected: its pop is already up.
                return true;
            }
            let (caller, pop) = self.task_event(item, ring_timeout);
            tracing::info!(
                item = item.0,
                agent = agent.0,
                connected = ring_timeout.is_none(),
                "offering a voicemail task"
            );
            // Either way the customer record comes from the lookup started when the
            // task was enqueued (see `screen_pop.rs`), never from I/O here.
            self.desk_offer_task(agent, item, &caller, pop);
            return true;
        }
        match action {
            AcdAction::Overflow { item, .. } if self.voicemail.is_task(*item) => {
                // The queue's join or length rule refused it: the message stays unhandled
                // in the mailbox and is offered again after the next start.
                if let Some(task) = self.voicemail.forget(*item) {
                    tracing::warn!(message = %task.message.id, queue = %task.queue,
                        "voicemail task refused by the queue's rules; it waits for a restart");
                }
                self.desk_item_ended(*item);
                self.customers.remove(item);
                true
            }
            AcdAction::Hold { item, .. } if self.voicemail.is_task(*item) => true,
            _ => false,
        }
    }
}

/// The ACD actions that may put an item on an agent's desktop, with the ring timeout
/// of an offer: `Offer` (the agent accepts within it), and `Bridge` with none. A
/// `Bridge` follows an accepted offer (already shown) or, for a persistent-line agent,
/// comes with no offer at all: then the pop must come all the same.
fn pops_up(action: &AcdAction) -> Option<(ItemId, AgentId, Option<Duration>)> {
    match action {
        AcdAction::Offer {
            item,
            agent,
            ring_timeout,
        } => Some((*item, *agent, Some(*ring_timeout))),
        AcdAction::Bridge { item, agent } => Some((*item, *agent, None)),
        _ => None,
    }
}

/// Feeds the ACD the work-queue mailboxes' messages: first every unhandled one in the
/// store (a restart loses no task), then each new one as it is stored. Subscribes
/// before reading the store so nothing falls between; the driver ignores a message
/// that already has a task.
pub(super) fn spawn_voicemail_work(
    config: Arc<Config>,
    store: Store,
    acd: mpsc::UnboundedSender<AcdRequest>,
    mut events: tokio::sync::broadcast::Receiver<VoicemailEvent>,
) {
    let queues: HashMap<String, String> = config
        .mailboxes
        .iter()
        .filter_map(|m| Some((m.name.get_ref().clone(), m.work_queue.clone()?)))
        .collect();
    if queues.is_empty() {
        return;
    }
    // Weak: the ACD task ends with its last caller at shutdown, and this listener must
    // not keep it alive.
    let acd = acd.downgrade();
    tokio::spawn(async move {
        let plan = config.customers.dial_plan().unwrap_or_default();
        let send = |message: VoicemailMessage, customer: Option<i64>| {
            let Some(queue) = queues.get(&message.mailbox).cloned() else {
                return;
            };
            if let Some(acd) = acd.upgrade() {
                let _ = acd.send(AcdRequest::Voicemail(VoicemailRequest::Enqueue {
                    message,
                    queue,
                    customer,
                }));
            }
        };
        for mailbox in queues.keys() {
            match store.unhandled_voicemails(mailbox).await {
                Ok(messages) => {
                    for m in messages {
                        let customer = customer_of(&store, &plan, &m.caller).await;
                        send(m, customer);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, %mailbox, "unhandled voicemail not re-enqueued")
                }
            }
        }
        loop {
            match events.recv().await {
                Ok(VoicemailEvent::MessageLeft { mailbox, id, .. }) => {
                    if acd.upgrade().is_none() {
                        return;
                    }
                    if !queues.contains_key(&mailbox) {
                        continue;
                    }
                    // Read back so the task carries exactly what is stored.
                    let stored = store
                        .voicemails(&mailbox)
                        .await
                        .map(|all| all.into_iter().find(|m| m.id == id));
                    match stored {
                        Ok(Some(m)) => {
                            let customer = customer_of(&store, &plan, &m.caller).await;
                            send(m, customer);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::error!(error = %e, %id, "voicemail task not enqueued"),
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "voicemail events missed; their tasks come at the next start"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// The customer record the caller's number belongs to, if any; errors find nobody.
async fn customer_of(store: &Store, plan: &crate::phone::DialPlan, caller: &str) -> Option<i64> {
    let e164 = crate::phone::normalise(caller, plan).ok()?;
    match store.customer_by_phone(e164.as_str()).await {
        Ok(c) => c.map(|c| c.id),
        Err(e) => {
            tracing::warn!(error = %e, "voicemail task: customer lookup failed");
            None
        }
    }
}

/// Asks the ACD driver and waits for its answer.
async fn ask<T>(
    acd: &mpsc::UnboundedSender<AcdRequest>,
    make: impl FnOnce(oneshot::Sender<Result<T, BackendError>>) -> VoicemailRequest,
) -> Result<T, BackendError> {
    let (tx, rx) = oneshot::channel();
    acd.send(AcdRequest::Voicemail(make(tx)))
        .map_err(|_| BackendError::Unavailable("the ACD is stopping".into()))?;
    rx.await
        .map_err(|_| BackendError::Unavailable("the ACD is stopping".into()))?
}

/// `AcceptTask` from the desktop.
pub(super) async fn accept(
    acd: &mpsc::UnboundedSender<AcdRequest>,
    agent: &str,
    item: ItemId,
) -> Result<(), BackendError> {
    let agent = agent.to_string();
    ask(acd, |reply| VoicemailRequest::Accept { agent, item, reply }).await
}

/// Ends the agent's voicemail task with this disposition; `None` when `item` is not a
/// voicemail task.
pub(super) async fn finish(
    acd: &mpsc::UnboundedSender<AcdRequest>,
    agent: &str,
    item: ItemId,
    code: &str,
) -> Result<Option<(LastCall, String)>, BackendError> {
    let (agent, code) = (agent.to_string(), code.to_string());
    ask(acd, |reply| VoicemailRequest::Finish {
        agent,
        item,
        code,
        reply,
    })
    .await
}

/// Records the outcome on the message. The disposition is already done: a failed write
/// is logged, not returned to an agent who could only retry a finished task.
pub(super) async fn mark_handled(store: &Store, message: &str, handling: VoicemailHandling) {
    match store.mark_voicemail_handled(message, &handling).await {
        Ok(()) => {
            tracing::info!(%message, agent = %handling.agent, outcome = %handling.outcome, "voicemail handled")
        }
        Err(e) => tracing::warn!(error = %e, %message, "voicemail not marked handled"),
    }
}

/// Voicemail for agents over gRPC: the messages of the mailboxes they work (a
/// `[[mailbox]]` whose `work-queue` is one of their configured queues), their audio,
/// marking heard and deleting. Changes reach the owner's phones through `mwi.rs`.
pub(crate) struct AgentVoicemail {
    store: Store,
    data_dir: std::path::PathBuf,
    /// Mailboxes by agent, from the config.
    mailboxes: HashMap<String, Vec<String>>,
    acd: mpsc::UnboundedSender<AcdRequest>,
    mwi: mpsc::UnboundedSender<super::mwi::MwiInput>,
    /// When a deletion happened, for the kept row.
    clock: Arc<dyn crate::time::Clock>,
}

fn unavailable(e: crate::store::StoreError) -> BackendError {
    tracing::error!(error = %e, "voicemail store");
    BackendError::Unavailable("the voicemail store is unavailable; try again".into())
}

impl AgentVoicemail {
    pub(super) fn new(
        config: &Config,
        store: Store,
        acd: mpsc::UnboundedSender<AcdRequest>,
        mwi: mpsc::UnboundedSender<super::mwi::MwiInput>,
        clock: Arc<dyn crate::time::Clock>,
    ) -> AgentVoicemail {
        let mailboxes = config
            .agents
            .iter()
            .map(|a| {
                let worked = config
                    .mailboxes
                    .iter()
                    .filter(|m| m.work_queue.as_ref().is_some_and(|q| a.queues.contains(q)))
                    .map(|m| m.name.get_ref().clone())
                    .collect();
                (a.name.get_ref().clone(), worked)
            })
            .collect();
        AgentVoicemail {
            store,
            data_dir: config.server.data_dir.clone(),
            mailboxes,
            acd,
            mwi,
            clock,
        }
    }

    fn mailboxes_of(&self, agent: &str) -> &[String] {
        self.mailboxes.get(agent).map_or(&[], Vec::as_slice)
    }

    /// The message, if it is in one of the agent's mailboxes; NOT_FOUND otherwise
    /// (whether it exists elsewhere is none of the agent's business).
    async fn message(&self, agent: &str, id: &str) -> Result<VoicemailMessage, BackendError> {
        for mailbox in self.mailboxes_of(agent) {
            let messages = self.store.voicemails(mailbox).await.map_err(unavailable)?;
            if let Some(m) = messages.into_iter().find(|m| m.id == id) {
                return Ok(m);
            }
        }
        Err(BackendError::NotFound(format!(
            "no voicemail message {id:?} in your mailboxes"
        )))
    }

    pub(super) async fn list(
        &self,
        agent: &str,
    ) -> Result<Vec<agent_gateway::proto::agent::VoicemailMessage>, BackendError> {
        let mut all = Vec::new();
        for mailbox in self.mailboxes_of(agent) {
            all.extend(self.store.voicemails(mailbox).await.map_err(unavailable)?);
        }
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        let mut out = Vec::with_capacity(all.len());
        for m in all {
            // One query per message: fine for a mailbox's worth of messages.
            let handling = self
                .store
                .voicemail_handling(&m.id)
                .await
                .map_err(unavailable)?;
            let (handled_by, outcome) =
                handling.map_or_else(Default::default, |h| (h.agent, h.outcome));
            out.push(agent_gateway::proto::agent::VoicemailMessage {
                id: m.id,
                mailbox: m.mailbox,
                caller_number: m.caller,
                duration_ms: u64::try_from(m.duration_ms).unwrap_or_default(),
                left_at_unix_ms: m.created_at_ms,
                heard: m.heard,
                handled_by,
                outcome,
            });
        }
        Ok(out)
    }

    pub(super) async fn audio(&self, agent: &str, id: &str) -> Result<Vec<u8>, BackendError> {
        let m = self.message(agent, id).await?;
        tokio::fs::read(self.data_dir.join(&m.file))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, file = %m.file, "voicemail audio unreadable");
                BackendError::Unavailable(format!("the audio of message {id:?} is unreadable"))
            })
    }

    pub(super) async fn mark_heard(&self, agent: &str, id: &str) -> Result<(), BackendError> {
        let m = self.message(agent, id).await?;
        self.store
            .mark_voicemail_heard(&m.id)
            .await
            .map_err(unavailable)?;
        tracing::info!(%agent, message = %m.id, "voicemail marked heard over gRPC");
        let _ = self
            .mwi
            .send(super::mwi::MwiInput::Changed { mailbox: m.mailbox });
        Ok(())
    }

    /// Row first, then the file, as retrieval by phone does: a crash between the two
    /// leaves a file that start-up lists again, never a row without its audio.
    pub(super) async fn delete(&self, agent: &str, id: &str) -> Result<(), BackendError> {
        let m = self.message(agent, id).await?;
        let _ = self
            .acd
            .send(AcdRequest::Voicemail(VoicemailRequest::Deleted {
                message: m.id.clone(),
            }));
        self.store
            .delete_voicemail(&m.id, self.clock.unix_ms())
            .await
            .map_err(unavailable)?;
        if let Err(e) = tokio::fs::remove_file(self.data_dir.join(&m.file)).await {
            tracing::warn!(error = %e, file = %m.file, "voicemail file not removed");
        }
        tracing::info!(%agent, message = %m.id, "voicemail deleted over gRPC");
        let _ = self
            .mwi
            .send(super::mwi::MwiInput::Changed { mailbox: m.mailbox });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_line_bridges_pop_up_like_offers() {
        let (item, agent) = (ItemId(TASK_ID_BASE + 1), AgentId(3));
        let ring_timeout = Duration::from_secs(15);
        assert_eq!(
            pops_up(&AcdAction::Offer {
                item,
                agent,
                ring_timeout
            }),
            Some((item, agent, Some(ring_timeout)))
        );
        // The core bridges a persistent-line agent without an Offer: the task still
        // pops up, already connected (no ring timeout, no AcceptTask).
        assert_eq!(
            pops_up(&AcdAction::Bridge { item, agent }),
            Some((item, agent, None))
        );
        assert_eq!(pops_up(&AcdAction::CancelOffer { item, agent }), None);
    }
}
