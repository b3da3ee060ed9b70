//! A discrete-event simulation of an outbound campaign over a working day, driving the
//! real [`Pacer`]: how busy the agents are (occupancy) and how many answered people
//! hear the identification message because no agent was free (abandonment).
//!
//! Each dial is answered by a person (after a ring time), by a machine (detected and
//! dropped after a few seconds), is busy, or rings out. A person who answers gets the
//! first free agent; if none frees up within `grace` (2 s), the call is abandoned. The
//! pacer is consulted after every event and once a second. Virtual time only; no
//! clock is read. Deterministic for a seed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::time::Duration;

use super::compliance::AbandonWindow;
use super::pacing::{DialMode, Floor, Pacer, Stats};
use crate::acd::Rng;
use crate::acd::sim::Distribution;

/// What the simulated day looks like.
#[derive(Debug, Clone)]
pub struct CampaignSim {
    /// Agents working the campaign all day.
    pub agents: u32,
    /// Length of the day.
    pub duration: Duration,
    /// The dialling mode under test.
    pub mode: DialMode,
    /// Chance a dial is answered by a person.
    pub p_human: f64,
    /// Chance a dial is answered by a machine.
    pub p_machine: f64,
    /// Chance the line is busy.
    pub p_busy: f64,
    /// Ring time before a person or machine answers.
    pub ring: Distribution,
    /// How long we let it ring when nobody answers.
    pub ring_timeout: Duration,
    /// Talk time of a connected call.
    pub talk: Distribution,
    /// Wrap-up after each call.
    pub wrap_up: Duration,
    /// How long an answered person may wait for an agent before the call is abandoned.
    pub grace: Duration,
    /// The rolling period of the abandonment rate the pacer is steered by.
    pub window: Duration,
    /// Random seed.
    pub seed: u64,
}

impl Default for CampaignSim {
    fn default() -> Self {
        CampaignSim {
            agents: 20,
            duration: Duration::from_secs(8 * 3600),
            mode: DialMode::Predictive(Default::default()),
            p_human: 0.30,
            p_machine: 0.15,
            p_busy: 0.10,
            ring: Distribution::Uniform(Duration::from_secs(4), Duration::from_secs(20)),
            ring_timeout: Duration::from_secs(25),
            talk: Distribution::Exponential(Duration::from_secs(150)),
            wrap_up: Duration::from_secs(15),
            grace: Duration::from_secs(2),
            window: Duration::from_secs(3600),
            seed: 1,
        }
    }
}

/// The day's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CampaignReport {
    /// Calls placed.
    pub dials: u64,
    /// Answered by a person.
    pub answered: u64,
    /// Answered by a person and connected to an agent.
    pub connected: u64,
    /// Answered by a person, no agent in time.
    pub abandoned: u64,
    /// Answered by a machine.
    pub machines: u64,
    /// Abandoned / answered by a person, over the whole day.
    pub abandon_rate: f64,
    /// Highest rolling-window rate seen once the window held 50 answered calls.
    pub worst_window_rate: f64,
    /// Time agents spent talking or in wrap-up / time logged in.
    pub occupancy: f64,
    /// Connected calls per agent per hour.
    pub connects_per_agent_hour: f64,
    /// Mean idle time between an agent's calls.
    pub mean_idle: Duration,
}

impl fmt::Display for CampaignReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dials {:>6}  answered {:>5}  connected {:>5}  abandoned {:>4} ({:.2}%, worst hour {:.2}%)  occupancy {:.1}%  connects/agent-hour {:.1}  mean idle {:.0} s",
            self.dials,
            self.answered,
            self.connected,
            self.abandoned,
            self.abandon_rate * 100.0,
            self.worst_window_rate * 100.0,
            self.occupancy * 100.0,
            self.connects_per_agent_hour,
            self.mean_idle.as_secs_f64()
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// Re-evaluate pacing.
    Tick,
    /// A dial ends in no connection (busy, ring-out, machine dropped).
    Failed { dialled_at: Duration, machine: bool },
    /// A person answers.
    Human { dialled_at: Duration },
    /// A waiting person's grace is over.
    Grace { call: u64 },
    /// An agent finishes talk.
    TalkEnd { agent: usize },
    /// An agent finishes wrap-up.
    WrapEnd { agent: usize },
}

