//! A fixed day of events, checked by hand, and every figure asserted.

use std::time::Duration;

use super::format::{Format, agent_rows, queue_rows, render};
use super::*;
use crate::acd::{
    AgentId, AgentState as St, AgentStatus, Event as E, ItemId, ItemKind, NoAnswerReason,
    OverflowReason, OverflowTarget, QueueId,
};
use crate::store::AcdEventRecord;

/// 2026-11-01 00:00 UTC.
const T0: i64 = 1_793_491_200_000;
const SUPPORT: QueueId = QueueId(0);
const SALES: QueueId = QueueId(1);
const ANN: AgentId = AgentId(0);
const BEN: AgentId = AgentId(1);

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// Writes the events as the server would (names from the config's order) and reads
/// them back, so the tests go through the stored format.
fn log(events: &[(i64, E)]) -> Vec<LoggedEvent> {
    let queues = ["support".to_string(), "sales".to_string()];
    let agents = ["ann".to_string(), "ben".to_string()];
    let records: Vec<AcdEventRecord> = events
        .iter()
        .map(|(t, e)| log::record(T0 + t * 1000, e, &queues, &agents))
        .collect();
    log::parse_all(&records).unwrap()
}

fn enqueued(item: u64, queue: QueueId) -> E {
    E::Enqueued {
        item: ItemId(item),
        queue,
        kind: ItemKind::InboundCall,
        priority: 0,
    }
}

fn status(agent: AgentId, from: AgentStatus, to: AgentStatus) -> E {
    E::StatusChanged { agent, from, to }
}

fn state(agent: AgentId, from: St, to: St) -> E {
    E::StateChanged { agent, from, to }
}

fn on_break(reason: &str) -> AgentStatus {
    AgentStatus::OnBreak {
        reason: reason.into(),
    }
}

fn answered(item: u64, agent: AgentId, waited: u64) -> E {
    E::Answered {
        item: ItemId(item),
        agent,
        waited: s(waited),
    }
}

fn call_ended(item: u64, agent: AgentId, talk: u64) -> E {
    E::CallEnded {
        item: ItemId(item),
        agent,
        talk: s(talk),
    }
}

fn wrap_up(agent: AgentId) -> E {
    E::WrapUpStarted {
        agent,
        duration: s(10),
    }
}

fn wrap_up_ended(agent: AgentId) -> E {
    E::WrapUpEnded {
        agent,
        disposition: None,
    }
}

