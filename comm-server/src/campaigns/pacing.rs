//! How many calls a campaign should place right now: one pure function per dialling
//! mode, fed a snapshot of the floor and the measured statistics, plus a small
//! controller that keeps predictive dialling under its abandonment target.
//!
//! - **Preview**: the server never dials on its own; an agent looks at the contact and
//!   asks for the call ([`Pacer::dials`] is always 0).
//! - **Progressive**: one call per free agent: calls in flight (ringing, or answered
//!   and waiting for an agent) never exceed the agents free to take them, so a
//!   progressive campaign cannot abandon a call unless an agent walks away.
//! - **Predictive**: dials ahead, counting on the measured answer rate (most calls are
//!   not answered) and on busy agents finishing while the new calls ring. It dials the
//!   most calls whose *expected* abandonment (answers beyond the agents who will be
//!   free) stays within a risk budget: see [`predictive`]. The budget is the
//!   controller's: an aggressiveness `k` in `[0, 1]` scales it from nothing
//!   (progressive) to the full cap. `k` falls fast when the rolling abandonment rate
//!   passes the controller's aim and creeps up while it stays well below; at the cap
//!   it is 0 until the rate recovers.
//!
//! No clock is read and nothing is random: the same inputs give the same answer.

use std::time::Duration;

/// How a campaign paces its calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DialMode {
    /// Agents choose when to call each contact.
    Preview,
    /// One call per free agent.
    Progressive,
    /// Dial ahead of free agents, within an abandonment budget.
    Predictive(PredictiveParams),
}

/// The knobs of predictive dialling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictiveParams {
    /// The abandonment cap (abandoned / answered over the rolling window): 0.03 is 3%.
    pub abandon_cap: f64,
    /// The controller aims this far below the cap (a fraction of it): noise in a small
    /// window must not push the real rate over.
    pub aim: f64,
    /// At most this many calls in flight per agent working the campaign.
    pub max_ratio: f64,
}

impl Default for PredictiveParams {
    fn default() -> Self {
        PredictiveParams {
            abandon_cap: 0.03,
            aim: 0.5,
            max_ratio: 4.0,
        }
    }
}

/// A snapshot of the campaign's floor, taken by the driver when anything changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Floor {
    /// Agents logged in to the campaign, available and idle.
    pub ready: u32,
    /// Agents on a campaign call or in wrap-up (they come back).
    pub busy: u32,
    /// Calls placed that have not yet been answered or failed.
    pub dialling: u32,
    /// Calls answered by a person and waiting for an agent (at most a couple of seconds).
    pub answered_waiting: u32,
}

/// What the campaign has measured so far (the driver keeps rolling figures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Answered (by a person) / dialled, over recent calls.
    pub answer_rate: f64,
    /// Mean time from dialling to answer, for answered calls.
    pub time_to_answer: Duration,
    /// Mean time an agent is tied up per connected call (talk plus wrap-up).
    pub handle_time: Duration,
    /// Abandoned / answered over the rolling window (see [`super::AbandonWindow`]).
    pub abandon_rate: f64,
    /// How many answered calls that rate rests on: the controller trusts it only
    /// once there are a few.
    pub answered_in_window: u32,
}

impl Default for Stats {
    /// What a campaign assumes before it has measured anything: cautious.
    fn default() -> Self {
        Stats {
            answer_rate: 0.5,
            time_to_answer: Duration::from_secs(12),
            handle_time: Duration::from_secs(180),
            abandon_rate: 0.0,
            answered_in_window: 0,
        }
    }
}

/// The lowest answer rate the predictive formula believes: below it the overdial
/// would be absurd (1/0.05 = 20 calls per agent before `max_ratio`).
const MIN_ANSWER_RATE: f64 = 0.05;

/// Answered calls in the window before the controller starts to trust the rate.
const MIN_SAMPLE: u32 = 20;

/// The pacing state of one campaign: its mode and the predictive controller.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacer {
    mode: DialMode,
    /// Aggressiveness in `[0, 1]` (predictive only).
    k: f64,
}

impl Pacer {
    /// A pacer for this mode. Predictive starts half-way, as a careful supervisor would.
    pub fn new(mode: DialMode) -> Pacer {
        Pacer { mode, k: 0.5 }
    }

    /// The mode.
    pub fn mode(&self) -> DialMode {
        self.mode
    }

    /// The predictive aggressiveness, `0.0..=1.0`.
    pub fn aggressiveness(&self) -> f64 {
        self.k
    }

