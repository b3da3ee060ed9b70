//! The event hub: where the server publishes agent and supervisor events, and where
//! streams find them. Each agent has a bounded, numbered [`EventLog`] (for resume) and
//! a broadcast channel (for live delivery); supervisors share one broadcast channel.
//!
//! The hub also remembers each agent's current call from the events that pass through
//! it (offered → current, withdrawn or wrap-up ended → none), which is what the
//! gateway checks before letting an agent act on a call id.

use std::collections::HashMap;
use std::sync::Mutex;

use callcenter_proto::agent::{AgentEvent, agent_event::Kind};
use callcenter_proto::supervisor::StatusUpdate;
use tokio::sync::broadcast;

use crate::log::{self, EventLog};

/// Live events buffered per receiver before a slow stream falls back to the log.
const LIVE_BUFFER: usize = 256;
/// Supervisor updates buffered per receiver before a slow stream is resynchronised.
const SUPERVISOR_BUFFER: usize = 4096;

struct AgentStream {
    log: EventLog<AgentEvent>,
    live: broadcast::Sender<AgentEvent>,
    current_call: Option<String>,
}

/// See the module docs. Shared as `Arc<EventHub>` by the server and the gateway.
pub struct EventHub {
    capacity: usize,
    agents: Mutex<HashMap<String, AgentStream>>,
    supervisors: broadcast::Sender<StatusUpdate>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub::new(log::DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// What a new agent stream starts with.
pub(crate) struct Subscription {
    pub(crate) replay: log::Replay<AgentEvent>,
    pub(crate) live: broadcast::Receiver<AgentEvent>,
}

impl EventHub {
    /// A hub keeping `capacity` events per agent for replay.
    pub fn new(capacity: usize) -> EventHub {
        EventHub {
            capacity,
            agents: Mutex::new(HashMap::new()),
            supervisors: broadcast::channel(SUPERVISOR_BUFFER).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AgentStream>> {
        // A panic while holding the lock cannot leave the map half-updated in a way
        // that matters more than losing every stream; carry on with what is there.
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stream<'a>(
        &self,
        agents: &'a mut HashMap<String, AgentStream>,
        agent: &str,
    ) -> &'a mut AgentStream {
        agents
            .entry(agent.to_string())
            .or_insert_with(|| AgentStream {
                log: EventLog::new(self.capacity),
                live: broadcast::channel(LIVE_BUFFER).0,
                current_call: None,
            })
    }

    /// Publishes an event to one agent; returns its id.
    pub fn publish_agent(&self, agent: &str, at_unix_ms: i64, kind: Kind) -> u64 {
        let mut agents = self.lock();
        let s = self.stream(&mut agents, agent);
        let ends = match &kind {
            Kind::CallOffered(o) => {
                s.current_call = Some(o.call_id.clone());
                None
            }
            Kind::VoicemailTask(t) => {
                s.current_call = Some(t.task_id.clone());
                None
            }
            Kind::CallConnected(c) => {
                s.current_call = Some(c.call_id.clone());
                None
            }
            // A call that was talked on stays current through wrap-up (disposition).
            Kind::CallEnded(e) if e.reason != "hung-up" && e.reason != "transferred" => {
                Some(e.call_id.as_str())
            }
            Kind::WrapUpEnded(e) => Some(e.call_id.as_str()),
            _ => None,
        };
        if ends.is_some() && s.current_call.as_deref() == ends {
            s.current_call = None;
        }
        let mut event = AgentEvent {
            id: 0,
            at_unix_ms,
            kind: Some(kind),
        };
        event.id = s.log.last_id() + 1;
        let id = s.log.append(event.clone());
        debug_assert_eq!(id, event.id);
        // No live stream is normal (the desktop is reconnecting): the log keeps it.
        let _ = s.live.send(event);
        id
    }

    /// Publishes a change to every supervisor stream.
    pub fn publish_supervisor(&self, update: StatusUpdate) {
        let _ = self.supervisors.send(update);
    }

    /// The call the agent may act on: ringing, talking or wrapping up.
    pub fn current_call(&self, agent: &str) -> Option<String> {
        self.lock().get(agent).and_then(|s| s.current_call.clone())
    }

    /// The replay after `resume_after` (none when absent) and a live receiver, taken
    /// under one lock so nothing falls between them.
    pub(crate) fn subscribe_agent(&self, agent: &str, resume_after: Option<u64>) -> Subscription {
        let mut agents = self.lock();
        let s = self.stream(&mut agents, agent);
        let replay = match resume_after {
            Some(after) => s.log.since(after),
            None => log::Replay {
                lost: None,
                events: Vec::new(),
            },
        };
        Subscription {
            replay,
            live: s.live.subscribe(),
        }
    }

    /// A receiver of supervisor updates.
    pub(crate) fn subscribe_supervisor(&self) -> broadcast::Receiver<StatusUpdate> {
        self.supervisors.subscribe()
    }
}
