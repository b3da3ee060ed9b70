//! A deterministic discrete-event simulator that drives the real [`Acd`] core with
//! random arrivals, handle times and caller patience, and reports the figures a
//! workforce planner asks for: service level, ASA (average speed of answer),
//! abandonment, occupancy, and the error of the estimated wait time (EWT) announced to
//! callers. [`ErlangC`] gives the queueing-theory answer to compare with.
//!
//! # What it owns
//! Virtual time, the simulated callers (arrival, patience, talk) and agents (who answer
//! every offer after `answer_delay`), and the statistics. Routing is not simulated: every
//! decision is the production core's. No clock is read; `origin` is any instant.
//!
//! ```text
//!   event heap (arrivals, answers, hang-ups, patience)  ─┐
//!                                                        ├─► earliest first ─► Acd
//!   Acd::poll_timeout() (ring, wrap-up, announcements)  ─┘     actions ─► new events
//! ```
//!
//! Measurement: callers arriving during the warm-up are served but not counted, so the
//! figures describe the steady state that Erlang C models. Arrivals stop at `duration`;
//! the run continues until every caller has been answered or has abandoned.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use super::rng::Rng;
use super::{
    Acd, Action, AgentConfig, AgentId, AgentState, CallerInfo, DEFAULT_RING_TIMEOUT, Event, Input,
    ItemId, ItemKind, NewItem, QueueConfig, QueueId, Strategy, Tier,
};

/// A random duration's distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distribution {
    /// Always the same.
    Constant(Duration),
    /// Memoryless with this mean (the Erlang C assumption).
    Exponential(Duration),
    /// Uniform between the bounds.
    Uniform(Duration, Duration),
    /// Log-normal with this mean and standard deviation: real handle times look like it.
    LogNormal {
        /// Mean.
        mean: Duration,
        /// Standard deviation.
        sd: Duration,
    },
}

impl Distribution {
    /// One sample.
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        let secs = match *self {
            Distribution::Constant(d) => d.as_secs_f64(),
            Distribution::Exponential(mean) => -mean.as_secs_f64() * rng.unit().ln(),
            Distribution::Uniform(lo, hi) => {
                let (lo, hi) = (lo.as_secs_f64(), hi.as_secs_f64());
                lo + (hi - lo) * rng.unit()
            }
            Distribution::LogNormal { mean, sd } => {
                let (m, s) = (mean.as_secs_f64(), sd.as_secs_f64());
                if m <= 0.0 {
                    0.0
                } else {
                    let sigma2 = (1.0 + (s * s) / (m * m)).ln();
                    let mu = m.ln() - sigma2 / 2.0;
                    // Box-Muller: one standard normal from two uniforms.
                    let z = (-2.0 * rng.unit().ln()).sqrt()
                        * (2.0 * std::f64::consts::PI * rng.unit()).cos();
                    (mu + sigma2.sqrt() * z).exp()
                }
            }
        };
        Duration::from_secs_f64(secs.clamp(0.0, 1e9))
    }

    /// The mean.
    pub fn mean(&self) -> Duration {
        match *self {
            Distribution::Constant(d) | Distribution::Exponential(d) => d,
            Distribution::Uniform(lo, hi) => (lo + hi) / 2,
            Distribution::LogNormal { mean, .. } => mean,
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distribution::Constant(d) => write!(f, "constant {}s", d.as_secs_f64()),
            Distribution::Exponential(d) => write!(f, "exponential mean {}s", d.as_secs_f64()),
            Distribution::Uniform(lo, hi) => {
                write!(f, "uniform {}s..{}s", lo.as_secs_f64(), hi.as_secs_f64())
            }
            Distribution::LogNormal { mean, sd } => write!(
                f,
                "log-normal mean {}s sd {}s",
                mean.as_secs_f64(),
                sd.as_secs_f64()
            ),
        }
    }
}