    /// Feeds the controller a fresh measurement (after each answered or abandoned call).
    pub fn observe(&mut self, stats: &Stats) {
        let DialMode::Predictive(p) = self.mode else {
            return;
        };
        if stats.answered_in_window < MIN_SAMPLE {
            // Too few calls to judge: hold still unless the cap is already blown.
            if stats.abandon_rate >= p.abandon_cap && stats.answered_in_window > 0 {
                self.k = (self.k * 0.5).max(0.0);
            }
            return;
        }
        let aim = p.abandon_cap * p.aim;
        self.k = if stats.abandon_rate >= p.abandon_cap {
            0.0
        } else if stats.abandon_rate > aim {
            self.k * 0.7
        } else if stats.abandon_rate < aim * 0.5 {
            (self.k + 0.02).min(1.0)
        } else {
            self.k
        };
    }

    /// How many new calls to place now.
    pub fn dials(&self, floor: &Floor, stats: &Stats) -> u32 {
        match self.mode {
            DialMode::Preview => 0,
            DialMode::Progressive => progressive(floor),
            DialMode::Predictive(p) => {
                let k = if stats.abandon_rate >= p.abandon_cap && stats.answered_in_window > 0 {
                    0.0
                } else {
                    self.k
                };
                predictive(floor, stats, k * p.abandon_cap * p.aim * 2.0, p.max_ratio)
            }
        }
    }
}

/// One call per free agent, counting calls already on their way to one.
pub fn progressive(floor: &Floor) -> u32 {
    floor
        .ready
        .saturating_sub(floor.dialling.saturating_add(floor.answered_waiting))
}

