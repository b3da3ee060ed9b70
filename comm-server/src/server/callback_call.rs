//! A queued callback, dialled: the ACD reserved an agent for a caller who hung up to be
//! called back ([`crate::acd::Action::DialCustomer`]); this task connects the two.
//!
//! The agent is rung first (their desktop shows a callback to the customer's number)
//! and only once they answer is the customer dialled through the trunk, so the
//! customer never waits for an agent. The legs are [`super::outbound`]'s; the ACD
//! hears the outcome: the agent not answering is an ordinary no-answer (the callback
//! goes back in line at its place), the customer answering connects them, busy, no
//! answer or a failure report the customer not reached, which frees the agent.
//!
//! ```text
//!   RingingAgent --agent 2xx--> DiallingCustomer --2xx--> Connected --BYE either--> done
//!      '--no answer / 3xx-6xx--> done      '--ring timeout (CANCEL) / 3xx-6xx / agent BYE--> done
//! ```
//!
//! The ACD core does not retry a callback whose customer was not reached: the attempt
//! is in the event log (an abandoned callback), the CDR and the contact history.
//!
//! It must not own policy: which agent, and the place in line, are the core's.

use super::outbound::{OutLeg, Outbound};
use super::*;
use crate::campaigns::Outcome;

/// How long the customer's phone rings before we give up (no answer).
pub(super) const CUSTOMER_RING_TIMEOUT: Duration = Duration::from_secs(30);
/// How long we wait for a final answer after cancelling a leg (RFC 3261 §9.1: the
/// 487 normally comes at once; a 2xx crossing the CANCEL is hung up).
const CANCEL_GRACE: Duration = Duration::from_secs(4);
/// Played to the agent while the customer's phone rings.
const RINGBACK_PROMPT: &str = "tones/ringback";
/// SIP handle of the customer's INVITE.
const CUSTOMER: u64 = 1;
/// SIP handle of the agent's INVITE.
const AGENT: u64 = 2;

/// A callback due: the ACD driver hands it to the dialler ([`spawn_dialler`]).
pub(super) struct CallbackDue {
    /// The ACD item (the caller's original call).
    pub(super) item: u64,
    pub(super) agent: u64,
    pub(super) agent_name: String,
    /// Where the agent's phone is registered.
    pub(super) flow: Flow,
    pub(super) uri: String,
    /// The caller's number as the inbound call gave it.
    pub(super) number: String,
    pub(super) queue: String,
    pub(super) customer: Option<i64>,
    pub(super) ring_timeout: Duration,
    /// The ACD's commands for this call (the desktop's hang-up).
    pub(super) inbox: mpsc::UnboundedReceiver<CallInput>,
    pub(super) inbox_tx: mpsc::UnboundedSender<CallInput>,
    /// A campaign preview the agent chose to dial: its trunk, caller ID and Call-ID,
    /// and where its end is reported (its campaign records the attempt and history).
    pub(super) preview: Option<super::preview::PreviewDial>,
}

/// Starts the task that dials due callbacks and tells the ACD driver where it is.
pub(super) fn spawn_dialler(shared: &Arc<Shared>, cmd: &mpsc::UnboundedSender<Command>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<CallbackDue>();
    let _ = shared.acd.send(AcdRequest::Callback(
        super::callback::CallbackRequest::Dialler(tx),
    ));
    let out = Outbound {
        shared: shared.clone(),
        cmd: cmd.clone(),
    };
    tokio::spawn(async move {
        while let Some(due) = rx.recv().await {
            let span = tracing::info_span!("callback", item = due.item, agent = %due.agent_name);
            tokio::spawn(run(out.clone(), due).instrument(span));
        }
    });
}

/// Which trunk a number goes out through: the first whose prefixes match it, else the
/// first trunk configured.
fn trunk_for<'a>(trunks: &'a [Trunk], e164: &str) -> Option<&'a Trunk> {
    let digits = e164.trim_start_matches('+');
    trunks
        .iter()
        .find(|t| {
            t.prefixes
                .iter()
                .any(|p| e164.starts_with(p.as_str()) || digits.starts_with(p.as_str()))
        })
        .or_else(|| trunks.first())
}

