//! Routing: matching free agents with waiting items, in both directions (see "Routing"
//! in the [ACD docs](crate::acd)). Part of the core's state machine, split out only to
//! keep files readable; it reads and writes the core's private state.

use std::cmp::Reverse;
use std::time::Instant;

use super::{Acd, Agent, FreeKey, Item, Phase, Timer};
use crate::acd::model::*;
use crate::acd::strategy::{Candidate, Scope};

/// A candidate item for a free agent, compared by [`Pick::beats`].
#[derive(Debug, Clone, Copy)]
struct Pick {
    priority: u8,
    weight: u128,
    serial: u64,
    id: ItemId,
}

impl Pick {
    /// An agent's preference among items: priority, then wait multiplied by the queue's
    /// weight, then earlier enqueue. Serials grow with enqueue time, so under equal
    /// weights the serial alone decides, without looking the items up.
    fn beats(&self, other: &Pick, now: Instant, acd: &Acd) -> bool {
        if self.priority != other.priority {
            return self.priority > other.priority;
        }
        if self.weight == other.weight {
            return self.serial < other.serial;
        }
        let weighted = |p: &Pick| {
            let enqueued = acd.items[&p.id].enqueued_at;
            now.saturating_duration_since(enqueued).as_nanos() * p.weight
        };
        (weighted(self), Reverse(self.serial)) > (weighted(other), Reverse(other.serial))
    }
}

/// How far an item's requirements have widened at a given wait.
#[derive(Debug, Clone, Copy)]
struct Widening {
    lower_by: u8,
    ignore_skills: bool,
    /// Highest tier level allowed so far (the queue's tier delay).
    max_level: u8,
}

impl Widening {
    /// Requirements as the item arrived, every tier level allowed.
    const NONE: Widening = Widening {
        lower_by: 0,
        ignore_skills: false,
        max_level: u8::MAX,
    };
}

impl Acd {
    /// Routes everything that became free or routable, until nothing changes.
    pub(super) fn settle(&mut self, now: Instant) {
        loop {
            if let Some(a) = self.freed.pop() {
                if self.agents[a].is_free() {
                    self.route_agent(now, a);
                }
            } else if let Some((id, serial)) = self.routable.pop() {
                let waiting = self
                    .items
                    .get(&id)
                    .is_some_and(|i| i.serial == serial && i.phase == Phase::Waiting);
                if waiting {
                    self.route_item(now, id);
                }
            } else {
                break;
            }
        }
        for (id, serial) in std::mem::take(&mut self.entry_announcements) {
            let waiting = self
                .items
                .get(&id)
                .is_some_and(|i| i.serial == serial && i.phase == Phase::Waiting);
            if waiting {
                self.announce(id);
            }
        }
    }

    /// The item's requirements after waiting until `now`: steps are cumulative.
    fn widening(&self, item: &Item, now: Instant) -> Widening {
        let waited = now.saturating_duration_since(item.enqueued_at);
        let config = &self.queues[item.queue].config;
        let mut w = Widening::NONE;
        if let Some(delay) = config.tier_delay.filter(|d| !d.is_zero()) {
            let steps = waited.as_nanos() / delay.as_nanos();
            w.max_level = (1 + steps.min(254)) as u8;
        }
        for step in config.widening.iter() {
            if step.after > waited {
                break;
            }
            w.lower_by = w.lower_by.saturating_add(step.lower_by);
            w.ignore_skills |= step.ignore_skills;
        }
        w
    }

    /// When the item's requirements next widen (a widening step or a tier level).
    pub(super) fn next_step(&self, item: &Item, now: Instant) -> Option<Instant> {
        let waited = now.saturating_duration_since(item.enqueued_at);
        let queue = &self.queues[item.queue];
        let widen = queue
            .config
            .widening
            .iter()
            .find(|s| s.after > waited)
            .map(|s| s.after);
        let tier = queue
            .config
            .tier_delay
            .filter(|d| !d.is_zero())
            .and_then(|d| {
                // Level `next` opens after (next − 1) delays.
                let next = waited.as_nanos() / d.as_nanos() + 2;
                let at = d.checked_mul(u32::try_from(next - 1).ok()?)?;
                (next <= u128::from(queue.max_level)).then_some(at)
            });
        let after = match (widen, tier) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(item.enqueued_at + after)
    }

    /// The agent (serving the item's queue at `level`) may take the item now.
    fn qualifies(agent: &Agent, skills: &[SkillRequirement], level: u8, w: Widening) -> bool {
        level <= w.max_level && Self::skilled(agent, skills, w)
    }

    /// Every required skill at the (widened) minimum. A missing skill is never
    /// widened away unless the step ignores skills altogether.
    fn skilled(agent: &Agent, skills: &[SkillRequirement], w: Widening) -> bool {
        w.ignore_skills
            || skills.iter().all(|req| {
                let min = req.min_level.value().saturating_sub(w.lower_by).max(1);
                agent.level(req.skill).is_some_and(|l| l.value() >= min)
            })
    }

