//! A bounded, numbered event log: what one agent's desktop may need to replay.
//!
//! Pure: no clock, no tasks. Every appended event gets the next id (1, 2, 3, ...);
//! only the newest `capacity` are kept. A desktop that reconnects asks for everything
//! after the last id it processed; when that is older than what is kept, the replay
//! says so ([`Replay::lost`]) and starts at the oldest event held, so the desktop knows
//! to resynchronise rather than silently missing an offer.

use std::collections::VecDeque;

/// Default number of events kept per agent: a busy hour of offers, answers, wrap-ups
/// and status changes (about 6 events per call at 30 calls an hour, with room).
pub const DEFAULT_CAPACITY: usize = 256;

/// The newest events of one stream, numbered.
#[derive(Debug, Clone)]
pub struct EventLog<T> {
    capacity: usize,
    next_id: u64,
    events: VecDeque<(u64, T)>,
}

/// What a reconnecting reader gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay<T> {
    /// Set when events after `resume_after` were dropped: the oldest id still held
    /// (or the next id to be assigned when the log is empty).
    pub lost: Option<u64>,
    /// The events after `resume_after` that are still held, oldest first.
    pub events: Vec<(u64, T)>,
}

impl<T: Clone> EventLog<T> {
    /// An empty log keeping at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> EventLog<T> {
        EventLog {
            capacity: capacity.max(1),
            next_id: 1,
            events: VecDeque::new(),
        }
    }

    /// Appends an event and returns its id; drops the oldest past capacity.
    pub fn append(&mut self, event: T) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back((id, event));
        id
    }

    /// The id of the last event appended, 0 when none.
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Everything after `resume_after`. An id from the future (a desktop that talked
    /// to an earlier server run) replays everything held, flagged as lost.
    pub fn since(&self, resume_after: u64) -> Replay<T> {
        let oldest = self.events.front().map_or(self.next_id, |(id, _)| *id);
        let wanted_from = resume_after.saturating_add(1);
        let lost = (wanted_from < oldest || resume_after > self.last_id()).then_some(oldest);
        let from = if resume_after > self.last_id() {
            0
        } else {
            resume_after
        };
        Replay {
            lost,
            events: self
                .events
                .iter()
                .filter(|(id, _)| *id > from)
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
