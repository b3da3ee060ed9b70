//! The ACD event log's row format: an [`Event`] stamped with wall-clock time and the
//! configured names of its queue and agent, and the way back from a stored row.
//!
//! Names rather than the ACD's numbers go into the log because the numbers are
//! positions in the config of the process that wrote the row; a report read after a
//! config change must still say "support", not "queue 0".

use crate::acd::{AgentId, Event, ItemId, QueueId};
use crate::store::AcdEventRecord;

use super::ReportError;

/// Kind of the marker row the server writes when its ACD starts: every agent is logged
/// out there, whatever the rows before said (a crash leaves no logout events).
pub const SERVER_STARTED: &str = "ServerStarted";

/// One entry of the log, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// Wall-clock time, Unix milliseconds.
    pub at_ms: i64,
    /// The queue's name, when the event names a queue (for a transfer: the queue the call
    /// was answered from).
    pub queue: Option<String>,
    /// The agent's name, when the event names an agent.
    pub agent: Option<String>,
    /// What happened.
    pub entry: Entry,
}

/// What a log entry says.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// An event of the ACD core.
    Acd(Event),
    /// The server (and so its ACD) started afresh.
    ServerStarted,
}

/// The item, queue and agent an event is about (for a transfer, the queue it leaves).
pub fn subjects(event: &Event) -> (Option<ItemId>, Option<QueueId>, Option<AgentId>) {
    use Event as E;
    match *event {
        E::Enqueued { item, queue, .. }
        | E::Abandoned { item, queue, .. }
        | E::Overflowed { item, queue, .. }
        | E::Transferred {
            item, from: queue, ..
        } => (Some(item), Some(queue), None),
        E::Offered { item, agent }
        | E::Answered { item, agent, .. }
        | E::NoAnswer { item, agent, .. }
        | E::CallbackDialing { item, agent }
        | E::CalledBack { item, agent, .. }
        | E::CallEnded { item, agent, .. } => (Some(item), None, Some(agent)),
        E::CallbackRequested { item } => (Some(item), None, None),
        E::WrapUpStarted { agent, .. }
        | E::WrapUpEnded { agent, .. }
        | E::StatusChanged { agent, .. }
        | E::StateChanged { agent, .. } => (None, None, Some(agent)),
        E::QueueDepth { queue, .. } => (None, Some(queue), None),
    }
}

/// The row for `event`, which happened at `at_ms`. `queues` and `agents` are the
/// configured names, indexed by the ACD's numbers; a number without a name is written
/// as its number so the row is still written.
pub fn record(at_ms: i64, event: &Event, queues: &[String], agents: &[String]) -> AcdEventRecord {
    let (item, queue, agent) = subjects(event);
    let details = serde_json::to_value(event).unwrap_or_default();
    // Externally tagged: `{"Answered": {...}}`; the tag is the kind.
    let kind = details
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_else(|| "Unknown".into());
    AcdEventRecord {
        at_ms,
        kind,
        item: item.map(|i| i.0 as i64),
        queue: queue.map(|q| {
            queues
                .get(q.0 as usize)
                .cloned()
                .unwrap_or_else(|| q.0.to_string())
        }),
        agent: agent.map(|a| {
            agents
                .get(a.0 as usize)
                .cloned()
                .unwrap_or_else(|| a.0.to_string())
        }),
        details_json: details.to_string(),
    }
}

/// The marker row written when the server starts.
pub fn server_started(at_ms: i64) -> AcdEventRecord {
    AcdEventRecord {
        at_ms,
        kind: SERVER_STARTED.into(),
        item: None,
        queue: None,
        agent: None,
        details_json: format!(r#"{{"{SERVER_STARTED}":{{}}}}"#),
    }
}

/// Reads a stored row back. `row` is its 1-based position in what was read, for the
/// error message.
pub fn parse(row: usize, record: &AcdEventRecord) -> Result<LoggedEvent, ReportError> {
    let entry = if record.kind == SERVER_STARTED {
        Entry::ServerStarted
    } else {
        let event: Event =
            serde_json::from_str(&record.details_json).map_err(|e| ReportError::BadRow {
                row,
                at_ms: record.at_ms,
                kind: record.kind.clone(),
                reason: e.to_string(),
            })?;
        Entry::Acd(event)
    };
    Ok(LoggedEvent {
        at_ms: record.at_ms,
        queue: record.queue.clone(),
        agent: record.agent.clone(),
        entry,
    })
}

/// Reads every row back, stopping at the first bad one.
pub fn parse_all(records: &[AcdEventRecord]) -> Result<Vec<LoggedEvent>, ReportError> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| parse(i + 1, r))
        .collect()
}
