//! The ACD (automatic call distribution) driver: one task owning the pure
//! [`crate::acd::Acd`] core, fed by call tasks (a caller joins, an offer was answered
//! or not, a call ended) and by agents' status changes; its actions become commands to
//! the caller's call task (music, position announcements, ring this agent, stop
//! ringing, overflow). The core's events go to the durable event log
//! ([`super::event_log`]) and the tracing log; after each input the queue and agent
//! gauges of `/metrics` are refreshed. The supervisor streams are later work (issue 6).

use super::*;
use crate::acd::{
    Acd, AgentConfig, AgentId, AgentState, AgentStatus, CallerInfo, Input as AcdInput, ItemId,
    ItemKind, NewItem, NoAnswerReason, QueueConfig, QueueId, Tier,
};
use crate::metrics::Metrics;
use crate::reports;

/// What call tasks and agents tell the ACD.
pub(super) enum AcdRequest {
    Enqueue {
        item: u64,
        queue: String,
        /// Higher is served first (from the script's `<enqueue priority>`).
        priority: u8,
        caller: Option<String>,
        /// The caller's customer record, when the caller ID or the IVR found one: what
        /// an agent's screen pop is built from (`Store::screen_pop_data`).
        customer: Option<i64>,
        /// Skills the caller needs (minimum levels), from the route or the script.
        skills: Vec<(String, u8)>,
        inbox: mpsc::UnboundedSender<CallInput>,
    },
    /// A waiting caller pressed a key (exit key, callback key).
    Key {
        item: u64,
        digit: char,
    },
    Status {
        agent: String,
        status: AgentStatus,
    },
    OfferAnswered {
        item: u64,
        agent: u64,
    },
    OfferFailed {
        item: u64,
        agent: u64,
    },
    Ended {
        item: u64,
    },
    /// From the agent gateway (desktops and supervisors over gRPC).
    Gateway(super::gateway::GatewayRequest),
    /// Hold and transfer from an agent's desktop (see `call_control.rs`).
    Control(super::call_control::ControlRequest),
    /// An answered campaign call waits for an agent (see `campaign.rs`).
    EnqueueCampaign {
        item: u64,
        /// The customer leg's Call-ID: names the attempt the disposition goes to.
        call_id: String,
        queue: String,
        caller: Option<String>,
        customer: Option<i64>,
        inbox: mpsc::UnboundedSender<CallInput>,
    },
    /// A screen-pop lookup ended (see `screen_pop.rs`).
    PopReady {
        item: ItemId,
        pop: super::screen_pop::PopData,
    },
    /// The callback dialler's reports (see `callback.rs`).
    Callback(super::callback::CallbackRequest),
    /// Voicemail tasks: a message to work on, an agent accepting or finishing one
    /// (see `voicemail_work.rs`).
    Voicemail(super::voicemail_work::VoicemailRequest),
    /// A preview-mode campaign's contact waits for an agent (see `preview.rs`).
    EnqueuePreview(super::preview::NewPreview),
    /// An agent dials (`dial`) or skips the preview offered to them.
    Preview {
        agent: String,
        item: ItemId,
        dial: bool,
        reply: tokio::sync::oneshot::Sender<Result<(), agent_gateway::BackendError>>,
    },
    /// A campaign asks how many of these agents are ready and busy (for its pacer).
    CampaignFloor {
        agents: Vec<u64>,
        reply: tokio::sync::oneshot::Sender<(u32, u32)>,
    },
}

/// What the ACD tells a waiting caller's call task.
#[derive(Debug)]
pub(super) enum QueueCommand {
    Music,
    Announce {
        position: usize,
        /// Said after the position; `None` when no agent is staffed.
        estimated_wait: Option<Duration>,
        /// The queue's callback key, offered last; `None` when it has none.
        callback_key: Option<char>,
    },
    Offer {
        agent: u64,
        flow: Flow,
        uri: String,
        ring_timeout: Duration,
    },
    CancelOffer,
    Overflow,
    /// Leave the queue for another target (overflow, exit key).
    Leave(crate::config::QueueExit),
    /// The caller asked to be called back: say so, then hang up.
    CallbackBooked,
    /// The agent hung up from the desktop.
    HangUp,
}

