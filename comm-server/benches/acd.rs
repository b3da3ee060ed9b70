//! ACD figures: time per routing decision at call-center scale (2,000 agents, 50 queues,
//! 10,000 waiting items), wall time to simulate a day of 100,000 calls, and the
//! simulator against Erlang C.
//!
//! `cargo bench -p comm-server --bench acd` (prints a report; no harness).

// A benchmark measures wall time: the ban on ambient clocks is for cores and drivers.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use comm_server::acd::sim::{self, Distribution, ErlangC, SimParams};
use comm_server::acd::{
    Acd, Action, AgentConfig, AgentId, CallerInfo, Input, ItemId, ItemKind, Level, NewItem,
    QueueConfig, QueueId, Rng, SkillId, SkillRequirement, Tier,
};

const AGENTS: u64 = 2_000;
const QUEUES: u32 = 50;
const WAITING: u64 = 10_000;
const SKILLS: u32 = 10;

/// A random item: a queue, a priority, zero to two skills at a modest level.
fn item(rng: &mut Rng, id: u64) -> Input {
    let skills = (0..rng.below(3))
        .map(|_| SkillRequirement {
            skill: SkillId(rng.below(u64::from(SKILLS)) as u32),
            min_level: Level::new(1 + rng.below(3) as u8).expect("1..=3"),
        })
        .collect();
    Input::Enqueue(NewItem {
        id: ItemId(id),
        kind: ItemKind::InboundCall,
        queue: QueueId(rng.below(u64::from(QUEUES)) as u32),
        priority: rng.below(3) as u8,
        skills,
        caller: CallerInfo::default(),
    })
}

/// 50 queues; 2,000 agents each serving 4 queues on two tier levels with 3 skills.
fn center(now: Instant, rng: &mut Rng, widening: bool) -> Acd {
    let mut acd = Acd::new(now, 1);
    for q in 0..QUEUES {
        let mut config = QueueConfig::new(QueueId(q));
        config.strategy = comm_server::acd::Strategy::LongestIdle;
        if widening {
            // Every head item then needs its own wait looked up: the slow path.
            config.widening = vec![comm_server::acd::WideningStep {
                after: Duration::from_secs(60),
                lower_by: 1,
                ignore_skills: false,
            }];
            config.tier_delay = Some(Duration::from_secs(30));
        }
        acd.add_queue(config).expect("queue");
    }
    for a in 0..AGENTS {
        let mut agent = AgentConfig::new(AgentId(a));
        agent.tiers = (0..4)
            .map(|i| Tier {
                queue: QueueId(rng.below(u64::from(QUEUES)) as u32),
                level: 1 + (i / 2) as u8,
                position: a as u32,
            })
            .collect();
        agent.tiers.sort_by_key(|t| t.queue);
        agent.tiers.dedup_by_key(|t| t.queue);
        agent.skills = (0..3)
            .map(|_| {
                let skill = SkillId(rng.below(u64::from(SKILLS)) as u32);
                (skill, Level::new(1 + rng.below(5) as u8).expect("1..=5"))
            })
            .collect();
        acd.add_agent(now, agent).expect("agent");
    }
    acd
}

fn drain(acd: &mut Acd, offers: &mut Vec<(ItemId, AgentId)>) {
    while let Some(action) = acd.poll_action() {
        if let Action::Offer { item, agent, .. } = action {
            offers.push((item, agent));
        }
    }
    while acd.poll_event().is_some() {}
}

fn per_op(total: Duration, n: u64) -> String {
    format!("{:.2} µs", total.as_secs_f64() * 1e6 / n as f64)
}

