//! The ACD (automatic call distribution) driver: one task owning the pure
//! [`crate::acd::Acd`] core, fed by call tasks (a caller joins, an offer was answered
//! or not, a call ended) and by agents' status changes; its actions become commands to
//! the caller's call task (music, position announcements, ring this agent, stop
//! ringing, overflow). The core's events go to the log; the durable event log and the
//! supervisor streams are later work (issues 5, 6, 9).

use super::*;
use crate::acd::{
    Acd, AgentConfig, AgentId, AgentStatus, CallerInfo, Input as AcdInput, ItemId, ItemKind,
    NewItem, NoAnswerReason, QueueConfig, QueueId, Tier,
};

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
        inbox: mpsc::UnboundedSender<CallInput>,
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
}

/// What the ACD tells a waiting caller's call task.
#[derive(Debug)]
pub(super) enum QueueCommand {
    Music,
    Announce {
        position: usize,
    },
    Offer {
        agent: u64,
        flow: Flow,
        uri: String,
        ring_timeout: Duration,
    },
    CancelOffer,
    Overflow,
}

/// The ACD as configured, and the names behind its numbers.
struct AcdDriver {
    acd: Acd,
    agents: Vec<String>,
    items: HashMap<ItemId, mpsc::UnboundedSender<CallInput>>,
    /// The customer of each waiting call that has one, for offers' screen pops.
    customers: HashMap<ItemId, i64>,
    queues: HashMap<String, QueueId>,
    registrar: Arc<Registrar>,
}

/// Starts the ACD task; errors are configuration errors.
pub(super) fn spawn_acd(
    config: &Config,
    registrar: Arc<Registrar>,
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
        acd.add_queue(qc)?;
        queues.insert(q.name.get_ref().clone(), id);
    }
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
        acd.add_agent(start, ac)?;
        agents.push(a.name.get_ref().clone());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = AcdDriver {
        acd,
        agents,
        items: HashMap::new(),
        customers: HashMap::new(),
        queues,
        registrar,
    };
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
        }
    }

    fn input(&mut self, input: AcdInput) {
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
                inbox,
            } => {
                let Some(&q) = self.queues.get(&queue) else {
                    let _ = inbox.send(CallInput::Queue(QueueCommand::Overflow));
                    return;
                };
                self.items.insert(ItemId(item), inbox);
                if let Some(customer) = customer {
                    self.customers.insert(ItemId(item), customer);
                }
                self.input(AcdInput::Enqueue(NewItem {
                    id: ItemId(item),
                    kind: ItemKind::InboundCall,
                    queue: q,
                    priority,
                    skills: Vec::new(),
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
            AcdRequest::Ended { item } => {
                self.input(AcdInput::ItemEnded(ItemId(item)));
                self.items.remove(&ItemId(item));
                self.customers.remove(&ItemId(item));
            }
        }
    }

    fn tell(&self, item: ItemId, command: QueueCommand) {
        if let Some(inbox) = self.items.get(&item) {
            let _ = inbox.send(CallInput::Queue(command));
        }
    }

    async fn drain(&mut self) {
        while let Some(action) = self.acd.poll_action() {
            use crate::acd::Action as A;
            match action {
                A::Hold { item, .. } => self.tell(item, QueueCommand::Music),
                A::Announce { item, position, .. } => {
                    self.tell(item, QueueCommand::Announce { position })
                }
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
                A::Overflow { item, .. } => self.tell(item, QueueCommand::Overflow),
                other => tracing::info!(?other, "acd"),
            }
        }
        while let Some(event) = self.acd.poll_event() {
            tracing::info!(?event, "acd event");
        }
    }
}