struct Agent {
    busy_since: Option<Duration>,
    idle_since: Duration,
}

impl CampaignSim {
    /// Runs the day.
    pub fn run(&self) -> CampaignReport {
        let origin = crate::time::base_instant();
        let mut rng = Rng::new(self.seed);
        let mut pacer = Pacer::new(self.mode);
        let mut heap: BinaryHeap<Reverse<(Duration, u64, Ev)>> = BinaryHeap::new();
        let mut seq = 0u64;
        let mut push = |heap: &mut BinaryHeap<_>, at: Duration, ev: Ev| {
            seq += 1;
            heap.push(Reverse((at, seq, ev)));
        };
        let mut agents: Vec<Agent> = (0..self.agents)
            .map(|_| Agent {
                busy_since: None,
                idle_since: Duration::ZERO,
            })
            .collect();
        let mut ready: VecDeque<usize> = (0..agents.len()).collect();
        let mut waiting: VecDeque<u64> = VecDeque::new();
        let mut next_call = 0u64;
        let mut dialling = 0u32;
        let mut r = CampaignReport::default();
        let mut window = AbandonWindow::new(self.window);
        // Rolling measurements for the pacer (exponentially weighted).
        let mut stats = Stats::default();
        let (mut busy_time, mut idle_time, mut idle_gaps) = (Duration::ZERO, Duration::ZERO, 0u32);
        push(&mut heap, Duration::ZERO, Ev::Tick);

        while let Some(Reverse((now, _, ev))) = heap.pop() {
            let dialling_open = now < self.duration;
            match ev {
                Ev::Tick => {
                    if dialling_open {
                        push(&mut heap, now + Duration::from_secs(1), Ev::Tick);
                    }
                }
                Ev::Failed {
                    dialled_at: _,
                    machine,
                } => {
                    dialling -= 1;
                    r.machines += u64::from(machine);
                    stats.answer_rate *= 0.99;
                }
                Ev::Human { dialled_at } => {
                    dialling -= 1;
                    r.answered += 1;
                    stats.answer_rate = stats.answer_rate * 0.99 + 0.01;
                    let ring = (now - dialled_at).as_secs_f64();
                    stats.time_to_answer = Duration::from_secs_f64(
                        stats.time_to_answer.as_secs_f64() * 0.95 + ring * 0.05,
                    );
                    let call = next_call;
                    next_call += 1;
                    waiting.push_back(call);
                    push(&mut heap, now + self.grace, Ev::Grace { call });
                }
                Ev::Grace { call } => {
                    if let Some(i) = waiting.iter().position(|&c| c == call) {
                        waiting.remove(i);
                        r.abandoned += 1;
                        window.record(origin + now, true);
                    }
                }
                Ev::TalkEnd { agent } => {
                    push(&mut heap, now + self.wrap_up, Ev::WrapEnd { agent });
                }
                Ev::WrapEnd { agent } => {
                    let a = &mut agents[agent];
                    if let Some(since) = a.busy_since.take() {
                        let handle = (now - since).as_secs_f64();
                        busy_time += now - since;
                        stats.handle_time = Duration::from_secs_f64(
                            stats.handle_time.as_secs_f64() * 0.95 + handle * 0.05,
                        );
                    }
                    a.idle_since = now;
                    ready.push_back(agent);
                }
            }
            // Connect waiting people to free agents (oldest first, longest-idle agent).
            while !waiting.is_empty() && !ready.is_empty() {
                let (Some(_), Some(agent)) = (waiting.pop_front(), ready.pop_front()) else {
                    break;
                };
                r.connected += 1;
                window.record(origin + now, false);
                let a = &mut agents[agent];
                idle_time += now - a.idle_since;
                idle_gaps += 1;
                a.busy_since = Some(now);
                let talk = self.talk.sample(&mut rng);
                push(&mut heap, now + talk, Ev::TalkEnd { agent });
            }
            window.expire(origin + now);
            stats.abandon_rate = window.rate();
            stats.answered_in_window = window.answered();
            if window.answered() >= 50 {
                r.worst_window_rate = r.worst_window_rate.max(window.rate());
            }
            if !matches!(ev, Ev::Tick) {
                pacer.observe(&stats);
            }
            if !dialling_open {
                continue;
            }
            let floor = Floor {
                ready: ready.len() as u32,
                busy: self.agents - ready.len() as u32,
                dialling,
                answered_waiting: waiting.len() as u32,
            };
            for _ in 0..pacer.dials(&floor, &stats) {
                dialling += 1;
                r.dials += 1;
                let u = rng.unit();
                let (at, ev) = if u < self.p_human {
                    (self.ring.sample(&mut rng), Ev::Human { dialled_at: now })
                } else if u < self.p_human + self.p_machine {
                    // Rings, answers, and AMD takes about three seconds to drop it.
                    let t = self.ring.sample(&mut rng) + Duration::from_secs(3);
                    (
                        t,
                        Ev::Failed {
                            dialled_at: now,
                            machine: true,
                        },
                    )
                } else if u < self.p_human + self.p_machine + self.p_busy {
                    (
                        Duration::from_secs(2),
                        Ev::Failed {
                            dialled_at: now,
                            machine: false,
                        },
                    )
                } else {
                    (
                        self.ring_timeout,
                        Ev::Failed {
                            dialled_at: now,
                            machine: false,
                        },
                    )
                };
                push(&mut heap, now + at, ev);
            }
        }
        let logged = self.duration.as_secs_f64() * f64::from(self.agents.max(1));
        r.occupancy = (busy_time.as_secs_f64() / logged).min(1.0);
        r.abandon_rate = if r.answered == 0 {
            0.0
        } else {
            r.abandoned as f64 / r.answered as f64
        };
        r.connects_per_agent_hour = r.connected as f64
            / (self.duration.as_secs_f64() / 3600.0)
            / f64::from(self.agents.max(1));
        r.mean_idle = if idle_gaps == 0 {
            Duration::ZERO
        } else {
            idle_time / idle_gaps
        };
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaigns::pacing::PredictiveParams;
    use proptest::prelude::*;

    #[test]
    fn progressive_never_abandons_and_predictive_keeps_agents_busier() {
        let base = CampaignSim {
            duration: Duration::from_secs(4 * 3600),
            ..CampaignSim::default()
        };
        let progressive = CampaignSim {
            mode: DialMode::Progressive,
            ..base.clone()
        }
        .run();
        let predictive = base.run();
        assert_eq!(progressive.abandoned, 0, "{progressive}");
        assert!(progressive.connected > 0);
        assert!(
            predictive.occupancy > progressive.occupancy + 0.03
                && predictive.mean_idle < progressive.mean_idle,
            "predictive {predictive}\nprogressive {progressive}"
        );
        assert!(predictive.abandon_rate < 0.03, "{predictive}");
    }

    #[test]
    fn preview_dials_nothing_by_itself() {
        let r = CampaignSim {
            mode: DialMode::Preview,
            duration: Duration::from_secs(600),
            ..CampaignSim::default()
        }
        .run();
        assert_eq!(r.dials, 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Predictive keeps the day's abandonment rate under the 3% cap whatever the
        /// floor looks like.
        #[test]
        fn predictive_stays_under_the_abandonment_cap(
            agents in 3u32..40,
            p_human in 0.12f64..0.6,
            talk in 40u64..400,
            wrap in 0u64..40,
            seed in any::<u64>(),
        ) {
            let sim = CampaignSim {
                agents,
                duration: Duration::from_secs(3 * 3600),
                mode: DialMode::Predictive(PredictiveParams::default()),
                p_human,
                talk: Distribution::Exponential(Duration::from_secs(talk)),
                wrap_up: Duration::from_secs(wrap),
                seed,
                ..CampaignSim::default()
            };
            let r = sim.run();
            prop_assert!(r.abandon_rate < 0.03, "{r}");
        }
    }
}