/// Agent-side: an agent ends wrap-up with 10,000 items waiting and picks the best one
/// across its queues. Item-side: an item arrives and the free agents of its queue are
/// searched (few free in a busy center, all 2,000 free in a quiet one).
fn routing(widening: bool) {
    let mut rng = Rng::new(7);
    let t0 = Instant::now();
    let mut now = t0;
    let mut acd = center(now, &mut rng, widening);
    let mut offers = Vec::new();
    for a in 0..AGENTS {
        acd.handle_input(now, Input::Login(AgentId(a)))
            .expect("login");
    }
    // Fill: the first arrivals take the agents, the rest wait.
    let mut next_id = 0;
    while acd.waiting_total() < WAITING as usize {
        acd.handle_input(now, item(&mut rng, next_id))
            .expect("enqueue");
        next_id += 1;
        drain(&mut acd, &mut offers);
        for (item, agent) in offers.drain(..) {
            acd.handle_input(now, Input::OfferAnswered(item, agent))
                .expect("answer");
        }
        drain(&mut acd, &mut offers);
    }
    let on_call: Vec<(ItemId, AgentId)> = (0..AGENTS)
        .filter_map(|a| match acd.agent_state(AgentId(a)) {
            Some(comm_server::acd::AgentState::OnCall(item)) => Some((item, AgentId(a))),
            _ => None,
        })
        .collect();
    println!(
        "routing: {AGENTS} agents ({} on calls), {QUEUES} queues, {} items waiting{}",
        on_call.len(),
        acd.waiting_total(),
        if widening {
            ", every queue with skill widening and a tier delay"
        } else {
            ""
        }
    );
    // Agent-side decisions: end the call, submit the disposition (the timed routing
    // decision), answer the new offer, and top the queue back up.
    let mut calls = on_call;
    let mut decision = Duration::ZERO;
    let mut arrival = Duration::ZERO;
    let mut decisions = 0;
    let rounds = 20_000;
    for round in 0..rounds {
        now += Duration::from_millis(50);
        let (item, agent) = calls[round % calls.len()];
        acd.handle_input(now, Input::ItemEnded(item)).expect("end");
        drain(&mut acd, &mut offers);
        let t = Instant::now();
        acd.handle_input(now, Input::WrapUpDone(agent, None))
            .expect("wrap-up");
        decision += t.elapsed();
        decisions += 1;
        drain(&mut acd, &mut offers);
        let mut next = None;
        for (item, a) in offers.drain(..) {
            acd.handle_input(now, Input::OfferAnswered(item, a))
                .expect("answer");
            if a == agent {
                next = Some(item);
            }
        }
        drain(&mut acd, &mut offers);
        let t = Instant::now();
        acd.handle_input(now, item_input(&mut rng, &mut next_id))
            .expect("enqueue");
        arrival += t.elapsed();
        drain(&mut acd, &mut offers);
        for (item, a) in offers.drain(..) {
            acd.handle_input(now, Input::OfferAnswered(item, a))
                .expect("answer");
        }
        drain(&mut acd, &mut offers);
        let len = calls.len();
        match next {
            Some(item) => calls[round % len] = (item, agent),
            // Nothing waiting fits this agent: keep cycling the others.
            None => {
                calls.swap_remove(round % len);
            }
        }
    }
    black_box(&acd);
    println!(
        "  agent frees up, picks the best of {} waiting: {} per decision ({decisions} decisions)",
        acd.waiting_total(),
        per_op(decision, decisions)
    );
    println!(
        "  item arrives, all agents busy (enqueue + position + EWT): {} per arrival",
        per_op(arrival, rounds as u64)
    );

    // Quiet center: everyone free, each arrival searches the free agents of its queue.
    let mut now = t0;
    let mut acd = center(now, &mut rng, widening);
    for a in 0..AGENTS {
        acd.handle_input(now, Input::Login(AgentId(a)))
            .expect("login");
    }
    drain(&mut acd, &mut offers);
    let mut spent = Duration::ZERO;
    let n = 20_000u64;
    for _ in 0..n {
        now += Duration::from_millis(50);
        let input = item_input(&mut rng, &mut next_id);
        let id = match &input {
            Input::Enqueue(item) => item.id,
            _ => unreachable!(),
        };
        let t = Instant::now();
        acd.handle_input(now, input).expect("enqueue");
        spent += t.elapsed();
        drain(&mut acd, &mut offers);
        // The caller hangs up at once: the agent is free again, the center stays quiet.
        acd.handle_input(now, Input::ItemEnded(id))
            .expect("hang up");
        drain(&mut acd, &mut offers);
        offers.clear();
    }
    println!(
        "  item arrives, {AGENTS} agents free (search free agents by strategy): {} per decision",
        per_op(spent, n)
    );
}

fn item_input(rng: &mut Rng, next_id: &mut u64) -> Input {
    *next_id += 1;
    item(rng, *next_id)
}

fn day() {
    let params = SimParams {
        agents: 240,
        queues: 4,
        calls_per_hour: 100_000.0 / 24.0,
        handle_time: Distribution::LogNormal {
            mean: Duration::from_secs(180),
            sd: Duration::from_secs(120),
        },
        patience: Some(Distribution::Exponential(Duration::from_secs(180))),
        wrap_up: Duration::from_secs(10),
        answer_delay: Duration::from_secs(4),
        no_answer_share: 0.02,
        duration: Duration::from_secs(24 * 3600),
        warm_up: Duration::from_secs(3600),
        ..SimParams::default()
    };
    let t = Instant::now();
    let report = sim::run(&params, t);
    let wall = t.elapsed();
    println!(
        "\nsimulated day: {} calls, {} core inputs/timeouts, wall time {:.2} s",
        params.calls_per_hour * 24.0,
        report.core_steps,
        wall.as_secs_f64()
    );
    print!("{report}");

    // The same day understaffed, with queued callbacks offered past a 60 s estimate.
    let params = SimParams {
        agents: 215,
        callback_when_wait_over: Some(Duration::from_secs(60)),
        ..params
    };
    let report = sim::run(&params, Instant::now());
    println!("\nunderstaffed day with queued callbacks offered when the estimate passes 60 s:");
    print!("{report}");
}

