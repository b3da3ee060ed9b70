//! Call control from the agent's desktop (issue 6): hold, unhold and blind transfer
//! to a queue, an agent or a number, asked over gRPC and carried out by the call's
//! own task.
//!
//! Owns: the path gateway → ACD driver (is this call connected to this agent? where
//! is its task?) → call task (re-INVITE the agent's phone, music for the caller, let
//! the agent's leg go) → ACD driver (the item waits again in the target queue).
//! Must not own: SIP or media (the pure [`crate::call::Call`] and the media engine do
//! those), nor routing decisions (the ACD core's `Input::Transfer`).
//!
//! ```text
//!   desktop ──Hold/Unhold──► ACD driver: OnCall(item)? ──inbox──► call task
//!                                                                 │ re-INVITE agent leg
//!                                                                 │ a=sendonly / sendrecv
//!                                                                 └ music / bridge caller
//!   desktop ──Transfer(queue)► ACD driver: OnCall(item)? queue? ──► call task: BYE agent,
//!                              music ──► ACD driver: Input::Transfer (agent wraps up,
//!                              the caller waits again with the same priority)
//!   desktop ──Transfer(agent)► as above, the target free now ──► Input::TransferToAgent
//!   desktop ──Transfer(number)► call task: a trunk dials it? BYE agent, dial the trunk
//!                              ──► ACD driver: Input::ItemEnded (agent wraps up)
//! ```
//! Every transfer is a `Transferred` event in the event log (the reports' transfer
//! counts); one to a number then leaves the ACD as an ended call (its `to` is the
//! queue it left), and the server log says where it went.
//! The call task answers every command, so a call that cannot do what was asked (a
//! campaign call, a call whose agent leg is gone) gives the agent a clear error rather
//! than silence.

use agent_gateway::{BackendError, CallControl, TransferTarget};
use tokio::sync::oneshot;

use super::*;
use crate::acd::{AgentId, AgentState, Input as AcdInput, ItemId};

/// What the desktop asks of a call's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ControlCommand {
    /// Music for the caller, the agent's phone re-invited `a=sendonly`.
    Hold,
    /// Back to talking: the bridge again, the agent's phone `a=sendrecv`.
    Unhold,
    /// The agent's leg ends (BYE); the caller hears music until the next agent.
    Release,
    /// The agent's leg ends and the caller is dialled through to this number by the
    /// trunk whose prefix it has; the ACD is done with the call.
    DialOut(String),
}

/// What the call task keeps for desktop control.
#[derive(Debug, Default)]
pub(super) struct DeskState {
    /// Since when the desktop holds the call (hold time goes to the log).
    pub held_since: Option<Instant>,
    /// The caller was transferred to a number: no agent will come if it fails.
    pub dialled_out: bool,
}

/// The call task's answer: what went wrong, in words for the agent.
pub(super) type ControlReply = oneshot::Sender<Result<(), String>>;

/// What the gateway (call control) and call tasks (the screen pop) ask the ACD driver.
pub(super) enum ControlRequest {
    /// The task of `item` when it is connected to `agent` (and the transfer target,
    /// when given, can take it now).
    Find {
        agent: String,
        item: ItemId,
        target: Option<Target>,
        reply: oneshot::Sender<Result<mpsc::UnboundedSender<CallInput>, BackendError>>,
    },
    /// What the caller answered in the IVR, for the screen pops of `item`'s offers.
    IvrAnswers {
        item: ItemId,
        answers: HashMap<String, String>,
    },
    /// Which agent script and customer `agent`'s call `item` has.
    ScriptCall {
        agent: String,
        item: ItemId,
        reply: oneshot::Sender<Result<super::agent_script::ScriptCall, BackendError>>,
    },
    /// A supervisor replaces `agent`'s skills: `(skill, level 1..=5)`.
    SetSkills {
        agent: String,
        skills: Vec<(String, u8)>,
        reply: oneshot::Sender<Result<(), BackendError>>,
    },
    /// The agent's leg is gone: `item` goes to `target`.
    Transfer {
        agent: String,
        item: ItemId,
        target: Target,
        reply: oneshot::Sender<Result<(), BackendError>>,
    },
}

/// Where a blind transfer sends the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// Waits again in this queue, with the call's priority.
    Queue(String),
    /// Rings this agent at once (who must be available and idle); should they not
    /// answer, the caller waits in the call's queue for the next agent.
    Agent(String),
    /// Leaves the ACD for a number dialled through a trunk.
    Number(String),
}