/// The predictive formula (see the module docs): the most calls in flight whose
/// expected abandonment, as a share of the calls they will bring answered, stays at or
/// below `risk`. `risk = 0` is progressive.
///
/// Over the ring time, answers `A ~ Binomial(in flight, answer rate)` meet agents
/// `C = ready − answered waiting + Binomial(busy, P(free within the ring time))`; with
/// the normal approximation of `X = A − C`, `E[max(0, X)] = μΦ(μ/σ) + σφ(μ/σ)`.
pub fn predictive(floor: &Floor, stats: &Stats, risk: f64, max_ratio: f64) -> u32 {
    let risk = if risk.is_finite() {
        risk.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let base = progressive(floor);
    if risk == 0.0 {
        return base;
    }
    let p = if stats.answer_rate.is_finite() {
        stats.answer_rate.clamp(MIN_ANSWER_RATE, 1.0)
    } else {
        MIN_ANSWER_RATE
    };
    let handle = stats.handle_time.as_secs_f64().max(1.0);
    let ring = stats.time_to_answer.as_secs_f64().max(0.0);
    // Exponential handle times: the chance a busy agent is free within the ring time.
    let f = 1.0 - (-ring / handle).exp();
    let (ready, busy) = (f64::from(floor.ready), f64::from(floor.busy));
    let agents_mean = ready - f64::from(floor.answered_waiting) + busy * f;
    let agents_var = busy * f * (1.0 - f);
    let ceiling = (max_ratio.max(1.0) * (ready + busy)).floor() as u32;
    let over = |in_flight: u32| {
        let n = f64::from(in_flight);
        let mu = n * p - agents_mean;
        let sigma = (n * p * (1.0 - p) + agents_var).sqrt();
        let abandoned = if sigma < 1e-9 {
            mu.max(0.0)
        } else {
            let z = mu / sigma;
            mu * normal_cdf(z) + sigma * normal_pdf(z)
        };
        abandoned <= risk * n * p
    };
    // The expected abandonment share grows with the calls in flight: find the last
    // count that keeps it within `risk` (binary search up to the ratio ceiling).
    let floor_in_flight = floor.dialling + base;
    let (mut lo, mut hi) = (floor_in_flight, ceiling.max(floor_in_flight));
    if !over(lo) {
        return base;
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if over(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo.saturating_sub(floor.dialling).max(base)
}

fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Φ(z) through erfc (Abramowitz & Stegun 7.1.26, error below 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn floor(ready: u32, busy: u32, dialling: u32, waiting: u32) -> Floor {
        Floor {
            ready,
            busy,
            dialling,
            answered_waiting: waiting,
        }
    }

    #[test]
    fn preview_never_dials_by_itself() {
        let p = Pacer::new(DialMode::Preview);
        assert_eq!(p.dials(&floor(10, 0, 0, 0), &Stats::default()), 0);
    }

    #[test]
    fn progressive_dials_one_per_free_agent() {
        let p = Pacer::new(DialMode::Progressive);
        let s = Stats::default();
        assert_eq!(p.dials(&floor(3, 5, 0, 0), &s), 3);
        assert_eq!(p.dials(&floor(3, 5, 2, 0), &s), 1);
        assert_eq!(p.dials(&floor(3, 5, 2, 1), &s), 0);
        assert_eq!(p.dials(&floor(0, 5, 0, 0), &s), 0);
    }

    #[test]
    fn predictive_dials_ahead_by_the_answer_rate() {
        let s = Stats {
            answer_rate: 0.25,
            time_to_answer: Duration::from_secs(10),
            handle_time: Duration::from_secs(200),
            ..Stats::default()
        };
        // 10 ready agents, a 25% answer rate: more than progressive's 10 calls, fewer
        // than the 40 that would bring 10 answers only on average.
        let n = predictive(&floor(10, 0, 0, 0), &s, 0.03, 10.0);
        assert!(n > 10 && n < 40, "{n}");
        // Busy agents finishing while the calls ring count.
        let with_busy = predictive(&floor(10, 40, 0, 0), &s, 0.03, 10.0);
        assert!(with_busy > n, "{with_busy} > {n}");
        // What is already ringing counts.
        assert_eq!(predictive(&floor(10, 0, 5, 0), &s, 0.03, 10.0), n - 5);
        // The ratio ceiling holds: 10 agents × 1.5.
        assert_eq!(predictive(&floor(10, 0, 0, 0), &s, 0.03, 1.5), 15);
        // No risk budget is progressive.
        assert_eq!(predictive(&floor(10, 0, 1, 0), &s, 0.0, 10.0), 9);
        // A bigger budget never dials less.
        assert!(predictive(&floor(10, 0, 0, 0), &s, 0.10, 10.0) >= n);
    }

    #[test]
    fn the_controller_backs_off_over_its_aim_and_stops_at_the_cap() {
        let mut p = Pacer::new(DialMode::Predictive(PredictiveParams::default()));
        let mut s = Stats {
            answered_in_window: 100,
            ..Stats::default()
        };
        let k0 = p.aggressiveness();
        s.abandon_rate = 0.02; // over the 1.5% aim
        p.observe(&s);
        assert!(p.aggressiveness() < k0);
        s.abandon_rate = 0.031; // over the cap
        p.observe(&s);
        assert_eq!(p.aggressiveness(), 0.0);
        assert_eq!(p.dials(&floor(2, 8, 0, 0), &s), 2, "progressive at the cap");
        s.abandon_rate = 0.0;
        for _ in 0..100 {
            p.observe(&s);
        }
        assert_eq!(p.aggressiveness(), 1.0);
    }

    #[test]
    fn a_small_sample_does_not_move_the_controller() {
        let mut p = Pacer::new(DialMode::Predictive(PredictiveParams::default()));
        let s = Stats {
            answered_in_window: 5,
            abandon_rate: 0.0,
            ..Stats::default()
        };
        p.observe(&s);
        assert_eq!(p.aggressiveness(), 0.5);
    }

    proptest! {
        /// Progressive never has more calls in flight than free agents.
        #[test]
        fn progressive_never_exceeds_free_agents(
            ready in 0u32..500, busy in 0u32..500, dialling in 0u32..500, waiting in 0u32..50,
        ) {
            let f = floor(ready, busy, dialling, waiting);
            let n = Pacer::new(DialMode::Progressive).dials(&f, &Stats::default());
            if dialling + waiting <= ready {
                prop_assert_eq!(dialling + waiting + n, ready);
            } else {
                prop_assert_eq!(n, 0);
            }
        }

        /// Predictive stays within its ratio ceiling, never dials with nobody logged in,
        /// and is at least as eager as progressive.
        #[test]
        fn predictive_is_bounded(
            ready in 0u32..200, busy in 0u32..200, dialling in 0u32..400, waiting in 0u32..20,
            rate in 0.0f64..1.0, ring in 0u64..60, handle in 0u64..900, k in 0.0f64..1.0,
            ratio in 1.0f64..6.0,
        ) {
            let f = floor(ready, busy, dialling, waiting);
            let s = Stats {
                answer_rate: rate,
                time_to_answer: Duration::from_secs(ring),
                handle_time: Duration::from_secs(handle),
                ..Stats::default()
            };
            let n = predictive(&f, &s, k * 0.05, ratio);
            prop_assert!(predictive(&f, &s, k * 0.1, ratio) >= n, "more risk, no fewer calls");
            let agents = f64::from(ready + busy);
            prop_assert!(f64::from(dialling + n) <= (ratio * agents).floor().max(f64::from(dialling)));
            if ready + busy == 0 {
                prop_assert_eq!(n, 0);
            }
            prop_assert!(n >= progressive(&f));
        }

        /// Garbage statistics (NaN, infinities) never make the pacer dial wildly.
        #[test]
        fn nonsense_stats_stay_sane(ready in 0u32..50, busy in 0u32..50, k in proptest::num::f64::ANY) {
            let s = Stats { answer_rate: f64::NAN, ..Stats::default() };
            let n = predictive(&floor(ready, busy, 0, 0), &s, k, 4.0);
            prop_assert!(n <= 4 * (ready + busy));
        }
    }
}
