//! Contact-center reports, computed from the ACD's durable event log.
//!
//! # What this module owns
//! Besides the queue and agent figures below: outbound campaigns ([`campaigns`], from
//! the stored attempts), dialog scripts ([`ivr`], from the contact history) and
//! voicemail ([`voicemail`], from the mailbox index).
//!
//! The row format of the event log ([`log`]), the figures supervisors ask for per queue
//! ([`QueueFigures`]) and per agent ([`AgentFigures`]), how they are computed from a
//! slice of events and a period, and how they print ([`format`]).
//!
//! # What it must not own
//! Storage, sockets, tasks and clocks: [`call_report`] and [`agent_report`] are pure
//! functions of the events, the period and the [`Settings`]. The CLI reads the rows; the
//! server's event log writer stores them.
//!
//! # Definitions
//! Counts go to the period their event falls in (`from <= at < to`), and a call's
//! durations (talk, wait, wrap-up) to the period of the event that ends them, whole:
//! a call straddling midnight counts once, the next day. Agent times (logged in,
//! available, on break...) are clipped to the period instead, so they add up to at most
//! its length.
//!
//! Per queue:
//! * **offered**: waits started in the queue (`Enqueued`, transfers in included);
//! * **answered**, **abandoned**, **overflowed**: waits that ended so;
//!   **abandoned short**: abandoned after waiting at most [`Settings::short_abandon`]
//!   (callers who misdialled or changed their mind at the first prompt);
//! * **transferred**: answered calls an agent transferred out to another queue;
//! * **ASA** (average speed of answer): mean wait of the answered calls;
//! * **service level** = answered within [`Settings::service_level`] ÷ offered. Abandoned
//!   calls stay in the denominator (the strict form: a caller who gave up was not
//!   served), short abandons included; `None` when nothing was offered;
//! * **handled**: calls that ended after an agent answered (transfers out included);
//! * **voicemail tasks** (`vm_tasks`, `vm_tasks_handled`, `avg_vm_task_s`): messages
//!   the queue's mailbox turned into work. They are not calls: nobody waited on the
//!   line, so they stay out of every call figure above (offered, answered, service
//!   level, ASA, handled, AHT). A task's time is from the agent accepting it to the end
//!   of the wrap-up that follows;
//! * **AHT** (average handle time) = (talk + wrap-up) ÷ handled, where wrap-up is the
//!   after-call work that followed a call from this queue, as long as it really took
//!   (ended early by a disposition, or by its timer).
//!
//! Per agent: answered, not answered (offers that rang out, were declined or failed),
//! talk, wrap-up and AHT as above, and time spent logged in, available (the agent's
//! choice, whatever the system was doing: calls included), idle (available and free for
//! an offer), on break (per reason), on a call and in wrap-up (what the system was
//! doing).
//!
//! A `ServerStarted` entry resets what is known: every agent is logged out and no call
//! is waiting, whatever earlier rows said. Replay from the last start before the period
//! (the CLI does) to know each agent's status at its beginning.

pub mod campaigns;
pub mod format;
pub mod ivr;
pub mod log;
pub mod voicemail;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::acd::{AgentState, AgentStatus, Event, ItemKind};

pub use log::{Entry, LoggedEvent};

/// Default service-level threshold: 80 % of calls answered within 20 s is the
/// industry's usual target.
pub const DEFAULT_SERVICE_LEVEL: Duration = Duration::from_secs(20);
/// Default short-abandon threshold: a caller gone within 5 s barely heard the greeting.
pub const DEFAULT_SHORT_ABANDON: Duration = Duration::from_secs(5);

/// The thresholds reports are computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Answered within this counts toward the service level. Default 20 s.
    pub service_level: Duration,
    /// Abandoned within this counts as a short abandon. Default 5 s.
    pub short_abandon: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            service_level: DEFAULT_SERVICE_LEVEL,
            short_abandon: DEFAULT_SHORT_ABANDON,
        }
    }
}

/// A half-open period `[from_ms, to_ms)` of wall-clock time, Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Period {
    /// All of time: every figure ever recorded.
    pub fn whole() -> Period {
        Period {
            from_ms: i64::MIN,
            to_ms: i64::MAX,
        }
    }

    fn contains(&self, at_ms: i64) -> bool {
        self.from_ms <= at_ms && at_ms < self.to_ms
    }

    /// The part of `[start, end)` inside the period.
    fn overlap(&self, start: i64, end: i64) -> Duration {
        let (s, e) = (start.max(self.from_ms), end.min(self.to_ms));
        Duration::from_millis(e.saturating_sub(s).max(0) as u64)
    }
}