/// The day, in seconds from T0. Ann logged in before the period and is on a call
/// (item 9) when it starts; ben logs in at 0. See the expected figures below for the
/// arithmetic.
fn day() -> Vec<(i64, E)> {
    use AgentStatus::{Available, LoggedOut};
    let i = |n| ItemId(n);
    vec![
        (
            -600,
            E::QueueDepth {
                queue: SUPPORT,
                waiting: 0,
            },
        ),
        (-300, status(ANN, LoggedOut, Available)),
        // Item 9: answered before the period, ends inside it.
        (-120, enqueued(9, SUPPORT)),
        (
            -118,
            E::Offered {
                item: i(9),
                agent: ANN,
            },
        ),
        (-118, state(ANN, St::Idle, St::Ringing(i(9)))),
        (-115, answered(9, ANN, 5)),
        (-115, state(ANN, St::Ringing(i(9)), St::OnCall(i(9)))),
        (0, status(BEN, LoggedOut, Available)),
        (5, call_ended(9, ANN, 120)),
        (5, state(ANN, St::OnCall(i(9)), St::WrapUp)),
        (5, wrap_up(ANN)),
        (9, wrap_up_ended(ANN)),
        (9, state(ANN, St::WrapUp, St::Idle)),
        // Item 1: answered in 5 s, 60 s talk, 8 s wrap-up.
        (10, enqueued(1, SUPPORT)),
        (
            12,
            E::Offered {
                item: i(1),
                agent: ANN,
            },
        ),
        (12, state(ANN, St::Idle, St::Ringing(i(1)))),
        (15, answered(1, ANN, 5)),
        (15, state(ANN, St::Ringing(i(1)), St::OnCall(i(1)))),
        (75, call_ended(1, ANN, 60)),
        (75, state(ANN, St::OnCall(i(1)), St::WrapUp)),
        (75, wrap_up(ANN)),
        (83, wrap_up_ended(ANN)),
        (83, state(ANN, St::WrapUp, St::Idle)),
        // Items 2 and 3 abandon, after 3 s (short) and 30 s.
        (100, enqueued(2, SUPPORT)),
        (
            103,
            E::Abandoned {
                item: i(2),
                queue: SUPPORT,
                waited: s(3),
                callback: false,
            },
        ),
        (200, enqueued(3, SUPPORT)),
        (
            230,
            E::Abandoned {
                item: i(3),
                queue: SUPPORT,
                waited: s(30),
                callback: false,
            },
        ),
        // Item 4: ben lets it ring out, ann answers after 30 s and transfers it to
        // sales, where ben answers after 4 s.
        (300, enqueued(4, SUPPORT)),
        (
            301,
            E::Offered {
                item: i(4),
                agent: BEN,
            },
        ),
        (301, state(BEN, St::Idle, St::Ringing(i(4)))),
        (
            321,
            E::NoAnswer {
                item: i(4),
                agent: BEN,
                reason: NoAnswerReason::Timeout,
            },
        ),
        (321, state(BEN, St::Ringing(i(4)), St::Resting)),
        (
            322,
            E::Offered {
                item: i(4),
                agent: ANN,
            },
        ),
        (322, state(ANN, St::Idle, St::Ringing(i(4)))),
        (330, answered(4, ANN, 30)),
        (330, state(ANN, St::Ringing(i(4)), St::OnCall(i(4)))),
        (331, state(BEN, St::Resting, St::Idle)),
        (430, call_ended(4, ANN, 100)),
        (430, state(ANN, St::OnCall(i(4)), St::WrapUp)),
        (430, wrap_up(ANN)),
        (
            430,
            E::Transferred {
                item: i(4),
                from: SUPPORT,
                to: SALES,
            },
        ),
        (430, enqueued(4, SALES)),
        (
            432,
            E::Offered {
                item: i(4),
                agent: BEN,
            },
        ),
        (432, state(BEN, St::Idle, St::Ringing(i(4)))),
        (434, answered(4, BEN, 4)),
        (434, state(BEN, St::Ringing(i(4)), St::OnCall(i(4)))),
        (440, wrap_up_ended(ANN)),
        (440, state(ANN, St::WrapUp, St::Idle)),
        (500, call_ended(4, BEN, 66)),
        (500, state(BEN, St::OnCall(i(4)), St::WrapUp)),
        (500, wrap_up(BEN)),
        (510, wrap_up_ended(BEN)),
        (510, state(BEN, St::WrapUp, St::Idle)),
        // Breaks.
        (600, status(BEN, Available, on_break("lunch"))),
        (700, enqueued(5, SALES)),
        (
            760,
            E::Overflowed {
                item: i(5),
                queue: SALES,
                target: OverflowTarget::HangUp,
                reason: OverflowReason::MaxWait,
            },
        ),
        (1200, status(BEN, on_break("lunch"), Available)),
        (1800, status(ANN, Available, on_break("training"))),
        // After the period: not counted.
        (3700, enqueued(6, SUPPORT)),
        (3705, status(BEN, Available, LoggedOut)),
    ]
}

fn hour() -> Period {
    Period {
        from_ms: T0,
        to_ms: T0 + 3_600_000,
    }
}

