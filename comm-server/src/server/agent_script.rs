//! Agent-guided scripts on the desktop (issue 6): the queue's `agent-script` run by
//! the pure `script_engine` interpreter on the `agent` channel, one session per agent
//! and call, stepped by the `ScriptStep` / `SubmitAnswer` RPCs.
//!
//! Owns: those sessions, their context (the call's customer record and caller ID),
//! answering the steps a screen host answers (the same [`crate::web::host_reply`]
//! as the web self-service, with the call's customer for `<update-customer>`), and
//! writing each answer and the outcome to the customer's contact history.
//! Must not own: the interpreter, the script library or which call is whose (the
//! gateway checks the call is the agent's; the ACD driver says which script and
//! customer it has).
//!
//! ```text
//!  ScriptStep(call) ──► ACD driver: the call's queue script, caller, customer
//!                  ──► start the session once ──► host steps ──► steps, awaiting
//!  SubmitAnswer(call, answer) ──► Input::Answer ──► host steps ──► history rows
//! ```

use std::time::SystemTime;

use agent_gateway::BackendError;
use agent_gateway::proto::agent::{ScriptChoice, ScriptStepResponse, ScriptStepView};
use script_engine::{
    Channel, HistoryEvent, HistoryRecord, Input, Outcome, Session, SessionContext, SessionError,
    Step,
};

use super::*;
use crate::script_actions::ScriptActions;
use crate::store::{Contact, ContactKind};

/// Sessions idle this long are forgotten when another one starts (an agent who
/// never submitted a disposition). Unit: milliseconds of wall-clock time.
pub const IDLE_EXPIRY_MS: i64 = 4 * 60 * 60 * 1000;

/// What the ACD driver knows of a call for its agent's script.
#[derive(Debug, Clone)]
pub(super) struct ScriptCall {
    /// The script's id (the queue's `agent-script`).
    pub script: String,
    pub caller: Option<String>,
    pub customer: Option<i64>,
    pub queue: Option<String>,
}

/// One agent's script on one call.
struct Guided {
    session: Session,
    call: ScriptCall,
    /// The caller's number in E.164 when it normalises, for history rows.
    phone: Option<String>,
    /// The host gave up on the session (a loop through host steps).
    stopped: Option<Outcome>,
    last_used_ms: i64,
}

/// Open sessions by agent and call (the call's ACD item id); each locked while a
/// request steps it, so two tabs cannot answer the same question at once.
type Sessions = HashMap<(String, u64), Arc<tokio::sync::Mutex<Guided>>>;

/// The agent-script sessions of the gateway's backend.
pub struct AgentScripts {
    library: Arc<Library>,
    actions: ScriptActions,
    store: Store,
    plan: crate::phone::DialPlan,
    clock: Arc<dyn Clock>,
    sessions: std::sync::Mutex<Sessions>,
}