/// The ACD as configured, and the names behind its numbers.
pub(super) struct AcdDriver {
    pub(super) acd: Acd,
    pub(super) agents: Vec<String>,
    pub(super) items: HashMap<ItemId, mpsc::UnboundedSender<CallInput>>,
    pub(super) queues: HashMap<String, QueueId>,
    /// Queue names by [`QueueId`], for the event log.
    queue_names: Vec<String>,
    /// The customer of each waiting call that has one, for offers' screen pops.
    pub(super) customers: HashMap<ItemId, i64>,
    pub(super) registrar: Arc<Registrar>,
    log: EventLog,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// What the agent gateway needs to know and publish (see `gateway.rs`).
    pub(super) desk: super::gateway::Desk,
    /// Skills, keys, overflow targets and callbacks (see `callback.rs`).
    pub(super) features: super::callback::QueueFeatures,
    /// Voicemail tasks in the ACD (see `voicemail_work.rs`).
    pub(super) voicemail: super::voicemail_work::VoicemailTasks,
    /// Preview-mode campaign contacts in the ACD (see `preview.rs`).
    pub(super) previews: super::preview::Previews,
}

/// Starts the ACD task; errors are configuration errors.
pub(super) fn spawn_acd(
    config: &Config,
    registrar: Arc<Registrar>,
    log: EventLog,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    mut desk: super::gateway::Desk,
) -> anyhow::Result<mpsc::UnboundedSender<AcdRequest>> {
    let start = now();
    let mut acd = Acd::new(start, rand::random());
    let mut queues = HashMap::new();
    for (i, q) in config.queues.iter().enumerate() {
        let id = QueueId(i as u32);
        let mut qc = QueueConfig::new(id);
        qc.strategy = q
            .strategy
            .get_ref()
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        qc.wrap_up = q.wrap_up.0;
        qc.ring_timeout = q.ring_timeout.0;
        qc.announce_every = q.announce_every.map(|d| d.0);
        super::callback::apply_queue_rules(&mut qc, q);
        acd.add_queue(qc)?;
        queues.insert(q.name.get_ref().clone(), id);
    }
    let mut features = super::callback::QueueFeatures::new(config);
    let mut agents = Vec::new();
    for (i, a) in config.agents.iter().enumerate() {
        let mut ac = AgentConfig::new(AgentId(i as u64));
        ac.tiers = a
            .queues
            .iter()
            .filter_map(|q| queues.get(q))
            .enumerate()
            .map(|(pos, q)| Tier {
                queue: *q,
                level: 1,
                position: pos as u32,
            })
            .collect();
        ac.skills = features.agent_skills(&a.skills)?;
        acd.add_agent(start, ac)?;
        agents.push(a.name.get_ref().clone());
        desk.add_agent(start, a.queues.clone());
    }
    // Every agent starts logged out: reports must not carry a status over a restart.
    log.write(crate::reports::log::server_started(clock.unix_ms()));
    desk.set_queues(config.queues.iter().map(|q| q.name.get_ref().clone()));
    let (tx, rx) = mpsc::unbounded_channel();
    desk.pops.report_to(tx.downgrade());
    let mut queue_names: Vec<(QueueId, String)> =
        queues.iter().map(|(n, q)| (*q, n.clone())).collect();
    queue_names.sort();
    let driver = AcdDriver {
        acd,
        agents,
        items: HashMap::new(),
        customers: HashMap::new(),
        queues,
        queue_names: queue_names.into_iter().map(|(_, n)| n).collect(),
        registrar,
        log,
        clock,
        metrics,
        desk,
        features,
        voicemail: Default::default(),
        previews: Default::default(),
    };
    driver.publish_metrics();
    tokio::spawn(driver.run(rx).instrument(tracing::info_span!("acd")));
    Ok(tx)
}