/// What to simulate. [`SimParams::default`] is a small inbound team.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    /// Agents, all logged in and available, each serving every queue. Default 25.
    pub agents: u32,
    /// Queues; callers pick one uniformly. Default 1.
    pub queues: u32,
    /// Poisson arrival rate over all queues. Default 650.
    pub calls_per_hour: f64,
    /// Talk time. Default exponential, mean 120 s.
    pub handle_time: Distribution,
    /// How long a caller waits before hanging up; `None` never. Default none.
    pub patience: Option<Distribution>,
    /// Wrap-up after each call. Default 0.
    pub wrap_up: Duration,
    /// How long an offer rings before the agent answers. Default 0.
    pub answer_delay: Duration,
    /// How long an offer rings before the core moves on. Default 20 s.
    pub ring_timeout: Duration,
    /// Share of offers the agent does not answer, 0..=1. They ring out, the agent rests
    /// for the default no-answer delay, and the caller is offered to someone else.
    /// Default 0.
    pub no_answer_share: f64,
    /// Strategy of every queue. Default longest-idle.
    pub strategy: Strategy,
    /// Arrivals stop after this. Default 8 h.
    pub duration: Duration,
    /// Arrivals before this are not measured. Default 30 min.
    pub warm_up: Duration,
    /// Service level threshold: answered within it counts as in service. Default 20 s.
    pub service_level_threshold: Duration,
    /// Offer a queued callback to callers whose announced wait exceeds this. Default none.
    pub callback_when_wait_over: Option<Duration>,
    /// Share of the callers offered a callback who take it, 0..=1. Default 0.5.
    pub callback_share: f64,
    /// Seed: the same seed gives the same report. Default 1.
    pub seed: u64,
}