#[test]
fn queue_figures_of_a_hand_checked_hour() {
    let report = call_report(&log(&day()), hour(), &Settings::default());
    let support = QueueFigures {
        queue: "support".into(),
        // Items 1, 2, 3, 4 (9 was enqueued before, 6 after).
        offered: 4,
        // Items 1 (5 s) and 4 (30 s); 9 was answered before the period.
        answered: 2,
        answered_in_threshold: 1,
        abandoned: 2,
        abandoned_short: 1,
        overflowed: 0,
        transferred: 1,
        // Items 9 (120 s), 1 (60 s) and 4 (100 s) ended here.
        handled: 3,
        wait: s(35),
        talk: s(280),
        // Ann's wrap-ups after 9 (4 s), 1 (8 s) and 4 (10 s).
        wrap_up: s(22),
        wrap_ups: 3,
        // No voicemail tasks in the day.
        tasks_offered: 0,
        tasks_handled: 0,
        task_time: s(0),
    };
    let sales = QueueFigures {
        queue: "sales".into(),
        // Item 4 transferred in, item 5.
        offered: 2,
        answered: 1,
        answered_in_threshold: 1,
        abandoned: 0,
        abandoned_short: 0,
        overflowed: 1,
        transferred: 0,
        handled: 1,
        wait: s(4),
        talk: s(66),
        wrap_up: s(10),
        wrap_ups: 1,
        tasks_offered: 0,
        tasks_handled: 0,
        task_time: s(0),
    };
    assert_eq!(report, vec![sales.clone(), support.clone()]);

    assert_eq!(support.asa(), Some(Duration::from_millis(17_500)));
    assert_eq!(support.service_level(), Some(0.25));
    // (280 + 22) / 3 s.
    assert_eq!(support.aht(), Some(Duration::from_nanos(100_666_666_666)));
    assert_eq!(
        support.average_talk(),
        Some(Duration::from_nanos(93_333_333_333))
    );
    assert_eq!(
        support.average_wrap_up(),
        Some(Duration::from_nanos(7_333_333_333))
    );
    assert_eq!(sales.asa(), Some(s(4)));
    assert_eq!(sales.service_level(), Some(0.5));
    assert_eq!(sales.aht(), Some(s(76)));
    assert_eq!(sales.average_talk(), Some(s(66)));
    assert_eq!(sales.average_wrap_up(), Some(s(10)));
}

#[test]
fn agent_figures_of_a_hand_checked_hour() {
    let report = agent_report(&log(&day()), hour(), &Settings::default());
    let ann = AgentFigures {
        agent: "ann".into(),
        answered: 2,
        not_answered: 0,
        handled: 3,
        talk: s(280),
        wrap_up: s(22),
        // Logged in all hour: available until 1800, then training.
        logged_in: s(3600),
        available: s(1800),
        // Idle and available: 9–12, 83–322, 440–1800.
        idle: s(3 + 239 + 1360),
        on_break: [("training".to_string(), s(1800))].into(),
        // 0–5 (the call begun before the period), 15–75, 330–430.
        on_call: s(5 + 60 + 100),
        in_wrap_up: s(4 + 8 + 10),
        tasks_handled: 0,
    };
    let ben = AgentFigures {
        agent: "ben".into(),
        answered: 1,
        not_answered: 1,
        handled: 1,
        talk: s(66),
        wrap_up: s(10),
        logged_in: s(3600),
        available: s(600 + 2400),
        // 0–301, 331–432, 510–600, 1200–3600.
        idle: s(301 + 101 + 90 + 2400),
        on_break: [("lunch".to_string(), s(600))].into(),
        on_call: s(66),
        in_wrap_up: s(10),
        tasks_handled: 0,
    };
    assert_eq!(report, vec![ann.clone(), ben.clone()]);
    assert_eq!(ann.aht(), Some(Duration::from_nanos(100_666_666_666)));
    assert_eq!(ann.on_break_total(), s(1800));
    assert_eq!(ben.aht(), Some(s(76)));
}

#[test]
fn thresholds_come_from_the_settings() {
    let settings = Settings {
        service_level: s(30),
        short_abandon: s(30),
    };
    let report = call_report(&log(&day()), hour(), &settings);
    let support = report.iter().find(|q| q.queue == "support").unwrap();
    // Item 4's 30 s answer and item 3's 30 s abandon are now within (inclusive).
    assert_eq!(support.answered_in_threshold, 2);
    assert_eq!(support.service_level(), Some(0.5));
    assert_eq!(support.abandoned_short, 2);
}