fn erlang_c_table() {
    const SEEDS: u64 = 8;
    println!(
        "\nsimulation (real core, longest-idle, no abandonment, exponential arrivals and \
         handle times; mean of {SEEDS} seeds x 300 h after 1 h warm-up) vs Erlang C"
    );
    println!(
        "{:>6} {:>8} {:>5} {:>7} | {:>15} | {:>15} | {:>17} | {:>13}",
        "agents",
        "calls/h",
        "AHT",
        "Erlang",
        "P(wait) th/sim",
        "ASA s th/sim",
        "SL20s th/sim",
        "occ th/sim"
    );
    for (agents, calls_per_hour, aht) in [
        (5, 120.0, 120),
        (10, 160.0, 180),
        (25, 650.0, 120),
        (50, 1350.0, 120),
        (100, 1710.0, 200),
    ] {
        let aht = Duration::from_secs(aht);
        let mut mean = [0.0; 4];
        for seed in 1..=SEEDS {
            let params = SimParams {
                agents,
                calls_per_hour,
                handle_time: Distribution::Exponential(aht),
                duration: Duration::from_secs(300 * 3600),
                warm_up: Duration::from_secs(3600),
                seed,
                ..SimParams::default()
            };
            let r = sim::run(&params, Instant::now());
            for (m, x) in mean.iter_mut().zip([
                r.probability_of_wait,
                r.average_speed_of_answer.as_secs_f64(),
                r.service_level,
                r.occupancy,
            ]) {
                *m += x / SEEDS as f64;
            }
        }
        let e = ErlangC::new(agents, calls_per_hour, aht);
        let asa = e
            .average_speed_of_answer()
            .map_or(f64::NAN, |d| d.as_secs_f64());
        let sl = e.service_level(SimParams::default().service_level_threshold);
        println!(
            "{:>6} {:>8} {:>5} {:>7.2} | {:>6.1}% {:>6.1}% | {:>7.1} {:>7.1} | {:>7.1}% {:>7.1}% \
             | {:>5.1}% {:>5.1}%",
            agents,
            calls_per_hour,
            aht.as_secs(),
            e.traffic,
            100.0 * e.probability_of_wait(),
            100.0 * mean[0],
            asa,
            mean[1],
            100.0 * sl,
            100.0 * mean[2],
            100.0 * e.occupancy(),
            100.0 * mean[3],
        );
    }
}

/// How far the announced estimate is from the wait callers then had (callers who
/// waited and were answered; abandons excluded).
fn ewt_table() {
    println!(
        "\nestimated wait at entry vs actual wait (25 agents, AHT 120 s exponential, 100 h, seed 1)"
    );
    println!(
        "{:>8} {:>10} {:>9} {:>8} | {:>9} {:>12} {:>10}",
        "calls/h", "patience", "ring", "ASA", "callers", "mean error", "mean |err|"
    );
    for (calls_per_hour, patience, ring) in [
        (600.0, None, 0),
        (650.0, None, 0),
        (700.0, None, 0),
        (700.0, None, 5),
        (700.0, Some(90), 0),
        (800.0, Some(90), 5),
    ] {
        let params = SimParams {
            calls_per_hour,
            patience: patience.map(|s| Distribution::Exponential(Duration::from_secs(s))),
            answer_delay: Duration::from_secs(ring),
            duration: Duration::from_secs(100 * 3600),
            ..SimParams::default()
        };
        let r = sim::run(&params, Instant::now());
        println!(
            "{:>8} {:>10} {:>8}s {:>7.1}s | {:>9} {:>+11.1}s {:>9.1}s",
            calls_per_hour,
            patience.map_or("none".to_string(), |s| format!("exp {s}s")),
            ring,
            r.average_speed_of_answer.as_secs_f64(),
            r.ewt_samples,
            r.ewt_mean_error_secs,
            r.ewt_mean_abs_error_secs,
        );
    }
}

fn main() {
    routing(false);
    routing(true);
    day();
    erlang_c_table();
    ewt_table();
}