    /// An item became routable: offer it to the best free qualified agent(s).
    fn route_item(&mut self, now: Instant, id: ItemId) {
        let item = &self.items[&id];
        let w = self.widening(item, now);
        let queue = &self.queues[item.queue];
        let strategy = queue.config.strategy;
        let mut chosen: Vec<(FreeKey, Candidate)> = Vec::new();
        for &key in &queue.free {
            let (level, k, a) = key;
            if let Some(&((first_level, _, _), _)) = chosen.first()
                && strategy.scope() == Scope::BestLevel
                && level != first_level
            {
                break;
            }
            if level > w.max_level {
                // Free agents are sorted by level: the rest are for later.
                break;
            }
            if !Self::skilled(&self.agents[a], &item.skills, w) {
                continue;
            }
            let position = self.agents[a]
                .tiers
                .iter()
                .find(|t| t.queue == item.queue)
                .map_or(0, |t| t.position);
            chosen.push((key, Candidate { key: k, position }));
            if strategy.scope() == Scope::First || item.callback {
                break;
            }
        }
        if chosen.is_empty() {
            return;
        }
        let agents: Vec<usize> = if strategy.scope() == Scope::All && !item.callback {
            chosen.iter().map(|(key, _)| key.2).collect()
        } else {
            let candidates: Vec<Candidate> = chosen.iter().map(|(_, c)| *c).collect();
            let i = strategy.pick(&candidates, queue.last_position, &mut self.rng);
            vec![chosen[i].0.2]
        };
        self.assign(now, id, agents);
    }

    /// An agent became free: take the best item across the agent's queues.
    fn route_agent(&mut self, now: Instant, a: usize) {
        let agent = &self.agents[a];
        let mut best: Option<Pick> = None;
        for tier in &agent.tiers {
            let queue = &self.queues[tier.queue];
            let weight = u128::from(queue.config.weight);
            let fixed = queue.config.widening.is_empty() && queue.config.tier_delay.is_none();
            for (skills, group) in &queue.groups {
                let mut next = group.first().copied();
                while let Some((Reverse(priority), serial, id)) = next {
                    let pick = Pick {
                        priority,
                        weight,
                        serial,
                        id,
                    };
                    // Cheap pruning on the key alone: nothing further in this group can
                    // beat the best so far.
                    if best.as_ref().is_some_and(|b| {
                        priority < b.priority || (weight == b.weight && !pick.beats(b, now, self))
                    }) {
                        break;
                    }
                    let widening = if fixed {
                        Widening::NONE
                    } else {
                        self.widening(&self.items[&id], now)
                    };
                    if Self::qualifies(agent, skills, tier.level, widening) {
                        if best.as_ref().is_none_or(|b| pick.beats(b, now, self)) {
                            best = Some(pick);
                        }
                        break;
                    }
                    if fixed {
                        // Same requirements for the whole group, and no widening.
                        break;
                    }
                    // Younger items of this priority are less widened: skip them all.
                    next = match priority.checked_sub(1) {
                        Some(p) => group.range((Reverse(p), 0, ItemId(0))..).next().copied(),
                        None => None,
                    };
                }
            }
        }
        if let Some(best) = best {
            self.assign(now, best.id, vec![a]);
        }
    }

    /// Matches a Waiting item with agents: offer (ring) or reserve-and-dial.
    pub(super) fn assign(&mut self, now: Instant, id: ItemId, agents: Vec<usize>) {
        self.unwait(id);
        let item = &self.items[&id];
        let q = item.queue;
        if let Some(t) = self.agents[agents[0]].tiers.iter().find(|t| t.queue == q) {
            self.queues[q].last_position = Some(t.position);
        }
        if item.callback {
            let a = agents[0];
            let number = item.caller.number.clone();
            self.items.get_mut(&id).expect("exists").phase = Phase::Reserved(a);
            self.set_state(a, AgentState::Reserved(id));
            let agent = self.agents[a].id;
            self.event(Event::CallbackDialing { item: id, agent });
            self.action(Action::DialCustomer {
                item: id,
                agent,
                number,
            });
            return;
        }
        if let Some(&a) = agents.iter().find(|&&a| self.agents[a].persistent_line) {
            // The agent's line is already open: no ringing, bridge at once.
            let agent = self.agents[a].id;
            let item = self.items.get_mut(&id).expect("exists");
            item.phase = Phase::Connected(a);
            let waited = now.saturating_duration_since(item.enqueued_at);
            self.event(Event::Offered { item: id, agent });
            self.connect(now, a, id, q);
            self.event(Event::Answered {
                item: id,
                agent,
                waited,
            });
            return;
        }
        let ring_timeout = self.queues[q].config.ring_timeout;
        let item = self.items.get_mut(&id).expect("exists");
        item.phase = Phase::Offered(agents.clone());
        item.offered_at = now;
        for a in agents {
            self.set_state(a, AgentState::Ringing(id));
            let agent = self.agents[a].id;
            let generation = self.agents[a].generation;
            self.arm(
                now + ring_timeout,
                Timer::Ring {
                    agent: a,
                    generation,
                },
            );
            self.event(Event::Offered { item: id, agent });
            self.action(Action::Offer {
                item: id,
                agent,
                ring_timeout,
            });
        }
    }
}