#[test]
fn a_server_start_logs_everybody_out() {
    use AgentStatus::{Available, LoggedOut};
    // Ann logs in, the server dies without a trace, and starts again at 1000.
    let mut events = log(&[(0, status(ANN, LoggedOut, Available))]);
    events.push(log::parse(1, &log::server_started(T0 + 1_000_000)).unwrap());
    events.extend(log(&[(2000, status(ANN, LoggedOut, Available))]));
    let report = agent_report(&events, hour(), &Settings::default());
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].logged_in, s(1000 + 1600));
}

#[test]
fn an_empty_period_has_no_rows_and_no_averages() {
    let later = Period {
        from_ms: T0 + 10_000_000,
        to_ms: T0 + 20_000_000,
    };
    assert_eq!(call_report(&log(&day()), later, &Settings::default()), []);
    // Nobody is logged in then (ben logged out at 3705).
    let agents = agent_report(&log(&day()), later, &Settings::default());
    assert_eq!(
        agents.iter().map(|a| a.agent.as_str()).collect::<Vec<_>>(),
        ["ann"]
    );
    assert_eq!(agents[0].on_break["training"], s(10_000));
    assert_eq!(QueueFigures::default().asa(), None);
    assert_eq!(QueueFigures::default().service_level(), None);
    assert_eq!(QueueFigures::default().aht(), None);
}

#[test]
fn rows_name_queue_and_agent_and_read_back() {
    let queues = ["support".to_string()];
    let agents = ["ann".to_string()];
    let event = answered(3, ANN, 7);
    let row = log::record(T0, &event, &queues, &agents);
    assert_eq!(row.kind, "Answered");
    assert_eq!(row.item, Some(3));
    assert_eq!(row.agent.as_deref(), Some("ann"));
    assert_eq!(row.queue, None);
    let back = log::parse(1, &row).unwrap();
    assert_eq!(back.entry, Entry::Acd(event));

    let transfer = E::Transferred {
        item: ItemId(3),
        from: SUPPORT,
        to: SALES,
    };
    let row = log::record(T0, &transfer, &queues, &agents);
    assert_eq!(row.queue.as_deref(), Some("support"));
    // A number the config no longer names is still written.
    let row = log::record(T0, &enqueued(1, SALES), &queues, &agents);
    assert_eq!(row.queue.as_deref(), Some("1"));
}

#[test]
fn a_bad_row_is_named_by_position_time_and_kind() {
    let mut rows = vec![log::server_started(T0)];
    rows.push(AcdEventRecord {
        at_ms: T0 + 5,
        kind: "Answered".into(),
        item: Some(1),
        queue: None,
        agent: Some("ann".into()),
        details_json: r#"{"Answered":{"item":1}}"#.into(),
    });
    let e = log::parse_all(&rows).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "event log row 2 (Answered at {} ms) is not a valid event: missing field",
            T0 + 5
        )),
        "{e}"
    );
}

#[test]
fn utc_dates_and_times_parse_and_nonsense_is_refused() {
    assert_eq!(parse_utc("2026-11-01").unwrap(), T0);
    assert_eq!(parse_utc("2026-11-02").unwrap(), T0 + 86_400_000);
    assert_eq!(parse_utc("1970-01-01").unwrap(), 0);
    assert_eq!(
        parse_utc("2024-02-29T13:05:07Z").unwrap(),
        1_709_211_907_000
    );
    assert_eq!(parse_utc("2026-11-01T08:30").unwrap(), T0 + 30_600_000);
    for bad in [
        "2026-11",
        "2026-13-01",
        "2025-02-29",
        "2026-11-01T24:00",
        "2026-11-1x",
        "yesterday",
        "2026-11-01T08",
        "",
    ] {
        let e = parse_utc(bad).unwrap_err().to_string();
        assert!(e.contains(&format!("{bad:?} is not a UTC date")), "{e}");
    }
}