impl Default for SimParams {
    fn default() -> SimParams {
        SimParams {
            agents: 25,
            queues: 1,
            calls_per_hour: 650.0,
            handle_time: Distribution::Exponential(Duration::from_secs(120)),
            patience: None,
            wrap_up: Duration::ZERO,
            answer_delay: Duration::ZERO,
            ring_timeout: DEFAULT_RING_TIMEOUT,
            no_answer_share: 0.0,
            strategy: Strategy::LongestIdle,
            duration: Duration::from_secs(8 * 3600),
            warm_up: Duration::from_secs(1800),
            service_level_threshold: Duration::from_secs(20),
            callback_when_wait_over: None,
            callback_share: 0.5,
            seed: 1,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The parameters.
    pub params: SimParams,
    /// Callers arriving in the measured window.
    pub offered: u64,
    /// Of those, answered by an agent.
    pub answered: u64,
    /// Of those, hung up while waiting (a callback customer not reached counts here).
    pub abandoned: u64,
    /// Of those, asked to be called back and were connected to an agent.
    pub called_back: u64,
    /// Mean time from arrival to the callback connecting.
    pub average_callback_delay: Duration,
    /// Answered within the threshold, over offered (abandons and callbacks count
    /// against it).
    pub service_level: f64,
    /// Mean wait of answered callers.
    pub average_speed_of_answer: Duration,
    /// Answered callers who waited in line at all (beyond the agent's answer delay).
    pub probability_of_wait: f64,
    /// Abandoned over offered.
    pub abandonment_rate: f64,
    /// Time agents spent on calls or in wrap-up, over staffed time, in the window.
    pub occupancy: f64,
    /// Longest wait of an answered caller.
    pub longest_wait: Duration,
    /// Callers who heard an estimate at entry and were answered.
    pub ewt_samples: u64,
    /// Mean of (estimate − actual wait), seconds: positive means over-estimating.
    pub ewt_mean_error_secs: f64,
    /// Mean of |estimate − actual wait|, seconds.
    pub ewt_mean_abs_error_secs: f64,
    /// Offers that rang out unanswered.
    pub no_answers: u64,
    /// Inputs and timeouts handled by the core (a measure of work for benchmarks).
    pub core_steps: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SimEvent {
    Arrival,
    Answer(ItemId, AgentId),
    HangUp(ItemId),
    Patience(ItemId),
    CustomerAnswers(ItemId),
}

#[derive(Debug, Clone, Copy, Default)]
struct Caller {
    measured: bool,
    answered: bool,
    gone: bool,
    callback: bool,
    estimate: Option<Duration>,
}

struct Run<'a> {
    params: &'a SimParams,
    origin: Instant,
    acd: Acd,
    rng: Rng,
    heap: BinaryHeap<Reverse<(Instant, u64, SimEvent)>>,
    seq: u64,
    callers: Vec<Caller>,
    window: (Instant, Instant),
    busy_agents: u64,
    busy_since: Instant,
    busy_area_secs: f64,
    waits: Vec<f64>,
    callback_delays: Vec<f64>,
    ewt_errors: Vec<f64>,
    abandoned: u64,
    no_answers: u64,
    core_steps: u64,
}

/// Runs one simulation. `origin` is any instant (virtual time starts there).
pub fn run(params: &SimParams, origin: Instant) -> Report {
    let mut acd = Acd::new(origin, params.seed);
    for q in 0..params.queues.max(1) {
        let mut config = QueueConfig::new(QueueId(q));
        config.strategy = params.strategy;
        config.wrap_up = params.wrap_up;
        config.expected_handle_time = params.handle_time.mean() + params.wrap_up;
        config.ring_timeout = params.ring_timeout;
        acd.add_queue(config).expect("fresh queue");
    }
    for a in 0..params.agents {
        let mut agent = AgentConfig::new(AgentId(u64::from(a)));
        // Simulated agents never come back from a break, so none is forced on them.
        agent.max_no_answer = 0;
        agent.tiers = (0..params.queues.max(1))
            .map(|q| Tier {
                queue: QueueId(q),
                level: 1,
                position: a,
            })
            .collect();
        acd.add_agent(origin, agent).expect("fresh agent");
        acd.handle_input(origin, Input::Login(AgentId(u64::from(a))))
            .expect("logs in");
    }
    let start = origin + params.warm_up.min(params.duration);
    let mut run = Run {
        params,
        origin,
        acd,
        rng: Rng::new(params.seed ^ 0x5EED_CA11),
        heap: BinaryHeap::new(),
        seq: 0,
        callers: Vec::new(),
        window: (start, origin + params.duration),
        busy_agents: 0,
        busy_since: origin,
        busy_area_secs: 0.0,
        waits: Vec::new(),
        callback_delays: Vec::new(),
        ewt_errors: Vec::new(),
        abandoned: 0,
        no_answers: 0,
        core_steps: 0,
    };
    run.drain(origin);
    run.schedule_arrival(origin);
    run.main_loop();
    run.report()
}

impl Run<'_> {
    fn push(&mut self, at: Instant, event: SimEvent) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, event)));
    }

    fn schedule_arrival(&mut self, now: Instant) {
        if self.params.calls_per_hour <= 0.0 {
            return;
        }
        let mean = Duration::from_secs_f64(3600.0 / self.params.calls_per_hour);
        let at = now + Distribution::Exponential(mean).sample(&mut self.rng);
        if at < self.origin + self.params.duration {
            self.push(at, SimEvent::Arrival);
        }
    }

    fn main_loop(&mut self) {
        loop {
            let next_sim = self.heap.peek().map(|Reverse((at, _, _))| *at);
            let next_core = self.acd.poll_timeout();
            match (next_sim, next_core) {
                // Core timers (ring, wrap-up, announcements) that come first, or that
                // are all that is left while callers still wait for wrap-ups to end.
                (_, Some(at)) if next_sim.is_none_or(|s| at <= s) => {
                    if next_sim.is_none() && self.acd.items() == 0 {
                        break;
                    }
                    self.core_steps += 1;
                    self.acd.handle_timeout(at);
                    self.drain(at);
                }
                (Some(_), _) => {
                    let Reverse((now, _, event)) = self.heap.pop().expect("peeked");
                    self.handle(now, event);
                }
                (None, _) => break,
            }
        }
        let end = self.window.1.max(self.busy_since);
        self.account_busy(end, 0);
    }

    fn input(&mut self, now: Instant, input: Input) {
        self.core_steps += 1;
        // Races (a hang-up after the answer) are refused by the core; that is fine.
        let _ = self.acd.handle_input(now, input);
        self.drain(now);
    }

    fn handle(&mut self, now: Instant, event: SimEvent) {
        match event {
            SimEvent::Arrival => {
                self.schedule_arrival(now);
                let id = ItemId(self.callers.len() as u64);
                self.callers.push(Caller {
                    measured: now >= self.window.0,
                    ..Caller::default()
                });
                if let Some(patience) = self.params.patience {
                    let at = now + patience.sample(&mut self.rng);
                    self.push(at, SimEvent::Patience(id));
                }
                let queue = QueueId(self.rng.below(u64::from(self.params.queues.max(1))) as u32);
                let item = NewItem {
                    id,
                    kind: ItemKind::InboundCall,
                    queue,
                    priority: 0,
                    skills: Vec::new(),
                    caller: CallerInfo {
                        number: Some(format!("+1555{:07}", id.0)),
                        name: None,
                    },
                };
                self.input(now, Input::Enqueue(item));
                // Told a long wait at entry, some callers take the callback offer.
                let caller = self.callers[id.0 as usize];
                if let (Some(threshold), Some(estimate)) =
                    (self.params.callback_when_wait_over, caller.estimate)
                    && estimate > threshold
                    && self.rng.unit() < self.params.callback_share
                {
                    self.callers[id.0 as usize].callback = true;
                    self.input(now, Input::CallbackRequested(id));
                }
            }
            SimEvent::Answer(item, agent) => self.input(now, Input::OfferAnswered(item, agent)),
            SimEvent::HangUp(item) => self.input(now, Input::ItemEnded(item)),
            SimEvent::Patience(item) => {
                let caller = self.callers[item.0 as usize];
                // A caller waiting for a callback is no longer on the line to give up.
                if !caller.answered && !caller.gone && !caller.callback {
                    self.input(now, Input::ItemEnded(item));
                }
            }
            SimEvent::CustomerAnswers(item) => self.input(now, Input::CustomerAnswered(item)),
        }
    }

    /// Carries out the core's actions (answering offers, timing calls) and records its
    /// events, until it has nothing more to say.
    fn drain(&mut self, now: Instant) {
        loop {
            let mut answers = Vec::new();
            while let Some(action) = self.acd.poll_action() {
                match action {
                    Action::Offer { item, agent, .. } => answers.push((item, agent)),
                    Action::DialCustomer { item, .. } => {
                        // The customer picks up after the same delay as an agent would.
                        let at = now + self.params.answer_delay;
                        self.push(at, SimEvent::CustomerAnswers(item));
                    }
                    Action::Bridge { item, .. } => {
                        let talk = self.params.handle_time.sample(&mut self.rng);
                        self.push(now + talk, SimEvent::HangUp(item));
                    }
                    Action::Announce {
                        item,
                        estimated_wait,
                        ..
                    } => {
                        let caller = &mut self.callers[item.0 as usize];
                        if caller.estimate.is_none() {
                            caller.estimate = estimated_wait;
                        }
                    }
                    _ => {}
                }
            }
            while let Some(event) = self.acd.poll_event() {
                self.record(now, event);
            }
            if answers.is_empty() {
                return;
            }
            for (item, agent) in answers {
                let answers = self.params.no_answer_share <= 0.0
                    || self.rng.unit() >= self.params.no_answer_share;
                if !answers || self.params.answer_delay >= self.params.ring_timeout {
                    // Away from the desk: the core's ring timeout moves the call on.
                    continue;
                }
                if self.params.answer_delay.is_zero() {
                    self.core_steps += 1;
                    let _ = self
                        .acd
                        .handle_input(now, Input::OfferAnswered(item, agent));
                } else {
                    self.push(
                        now + self.params.answer_delay,
                        SimEvent::Answer(item, agent),
                    );
                }
            }
        }
    }

    fn record(&mut self, now: Instant, event: Event) {
        match event {
            Event::Answered { item, waited, .. } => {
                let caller = &mut self.callers[item.0 as usize];
                caller.answered = true;
                if caller.measured {
                    let wait = waited.as_secs_f64();
                    self.waits.push(wait);
                    if let Some(estimate) = caller.estimate {
                        self.ewt_errors.push(estimate.as_secs_f64() - wait);
                    }
                }
            }
            Event::NoAnswer { .. } => self.no_answers += 1,
            Event::CalledBack { item, waited, .. } => {
                let caller = &mut self.callers[item.0 as usize];
                caller.answered = true;
                if caller.measured {
                    self.callback_delays.push(waited.as_secs_f64());
                }
            }
            Event::Abandoned { item, .. } => {
                let caller = &mut self.callers[item.0 as usize];
                caller.gone = true;
                if caller.measured {
                    self.abandoned += 1;
                }
            }
            Event::StateChanged { from, to, .. } => {
                let working =
                    |s: AgentState| matches!(s, AgentState::OnCall(_) | AgentState::WrapUp);
                match (working(from), working(to)) {
                    (false, true) => self.account_busy(now, 1),
                    (true, false) => self.account_busy(now, -1),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Integrates the number of working agents over the measured window.
    fn account_busy(&mut self, now: Instant, delta: i64) {
        let (lo, hi) = self.window;
        let from = self.busy_since.clamp(lo, hi);
        let to = now.clamp(lo, hi);
        self.busy_area_secs +=
            self.busy_agents as f64 * to.saturating_duration_since(from).as_secs_f64();
        self.busy_since = now;
        self.busy_agents = self.busy_agents.saturating_add_signed(delta);
    }

    fn report(self) -> Report {
        let offered = self.callers.iter().filter(|c| c.measured).count() as u64;
        let answered = self.waits.len() as u64;
        let threshold = self.params.service_level_threshold.as_secs_f64();
        let within = self.waits.iter().filter(|&&w| w <= threshold).count();
        // Ringing the agent is not waiting in line.
        let ring = self.params.answer_delay.as_secs_f64() + 1e-6;
        let waited = self.waits.iter().filter(|&&w| w > ring).count();
        let ratio = |n: f64, d: u64| if d == 0 { 0.0 } else { n / d as f64 };
        let asa = ratio(self.waits.iter().sum(), answered);
        let window = self
            .window
            .1
            .saturating_duration_since(self.window.0)
            .as_secs_f64();
        let n_ewt = self.ewt_errors.len() as u64;
        Report {
            params: self.params.clone(),
            offered,
            answered,
            abandoned: self.abandoned,
            called_back: self.callback_delays.len() as u64,
            average_callback_delay: Duration::from_secs_f64(ratio(
                self.callback_delays.iter().sum(),
                self.callback_delays.len() as u64,
            )),
            service_level: ratio(within as f64, offered),
            average_speed_of_answer: Duration::from_secs_f64(asa),
            probability_of_wait: ratio(waited as f64, answered),
            abandonment_rate: ratio(self.abandoned as f64, offered),
            occupancy: if window > 0.0 && self.params.agents > 0 {
                self.busy_area_secs / (window * f64::from(self.params.agents))
            } else {
                0.0
            },
            longest_wait: Duration::from_secs_f64(self.waits.iter().copied().fold(0.0, f64::max)),
            ewt_samples: n_ewt,
            ewt_mean_error_secs: ratio(self.ewt_errors.iter().sum(), n_ewt),
            ewt_mean_abs_error_secs: ratio(self.ewt_errors.iter().map(|e| e.abs()).sum(), n_ewt),
            no_answers: self.no_answers,
            core_steps: self.core_steps,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "ACD simulation: {} agents, {} queue(s), {} calls/h, handle {}, wrap-up {}s, \
             {:?} strategy, {}h (warm-up {} min), seed {}",
            p.agents,
            p.queues,
            p.calls_per_hour,
            p.handle_time,
            p.wrap_up.as_secs_f64(),
            p.strategy,
            p.duration.as_secs_f64() / 3600.0,
            p.warm_up.as_secs_f64() / 60.0,
            p.seed
        )?;
        let pct = |x: f64| format!("{:.1}%", 100.0 * x);
        let rows = [
            ("offered", self.offered.to_string()),
            ("answered", self.answered.to_string()),
            (
                "abandoned",
                format!("{} ({})", self.abandoned, pct(self.abandonment_rate)),
            ),
            (
                "called back",
                format!(
                    "{} (mean {:.1}s after arrival)",
                    self.called_back,
                    self.average_callback_delay.as_secs_f64()
                ),
            ),
            (
                "service level",
                format!(
                    "{} answered within {}s",
                    pct(self.service_level),
                    p.service_level_threshold.as_secs_f64()
                ),
            ),
            (
                "average speed of answer",
                format!("{:.1}s", self.average_speed_of_answer.as_secs_f64()),
            ),
            ("probability of waiting", pct(self.probability_of_wait)),
            ("offers not answered", self.no_answers.to_string()),
            ("occupancy", pct(self.occupancy)),
            (
                "longest wait",
                format!("{:.1}s", self.longest_wait.as_secs_f64()),
            ),
            (
                "EWT error (estimate - actual)",
                format!(
                    "mean {:+.1}s, mean |error| {:.1}s over {} callers",
                    self.ewt_mean_error_secs, self.ewt_mean_abs_error_secs, self.ewt_samples
                ),
            ),
        ];
        for (name, value) in rows {
            writeln!(f, "  {name:<31} {value}")?;
        }
        Ok(())
    }
}

/// Erlang C: the M/M/N queue (Poisson arrivals, exponential handle times, `N` agents,
/// nobody abandons), the textbook model of an inbound queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErlangC {
    /// Agents.
    pub agents: u32,
    /// Offered traffic in Erlangs: arrival rate × mean handle time.
    pub traffic: f64,
    /// Mean handle time.
    pub handle_time: Duration,
}

impl ErlangC {
    /// The model for this staffing and load.
    pub fn new(agents: u32, calls_per_hour: f64, handle_time: Duration) -> ErlangC {
        ErlangC {
            agents,
            traffic: calls_per_hour * handle_time.as_secs_f64() / 3600.0,
            handle_time,
        }
    }

    /// Whether the queue is stable (traffic below the number of agents).
    pub fn is_stable(&self) -> bool {
        self.traffic < f64::from(self.agents)
    }

    /// Probability an arriving caller waits. Computed through the Erlang B recursion,
    /// which never overflows: `B(k) = A·B(k−1) / (k + A·B(k−1))`,
    /// `C = N·B / (N − A·(1 − B))`.
    pub fn probability_of_wait(&self) -> f64 {
        if !self.is_stable() {
            return 1.0;
        }
        let a = self.traffic;
        let mut b = 1.0;
        for k in 1..=self.agents {
            b = a * b / (f64::from(k) + a * b);
        }
        let n = f64::from(self.agents);
        n * b / (n - a * (1.0 - b))
    }

    /// Average speed of answer: `C · AHT / (N − A)`; `None` if unstable.
    pub fn average_speed_of_answer(&self) -> Option<Duration> {
        self.is_stable().then(|| {
            let n = f64::from(self.agents);
            Duration::from_secs_f64(
                self.probability_of_wait() * self.handle_time.as_secs_f64() / (n - self.traffic),
            )
        })
    }

    /// Share answered within `threshold`: `1 − C · e^(−(N − A)·t / AHT)`.
    pub fn service_level(&self, threshold: Duration) -> f64 {
        if !self.is_stable() {
            return 0.0;
        }
        let n = f64::from(self.agents);
        let exponent =
            -(n - self.traffic) * threshold.as_secs_f64() / self.handle_time.as_secs_f64();
        1.0 - self.probability_of_wait() * exponent.exp()
    }

    /// Agent occupancy `A / N`.
    pub fn occupancy(&self) -> f64 {
        (self.traffic / f64::from(self.agents)).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::origin;
    use super::*;

    #[test]
    fn erlang_c_matches_published_values() {
        // The classic worked example: 360 calls/h... here 100 calls per 30 min, AHT
        // 180 s, 10 Erlangs, 11 agents: P(wait) 68.2%, ASA 122.8 s.
        let e = ErlangC::new(11, 200.0, Duration::from_secs(180));
        assert!((e.traffic - 10.0).abs() < 1e-9);
        assert!((e.probability_of_wait() - 0.6821).abs() < 0.001);
        let asa = e.average_speed_of_answer().unwrap().as_secs_f64();
        assert!((asa - 122.8).abs() < 0.5, "{asa}");
        assert!(!ErlangC::new(10, 200.0, Duration::from_secs(180)).is_stable());
    }

    #[test]
    fn same_seed_same_report() {
        let params = SimParams {
            duration: Duration::from_secs(2 * 3600),
            patience: Some(Distribution::Exponential(Duration::from_secs(60))),
            wrap_up: Duration::from_secs(10),
            answer_delay: Duration::from_secs(3),
            ..SimParams::default()
        };
        let a = run(&params, origin());
        let b = run(&params, origin());
        assert_eq!(a, b);
        assert!(a.abandoned > 0 && a.answered > 0);
        assert_eq!(a.offered, a.answered + a.abandoned);
    }

    #[test]
    fn callbacks_are_served_and_every_caller_is_accounted_for() {
        let params = SimParams {
            no_answer_share: 0.1,
            duration: Duration::from_secs(4 * 3600),
            calls_per_hour: 800.0,
            patience: Some(Distribution::Exponential(Duration::from_secs(120))),
            callback_when_wait_over: Some(Duration::from_secs(30)),
            answer_delay: Duration::from_secs(2),
            ..SimParams::default()
        };
        let r = run(&params, origin());
        assert!(r.called_back > 0 && r.no_answers > 0, "{r}");
        assert_eq!(r.offered, r.answered + r.abandoned + r.called_back, "{r}");
    }

    /// The simulator driving the real core agrees with Erlang C on single-skill queues
    /// with exponential arrivals and handle times and no abandonment. Three seeds of 300
    /// simulated hours each keep the statistical error well inside the tolerances.
    #[test]
    fn simulation_agrees_with_erlang_c() {
        for (agents, calls_per_hour, aht_secs) in [(10, 160.0, 180), (25, 650.0, 120)] {
            let aht = Duration::from_secs(aht_secs);
            let (mut p_wait, mut sl, mut asa, mut occupancy) = (0.0, 0.0, 0.0, 0.0);
            let seeds = [1, 2, 3];
            let threshold = SimParams::default().service_level_threshold;
            for seed in seeds {
                let params = SimParams {
                    agents,
                    calls_per_hour,
                    handle_time: Distribution::Exponential(aht),
                    duration: Duration::from_secs(300 * 3600),
                    warm_up: Duration::from_secs(3600),
                    seed,
                    ..SimParams::default()
                };
                let sim = run(&params, origin());
                assert_eq!(sim.offered, sim.answered);
                p_wait += sim.probability_of_wait / 3.0;
                sl += sim.service_level / 3.0;
                asa += sim.average_speed_of_answer.as_secs_f64() / 3.0;
                occupancy += sim.occupancy / 3.0;
            }
            let theory = ErlangC::new(agents, calls_per_hour, aht);
            let theory_asa = theory.average_speed_of_answer().unwrap().as_secs_f64();
            let theory_sl = theory.service_level(threshold);
            let theory_wait = theory.probability_of_wait();
            assert!(
                (p_wait - theory_wait).abs() < 0.03,
                "P(wait) {p_wait} vs {theory_wait}"
            );
            assert!((sl - theory_sl).abs() < 0.03, "SL {sl} vs {theory_sl}");
            assert!(
                (asa - theory_asa).abs() / theory_asa < 0.12,
                "ASA {asa} vs {theory_asa}"
            );
            assert!(
                (occupancy - theory.occupancy()).abs() < 0.02,
                "occupancy {occupancy}"
            );
        }
    }
}
