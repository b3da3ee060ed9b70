//! The ACD state machine: see the module docs of [`crate::acd`] for the diagrams.
//!
//! Indexes kept in step with the state (and checked by the property tests):
//! * `Queue::order`: every Waiting item of the queue in service order, for positions.
//! * `Queue::groups`: the same items split by skill requirements, for agent-side routing.
//! * `Queue::free`: every agent serving the queue whose status is available and state
//!   idle, sorted by `(tier level, strategy key)`, for item-side routing.
//!
//! Timers live in one heap and are never removed: each carries the generation (agents)
//! or serial (items) it was armed for and is ignored if that moved on. A stale timer only
//! costs a spurious wake-up.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use super::AcdError;
use super::model::*;
use super::rng::Rng;
use super::strategy::AgentFacts;

mod routing;

/// Service order within a queue: priority (higher first), then enqueue serial.
type WaitKey = (Reverse<u8>, u64, ItemId);
/// Order of free agents within a queue: tier level, strategy key, agent index.
type FreeKey = (u8, (u64, u64), usize);

/// Hashes the host's numeric ids with one multiply (Fibonacci hashing) instead of
/// SipHash: ids come from our own host, not from the network, so flooding is not a
/// concern, and item lookups sit on the routing path.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        let h = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // Fold the well-mixed high bits down: the table indexes with the low ones.
        self.0 = h ^ (h >> 32);
    }
}

type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Weight of the newest call in the queue's average handle time.
const AHT_WEIGHT: f64 = 0.05;

#[derive(Debug)]
struct Queue {
    config: QueueConfig,
    order: BTreeSet<WaitKey>,
    groups: BTreeMap<Vec<SkillRequirement>, BTreeSet<WaitKey>>,
    free: BTreeSet<FreeKey>,
    /// Members whose status is not logged out.
    logged_in: usize,
    /// Members whose status is available.
    available: usize,
    /// Highest tier level any agent ever had here: no tier-delay timer goes past it.
    max_level: u8,
    /// The same members weighted by their share of time for this queue: an agent
    /// serving `k` queues counts `1/k` in each. The EWT's staffing.
    staffed: f64,
    /// Round-robin memory: tier position of the agent last matched.
    last_position: Option<u32>,
    /// Average handle time, seconds.
    aht_secs: f64,
    /// Average time from offer to answer, seconds: part of every caller's wait.
    ring_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Waiting,
    Offered(Vec<usize>),
    Reserved(usize),
    Connected(usize),
}

#[derive(Debug)]
struct Item {
    kind: ItemKind,
    queue: usize,
    priority: u8,
    skills: Vec<SkillRequirement>,
    caller: CallerInfo,
    /// Unique per wait; fixes the place in line and tags this wait's timers.
    serial: u64,
    enqueued_at: Instant,
    /// When the current offer started ringing.
    offered_at: Instant,
    phase: Phase,
    /// The caller hung up to be called back (or the item is a callback task).
    callback: bool,
}

impl Item {
    /// The item's place in line; never changes during one wait, which is what keeps a
    /// queued callback's or a re-queued caller's place.
    fn key(&self, id: ItemId) -> WaitKey {
        (Reverse(self.priority), self.serial, id)
    }

    /// A caller is holding the line, so hold music, announcements and max wait apply.
    fn on_line(&self) -> bool {
        !self.callback
            && matches!(
                self.kind,
                ItemKind::InboundCall | ItemKind::CampaignCall { .. }
            )
    }
}

#[derive(Debug)]
struct AgentTier {
    queue: usize,
    level: u8,
    position: u32,
}

#[derive(Debug)]
struct Agent {
    id: AgentId,
    /// Sorted by skill for binary search.
    skills: Vec<(SkillId, Level)>,
    tiers: Vec<AgentTier>,
    wrap_up: Option<Duration>,
    no_answer_delay: Duration,
    reject_delay: Duration,
    busy_delay: Duration,
    max_no_answer: u32,
    persistent_line: bool,
    status: AgentStatus,
    state: AgentState,
    /// Bumped on every state change; stale timers compare against it.
    generation: u64,
    /// Whether the agent sits in its queues' free sets, under `free_keys` (same order
    /// as `tiers`).
    listed: bool,
    free_keys: Vec<FreeKey>,
    idle_since: Instant,
    calls: u64,
    talk: Duration,
    no_answers: u32,
    answered_at: Option<Instant>,
    /// Queue of the last connected item, for its handle-time average.
    last_queue: Option<usize>,
}

impl Agent {
    /// Proficiency in a skill, `None` if the agent lacks it.
    fn level(&self, skill: SkillId) -> Option<Level> {
        self.skills
            .binary_search_by_key(&skill, |&(s, _)| s)
            .ok()
            .map(|i| self.skills[i].1)
    }

    /// Status and state together: what makes an agent eligible for an offer.
    fn is_free(&self) -> bool {
        self.status == AgentStatus::Available && self.state == AgentState::Idle
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Ring { agent: usize, generation: u64 },
    AgentWake { agent: usize, generation: u64 },
    MaxWait { item: ItemId, serial: u64 },
    Announce { item: ItemId, serial: u64 },
    Widen { item: ItemId, serial: u64 },
}

/// The ACD core. See the [module docs](crate::acd).
#[derive(Debug)]
pub struct Acd {
    epoch: Instant,
    next_serial: u64,
    queues: Vec<Queue>,
    queue_index: IdMap<QueueId, usize>,
    agents: Vec<Agent>,
    agent_index: IdMap<AgentId, usize>,
    items: IdMap<ItemId, Item>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// Agents that became free during this input, to route before returning.
    freed: Vec<usize>,
    /// Items that became routable during this input.
    routable: Vec<(ItemId, u64)>,
    /// Items to greet with position and wait once routing settled.
    entry_announcements: Vec<(ItemId, u64)>,
    rng: Rng,
}

impl Acd {
    /// An empty ACD. `now` is any instant before the first input (it anchors the
    /// strategy keys); `seed` drives the random strategy.
    pub fn new(now: Instant, seed: u64) -> Acd {
        Acd {
            epoch: now,
            next_serial: 0,
            queues: Vec::new(),
            queue_index: IdMap::default(),
            agents: Vec::new(),
            agent_index: IdMap::default(),
            items: IdMap::default(),
            timers: BinaryHeap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            freed: Vec::new(),
            routable: Vec::new(),
            entry_announcements: Vec::new(),
            rng: Rng::new(seed),
        }
    }