impl AgentScripts {
    pub(super) fn new(
        library: Arc<Library>,
        actions: ScriptActions,
        store: Store,
        plan: crate::phone::DialPlan,
        clock: Arc<dyn Clock>,
    ) -> AgentScripts {
        AgentScripts {
            library,
            actions,
            store,
            plan,
            clock,
            sessions: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // Every change is one insert or remove: never left half-written.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> (i64, SystemTime) {
        let ms = self.clock.unix_ms();
        (
            ms,
            SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
        )
    }

    /// The agent is done with the call (disposition): its script is forgotten.
    pub(super) fn forget(&self, agent: &str, item: u64) {
        self.lock().remove(&(agent.to_string(), item));
    }

    /// Where `agent`'s script for call `item` stands, after `answer` if given.
    pub(super) async fn step(
        &self,
        acd: &mpsc::UnboundedSender<AcdRequest>,
        agent: &str,
        item: u64,
        answer: Option<String>,
    ) -> Result<ScriptStepResponse, BackendError> {
        let key = (agent.to_string(), item);
        let existing = self.lock().get(&key).cloned();
        let guided = match existing {
            Some(g) => g,
            None => {
                let call = script_call(acd, agent, item).await?;
                let g = Arc::new(tokio::sync::Mutex::new(self.start(call).await?));
                let (now_ms, _) = self.now();
                let mut sessions = self.lock();
                sessions.retain(|_, g| {
                    g.try_lock()
                        .map_or(true, |g| now_ms - g.last_used_ms < IDLE_EXPIRY_MS)
                });
                // Two first requests at once: the first one stored wins.
                sessions.entry(key).or_insert(g).clone()
            }
        };
        let mut g = guided.lock().await;
        let (now_ms, now) = self.now();
        g.last_used_ms = now_ms;
        if let Some(answer) = answer {
            self.answer(&mut g, now, answer)?;
        }
        let (steps, history) = self.drive(&mut g, now).await;
        self.record(&g, agent, item, &history).await;
        Ok(self.response(&g, steps))
    }

    async fn start(&self, call: ScriptCall) -> Result<Guided, BackendError> {
        let customer = match call.customer {
            Some(id) => match self.store.customer_by_id(id).await {
                Ok(c) => c.map(|c| c.to_json()),
                Err(e) => {
                    tracing::warn!(error = %e, "agent script: customer not read");
                    None
                }
            },
            None => None,
        };
        let phone = call
            .caller
            .as_deref()
            .and_then(|c| crate::phone::normalise(c, &self.plan).ok())
            .map(|e| e.into_string());
        let context = SessionContext {
            channel: Channel::Agent,
            customer: customer.unwrap_or_else(|| serde_json::json!({})),
            call: serde_json::json!({
                "caller": call.caller,
                "caller_id": phone.clone().or_else(|| call.caller.clone()),
                "queue": call.queue,
                "channel": "agent",
            }),
        };
        let (now_ms, now) = self.now();
        let session = Session::start(&self.library, &call.script, context, now).map_err(|e| {
            BackendError::FailedPrecondition(format!(
                "the agent script {:?} does not start: {e}",
                call.script
            ))
        })?;
        tracing::info!(script = %call.script, "agent script started");
        Ok(Guided {
            session,
            call,
            phone,
            stopped: None,
            last_used_ms: now_ms,
        })
    }

    fn answer(&self, g: &mut Guided, now: SystemTime, answer: String) -> Result<(), BackendError> {
        if g.stopped.is_some() || g.session.outcome().is_some() {
            return Err(BackendError::FailedPrecondition(
                "the agent script has ended".into(),
            ));
        }
        if !matches!(g.session.awaiting(), Some(Step::Ask(_))) {
            return Err(BackendError::FailedPrecondition(
                "the agent script is not waiting for an answer".into(),
            ));
        }
        match g
            .session
            .handle_input(&self.library, now, Input::Answer(answer))
        {
            Ok(()) => Ok(()),
            Err(SessionError::Finished) => Err(BackendError::FailedPrecondition(
                "the agent script has ended".into(),
            )),
            Err(e) => Err(BackendError::InvalidArgument(e.to_string())),
        }
    }

    /// Answers the host steps until the script waits for the agent or ends.
    async fn drive(&self, g: &mut Guided, now: SystemTime) -> (Vec<Step>, Vec<HistoryRecord>) {
        let mut steps = Vec::new();
        let mut history = Vec::new();
        let mut replies = 0u32;
        loop {
            steps.extend(std::iter::from_fn(|| g.session.poll_step()));
            history.extend(std::iter::from_fn(|| g.session.poll_history()));
            if g.stopped.is_some() || g.session.outcome().is_some() {
                break;
            }
            let Some(step) = g
                .session
                .awaiting()
                .filter(|s| crate::web::needs_host(s))
                .cloned()
            else {
                break;
            };
            replies += 1;
            if replies > crate::web::MAX_HOST_REPLIES {
                let message = format!(
                    "the script took more than {} steps without asking anything",
                    crate::web::MAX_HOST_REPLIES
                );
                tracing::error!(script = %g.call.script, %message, "agent script stopped");
                g.stopped = Some(Outcome::Failed { message });
                break;
            }
            let input =
                crate::web::host_reply(&self.actions, &step, g.call.customer, "the desktop").await;
            if let Err(e) = g.session.handle_input(&self.library, now, input) {
                let message = e.to_string();
                tracing::error!(script = %g.call.script, %message, "agent script stopped");
                g.stopped = Some(Outcome::Failed { message });
                break;
            }
        }
        (steps, history)
    }

    /// Each answer, and the outcome, as a row of the customer's contact history
    /// (sensitive answers never reach here: the interpreter withholds them).
    async fn record(&self, g: &Guided, agent: &str, item: u64, history: &[HistoryRecord]) {
        for record in history {
            let (details, outcome) = match &record.event {
                HistoryEvent::Answer { value } => (
                    serde_json::json!({
                        "script": record.script,
                        "step": record.step,
                        "answer": value,
                    }),
                    None,
                ),
                HistoryEvent::Ended { outcome } => (
                    serde_json::json!({ "script": record.script, "step": record.step }),
                    Some(outcome.clone()),
                ),
                _ => continue,
            };
            let at_ms = record
                .at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let contact = Contact {
                customer_id: g.call.customer,
                phone: g.phone.clone().or_else(|| g.call.caller.clone()),
                kind: ContactKind::Note,
                direction: None,
                started_at_ms: at_ms,
                ended_at_ms: None,
                queue: g.call.queue.clone(),
                agent: Some(agent.to_string()),
                outcome,
                call_id: Some(item.to_string()),
                details,
            };
            if let Err(e) = self.store.add_history(&contact).await {
                tracing::warn!(error = %e, step = %record.step, "agent script answer not saved");
            }
        }
    }

    fn response(&self, g: &Guided, steps: Vec<Step>) -> ScriptStepResponse {
        let outcome = g.stopped.clone().or_else(|| g.session.outcome().cloned());
        let (outcome, failure) = match &outcome {
            None => (String::new(), String::new()),
            Some(Outcome::Ended { outcome }) => (outcome.clone(), String::new()),
            Some(Outcome::Routed { step }) => ("routed".into(), format!("routed at {step}")),
            Some(Outcome::Failed { message }) => ("failed".into(), message.clone()),
        };
        let awaiting = if outcome.is_empty() {
            g.session.awaiting().map(view)
        } else {
            None
        };
        ScriptStepResponse {
            script_id: g.call.script.clone(),
            title: self
                .library
                .script(&g.call.script)
                .map_or_else(String::new, |s| s.title().to_string()),
            steps: steps.iter().map(view).collect(),
            awaiting,
            outcome,
            failure,
        }
    }
}

/// A step as the desktop shows it.
fn view(step: &Step) -> ScriptStepView {
    let json = serde_json::to_string(step).unwrap_or_default();
    let plain = |id: &str, kind: &str, text: &str| ScriptStepView {
        step: id.to_string(),
        kind: kind.to_string(),
        text: text.to_string(),
        json: json.clone(),
        ..ScriptStepView::default()
    };
    match step {
        Step::Say { step, prompt } => plain(step, "say", &prompt.text),
        Step::Ask(q) | Step::Record(q) => ScriptStepView {
            step: q.step.clone(),
            kind: if matches!(step, Step::Ask(_)) {
                "ask"
            } else {
                "record"
            }
            .into(),
            text: q.prompt.text.clone(),
            input: serde_json::to_value(&q.input)
                .ok()
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
                .unwrap_or_default(),
            choices: q
                .choices
                .iter()
                .map(|c| ScriptChoice {
                    value: c.value.clone(),
                    label: c.label.clone(),
                })
                .collect(),
            sensitive: q.sensitive,
            json: json.clone(),
        },
        Step::Lookup { step, .. } => plain(step, "lookup", ""),
        Step::RunAction { step, .. } => plain(step, "action", ""),
        Step::Enqueue { step, prompt, .. }
        | Step::Voicemail { step, prompt, .. }
        | Step::Transfer { step, prompt, .. } => plain(
            step,
            "route",
            prompt.as_ref().map_or("", |p| p.text.as_str()),
        ),
        Step::End { step, prompt, .. } => {
            plain(step, "end", prompt.as_ref().map_or("", |p| p.text.as_str()))
        }
    }
}

/// Asks the ACD driver which script and customer `agent`'s call `item` has.
async fn script_call(
    acd: &mpsc::UnboundedSender<AcdRequest>,
    agent: &str,
    item: u64,
) -> Result<ScriptCall, BackendError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    acd.send(AcdRequest::Control(
        super::call_control::ControlRequest::ScriptCall {
            agent: agent.to_string(),
            item: crate::acd::ItemId(item),
            reply: tx,
        },
    ))
    .map_err(|_| BackendError::Unavailable("the ACD is stopping".into()))?;
    rx.await
        .map_err(|_| BackendError::Unavailable("the ACD is stopping".into()))?
}
