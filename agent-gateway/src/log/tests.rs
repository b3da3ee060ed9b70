//! Unit tests of the bounded event log.

use super::*;

fn log_with(n: u64, capacity: usize) -> EventLog<u64> {
    let mut log = EventLog::new(capacity);
    for i in 1..=n {
        assert_eq!(log.append(i * 10), i, "ids count from 1");
    }
    log
}

#[test]
fn a_reader_gets_exactly_what_follows_its_last_id() {
    let log = log_with(5, 10);
    let r = log.since(3);
    assert_eq!(r.lost, None);
    assert_eq!(r.events, vec![(4, 40), (5, 50)]);
    assert_eq!(log.since(5).events, vec![]);
    assert_eq!(log.since(0).events.len(), 5, "0 means from the start");
    assert_eq!(log.since(0).lost, None);
}

#[test]
fn the_log_keeps_only_the_newest_and_says_when_a_replay_has_a_hole() {
    let log = log_with(12, 4);
    assert_eq!(log.last_id(), 12);
    let r = log.since(2);
    assert_eq!(r.lost, Some(9), "3..=8 are gone");
    assert_eq!(r.events, vec![(9, 90), (10, 100), (11, 110), (12, 120)]);
    // Right at the edge: 8 was seen, 9 is the oldest held: nothing lost.
    assert_eq!(log.since(8).lost, None);
    assert_eq!(log.since(8).events.len(), 4);
}

#[test]
fn an_id_from_the_future_replays_everything_held_as_lost() {
    let log = log_with(3, 10);
    let r = log.since(99);
    assert_eq!(r.lost, Some(1));
    assert_eq!(r.events.len(), 3);
}

#[test]
fn an_empty_log_replays_nothing() {
    let log: EventLog<u64> = EventLog::new(0);
    assert_eq!(
        log.since(0),
        Replay {
            lost: None,
            events: vec![]
        }
    );
    let mut log = log;
    log.append(1);
    log.append(2);
    assert_eq!(
        log.since(0).events,
        vec![(2, 2)],
        "capacity is at least one"
    );
}