/// What the ACD is told at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The agent did not take the callback: back in line.
    AgentMissed,
    /// The customer answered and talked to the agent; the item has ended.
    Talked,
    /// The customer was not reached (busy, no answer, a failure).
    NotReached(Outcome),
}

async fn run(out: Outbound, mut due: CallbackDue) {
    let shared = out.shared.clone();
    let acd = shared.acd.clone();
    let item = due.item;
    let tell = |r: super::callback::CallbackRequest| {
        let _ = acd.send(AcdRequest::Callback(r));
    };
    let e164 = match shared
        .config
        .customers
        .dial_plan()
        .map_err(|e| e.to_string())
        .and_then(|plan| {
            crate::phone::normalise(&due.number, &plan)
                .map(|n| n.into_string())
                .map_err(|e| e.to_string())
        }) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(number = %due.number, error = %e, "callback number is not dialable");
            tell(super::callback::CallbackRequest::NotReached(item));
            return;
        }
    };
    let trunk = match &due.preview {
        Some(p) => Some(p.trunk.clone()),
        None => trunk_for(&shared.trunks, &e164).cloned(),
    };
    let Some(trunk) = trunk else {
        tracing::warn!(number = %e164, "no trunk to call the customer back through");
        tell(super::callback::CallbackRequest::NotReached(item));
        return;
    };
    let Some(uid) = out.register(due.inbox_tx.clone()).await else {
        tell(super::callback::CallbackRequest::NotReached(item));
        return;
    };
    let started_at_ms = shared.clock.unix_ms();
    let mut call = CallbackCall {
        out: &out,
        uid,
        trunk,
        e164,
        customer: None,
        agent: None,
        next_handle: 10,
        answered_at_ms: None,
        customer_call_id: due
            .preview
            .as_ref()
            .map_or_else(crate::sip::random_token, |p| p.call_id.clone()),
    };
    let verdict = call.converse(&mut due).await;
    out.close([&call.customer, &call.agent]).await;
    let _ = out.cmd.send(Command::CallEnded { uid });
    tracing::info!(?verdict, "callback over");
    match verdict {
        Verdict::AgentMissed => tell(super::callback::CallbackRequest::AgentMissed(
            item, due.agent,
        )),
        Verdict::Talked => {
            let _ = acd.send(AcdRequest::Ended { item });
        }
        Verdict::NotReached(_) => tell(super::callback::CallbackRequest::NotReached(item)),
    }
    if verdict != Verdict::AgentMissed {
        call.record(&due, verdict, started_at_ms).await;
        if let Some(p) = &due.preview {
            let outcome = match verdict {
                Verdict::NotReached(o) => o,
                _ => Outcome::Answered,
            };
            let _ = p.report.send(super::preview::PreviewEnd::Dialled {
                outcome,
                answered_at_ms: call.answered_at_ms,
                agent: due.agent_name.clone(),
            });
        }
    }
}

struct CallbackCall<'a> {
    out: &'a Outbound,
    uid: u64,
    trunk: Trunk,
    e164: String,
    customer: Option<OutLeg>,
    agent: Option<OutLeg>,
    next_handle: u64,
    answered_at_ms: Option<i64>,
    customer_call_id: String,
}