/// Why a report could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A stored row does not read back as an event.
    #[error("event log row {row} ({kind} at {at_ms} ms) is not a valid event: {reason}")]
    BadRow {
        row: usize,
        at_ms: i64,
        kind: String,
        reason: String,
    },
    /// A date or time on the command line.
    #[error("{0}")]
    BadTime(String),
}

/// One queue's figures for a period. See the module docs for the definitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueFigures {
    pub queue: String,
    pub offered: u64,
    pub answered: u64,
    /// Answered within the service-level threshold.
    pub answered_in_threshold: u64,
    pub abandoned: u64,
    pub abandoned_short: u64,
    pub overflowed: u64,
    pub transferred: u64,
    pub handled: u64,
    /// Sum of the answered calls' waits.
    pub wait: Duration,
    /// Sum of the handled calls' talk.
    pub talk: Duration,
    /// Sum of the wrap-ups after handled calls.
    pub wrap_up: Duration,
    /// Wrap-ups that ended.
    pub wrap_ups: u64,
    /// Voicemail tasks that started waiting in the queue (not counted as offered calls).
    pub tasks_offered: u64,
    /// Voicemail tasks agents finished.
    pub tasks_handled: u64,
    /// Sum of the finished tasks' time (accepted to the end of the wrap-up after it).
    pub task_time: Duration,
}

impl QueueFigures {
    /// Average speed of answer.
    pub fn asa(&self) -> Option<Duration> {
        average(self.wait, self.answered)
    }

    /// Answered within the threshold ÷ offered.
    pub fn service_level(&self) -> Option<f64> {
        (self.offered > 0).then(|| self.answered_in_threshold as f64 / self.offered as f64)
    }

    /// (Talk + wrap-up) ÷ handled.
    pub fn aht(&self) -> Option<Duration> {
        average(self.talk + self.wrap_up, self.handled)
    }

    /// Mean talk per handled call.
    pub fn average_talk(&self) -> Option<Duration> {
        average(self.talk, self.handled)
    }

    /// Mean wrap-up per wrap-up.
    pub fn average_wrap_up(&self) -> Option<Duration> {
        average(self.wrap_up, self.wrap_ups)
    }

    /// Mean time per finished voicemail task.
    pub fn average_task(&self) -> Option<Duration> {
        average(self.task_time, self.tasks_handled)
    }
}

/// One agent's figures for a period. See the module docs for the definitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFigures {
    pub agent: String,
    pub answered: u64,
    pub not_answered: u64,
    pub handled: u64,
    pub talk: Duration,
    pub wrap_up: Duration,
    pub logged_in: Duration,
    pub available: Duration,
    pub idle: Duration,
    /// Time on break, per reason.
    pub on_break: BTreeMap<String, Duration>,
    pub on_call: Duration,
    pub in_wrap_up: Duration,
    /// Voicemail tasks finished (not in `answered` or `handled`, which are calls).
    pub tasks_handled: u64,
}

impl AgentFigures {
    /// (Talk + wrap-up) ÷ handled.
    pub fn aht(&self) -> Option<Duration> {
        average(self.talk + self.wrap_up, self.handled)
    }

    /// All break time, whatever the reason.
    pub fn on_break_total(&self) -> Duration {
        self.on_break.values().sum()
    }
}

fn average(total: Duration, n: u64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_nanos((total.as_nanos() / u128::from(n)) as u64))
}

/// Per-queue figures, sorted by queue name. Queues with no event in the period are
/// not listed.
pub fn call_report(
    events: &[LoggedEvent],
    period: Period,
    settings: &Settings,
) -> Vec<QueueFigures> {
    replay(events, period, settings).0
}

/// Per-agent figures, sorted by agent name. Agents with no event and no time logged in
/// during the period are not listed.
pub fn agent_report(
    events: &[LoggedEvent],
    period: Period,
    settings: &Settings,
) -> Vec<AgentFigures> {
    replay(events, period, settings).1
}

/// What is known about an agent while replaying.
struct AgentTrack {
    figures: AgentFigures,
    status: AgentStatus,
    state: AgentState,
    /// Since when `status` and `state` have held.
    since_ms: i64,
    /// Queue of the agent's last ended call, for its wrap-up, and whether it was a
    /// voicemail task.
    last_queue: Option<String>,
    last_was_task: bool,
    /// When the current wrap-up started, for which queue, and after a task or a call.
    wrap_started: Option<(i64, Option<String>, bool)>,
    /// Whether anything about the agent fell in the period.
    seen: bool,
}

impl AgentTrack {
    fn new(name: &str, at_ms: i64) -> AgentTrack {
        AgentTrack {
            figures: AgentFigures {
                agent: name.to_string(),
                ..AgentFigures::default()
            },
            status: AgentStatus::LoggedOut,
            state: AgentState::Idle,
            since_ms: at_ms,
            last_queue: None,
            last_was_task: false,
            wrap_started: None,
            seen: false,
        }
    }