#[test]
fn formats_print_the_same_columns() {
    let report = call_report(&log(&day()), hour(), &Settings::default());
    let (header, rows) = queue_rows(&report);
    let csv = render(Format::Csv, &header, &rows);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        [
            "queue,offered,answered,abandoned,abandoned_short,overflowed,transferred,asa_s,service_level,handled,aht_s,avg_talk_s,avg_wrap_up_s,vm_tasks,vm_tasks_handled,avg_vm_task_s",
            "sales,2,1,0,0,1,0,4.000,0.500,1,76.000,66.000,10.000,0,0,",
            "support,4,2,2,1,0,1,17.500,0.250,3,100.667,93.333,7.333,0,0,",
        ]
    );
    let json: serde_json::Value =
        serde_json::from_str(&render(Format::Json, &header, &rows)).unwrap();
    assert_eq!(json[1]["queue"], "support");
    assert_eq!(json[1]["asa_s"], 17.5);
    assert_eq!(json[1]["service_level"], 0.25);
    assert_eq!(json[1]["aht_s"], 100.666);
    let table = render(Format::Table, &header, &rows);
    assert!(
        table.lines().nth(2).unwrap().starts_with("support  "),
        "{table}"
    );

    let agents = agent_report(&log(&day()), hour(), &Settings::default());
    let (header, rows) = agent_rows(&agents);
    assert_eq!(
        &header[header.len() - 2..],
        ["break_lunch_s", "break_training_s"]
    );
    let csv = render(Format::Csv, &header, &rows);
    assert!(
        csv.contains(
            "\nben,1,1,1,76.000,3600.000,3000.000,2892.000,600.000,66.000,10.000,0,600.000,0.000\n"
        ),
        "{csv}"
    );
    assert_eq!(
        "xml".parse::<Format>().unwrap_err(),
        "unknown format \"xml\": expected table, csv or json"
    );
}

/// Voicemail tasks are work, not calls: a message offered, accepted after 40 s, worked
/// for 90 s and wrapped up for 20 s, next to one ordinary call answered in 5 s.
#[test]
fn voicemail_tasks_are_counted_apart_from_calls() {
    use AgentStatus::{Available, LoggedOut};
    let task = E::Enqueued {
        item: ItemId(7),
        queue: SUPPORT,
        kind: ItemKind::VoicemailTask {
            message: "m-1".into(),
        },
        priority: 0,
    };
    let events = vec![
        (0, status(ANN, LoggedOut, Available)),
        (10, task),
        (50, answered(7, ANN, 40)),
        (140, call_ended(7, ANN, 90)),
        (140, wrap_up(ANN)),
        (160, wrap_up_ended(ANN)),
        (200, enqueued(8, SUPPORT)),
        (205, answered(8, ANN, 5)),
        (265, call_ended(8, ANN, 60)),
        (265, wrap_up(ANN)),
        (275, wrap_up_ended(ANN)),
    ];
    let queues = call_report(&log(&events), hour(), &Settings::default());
    let q = &queues[0];
    assert_eq!(q.queue, "support");
    assert_eq!((q.offered, q.answered, q.handled), (1, 1, 1));
    assert_eq!(q.answered_in_threshold, 1);
    assert_eq!(q.service_level(), Some(1.0));
    assert_eq!(q.asa(), Some(s(5)));
    assert_eq!(
        q.aht(),
        Some(s(70)),
        "the call's 60 s talk and 10 s wrap-up only"
    );
    assert_eq!((q.tasks_offered, q.tasks_handled), (1, 1));
    assert_eq!(
        q.average_task(),
        Some(s(110)),
        "90 s worked and 20 s wrap-up"
    );

    let agents = agent_report(&log(&events), hour(), &Settings::default());
    let ann = &agents[0];
    assert_eq!((ann.answered, ann.handled, ann.tasks_handled), (1, 1, 1));
    assert_eq!(ann.aht(), Some(s(70)));
}