/// Hold, unhold or a blind transfer on `agent`'s call `item`.
pub(super) async fn control(
    acd: &mpsc::UnboundedSender<AcdRequest>,
    agent: &str,
    item: ItemId,
    control: CallControl,
) -> Result<(), BackendError> {
    let (command, target) = match control {
        CallControl::Hold => (ControlCommand::Hold, None),
        CallControl::Unhold => (ControlCommand::Unhold, None),
        CallControl::Transfer(TransferTarget::Queue(q)) => {
            (ControlCommand::Release, Some(Target::Queue(q)))
        }
        CallControl::Transfer(TransferTarget::Agent(a)) => {
            (ControlCommand::Release, Some(Target::Agent(a)))
        }
        CallControl::Transfer(TransferTarget::Number(n)) => {
            (ControlCommand::DialOut(n.clone()), Some(Target::Number(n)))
        }
        CallControl::HangUp => {
            return Err(BackendError::InvalidArgument(
                "hang-up is not a call-control command here".into(),
            ));
        }
    };
    let inbox = ask(acd, |reply| ControlRequest::Find {
        agent: agent.to_string(),
        item,
        target: target.clone(),
        reply,
    })
    .await?;
    let (tx, rx) = oneshot::channel();
    inbox
        .send(CallInput::Control {
            command: command.clone(),
            reply: tx,
        })
        .map_err(|_| gone(item))?;
    match rx.await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return Err(BackendError::FailedPrecondition(why)),
        // Tasks that do not take desktop control (campaign calls) drop the reply.
        Err(_) => {
            return Err(BackendError::FailedPrecondition(format!(
                "call {} does not take hold or transfer from the desktop",
                item.0
            )));
        }
    }
    tracing::info!(%agent, call = item.0, ?command, ?target, "call control");
    let Some(target) = target else {
        return Ok(());
    };
    ask(acd, |reply| ControlRequest::Transfer {
        agent: agent.to_string(),
        item,
        target,
        reply,
    })
    .await
}

fn gone(item: ItemId) -> BackendError {
    BackendError::FailedPrecondition(format!("call {} has ended", item.0))
}

async fn ask<T>(
    acd: &mpsc::UnboundedSender<AcdRequest>,
    make: impl FnOnce(oneshot::Sender<Result<T, BackendError>>) -> ControlRequest,
) -> Result<T, BackendError> {
    let (tx, rx) = oneshot::channel();
    acd.send(AcdRequest::Control(make(tx)))
        .map_err(|_| BackendError::Unavailable("the ACD is stopping".into()))?;
    rx.await
        .map_err(|_| BackendError::Unavailable("the ACD is stopping".into()))?
}

impl AcdDriver {
    /// The agent's id when `item` is the call they are talking on.
    fn talking(&self, agent: &str, item: ItemId) -> Result<AgentId, BackendError> {
        let id = self
            .agents
            .iter()
            .position(|a| a == agent)
            .map(|i| AgentId(i as u64))
            .ok_or_else(|| BackendError::NotFound(format!("no agent {agent:?}")))?;
        match self.acd.agent_state(id) {
            Some(AgentState::OnCall(i)) if i == item && self.items.contains_key(&i) => Ok(id),
            _ => Err(BackendError::FailedPrecondition(format!(
                "call {} is not connected to {agent}",
                item.0
            ))),
        }
    }

    /// Skills by name become the core's ids (a name no queue or route uses yet gets a
    /// new id, as at start-up); levels outside 1..=5 are refused, naming the skill.
    fn set_skills(&mut self, agent: &str, skills: &[(String, u8)]) -> Result<(), BackendError> {
        let id = self
            .agents
            .iter()
            .position(|a| a == agent)
            .map(|i| AgentId(i as u64))
            .ok_or_else(|| BackendError::NotFound(format!("no agent {agent:?}")))?;
        let mut by_name = std::collections::BTreeMap::new();
        for (name, level) in skills {
            if name.trim().is_empty() {
                return Err(BackendError::InvalidArgument("a skill needs a name".into()));
            }
            if !(1..=5).contains(level) {
                return Err(BackendError::InvalidArgument(format!(
                    "skill {name:?}: level {level} is not 1 to 5"
                )));
            }
            by_name.insert(name.clone(), *level);
        }
        let skills = self
            .features
            .agent_skills(&by_name)
            .map_err(|e| BackendError::InvalidArgument(e.to_string()))?;
        self.acd
            .set_skills(now(), id, &skills)
            .map_err(|e| BackendError::InvalidArgument(e.to_string()))?;
        tracing::info!(%agent, skills = ?by_name, "agent skills changed");
        Ok(())
    }