    /// Adds the time since the last change, clipped to the period, to the buckets the
    /// current status and state fall in.
    fn accrue(&mut self, period: Period, until_ms: i64) {
        let d = period.overlap(self.since_ms, until_ms);
        self.since_ms = until_ms;
        if d.is_zero() {
            return;
        }
        let f = &mut self.figures;
        if self.status != AgentStatus::LoggedOut {
            f.logged_in += d;
        }
        match &self.status {
            AgentStatus::Available => {
                f.available += d;
                if self.state == AgentState::Idle {
                    f.idle += d;
                }
            }
            AgentStatus::OnBreak { reason } => *f.on_break.entry(reason.clone()).or_default() += d,
            AgentStatus::LoggedOut => {}
        }
        match self.state {
            AgentState::OnCall(_) => f.on_call += d,
            AgentState::WrapUp => f.in_wrap_up += d,
            _ => {}
        }
    }
}

fn replay(
    events: &[LoggedEvent],
    period: Period,
    settings: &Settings,
) -> (Vec<QueueFigures>, Vec<AgentFigures>) {
    let mut queues: BTreeMap<String, QueueFigures> = BTreeMap::new();
    let mut agents: BTreeMap<String, AgentTrack> = BTreeMap::new();
    // The queue each item currently waits in (or was answered from).
    let mut items: HashMap<u64, String> = HashMap::new();
    // Items that are voicemail tasks, not calls.
    let mut tasks: HashSet<u64> = HashSet::new();

    for e in events {
        if e.at_ms >= period.to_ms {
            break;
        }
        let counts = period.contains(e.at_ms);
        let event = match &e.entry {
            Entry::ServerStarted => {
                for track in agents.values_mut() {
                    track.accrue(period, e.at_ms);
                    track.status = AgentStatus::LoggedOut;
                    track.state = AgentState::Idle;
                    track.wrap_started = None;
                }
                items.clear();
                tasks.clear();
                continue;
            }
            Entry::Acd(event) => event,
        };
        // The queue this event counts for: its own, or its item's.
        let queue_name = e.queue.clone().or_else(|| match log::subjects(event).0 {
            Some(item) => items.get(&item.0).cloned(),
            None => None,
        });
        let mut agent = e.agent.as_ref().map(|name| {
            let track = agents
                .entry(name.clone())
                .or_insert_with(|| AgentTrack::new(name, e.at_ms));
            track.seen |= counts;
            track
        });

        match event {
            Event::Enqueued { item, kind, .. } => {
                if let Some(name) = &e.queue {
                    items.insert(item.0, name.clone());
                }
                let task = matches!(kind, ItemKind::VoicemailTask { .. });
                if task {
                    tasks.insert(item.0);
                }
                if let Some(q) = slot(&mut queues, &queue_name, counts) {
                    if task {
                        q.tasks_offered += 1;
                    } else {
                        q.offered += 1;
                    }
                }
            }
            // Accepting a task is not answering a call; it is counted when it ends.
            Event::Answered { item, .. } if tasks.contains(&item.0) => {}
            Event::Answered { waited, .. } => {
                if let Some(q) = slot(&mut queues, &queue_name, counts) {
                    q.answered += 1;
                    q.wait += *waited;
                    if *waited <= settings.service_level {
                        q.answered_in_threshold += 1;
                    }
                }
                if let (Some(a), true) = (agent.as_deref_mut(), counts) {
                    a.figures.answered += 1;
                }
            }
            Event::NoAnswer { .. } => {
                if let (Some(a), true) = (agent.as_deref_mut(), counts) {
                    a.figures.not_answered += 1;
                }
            }
            Event::Abandoned { item, .. } | Event::Overflowed { item, .. }
                if tasks.remove(&item.0) =>
            {
                // A task withdrawn (its message deleted) before anybody took it.
                items.remove(&item.0);
            }
            Event::Abandoned { item, waited, .. } => {
                items.remove(&item.0);
                if let Some(q) = slot(&mut queues, &queue_name, counts) {
                    q.abandoned += 1;
                    if *waited <= settings.short_abandon {
                        q.abandoned_short += 1;
                    }
                }
            }
            Event::Overflowed { item, .. } => {
                items.remove(&item.0);
                if let Some(q) = slot(&mut queues, &queue_name, counts) {
                    q.overflowed += 1;
                }
            }
            Event::Transferred { .. } => {
                if let Some(q) = slot(&mut queues, &queue_name, counts) {
                    q.transferred += 1;
                }
            }
            Event::CallEnded { item, talk, .. } if tasks.remove(&item.0) => {
                if let Some(q) = slot(&mut queues, &queue_name, counts) {
                    q.tasks_handled += 1;
                    q.task_time += *talk;
                }
                if let Some(a) = agent.as_deref_mut() {
                    a.last_queue = queue_name.clone();
                    a.last_was_task = true;
                    if counts {
                        a.figures.tasks_handled += 1;
                    }
                }
                items.remove(&item.0);
            }
            Event::CallEnded { item, talk, .. } => {
                if let Some(q) = slot(&mut queues, &queue_name, counts) {
                    q.handled += 1;
                    q.talk += *talk;
                }
                if let Some(a) = agent.as_deref_mut() {
                    a.last_queue = queue_name.clone();
                    a.last_was_task = false;
                    if counts {
                        a.figures.handled += 1;
                        a.figures.talk += *talk;
                    }
                }
                // A transfer re-enqueues the item right after (and maps it again).
                items.remove(&item.0);
            }
            Event::WrapUpStarted { .. } => {
                if let Some(a) = agent.as_deref_mut() {
                    a.wrap_started = Some((e.at_ms, a.last_queue.clone(), a.last_was_task));
                }
            }
            Event::WrapUpEnded { .. } => {
                let started = agent.as_deref_mut().and_then(|a| a.wrap_started.take());
                if let Some((start, wrap_queue, after_task)) = started {
                    let d = Duration::from_millis(e.at_ms.saturating_sub(start).max(0) as u64);
                    if after_task {
                        // Part of the task's time, not of any call's handle time.
                        if let Some(q) = slot(&mut queues, &wrap_queue, counts) {
                            q.task_time += d;
                        }
                    } else if let Some(q) = slot(&mut queues, &wrap_queue, counts) {
                        q.wrap_up += d;
                        q.wrap_ups += 1;
                    }
                    if let (Some(a), true, false) = (agent.as_deref_mut(), counts, after_task) {
                        a.figures.wrap_up += d;
                    }
                }
            }
            Event::StatusChanged { to, .. } => {
                if let Some(a) = agent.as_deref_mut() {
                    a.accrue(period, e.at_ms);
                    a.status = to.clone();
                }
            }
            Event::StateChanged { to, .. } => {
                if let Some(a) = agent {
                    a.accrue(period, e.at_ms);
                    a.state = *to;
                }
            }
            Event::Offered { .. }
            | Event::CallbackRequested { .. }
            | Event::CallbackDialing { .. }
            | Event::CalledBack { .. }
            | Event::QueueDepth { .. } => {}
        }
    }

    let agents = agents
        .into_values()
        .filter_map(|mut track| {
            track.accrue(period, period.to_ms);
            (track.seen || !track.figures.logged_in.is_zero()).then_some(track.figures)
        })
        .collect();
    (queues.into_values().collect(), agents)
}