    /// Adds a queue.
    pub fn add_queue(&mut self, mut config: QueueConfig) -> Result<(), AcdError> {
        if self.queue_index.contains_key(&config.id) {
            return Err(AcdError::DuplicateQueue(config.id));
        }
        if config.weight == 0 {
            return Err(AcdError::ZeroWeight(config.id));
        }
        config.widening.sort_by_key(|s| s.after);
        self.queue_index.insert(config.id, self.queues.len());
        self.queues.push(Queue {
            aht_secs: config.expected_handle_time.as_secs_f64(),
            ring_secs: 0.0,
            config,
            order: BTreeSet::new(),
            groups: BTreeMap::new(),
            free: BTreeSet::new(),
            logged_in: 0,
            available: 0,
            max_level: 1,
            staffed: 0.0,
            last_position: None,
        });
        Ok(())
    }

    /// Adds an agent, logged out. Its queues must exist.
    pub fn add_agent(&mut self, now: Instant, config: AgentConfig) -> Result<(), AcdError> {
        if self.agent_index.contains_key(&config.id) {
            return Err(AcdError::DuplicateAgent(config.id));
        }
        let tiers = self.tiers(config.id, &config.tiers)?;
        self.note_levels(&tiers);
        let mut skills = config.skills.clone();
        skills.sort();
        skills.dedup_by_key(|s| s.0);
        self.agent_index.insert(config.id, self.agents.len());
        self.agents.push(Agent {
            id: config.id,
            skills,
            tiers,
            wrap_up: config.wrap_up,
            no_answer_delay: config.no_answer_delay,
            reject_delay: config.reject_delay,
            busy_delay: config.busy_delay,
            max_no_answer: config.max_no_answer,
            persistent_line: config.persistent_line,
            status: AgentStatus::LoggedOut,
            state: AgentState::Idle,
            generation: 0,
            listed: false,
            free_keys: Vec::new(),
            idle_since: now,
            calls: 0,
            talk: Duration::ZERO,
            no_answers: 0,
            answered_at: None,
            last_queue: None,
        });
        Ok(())
    }

    /// Moves an agent to other queues (a supervisor's change), whatever the agent is
    /// doing: a call in progress continues, and the new queues apply from the next match.
    pub fn set_tiers(
        &mut self,
        now: Instant,
        agent: AgentId,
        tiers: &[Tier],
    ) -> Result<(), AcdError> {
        let a = self.agent(agent)?;
        let new = self.tiers(agent, tiers)?;
        self.note_levels(&new);
        let status = self.agents[a].status.clone();
        self.unlist(a);
        let old_queues: Vec<usize> = self.agents[a].tiers.iter().map(|t| t.queue).collect();
        self.tally(a, &status, false);
        self.agents[a].tiers = new;
        self.tally(a, &status, true);
        if status != AgentStatus::LoggedOut {
            for q in old_queues {
                self.leave_if_empty(now, q);
            }
        }
        self.sync_free(a);
        self.settle(now);
        Ok(())
    }

    /// Replaces an agent's skills (a supervisor's change), whatever the agent is doing:
    /// a call in progress continues, and the new skills apply from the next match (a
    /// free agent who now qualifies for a waiting item gets it at once).
    pub fn set_skills(
        &mut self,
        now: Instant,
        agent: AgentId,
        skills: &[(SkillId, Level)],
    ) -> Result<(), AcdError> {
        let a = self.agent(agent)?;
        let mut skills = skills.to_vec();
        skills.sort();
        skills.dedup_by_key(|s| s.0);
        // Re-listing puts a free agent on the `freed` list the next settle matches.
        self.unlist(a);
        self.agents[a].skills = skills;
        self.sync_free(a);
        self.settle(now);
        Ok(())
    }

    /// Remembers the highest tier level per queue, which bounds tier-delay timers.
    fn note_levels(&mut self, tiers: &[AgentTier]) {
        for t in tiers {
            let queue = &mut self.queues[t.queue];
            queue.max_level = queue.max_level.max(t.level);
        }
    }

    /// Checks a tier list (queues exist, one tier per queue) and resolves queue indexes.
    fn tiers(&self, agent: AgentId, tiers: &[Tier]) -> Result<Vec<AgentTier>, AcdError> {
        let mut out: Vec<AgentTier> = Vec::with_capacity(tiers.len());
        for t in tiers {
            let queue = self.queue(t.queue)?;
            if out.iter().any(|o| o.queue == queue) {
                return Err(AcdError::DuplicateTier {
                    agent,
                    queue: t.queue,
                });
            }
            out.push(AgentTier {
                queue,
                level: t.level,
                position: t.position,
            });
        }
        Ok(out)
    }