impl AcdDriver {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<AcdRequest>) {
        loop {
            let deadline = self.acd.poll_timeout().map(Instant::from_std);
            tokio::select! {
                request = requests.recv() => match request {
                    Some(r) => self.handle(r),
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))), if deadline.is_some() => {
                    self.acd.handle_timeout(now());
                }
            }
            self.drain().await;
            self.publish_metrics();
        }
    }

    /// Queue depths, longest waits and agents per status and state, for `/metrics`.
    /// Costs one pass over queues and agents per input: fine for hundreds of agents.
    fn publish_metrics(&self) {
        let now = now();
        let mut snapshot = crate::metrics::AcdSnapshot::default();
        for (i, name) in self.queue_names.iter().enumerate() {
            if let Some(stats) = self.acd.queue_stats(now, QueueId(i as u32)) {
                snapshot.queues.push((
                    name.clone(),
                    stats.waiting as u64,
                    stats.longest_wait.as_secs_f64(),
                ));
            }
        }
        for i in 0..self.agents.len() {
            let id = AgentId(i as u64);
            let status = match self.acd.agent_status(id) {
                Some(AgentStatus::LoggedOut) | None => 0,
                Some(AgentStatus::Available) => 1,
                Some(AgentStatus::OnBreak { .. }) => 2,
            };
            let state = match self.acd.agent_state(id) {
                Some(AgentState::Idle) | None => 0,
                Some(AgentState::Resting) => 1,
                Some(AgentState::Ringing(_)) => 2,
                Some(AgentState::Reserved(_)) => 3,
                Some(AgentState::OnCall(_)) => 4,
                Some(AgentState::WrapUp) => 5,
            };
            snapshot.agents[status][state] += 1;
        }
        self.metrics.set_acd(snapshot);
    }

    pub(super) fn input(&mut self, input: AcdInput) {
        if let Err(e) = self.acd.handle_input(now(), input) {
            tracing::debug!(error = %e, "ACD refused input");
        }
    }

    fn handle(&mut self, request: AcdRequest) {
        match request {
            AcdRequest::Enqueue {
                item,
                queue,
                priority,
                caller,
                customer,
                skills,
                inbox,
            } => {
                let Some(&q) = self.queues.get(&queue) else {
                    let _ = inbox.send(CallInput::Queue(QueueCommand::Overflow));
                    return;
                };
                self.items.insert(ItemId(item), inbox);
                self.desk
                    .enqueued(now(), ItemId(item), caller.clone(), &queue);
                if let Some(customer) = customer {
                    self.customers.insert(ItemId(item), customer);
                }
                let skills = self.features.requirements(&skills);
                self.features
                    .waiting_in(ItemId(item), &queue, caller.clone());
                self.input(AcdInput::Enqueue(NewItem {
                    id: ItemId(item),
                    kind: ItemKind::InboundCall,
                    queue: q,
                    priority,
                    skills,
                    caller: CallerInfo {
                        number: caller,
                        name: None,
                    },
                }));
            }
            AcdRequest::Status { agent, status } => {
                let Some(id) = self
                    .agents
                    .iter()
                    .position(|a| *a == agent)
                    .map(|i| AgentId(i as u64))
                else {
                    return;
                };
                tracing::info!(%agent, ?status, "agent status");
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
            AcdRequest::OfferAnswered { item, agent } => {
                self.input(AcdInput::OfferAnswered(ItemId(item), AgentId(agent)))
            }
            AcdRequest::OfferFailed { item, agent } => self.input(AcdInput::OfferNotAnswered(
                ItemId(item),
                AgentId(agent),
                NoAnswerReason::NotAnswered,
            )),
            AcdRequest::Ended { item } if self.is_callback(ItemId(item)) => {
                // The caller left after booking a callback: the item keeps its place.
                self.items.remove(&ItemId(item));
            }
            AcdRequest::Ended { item } => {
                self.desk_item_ended(ItemId(item));
                self.features.forget(ItemId(item));
                self.input(AcdInput::ItemEnded(ItemId(item)));
                self.items.remove(&ItemId(item));
                self.customers.remove(&ItemId(item));
            }
            AcdRequest::Key { item, digit } => self.key(ItemId(item), digit),
            AcdRequest::Gateway(request) => self.handle_gateway(request),
            AcdRequest::Control(request) => self.handle_control(request),
            AcdRequest::EnqueueCampaign {
                item,
                call_id,
                queue,
                caller,
                customer,
                inbox,
            } => {
                let Some(&q) = self.queues.get(&queue) else {
                    let _ = inbox.send(CallInput::Queue(QueueCommand::Overflow));
                    return;
                };
                self.items.insert(ItemId(item), inbox);
                self.desk
                    .enqueued(now(), ItemId(item), caller.clone(), &queue);
                self.desk.campaign_call(ItemId(item), call_id);
                if let Some(customer) = customer {
                    self.customers.insert(ItemId(item), customer);
                }
                self.input(AcdInput::Enqueue(NewItem {
                    id: ItemId(item),
                    kind: super::campaign::campaign_item_kind(),
                    queue: q,
                    priority: u8::MAX,
                    skills: Vec::new(),
                    caller: CallerInfo {
                        number: caller,
                        name: None,
                    },
                }));
            }
            AcdRequest::PopReady { item, pop } => self.pop_ready(item, pop),
            AcdRequest::Callback(request) => self.callback_request(request),
            AcdRequest::Voicemail(request) => self.handle_voicemail(request),
            AcdRequest::EnqueuePreview(p) => self.enqueue_preview(p),
            AcdRequest::Preview {
                agent,
                item,
                dial,
                reply,
            } => {
                let _ = reply.send(self.preview_decision(&agent, item, dial));
            }
            AcdRequest::CampaignFloor { agents, reply } => {
                let _ = reply.send(super::campaign::campaign_floor(&self.acd, &agents));
            }
        }
    }

    pub(super) fn tell(&self, item: ItemId, command: QueueCommand) {
        if let Some(inbox) = self.items.get(&item) {
            let _ = inbox.send(CallInput::Queue(command));
        }
    }

    async fn drain(&mut self) {
        self.dial_previews().await;
        while let Some(action) = self.acd.poll_action() {
            use crate::acd::Action as A;
            if self.voicemail_action(&action) {
                continue;
            }
            self.desk_action(&action);
            match action {
                A::Hold { item, .. } => self.tell(item, QueueCommand::Music),
                A::Announce {
                    item,
                    position,
                    estimated_wait,
                } => self.tell(
                    item,
                    QueueCommand::Announce {
                        position,
                        estimated_wait,
                        callback_key: self.features.callback_key(item),
                    },
                ),
                A::Offer {
                    item,
                    agent,
                    ring_timeout,
                } => {
                    let name = self
                        .agents
                        .get(agent.0 as usize)
                        .cloned()
                        .unwrap_or_default();
                    let customer = self.customers.get(&item).copied();
                    tracing::info!(agent = %name, ?customer, "offering a call");
                    match self.registrar.locate(&name).await {
                        Ok(Some((flow, uri))) => self.tell(
                            item,
                            QueueCommand::Offer {
                                agent: agent.0,
                                flow,
                                uri,
                                ring_timeout,
                            },
                        ),
                        _ => {
                            tracing::info!(agent = %name, "agent has no registered phone");
                            self.input(AcdInput::OfferNotAnswered(
                                item,
                                agent,
                                NoAnswerReason::Failed,
                            ));
                        }
                    }
                }
                A::CancelOffer { item, .. } => self.tell(item, QueueCommand::CancelOffer),
                A::Overflow { item, target } => self.overflow(item, target),
                A::DialCustomer {
                    item,
                    agent,
                    number,
                } => self.dial_customer(item, agent, number).await,
                other => tracing::info!(?other, "acd"),
            }
        }
        while let Some(event) = self.acd.poll_event() {
            self.record_event(&event);
        }
        self.desk_publish_changes();
    }

    /// An event to the durable log (reports) and the desk (desktops, wallboard).
    pub(super) fn record_event(&mut self, event: &crate::acd::Event) {
        tracing::info!(?event, "acd event");
        let at_ms = self.clock.unix_ms();
        let record = reports::log::record(at_ms, event, &self.queue_names, &self.agents);
        self.log.write(record);
        self.desk_event(event);
    }
}