    fn queue_id(&self, name: &str) -> Result<crate::acd::QueueId, BackendError> {
        self.queues
            .get(name)
            .copied()
            .ok_or_else(|| BackendError::NotFound(format!("no queue {name:?}")))
    }

    /// The agent named `name` when they could take a call now.
    fn free_agent(&self, name: &str) -> Result<AgentId, BackendError> {
        let id = self
            .agents
            .iter()
            .position(|a| a == name)
            .map(|i| AgentId(i as u64))
            .ok_or_else(|| BackendError::NotFound(format!("no agent {name:?}")))?;
        let free = self.acd.agent_status(id) == Some(&crate::acd::AgentStatus::Available)
            && self.acd.agent_state(id) == Some(AgentState::Idle);
        if free {
            Ok(id)
        } else {
            Err(BackendError::FailedPrecondition(format!(
                "{name} is not available to take a call now"
            )))
        }
    }

    /// The agent's leg is already gone: whatever happens, the caller must not be left
    /// with nobody. A target that can no longer take the call (another call reached
    /// the agent first) leaves the caller waiting in the call's own queue, and says so.
    fn transfer(&mut self, agent: &str, item: ItemId, target: Target) -> Result<(), BackendError> {
        let id = match self.talking(agent, item) {
            Ok(id) => id,
            Err(e) => {
                self.tell(item, QueueCommand::HangUp);
                return Err(e);
            }
        };
        let current = self.desk_queue(item);
        if let Target::Number(number) = &target {
            // The call task dials it: the agent wraps up and the ACD forgets the call.
            // Reports count it as a transfer out of its queue, as for a queue or an
            // agent; the queue it left stands as `to`, a number being no queue.
            if let Some(&from) = self.queues.get(&current) {
                self.record_event(&crate::acd::Event::Transferred {
                    item,
                    from,
                    to: from,
                });
            }
            self.desk_transferred(id, item, &current);
            self.features.forget(item);
            self.acd
                .handle_input(now(), AcdInput::ItemEnded(item))
                .map_err(|e| BackendError::FailedPrecondition(e.to_string()))?;
            self.items.remove(&item);
            self.customers.remove(&item);
            tracing::info!(%agent, call = item.0, %number, "transferred to a number");
            return Ok(());
        }
        let attempt = match &target {
            Target::Queue(q) => self
                .queue_id(q)
                .map(|qid| (AcdInput::Transfer(item, qid), q.clone())),
            Target::Agent(to) => self
                .free_agent(to)
                .map(|to| (AcdInput::TransferToAgent(item, to), current.clone())),
            Target::Number(_) => unreachable!("handled above"),
        };
        let refused = match attempt {
            Ok((input, queue)) => match self.acd.handle_input(now(), input) {
                Ok(()) => {
                    let caller = self.desk_transferred(id, item, &queue);
                    self.features.waiting_in(item, &queue, caller);
                    return Ok(());
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        let fallback = self.queue_id(&current).ok().filter(|&q| {
            self.acd
                .handle_input(now(), AcdInput::Transfer(item, q))
                .is_ok()
        });
        match fallback {
            Some(_) => {
                let caller = self.desk_transferred(id, item, &current);
                self.features.waiting_in(item, &current, caller);
                Err(BackendError::FailedPrecondition(format!(
                    "{refused}; the caller waits in {current} again"
                )))
            }
            None => {
                self.tell(item, QueueCommand::HangUp);
                Err(BackendError::FailedPrecondition(format!(
                    "{refused}; the call was ended"
                )))
            }
        }
    }

    pub(super) fn handle_control(&mut self, request: ControlRequest) {
        match request {
            ControlRequest::Find {
                agent,
                item,
                target,
                reply,
            } => {
                let r = self.talking(&agent, item).and_then(|_| {
                    match &target {
                        Some(Target::Queue(q)) => {
                            self.queue_id(q)?;
                        }
                        Some(Target::Agent(to)) => {
                            self.free_agent(to)?;
                        }
                        // The call task checks a trunk dials it.
                        Some(Target::Number(_)) | None => {}
                    }
                    self.items.get(&item).cloned().ok_or_else(|| gone(item))
                });
                let _ = reply.send(r);
            }
            ControlRequest::IvrAnswers { item, answers } => self.desk.ivr_answers(item, answers),
            ControlRequest::SetSkills {
                agent,
                skills,
                reply,
            } => {
                let r = self.set_skills(&agent, &skills);
                let _ = reply.send(r);
            }
            ControlRequest::ScriptCall { agent, item, reply } => {
                let _ = reply.send(self.desk_script_call(&agent, item));
            }
            ControlRequest::Transfer {
                agent,
                item,
                target,
                reply,
            } => {
                let r = self.transfer(&agent, item, target);
                let _ = reply.send(r);
            }
        }
    }
}

/// Carries out a desktop command in the call's task (`task`: its shared state, item
/// id and command channel).
pub(super) async fn apply(
    (shared, uid, cmd): (&Shared, u64, &mpsc::UnboundedSender<Command>),
    now: std::time::Instant,
    command: ControlCommand,
    call: &mut Call,
    media: &mut super::call_task::CallMedia,
    desk: &mut DeskState,
) -> Result<(), String> {
    match command {
        ControlCommand::Hold | ControlCommand::Unhold => {
            let on = command == ControlCommand::Hold;
            if on == desk.held_since.is_some() {
                return Err(if on {
                    "the call is already on hold".into()
                } else {
                    "the call is not on hold".into()
                });
            }
            let offer = media
                .hold_callee(on)
                .ok_or_else(|| "the call has no agent leg to hold".to_string())?;
            if !call.reoffer_callee(now, &offer) {
                // Undo the media side: nothing changed for the phones.
                media.hold_callee(!on);
                return Err("the agent's leg cannot be re-invited now".into());
            }
            match desk.held_since.take() {
                Some(t) => tracing::info!(held_ms = t.elapsed().as_millis() as u64, "unheld"),
                None => desk.held_since = Some(Instant::now()),
            }
            Ok(())
        }
        ControlCommand::Release => {
            if !call.release_callee(now) {
                return Err("the call has no agent leg to transfer from".into());
            }
            desk.held_since = None;
            media.drop_callee().await;
            media.music();
            Ok(())
        }
        ControlCommand::DialOut(number) => {
            // The same number rules and trunk choice as a script's `<transfer number>`.
            let target = super::script_routing::number_via_trunk(shared, &number)?;
            if !call.release_callee(now) {
                return Err("the call has no agent leg to transfer from".into());
            }
            desk.held_since = None;
            media.music();
            let dialled = match media.open_callee(shared, uid, cmd).await {
                Ok(offer) => call.dial_trunk(
                    now,
                    target.flow,
                    &target.uri,
                    offer,
                    shared.config.sip.ring_timeout.0,
                    target.credentials.clone(),
                ),
                Err(_) => false,
            };
            if !dialled {
                // The agent is gone already: the caller cannot be left with nobody.
                call.hang_up_all(now, "failed");
                return Err(format!("{number} could not be dialled; the call was ended"));
            }
            desk.dialled_out = true;
            tracing::info!(number = %target.label, "caller transferred to a number");
            Ok(())
        }
    }
}

/// Tells the ACD what the caller answered in the IVR before the call queues (sent
/// ahead of the enqueue, so the first offer's screen pop has them). Answers to
/// sensitive questions never reach here: the script's history withholds them.
pub(super) fn send_ivr_answers(
    shared: &Shared,
    item: u64,
    answers: &serde_json::Map<String, serde_json::Value>,
) {
    if answers.is_empty() {
        return;
    }
    let answers = answers
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    let _ = shared
        .acd
        .send(AcdRequest::Control(ControlRequest::IvrAnswers {
            item: ItemId(item),
            answers,
        }));
}

/// Each queue's `agent-script` as the id of the loaded script (checked at start-up).
pub(super) fn agent_scripts(config: &Config, scripts: &Library) -> HashMap<String, String> {
    config
        .queues
        .iter()
        .filter_map(|q| {
            let file = q.agent_script.as_ref()?;
            let id = super::startup::script_for(scripts, file.get_ref())?;
            Some((q.name.get_ref().clone(), id))
        })
        .collect()
}

/// A supervisor's `SetAgentSkills`.
pub(super) async fn set_skills(
    acd: &mpsc::UnboundedSender<AcdRequest>,
    agent: &str,
    skills: Vec<(String, u8)>,
) -> Result<(), BackendError> {
    ask(acd, |reply| ControlRequest::SetSkills {
        agent: agent.to_string(),
        skills,
        reply,
    })
    .await
}
