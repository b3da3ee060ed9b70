//! The event hub: where the server publishes agent and supervisor events, and where
//! streams find them. Each agent has a bounded, numbered [`EventLog`] (for resume) and
//! a broadcast channel (for live delivery); supervisors share one broadcast channel.
//! The campaigns' status is published once for all streams; the hub keeps the latest
//! so a stream that opens later starts with it.
//!
//! The hub also remembers each agent's current call from the events that pass through
//! it (offered → current, withdrawn or wrap-up ended → none), which is what the
//! gateway checks before letting an agent act on a call id.

use std::collections::HashMap;
use std::sync::Mutex;

use callcenter_proto::agent::{AgentEvent, agent_event::Kind};
use callcenter_proto::supervisor::{CampaignList, StatusUpdate, status_update};
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
    /// The campaigns' latest status, as last published.
    campaigns: Mutex<Option<StatusUpdate>>,
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
            campaigns: Mutex::new(None),
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

    /// Publishes the campaigns' status to every supervisor stream and keeps it for the
    /// streams that open later; a list equal to the last one is not sent again.
    /// Returns whether it was sent.
    pub fn publish_campaigns(&self, at_unix_ms: i64, list: CampaignList) -> bool {
        let mut latest = self.campaigns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(StatusUpdate {
            kind: Some(status_update::Kind::Campaigns(last)),
            ..
        }) = latest.as_ref()
            && *last == list
        {
            return false;
        }
        let update = StatusUpdate {
            at_unix_ms,
            kind: Some(status_update::Kind::Campaigns(list)),
        };
        *latest = Some(update.clone());
        // Sent under the lock: a stream reading the latest after subscribing can see
        // an update twice (harmless) but never an older one after a newer.
        let _ = self.supervisors.send(update);
        true
    }

    /// The campaigns' latest status, if any was published.
    pub(crate) fn campaigns(&self) -> Option<StatusUpdate> {
        self.campaigns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
    pub fn subscribe_supervisor(&self) -> broadcast::Receiver<StatusUpdate> {
        self.supervisors.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callcenter_proto::supervisor::CampaignView;

    fn list(answered: u32) -> CampaignList {
        CampaignList {
            campaigns: vec![CampaignView {
                name: "renewals".into(),
                answered,
                ..CampaignView::default()
            }],
        }
    }

    #[test]
    fn campaigns_are_sent_on_change_and_kept_for_later_streams() {
        let hub = EventHub::default();
        assert!(hub.campaigns().is_none(), "nothing before the first status");
        let mut early = hub.subscribe_supervisor();
        assert!(hub.publish_campaigns(1, list(1)));
        assert!(
            !hub.publish_campaigns(2, list(1)),
            "unchanged: not sent again"
        );
        assert!(hub.publish_campaigns(3, list(2)));
        let sent: Vec<i64> = std::iter::from_fn(|| early.try_recv().ok())
            .map(|u| u.at_unix_ms)
            .collect();
        assert_eq!(sent, [1, 3]);
        // A stream opened now starts from the latest.
        let latest = hub.campaigns().unwrap();
        assert_eq!(latest.at_unix_ms, 3);
        assert_eq!(latest.kind, Some(status_update::Kind::Campaigns(list(2))));
    }
}