    /// Feeds one input. On error nothing changed.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), AcdError> {
        let result = match input {
            Input::Enqueue(item) => self.enqueue(now, item),
            Input::Login(agent) => {
                let a = self.agent(agent)?;
                if self.agents[a].status != AgentStatus::LoggedOut {
                    return Err(AcdError::AlreadyLoggedIn(agent));
                }
                self.change_status(now, a, AgentStatus::Available);
                Ok(())
            }
            Input::Logout(agent) => {
                let a = self.agent(agent)?;
                self.change_status(now, a, AgentStatus::LoggedOut);
                Ok(())
            }
            Input::SetStatus(agent, status) => {
                let a = self.agent(agent)?;
                self.change_status(now, a, status);
                Ok(())
            }
            Input::OfferAnswered(item, agent) => self.offer_answered(now, item, agent),
            Input::OfferNotAnswered(item, agent, reason) => {
                let a = self.agent(agent)?;
                if self.is_reserved(item, a) {
                    // A callback rings its reserved agent before the customer is
                    // dialled: the agent not answering is an ordinary no-answer.
                    self.items.get_mut(&item).expect("checked").phase = Phase::Offered(vec![a]);
                    self.set_state(a, AgentState::Ringing(item));
                } else {
                    self.check_offered(item, a)?;
                }
                self.no_answer(now, item, a, reason);
                Ok(())
            }
            Input::CustomerAnswered(item) => self.customer_answered(now, item),
            Input::CustomerNotReached(item) => self.customer_not_reached(now, item),
            Input::CallbackRequested(item) => self.callback_requested(now, item),
            Input::ExitKey(item) => self.exit_key(now, item),
            Input::ItemEnded(item) => self.item_ended(now, item),
            Input::Transfer(item, queue) => self.transfer(now, item, queue),
            Input::TransferToAgent(item, agent) => self.transfer_to_agent(now, item, agent),
            Input::WrapUpDone(agent, disposition) => {
                let a = self.agent(agent)?;
                if self.agents[a].state != AgentState::WrapUp {
                    return Err(AcdError::NotInWrapUp(agent));
                }
                self.end_wrap_up(now, a, disposition);
                Ok(())
            }
        };
        self.settle(now);
        result
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, _, timer))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.fire(now, timer);
        }
        self.settle(now);
    }

    /// When [`Acd::handle_timeout`] should next be called. May be early (a stale timer),
    /// never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next thing the host must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the queue event log.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// An agent's status.
    pub fn agent_status(&self, agent: AgentId) -> Option<&AgentStatus> {
        self.agent_index
            .get(&agent)
            .map(|&a| &self.agents[a].status)
    }

    /// An agent's state.
    pub fn agent_state(&self, agent: AgentId) -> Option<AgentState> {
        self.agent_index.get(&agent).map(|&a| self.agents[a].state)
    }

    /// Items waiting in a queue (not counting those ringing an agent).
    pub fn waiting(&self, queue: QueueId) -> Option<usize> {
        self.queue_index
            .get(&queue)
            .map(|&q| self.queues[q].order.len())
    }

    /// Items waiting in all queues.
    pub fn waiting_total(&self) -> usize {
        self.queues.iter().map(|q| q.order.len()).sum()
    }

    /// Items anywhere in the ACD (waiting, offered, reserved or connected).
    pub fn items(&self) -> usize {
        self.items.len()
    }

    /// A queue's live figures.
    pub fn queue_stats(&self, now: Instant, queue: QueueId) -> Option<QueueStats> {
        let q = *self.queue_index.get(&queue)?;
        let state = &self.queues[q];
        // The oldest item is the first of some priority: one look per priority.
        let mut oldest: Option<Instant> = None;
        let mut next = state.order.first().copied();
        while let Some((Reverse(priority), _, id)) = next {
            let at = self.items[&id].enqueued_at;
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
            next = priority.checked_sub(1).and_then(|p| {
                state
                    .order
                    .range((Reverse(p), 0, ItemId(0))..)
                    .next()
                    .copied()
            });
        }
        Some(QueueStats {
            queue,
            waiting: state.order.len(),
            callbacks: state
                .order
                .iter()
                .filter(|(_, _, id)| self.items[id].callback)
                .count(),
            longest_wait: oldest.map_or(Duration::ZERO, |o| now.saturating_duration_since(o)),
            logged_in: state.logged_in,
            available: state.available,
            idle: state.free.len(),
            average_handle_time: Duration::from_secs_f64(state.aht_secs),
            estimated_wait: self.ewt(q, state.order.len() + 1),
        })
    }

    /// Whether the item is still in the ACD (in any phase).
    pub fn contains(&self, item: ItemId) -> bool {
        self.items.contains_key(&item)
    }

    /// Every item in the ACD, sorted; for tests.
    #[cfg(test)]
    pub(crate) fn item_ids(&self) -> Vec<ItemId> {
        let mut ids: Vec<ItemId> = self.items.keys().copied().collect();
        ids.sort();
        ids
    }

    /// A waiting item's position in its queue, 1 being next.
    pub fn position(&self, item: ItemId) -> Option<usize> {
        let it = self.items.get(&item)?;
        if it.phase != Phase::Waiting {
            return None;
        }
        let q = &self.queues[it.queue];
        Some(q.order.range(..it.key(item)).count() + 1)
    }

    /// The estimated wait for a waiting item; see the module docs for the formula.
    pub fn estimated_wait(&self, item: ItemId) -> Option<Duration> {
        let position = self.position(item)?;
        self.ewt(self.items[&item].queue, position)
    }

    /// The EWT formula of the module docs, for a position in queue `q`.
    fn ewt(&self, q: usize, position: usize) -> Option<Duration> {
        let queue = &self.queues[q];
        if queue.available == 0 {
            return None;
        }
        // An agent is taken from the offer on, so ringing is part of each cycle too.
        let cycle = queue.aht_secs + queue.ring_secs;
        let secs = position as f64 * cycle / queue.staffed.max(1e-3) + queue.ring_secs;
        Some(Duration::from_secs_f64(secs.min(1e9)))
    }

    // ---- lookups -------------------------------------------------------------------

    fn queue(&self, id: QueueId) -> Result<usize, AcdError> {
        self.queue_index
            .get(&id)
            .copied()
            .ok_or(AcdError::UnknownQueue(id))
    }

    fn agent(&self, id: AgentId) -> Result<usize, AcdError> {
        self.agent_index
            .get(&id)
            .copied()
            .ok_or(AcdError::UnknownAgent(id))
    }

    fn item(&self, id: ItemId) -> Result<&Item, AcdError> {
        self.items.get(&id).ok_or(AcdError::UnknownItem(id))
    }

    /// Refuses answers and no-answers that race a timeout or a cancel: only the offer
    /// still ringing counts.
    /// Whether the agent is reserved for this callback.
    fn is_reserved(&self, item: ItemId, a: usize) -> bool {
        self.items
            .get(&item)
            .is_some_and(|i| i.phase == Phase::Reserved(a))
            && self.agents[a].state == AgentState::Reserved(item)
    }

    fn check_offered(&self, item: ItemId, a: usize) -> Result<(), AcdError> {
        let offered = matches!(&self.item(item)?.phase, Phase::Offered(list) if list.contains(&a));
        if offered && self.agents[a].state == AgentState::Ringing(item) {
            Ok(())
        } else {
            Err(AcdError::NotOffered {
                item,
                agent: self.agents[a].id,
            })
        }
    }

    /// Schedules a timer; the sequence number keeps same-instant timers in arming order.
    fn arm(&mut self, at: Instant, timer: Timer) {
        self.next_serial += 1;
        self.timers.push(Reverse((at, self.next_serial, timer)));
    }

    fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    fn action(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    // ---- agent status and state ------------------------------------------------------

    /// The agent's choice changed. Staffing counts follow; an offer still ringing is
    /// taken back if the agent stops being available; an emptied queue may empty out.
    fn change_status(&mut self, now: Instant, a: usize, to: AgentStatus) {
        let from = self.agents[a].status.clone();
        if from == to {
            return;
        }
        self.tally(a, &from, false);
        self.tally(a, &to, true);
        let is_av = to == AgentStatus::Available;
        let logs_out = to == AgentStatus::LoggedOut;
        let agent = &mut self.agents[a];
        agent.status = to.clone();
        if is_av {
            // Coming back to work starts a fresh idle period and a fresh no-answer count.
            agent.idle_since = now;
            agent.no_answers = 0;
        }
        self.event(Event::StatusChanged {
            agent: self.agents[a].id,
            from,
            to,
        });
        if !is_av {
            // Choosing not to work takes back an offer still ringing.
            if let AgentState::Ringing(item) = self.agents[a].state {
                self.withdraw_offer(item, a);
            }
        }
        self.sync_free(a);
        if logs_out {
            for t in 0..self.agents[a].tiers.len() {
                self.leave_if_empty(now, self.agents[a].tiers[t].queue);
            }
        }
    }

    /// Adds (or removes) the agent's status to its queues' staffing counts.
    fn tally(&mut self, a: usize, status: &AgentStatus, add: bool) {
        let logged_in = usize::from(*status != AgentStatus::LoggedOut);
        let available = usize::from(*status == AgentStatus::Available);
        let share = 1.0 / self.agents[a].tiers.len().max(1) as f64;
        for t in &self.agents[a].tiers {
            let queue = &mut self.queues[t.queue];
            if add {
                queue.logged_in += logged_in;
                queue.available += available;
                queue.staffed += share * available as f64;
            } else {
                queue.logged_in -= logged_in;
                queue.available -= available;
                queue.staffed -= share * available as f64;
            }
            if queue.available == 0 {
                // Forget rounding drift whenever the queue is unstaffed.
                queue.staffed = 0.0;
            }
        }
    }

    /// Applies the leave-when-empty rule once nobody serving the queue is logged in.
    fn leave_if_empty(&mut self, now: Instant, q: usize) {
        let queue = &self.queues[q];
        if queue.logged_in == 0 && queue.config.when_empty == EmptyRule::Leave {
            self.empty_queue(now, q);
        }
    }

    /// The system's side of the agent changed. Bumping the generation invalidates every
    /// timer armed for the previous state.
    fn set_state(&mut self, a: usize, to: AgentState) {
        let agent = &mut self.agents[a];
        let from = agent.state;
        if from == to {
            return;
        }
        agent.state = to;
        agent.generation += 1;
        let id = agent.id;
        self.event(Event::StateChanged {
            agent: id,
            from,
            to,
        });
        self.sync_free(a);
    }

    /// Puts the agent into, or takes it out of, its queues' free sets.
    fn sync_free(&mut self, a: usize) {
        let agent = &self.agents[a];
        let should = agent.is_free();
        if should == agent.listed {
            return;
        }
        if should {
            let facts = AgentFacts {
                idle_since_ns: agent
                    .idle_since
                    .saturating_duration_since(self.epoch)
                    .as_nanos() as u64,
                calls: agent.calls,
                talk_ms: agent.talk.as_millis() as u64,
                position: 0,
            };
            let keys: Vec<(usize, FreeKey)> = agent
                .tiers
                .iter()
                .map(|t| {
                    let facts = AgentFacts {
                        position: t.position,
                        ..facts
                    };
                    let key = self.queues[t.queue].config.strategy.key(&facts);
                    (t.queue, (t.level, key, a))
                })
                .collect();
            for &(q, key) in &keys {
                self.queues[q].free.insert(key);
            }
            self.agents[a].free_keys = keys.into_iter().map(|(_, k)| k).collect();
            self.agents[a].listed = true;
            self.freed.push(a);
        } else {
            self.unlist(a);
        }
    }

    /// Takes the agent out of its queues' free sets.
    fn unlist(&mut self, a: usize) {
        self.agents[a].listed = false;
        let keys = std::mem::take(&mut self.agents[a].free_keys);
        for (t, key) in keys.into_iter().enumerate() {
            let q = self.agents[a].tiers[t].queue;
            self.queues[q].free.remove(&key);
        }
    }

    /// After a no-answer, reject or failure: keep the agent out of routing for `delay`.
    fn rest(&mut self, now: Instant, a: usize, delay: Duration) {
        if delay.is_zero() {
            self.set_state(a, AgentState::Idle);
        } else {
            self.set_state(a, AgentState::Resting);
            let generation = self.agents[a].generation;
            self.arm(
                now + delay,
                Timer::AgentWake {
                    agent: a,
                    generation,
                },
            );
        }
    }

    /// Wrap-up is over, by its timer or by the disposition the agent submitted.
    fn end_wrap_up(&mut self, now: Instant, a: usize, disposition: Option<String>) {
        let id = self.agents[a].id;
        self.event(Event::WrapUpEnded {
            agent: id,
            disposition,
        });
        self.action(Action::EndWrapUp { agent: id });
        self.work_done(now, a);
    }

    /// The agent finished a call and its after-call work: measure, then free it.
    fn work_done(&mut self, now: Instant, a: usize) {
        let agent = &mut self.agents[a];
        if let (Some(start), Some(q)) = (agent.answered_at.take(), agent.last_queue) {
            let handle = now.saturating_duration_since(start).as_secs_f64();
            let queue = &mut self.queues[q];
            queue.aht_secs += AHT_WEIGHT * (handle - queue.aht_secs);
        }
        agent.idle_since = now;
        self.set_state(a, AgentState::Idle);
    }

    // ---- items ---------------------------------------------------------------------

    /// A new item: checked, numbered (its serial is its place in line), then admitted.
    fn enqueue(&mut self, now: Instant, new: NewItem) -> Result<(), AcdError> {
        let q = self.queue(new.queue)?;
        if self.items.contains_key(&new.id) {
            return Err(AcdError::DuplicateItem(new.id));
        }
        let mut skills = new.skills;
        skills.sort();
        let callback = new.kind == ItemKind::CallbackTask;
        self.event(Event::Enqueued {
            item: new.id,
            queue: new.queue,
            kind: new.kind.clone(),
            priority: new.priority,
        });
        self.next_serial += 1;
        let item = Item {
            kind: new.kind,
            queue: q,
            priority: new.priority,
            skills,
            caller: new.caller,
            serial: self.next_serial,
            enqueued_at: now,
            offered_at: now,
            phase: Phase::Waiting,
            callback,
        };
        self.admit(now, new.id, item);
        Ok(())
    }

    /// Applies the queue's entry rules, then starts the wait.
    fn admit(&mut self, now: Instant, id: ItemId, item: Item) {
        let queue = &self.queues[item.queue];
        let refused = match queue.config.join {
            JoinRule::Always => false,
            JoinRule::IfAgentsLoggedIn => queue.logged_in == 0,
            JoinRule::IfAgentsAvailable => queue.available == 0,
        };
        let reason = if refused {
            Some(OverflowReason::NoAgents)
        } else if queue
            .config
            .max_length
            .is_some_and(|max| queue.order.len() >= max)
        {
            Some(OverflowReason::QueueFull)
        } else {
            None
        };
        if let Some(reason) = reason {
            // The Enqueued event already went out: every wait in the log has a start and
            // exactly one end, even a refused one.
            let target = queue.config.overflow.clone();
            let qid = queue.config.id;
            self.event(Event::Overflowed {
                item: id,
                queue: qid,
                target: target.clone(),
                reason,
            });
            self.action(Action::Overflow { item: id, target });
            return;
        }
        let hold_music = queue.config.hold_music.clone();
        let (max_wait, every) = (queue.config.max_wait, queue.config.announce_every);
        let at_entry = queue.config.announce_at_entry;
        let serial = item.serial;
        let first_step = self.next_step(&item, now);
        if item.on_line() {
            self.action(Action::Hold {
                item: id,
                music: hold_music,
            });
            if let Some(max) = max_wait {
                self.arm(now + max, Timer::MaxWait { item: id, serial });
            }
            if let Some(every) = every {
                self.arm(now + every, Timer::Announce { item: id, serial });
            }
            if at_entry {
                // Spoken once routing settles: a caller matched at once hears nothing.
                self.entry_announcements.push((id, serial));
            }
        }
        if let Some(at) = first_step {
            self.arm(at, Timer::Widen { item: id, serial });
        }
        self.items.insert(id, item);
        self.wait(id);
    }

    /// Puts the item (back) in line under its original key: its place is kept.
    fn wait(&mut self, id: ItemId) {
        let item = self.items.get_mut(&id).expect("item exists");
        item.phase = Phase::Waiting;
        let key = item.key(id);
        let queue = &mut self.queues[item.queue];
        queue.order.insert(key);
        // Grouped by requirement list so a free agent checks one head per group and
        // priority instead of every item.
        queue
            .groups
            .entry(item.skills.clone())
            .or_default()
            .insert(key);
        let (qid, waiting) = (queue.config.id, queue.order.len());
        self.routable.push((id, item.serial));
        self.event(Event::QueueDepth {
            queue: qid,
            waiting,
        });
    }

    /// Takes a Waiting item out of line (to offer it, or because it leaves).
    fn unwait(&mut self, id: ItemId) {
        let item = &self.items[&id];
        let key = item.key(id);
        let queue = &mut self.queues[item.queue];
        queue.order.remove(&key);
        if let Some(group) = queue.groups.get_mut(item.skills.as_slice()) {
            group.remove(&key);
            if group.is_empty() {
                queue.groups.remove(item.skills.as_slice());
            }
        }
        let (qid, waiting) = (queue.config.id, queue.order.len());
        self.event(Event::QueueDepth {
            queue: qid,
            waiting,
        });
    }

    /// Cancels every offer ringing for the item; the agents go back to idle without
    /// penalty. Leaves the item's phase as Offered with an empty list.
    fn withdraw_offers(&mut self, id: ItemId) {
        let Some(Phase::Offered(agents)) = self.items.get_mut(&id).map(|i| &mut i.phase) else {
            return;
        };
        for a in std::mem::take(agents) {
            self.action(Action::CancelOffer {
                item: id,
                agent: self.agents[a].id,
            });
            self.set_state(a, AgentState::Idle);
        }
    }

    /// Cancels one agent's offer; the item goes back in line if nobody else rings.
    fn withdraw_offer(&mut self, id: ItemId, a: usize) {
        self.action(Action::CancelOffer {
            item: id,
            agent: self.agents[a].id,
        });
        self.set_state(a, AgentState::Idle);
        self.drop_offer(id, a);
    }

    /// Forgets one agent's offer; when nobody rings any more the item is back in line.
    fn drop_offer(&mut self, id: ItemId, a: usize) {
        if let Some(Phase::Offered(agents)) = self.items.get_mut(&id).map(|i| &mut i.phase) {
            agents.retain(|&x| x != a);
            if agents.is_empty() {
                self.wait(id);
            }
        }
    }

    /// Removes the item, whatever its phase, releasing agents without penalty.
    fn take_out(&mut self, id: ItemId) -> Item {
        match self.items[&id].phase.clone() {
            Phase::Waiting => self.unwait(id),
            Phase::Offered(_) => self.withdraw_offers(id),
            Phase::Reserved(a) => self.set_state(a, AgentState::Idle),
            Phase::Connected(_) => {}
        }
        self.items.remove(&id).expect("item exists")
    }

    /// The customer is gone before reaching an agent (terminal).
    fn abandon(&mut self, now: Instant, id: ItemId) {
        let item = self.take_out(id);
        self.event(Event::Abandoned {
            item: id,
            queue: self.queues[item.queue].config.id,
            waited: now.saturating_duration_since(item.enqueued_at),
            callback: item.callback,
        });
    }

    /// The item leaves for a target (terminal); the host carries it there.
    fn overflow(&mut self, id: ItemId, reason: OverflowReason, target: OverflowTarget) {
        let item = self.take_out(id);
        self.event(Event::Overflowed {
            item: id,
            queue: self.queues[item.queue].config.id,
            target: target.clone(),
            reason,
        });
        self.action(Action::Overflow { item: id, target });
    }

    /// Leave-when-empty: callers on the line leave; queued callbacks and voicemail
    /// tasks keep their place because nobody is holding.
    fn empty_queue(&mut self, _now: Instant, q: usize) {
        let leaving: Vec<ItemId> = self.queues[q]
            .order
            .iter()
            .map(|&(_, _, id)| id)
            .filter(|id| self.items[id].on_line())
            .collect();
        let target = self.queues[q].config.overflow.clone();
        for id in leaving {
            self.overflow(id, OverflowReason::NoAgents, target.clone());
        }
    }

    /// The agent picked up: the first answer wins, other ring-all legs are cancelled.
    fn offer_answered(&mut self, now: Instant, id: ItemId, agent: AgentId) -> Result<(), AcdError> {
        let a = self.agent(agent)?;
        self.check_offered(id, a)?;
        // Ring-all: the others stop ringing.
        if let Some(Phase::Offered(list)) = self.items.get_mut(&id).map(|i| &mut i.phase) {
            list.retain(|&x| x != a);
        }
        self.withdraw_offers(id);
        let item = self.items.get_mut(&id).expect("checked");
        item.phase = Phase::Connected(a);
        let waited = now.saturating_duration_since(item.enqueued_at);
        let ring = now.saturating_duration_since(item.offered_at).as_secs_f64();
        let q = item.queue;
        let queue = &mut self.queues[q];
        queue.ring_secs += AHT_WEIGHT * (ring - queue.ring_secs);
        self.connect(now, a, id, q);
        self.event(Event::Answered {
            item: id,
            agent,
            waited,
        });
        Ok(())
    }

    /// Agent and customer are talking: start the talk clock and bridge them.
    fn connect(&mut self, now: Instant, a: usize, id: ItemId, q: usize) {
        let agent = &mut self.agents[a];
        agent.calls += 1;
        agent.no_answers = 0;
        agent.answered_at = Some(now);
        agent.last_queue = Some(q);
        let agent_id = agent.id;
        self.set_state(a, AgentState::OnCall(id));
        self.action(Action::Bridge {
            item: id,
            agent: agent_id,
        });
    }

    /// An offer did not connect. The agent rests (or goes on break after too many
    /// in a row); the item goes back in line at its old place unless others still ring.
    fn no_answer(&mut self, now: Instant, id: ItemId, a: usize, reason: NoAnswerReason) {
        let agent_id = self.agents[a].id;
        self.event(Event::NoAnswer {
            item: id,
            agent: agent_id,
            reason,
        });
        if reason == NoAnswerReason::Timeout {
            self.action(Action::CancelOffer {
                item: id,
                agent: agent_id,
            });
        }
        let agent = &mut self.agents[a];
        let delay = match reason {
            NoAnswerReason::Timeout | NoAnswerReason::NotAnswered => {
                agent.no_answers += 1;
                agent.no_answer_delay
            }
            NoAnswerReason::Rejected => agent.reject_delay,
            NoAnswerReason::Failed => agent.busy_delay,
        };
        if agent.max_no_answer > 0 && agent.no_answers >= agent.max_no_answer {
            agent.no_answers = 0;
            // Idle first so the status change does not withdraw the offer a second time.
            self.set_state(a, AgentState::Idle);
            let reason = NO_ANSWER_REASON.to_string();
            let on_break = AgentStatus::OnBreak {
                reason: reason.clone(),
            };
            self.change_status(now, a, on_break);
            self.action(Action::PutOnBreak {
                agent: agent_id,
                reason,
            });
        } else {
            self.rest(now, a, delay);
        }
        self.drop_offer(id, a);
    }

    /// The called-back customer picked up: connect them to the reserved agent.
    fn customer_answered(&mut self, now: Instant, id: ItemId) -> Result<(), AcdError> {
        let item = self.item(id)?;
        let Phase::Reserved(a) = item.phase else {
            return Err(AcdError::WrongPhase {
                item: id,
                why: "no callback is being dialled",
            });
        };
        let (waited, q) = (now.saturating_duration_since(item.enqueued_at), item.queue);
        self.items.get_mut(&id).expect("checked").phase = Phase::Connected(a);
        self.connect(now, a, id, q);
        self.event(Event::CalledBack {
            item: id,
            agent: self.agents[a].id,
            waited,
        });
        Ok(())
    }

    /// The callback failed; the agent is released without penalty (not their fault).
    fn customer_not_reached(&mut self, now: Instant, id: ItemId) -> Result<(), AcdError> {
        if !matches!(self.item(id)?.phase, Phase::Reserved(_)) {
            return Err(AcdError::WrongPhase {
                item: id,
                why: "no callback is being dialled",
            });
        }
        self.abandon(now, id);
        Ok(())
    }

    /// The caller hangs up but keeps the place: the item stays under its key.
    fn callback_requested(&mut self, _now: Instant, id: ItemId) -> Result<(), AcdError> {
        let item = self.item(id)?;
        if item.callback || !matches!(item.phase, Phase::Waiting | Phase::Offered(_)) {
            return Err(AcdError::WrongPhase {
                item: id,
                why: "only a caller waiting on the line can ask for a callback",
            });
        }
        if item.caller.number.is_none() {
            return Err(AcdError::NoCallbackNumber(id));
        }
        if matches!(item.phase, Phase::Offered(_)) {
            // The caller pressed the key while an agent rang: back in line, same place.
            self.withdraw_offers(id);
            self.wait(id);
        }
        self.items.get_mut(&id).expect("checked").callback = true;
        self.event(Event::CallbackRequested { item: id });
        Ok(())
    }

    /// The caller pressed the queue's exit key.
    fn exit_key(&mut self, _now: Instant, id: ItemId) -> Result<(), AcdError> {
        let item = self.item(id)?;
        let queue = &self.queues[item.queue].config;
        let target = queue
            .exit_target
            .clone()
            .ok_or(AcdError::NoExitTarget(queue.id))?;
        if !item.on_line() || !matches!(item.phase, Phase::Waiting | Phase::Offered(_)) {
            return Err(AcdError::WrongPhase {
                item: id,
                why: "the exit key works only while waiting on the line",
            });
        }
        self.overflow(id, OverflowReason::ExitKey, target);
        Ok(())
    }

    /// The item's call ended: abandoned if it never reached an agent, else wrap-up.
    fn item_ended(&mut self, now: Instant, id: ItemId) -> Result<(), AcdError> {
        match self.item(id)?.phase {
            Phase::Connected(a) => {
                let item = self.items.remove(&id).expect("checked");
                self.call_ended(now, a, id, item.queue);
            }
            _ => self.abandon(now, id),
        }
        Ok(())
    }

    /// The agent's call ended: talk time, then wrap-up (or free at once).
    fn call_ended(&mut self, now: Instant, a: usize, id: ItemId, q: usize) {
        let agent = &mut self.agents[a];
        let talk = agent
            .answered_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        agent.talk += talk;
        let wrap = agent.wrap_up.unwrap_or(self.queues[q].config.wrap_up);
        let agent_id = agent.id;
        self.event(Event::CallEnded {
            item: id,
            agent: agent_id,
            talk,
        });
        if wrap.is_zero() {
            self.work_done(now, a);
            return;
        }
        self.set_state(a, AgentState::WrapUp);
        let generation = self.agents[a].generation;
        self.arm(
            now + wrap,
            Timer::AgentWake {
                agent: a,
                generation,
            },
        );
        self.event(Event::WrapUpStarted {
            agent: agent_id,
            duration: wrap,
        });
        self.action(Action::StartWrapUp {
            agent: agent_id,
            duration: wrap,
        });
    }

    /// A blind transfer to another queue: this agent wraps up, and the item starts a new
    /// wait (new serial, new place) under the target queue's rules.
    fn transfer(&mut self, now: Instant, id: ItemId, to: QueueId) -> Result<(), AcdError> {
        let target = self.queue(to)?;
        let Phase::Connected(a) = self.item(id)?.phase else {
            return Err(AcdError::WrongPhase {
                item: id,
                why: "only a connected item can be transferred",
            });
        };
        let mut item = self.items.remove(&id).expect("checked");
        self.call_ended(now, a, id, item.queue);
        self.event(Event::Transferred {
            item: id,
            from: self.queues[item.queue].config.id,
            to,
        });
        self.next_serial += 1;
        item.serial = self.next_serial;
        item.queue = target;
        item.enqueued_at = now;
        item.phase = Phase::Waiting;
        self.event(Event::Enqueued {
            item: id,
            queue: to,
            kind: item.kind.clone(),
            priority: item.priority,
        });
        self.admit(now, id, item);
        Ok(())
    }

    /// A blind transfer to one agent: this agent wraps up, and the item starts a new
    /// wait in its own queue that rings `to` at once. Should `to` not answer, the item
    /// stays in line there like any other. Refused unless `to` is free now.
    fn transfer_to_agent(&mut self, now: Instant, id: ItemId, to: AgentId) -> Result<(), AcdError> {
        let t = self.agent(to)?;
        let Phase::Connected(a) = self.item(id)?.phase else {
            return Err(AcdError::WrongPhase {
                item: id,
                why: "only a connected item can be transferred",
            });
        };
        if a == t || !self.agents[t].is_free() {
            return Err(AcdError::AgentNotFree(to));
        }
        let mut item = self.items.remove(&id).expect("checked");
        self.call_ended(now, a, id, item.queue);
        let queue = self.queues[item.queue].config.id;
        self.event(Event::Transferred {
            item: id,
            from: queue,
            to: queue,
        });
        self.next_serial += 1;
        item.serial = self.next_serial;
        item.enqueued_at = now;
        item.phase = Phase::Waiting;
        self.event(Event::Enqueued {
            item: id,
            queue,
            kind: item.kind.clone(),
            priority: item.priority,
        });
        self.admit(now, id, item);
        // Admitted (not refused by the queue's rules) and `to` still free: ring them
        // before the usual matching could give the item to someone else.
        let waiting = self
            .items
            .get(&id)
            .is_some_and(|i| i.phase == Phase::Waiting);
        if waiting && self.agents[t].is_free() {
            self.assign(now, id, vec![t]);
        }
        Ok(())
    }

    // ---- timers --------------------------------------------------------------------

    /// One expired timer; stale ones (state moved on) are ignored.
    fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Ring { agent, generation } => {
                if self.agents[agent].generation != generation {
                    return;
                }
                if let AgentState::Ringing(item) = self.agents[agent].state {
                    self.no_answer(now, item, agent, NoAnswerReason::Timeout);
                }
            }
            Timer::AgentWake { agent, generation } => {
                if self.agents[agent].generation != generation {
                    return;
                }
                match self.agents[agent].state {
                    AgentState::Resting => self.set_state(agent, AgentState::Idle),
                    AgentState::WrapUp => self.end_wrap_up(now, agent, None),
                    _ => {}
                }
            }
            Timer::MaxWait { item, serial } => {
                let Some(it) = self.items.get(&item).filter(|i| i.serial == serial) else {
                    return;
                };
                // An item ringing an agent gets that chance; a later return to the line
                // checks the deadline again through this same timer, re-armed below.
                match it.phase {
                    Phase::Waiting if it.on_line() => {
                        let target = self.queues[it.queue].config.overflow.clone();
                        self.overflow(item, OverflowReason::MaxWait, target);
                    }
                    Phase::Offered(_) => {
                        let ring = self.queues[it.queue].config.ring_timeout;
                        self.arm(now + ring.max(Duration::from_secs(1)), timer);
                    }
                    _ => {}
                }
            }
            Timer::Announce { item, serial } => {
                let Some(it) = self.items.get(&item).filter(|i| i.serial == serial) else {
                    return;
                };
                if !it.on_line() {
                    return;
                }
                let every = self.queues[it.queue].config.announce_every;
                if it.phase == Phase::Waiting {
                    self.announce(item);
                }
                if let Some(every) = every {
                    self.arm(now + every, timer);
                }
            }
            Timer::Widen { item, serial } => {
                let Some(it) = self.items.get(&item).filter(|i| i.serial == serial) else {
                    return;
                };
                let next = self.next_step(it, now);
                if it.phase == Phase::Waiting {
                    self.routable.push((item, serial));
                }
                if let Some(at) = next {
                    self.arm(at, timer);
                }
            }
        }
    }

    /// Tells a waiting caller their position and estimated wait.
    fn announce(&mut self, id: ItemId) {
        if let Some(position) = self.position(id) {
            let estimated_wait = self.ewt(self.items[&id].queue, position);
            self.action(Action::Announce {
                item: id,
                position,
                estimated_wait,
            });
        }
    }

    /// Checks the indexes against the state; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for (a, agent) in self.agents.iter().enumerate() {
            assert_eq!(agent.is_free(), agent.listed);
            for (t, key) in agent.free_keys.iter().enumerate() {
                assert!(self.queues[agent.tiers[t].queue].free.contains(key));
            }
            match agent.state {
                AgentState::Ringing(id) => {
                    assert!(matches!(&self.items[&id].phase, Phase::Offered(l) if l.contains(&a)))
                }
                AgentState::Reserved(id) => assert_eq!(self.items[&id].phase, Phase::Reserved(a)),
                AgentState::OnCall(id) => assert_eq!(self.items[&id].phase, Phase::Connected(a)),
                _ => {}
            }
        }
        let mut waiting = 0;
        for (id, item) in &self.items {
            let in_order = self.queues[item.queue].order.contains(&item.key(*id));
            assert_eq!(in_order, item.phase == Phase::Waiting, "{id:?}");
            waiting += usize::from(in_order);
            if let Phase::Offered(list) = &item.phase {
                assert!(!list.is_empty());
            }
        }
        for (q, queue) in self.queues.iter().enumerate() {
            let members = || {
                self.agents
                    .iter()
                    .filter(|a| a.tiers.iter().any(|t| t.queue == q))
            };
            let logged_in = members()
                .filter(|a| a.status != AgentStatus::LoggedOut)
                .count();
            let available = members()
                .filter(|a| a.status == AgentStatus::Available)
                .count();
            let staffed: f64 = members()
                .filter(|a| a.status == AgentStatus::Available)
                .map(|a| 1.0 / a.tiers.len() as f64)
                .sum();
            assert_eq!(queue.logged_in, logged_in);
            assert_eq!(queue.available, available);
            assert!((queue.staffed - staffed).abs() < 1e-6);
        }
        let total: usize = self.queues.iter().map(|q| q.order.len()).sum();
        let grouped: usize = self
            .queues
            .iter()
            .flat_map(|q| q.groups.values())
            .map(|g| g.len())
            .sum();
        assert_eq!(total, waiting);
        assert_eq!(grouped, waiting);
    }
}