impl CallbackCall<'_> {
    fn hang_up(&mut self, customer: bool, agent: bool) {
        let (out, uid) = (self.out, self.uid);
        let legs = [
            self.customer.as_mut().filter(|_| customer),
            self.agent.as_mut().filter(|_| agent),
        ];
        for leg in legs.into_iter().flatten().filter(|l| l.answered) {
            self.next_handle += 1;
            out.bye(uid, leg, self.next_handle);
        }
    }

    async fn converse(&mut self, due: &mut CallbackDue) -> Verdict {
        let (out, uid) = (self.out, self.uid);
        // The agent's phone shows the customer's number as the caller.
        let from = self.e164.trim_start_matches('+').to_owned();
        let Some((mut leg, offer)) = out
            .open_leg(
                uid,
                crate::sip::random_token(),
                due.flow,
                &from,
                due.uri.clone(),
                AGENT,
            )
            .await
        else {
            return Verdict::AgentMissed;
        };
        tracing::info!(number = %self.e164, "ringing the agent for a callback");
        out.invite(uid, &mut leg, &offer);
        self.agent = Some(leg);
        let far = Instant::now() + Duration::from_secs(24 * 3600);
        let mut agent_deadline = Some(Instant::now() + due.ring_timeout);
        let mut customer_deadline: Option<Instant> = None;
        let mut cancel_deadline: Option<Instant> = None;
        let mut customer_rang_out = false;
        let mut connected = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(agent_deadline.unwrap_or(far)), if agent_deadline.is_some() => {
                    agent_deadline = None;
                    tracing::info!("agent did not answer the callback");
                    let _ = out.cmd.send(Command::Cancel { uid, handle: AGENT });
                    cancel_deadline = Some(Instant::now() + CANCEL_GRACE);
                }
                _ = tokio::time::sleep_until(cancel_deadline.unwrap_or(far)), if cancel_deadline.is_some() => {
                    return Verdict::AgentMissed;
                }
                _ = tokio::time::sleep_until(customer_deadline.unwrap_or(far)), if customer_deadline.is_some() => {
                    customer_deadline = None;
                    customer_rang_out = true;
                    let _ = out.cmd.send(Command::Cancel { uid, handle: CUSTOMER });
                }
                input = due.inbox.recv() => match input {
                    None | Some(CallInput::HangUp) | Some(CallInput::Queue(QueueCommand::HangUp)) => {
                        if self.customer.is_some() && !connected {
                            let _ = out.cmd.send(Command::Cancel { uid, handle: CUSTOMER });
                        }
                        self.hang_up(true, true);
                        return if connected { Verdict::Talked } else { Verdict::NotReached(Outcome::Failed) };
                    }
                    Some(CallInput::Response { handle: AGENT, response }) => {
                        if response.status < 200 {
                            continue;
                        }
                        let Some(a) = self.agent.as_mut() else { continue };
                        if !(200..300).contains(&response.status) {
                            tracing::info!(status = response.status, "agent's phone refused the callback");
                            return Verdict::AgentMissed;
                        }
                        a.established(&response);
                        out.ack(a);
                        if cancel_deadline.is_some() || !out.start_media(a, &response.body) {
                            // Answered across our CANCEL, or no usable media.
                            self.hang_up(false, true);
                            return Verdict::AgentMissed;
                        }
                        agent_deadline = None;
                        if let (Ok(p), Some((id, _))) = (out.shared.prompts.prompt(RINGBACK_PROMPT), a.media.as_ref()) {
                            let _ = out.shared.engine.command(*id, MediaCommand::LoopMusic(p));
                        }
                        let caller_id = match &due.preview {
                            Some(p) => p.caller_id.clone(),
                            None => self.trunk.caller_id.clone().unwrap_or_else(|| "anonymous".into()),
                        };
                        let opened = out
                            .open_trunk_leg(uid, self.customer_call_id.clone(), &self.trunk, &caller_id, &self.e164, CUSTOMER)
                            .await;
                        let Some((mut c, offer)) = opened else {
                            self.hang_up(false, true);
                            return Verdict::NotReached(Outcome::Failed);
                        };
                        tracing::info!(trunk = %self.trunk.name, number = %self.e164, "agent answered; calling the customer");
                        out.invite(uid, &mut c, &offer);
                        self.customer = Some(c);
                        customer_deadline = Some(Instant::now() + CUSTOMER_RING_TIMEOUT);
                    }
                    Some(CallInput::Response { handle: CUSTOMER, response }) => {
                        if response.status < 200 {
                            continue;
                        }
                        customer_deadline = None;
                        let Some(c) = self.customer.as_mut() else { continue };
                        if !(200..300).contains(&response.status) {
                            let outcome = Outcome::from_final_status(response.status, customer_rang_out);
                            tracing::info!(status = response.status, outcome = outcome.as_str(), "customer not reached");
                            self.hang_up(false, true);
                            return Verdict::NotReached(outcome);
                        }
                        c.established(&response);
                        out.ack(c);
                        let started = out.start_media(c, &response.body);
                        if let Some((id, _)) = self.agent.as_ref().and_then(|a| a.media.as_ref()) {
                            let _ = out.shared.engine.command(*id, MediaCommand::Stop);
                        }
                        let bridged = started
                            && match (self.customer.as_ref(), self.agent.as_ref()) {
                                (Some(c), Some(a)) => out.bridge(c, a),
                                _ => false,
                            };
                        if !bridged {
                            tracing::warn!("callback answered but media could not be bridged");
                            self.hang_up(true, true);
                            return Verdict::NotReached(Outcome::Failed);
                        }
                        tracing::info!("customer answered; connected to the agent");
                        self.answered_at_ms = Some(out.shared.clock.unix_ms());
                        connected = true;
                        let _ = out.shared.acd.send(AcdRequest::Callback(
                            super::callback::CallbackRequest::Answered(due.item),
                        ));
                    }
                    Some(CallInput::Response { .. }) => {}
                    Some(CallInput::Request { tx, request, .. }) => {
                        let from_customer = self.customer.as_ref().is_some_and(|c| c.call_id == request.call_id());
                        match request.method {
                            Method::Bye => {
                                out.respond(tx, &request, 200);
                                if from_customer {
                                    if let Some(c) = self.customer.as_mut() {
                                        c.answered = false;
                                    }
                                    self.hang_up(false, true);
                                } else {
                                    if let Some(a) = self.agent.as_mut() {
                                        a.answered = false;
                                    }
                                    if !connected && self.customer.is_some() {
                                        let _ = out.cmd.send(Command::Cancel { uid, handle: CUSTOMER });
                                    }
                                    self.hang_up(true, false);
                                }
                                return if connected {
                                    Verdict::Talked
                                } else if from_customer {
                                    Verdict::NotReached(Outcome::Failed)
                                } else {
                                    // The agent hung up while the customer's phone rang.
                                    Verdict::NotReached(Outcome::Abandoned)
                                };
                            }
                            // No re-offers yet (hold, codec changes): the session stays
                            // as it is (RFC 3261 §14.2).
                            Method::Invite | Method::Update => out.respond(tx, &request, 488),
                            _ => out.respond(tx, &request, 200),
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// The CDR and the customer's contact history for a callback the agent took.
    async fn record(&self, due: &CallbackDue, verdict: Verdict, started_at_ms: i64) {
        let shared = &self.out.shared;
        let ended_at_ms = shared.clock.unix_ms();
        let outcome = match verdict {
            Verdict::Talked => Outcome::Answered,
            Verdict::NotReached(o) => o,
            Verdict::AgentMissed => return,
        };
        let end_reason = match outcome {
            Outcome::Answered => store::EndReason::Answered,
            Outcome::Busy => store::EndReason::Busy,
            Outcome::NoAnswer => store::EndReason::NoAnswer,
            Outcome::Rejected => store::EndReason::Rejected,
            Outcome::Abandoned => store::EndReason::Cancelled,
            _ => store::EndReason::Failed,
        };
        let cdr = Cdr {
            call_id: self.customer_call_id.clone(),
            direction: Direction::Outbound,
            caller: due.agent_name.clone(),
            callee: self.e164.clone(),
            route: format!("callback:{}", due.queue),
            started_at_ms,
            answered_at_ms: self.answered_at_ms,
            ended_at_ms,
            hung_up_by: store::HungUpBy::System,
            end_reason,
            sip_status: if outcome == Outcome::Answered { 200 } else { 0 },
            legs_json: serde_json::json!([
                { "party": "agent", "agent": due.agent_name },
                { "party": "customer", "number": self.e164, "trunk": self.trunk.name },
            ])
            .to_string(),
            media_quality_json: None,
        };
        if let Err(e) = shared.store.insert_cdr(&cdr).await {
            tracing::warn!(error = %e, "callback CDR not written");
        }
        if due.preview.is_some() {
            // The campaign writes a preview's history, as for its other calls.
            return;
        }
        let history = store::Contact {
            customer_id: due.customer,
            phone: Some(self.e164.clone()),
            kind: store::ContactKind::Callback,
            direction: Some(Direction::Outbound),
            started_at_ms,
            ended_at_ms: Some(ended_at_ms),
            queue: Some(due.queue.clone()),
            agent: Some(due.agent_name.clone()),
            outcome: Some(outcome.as_str().to_owned()),
            call_id: Some(self.customer_call_id.clone()),
            details: serde_json::json!({ "item": due.item, "trunk": self.trunk.name }),
        };
        if let Err(e) = shared.store.add_history(&history).await {
            tracing::warn!(error = %e, "callback not in the contact history");
        }
    }
}