/// The queue's figures if the event counts in the period and names a queue.
fn slot<'a>(
    queues: &'a mut BTreeMap<String, QueueFigures>,
    name: &Option<String>,
    counts: bool,
) -> Option<&'a mut QueueFigures> {
    let name = name.as_ref().filter(|_| counts)?;
    Some(queues.entry(name.clone()).or_insert_with(|| QueueFigures {
        queue: name.clone(),
        ..QueueFigures::default()
    }))
}

/// Unix milliseconds of `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM[:SS]` (UTC).
pub fn parse_utc(text: &str) -> Result<i64, ReportError> {
    let bad = || {
        ReportError::BadTime(format!(
            "{text:?} is not a UTC date or time: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]"
        ))
    };
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (text, None),
    };
    let num = |s: &str, lo: i64, hi: i64| -> Result<i64, ReportError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = s.parse().map_err(|_| bad())?;
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    let mut d = date.split('-');
    let (Some(y), Some(m), Some(day), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    let (y, m) = (num(y, 1970, 9999)?, num(m, 1, 12)?);
    let day = num(day, 1, days_in_month(y, m))?;
    let secs = match time {
        None => 0,
        Some(t) => {
            let mut parts = t.split(':');
            let h = num(parts.next().unwrap_or_default(), 0, 23)?;
            let min = num(parts.next().ok_or_else(bad)?, 0, 59)?;
            let s = match parts.next() {
                Some(s) => num(s, 0, 59)?,
                None => 0,
            };
            if parts.next().is_some() {
                return Err(bad());
            }
            h * 3600 + min * 60 + s
        }
    };
    Ok((days_from_epoch(y, m, day) * 86_400 + secs) * 1000)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the date (years from 1970 on).
fn days_from_epoch(y: i64, m: i64, d: i64) -> i64 {
    let years: i64 = (1970..y).map(|y| if is_leap(y) { 366 } else { 365 }).sum();
    let months: i64 = (1..m).map(|m| days_in_month(y, m)).sum();
    years + months + d - 1
}
