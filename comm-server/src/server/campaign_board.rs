//! The campaigns' live status, computed once for every supervisor: each campaign
//! driver refreshes its campaign's [`CampaignView`] here (when a call ends, its state
//! or its agents change, and every [`REFRESH`] for changes made elsewhere, such as a
//! contact import), and the board publishes the whole list to the gateway's hub when
//! it differs from the last one. Supervisor streams forward what was published; one
//! that opens later starts with the latest.
//!
//! Owns: the last view of each campaign and the driver's live figures (agents on the
//! campaign, dial ratio), which the store does not know. Must not own: the figures'
//! computation from the store ([`super::supervision::campaign_view`]) or pacing.

use std::sync::Mutex;

use agent_gateway::EventHub;
use agent_gateway::proto::supervisor::{CampaignList, CampaignView};

use super::*;

/// How often a driver refreshes its campaign's status even when it saw no change.
pub(super) const REFRESH: Duration = Duration::from_secs(2);

/// What a campaign driver knows of its campaign now that the store does not.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Live {
    /// Agents serving the campaign's queue who are available or busy.
    pub(crate) agents: u32,
    /// The campaign's calls in progress per agent on it (0 with no agent).
    pub(crate) dial_ratio: f64,
}

impl Live {
    /// From the driver's floor: `calls` in progress among `agents`.
    pub(crate) fn new(agents: u32, calls: u32) -> Live {
        Live {
            agents,
            dial_ratio: if agents == 0 {
                0.0
            } else {
                f64::from(calls) / f64::from(agents)
            },
        }
    }
}

/// See the module docs. One per server, shared by the drivers and the gateway backend.
pub(crate) struct CampaignBoard {
    hub: Arc<EventHub>,
    clock: Arc<dyn Clock>,
    /// In config order; `None` until the campaign's driver first reports.
    slots: Mutex<Vec<Slot>>,
}

struct Slot {
    name: String,
    live: Live,
    view: Option<CampaignView>,
}

impl CampaignBoard {
    pub(crate) fn new(hub: Arc<EventHub>, clock: Arc<dyn Clock>, names: &[String]) -> Self {
        let slots = names
            .iter()
            .map(|name| Slot {
                name: name.clone(),
                live: Live::default(),
                view: None,
            })
            .collect();
        CampaignBoard {
            hub,
            clock,
            slots: Mutex::new(slots),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // Views are replaced whole: a panic elsewhere cannot leave one half-written.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The driver's latest live figures for `campaign` (zero before it reports).
    pub(crate) fn live(&self, campaign: &str) -> Live {
        self.lock()
            .iter()
            .find(|s| s.name == campaign)
            .map(|s| s.live)
            .unwrap_or_default()
    }

    /// Records the driver's live figures, returning whether they changed.
    pub(crate) fn set_live(&self, campaign: &str, live: Live) -> bool {
        let mut slots = self.lock();
        match slots.iter_mut().find(|s| s.name == campaign) {
            Some(s) if s.live != live => {
                s.live = live;
                true
            }
            _ => false,
        }
    }

    /// Replaces one campaign's view and publishes the list if anything changed.
    pub(crate) fn update(&self, view: CampaignView) {
        let mut slots = self.lock();
        let Some(slot) = slots.iter_mut().find(|s| s.name == view.name) else {
            return;
        };
        if slot.view.as_ref() == Some(&view) {
            return;
        }
        slot.view = Some(view);
        let list = CampaignList {
            campaigns: slots.iter().filter_map(|s| s.view.clone()).collect(),
        };
        // Published under the board's lock so two drivers' lists reach the hub in
        // the order they were built.
        self.hub.publish_campaigns(self.clock.unix_ms(), list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SystemClock;

    #[test]
    fn the_dial_ratio_is_calls_per_agent() {
        assert_eq!(Live::new(0, 3).dial_ratio, 0.0);
        assert_eq!(Live::new(2, 3).dial_ratio, 1.5);
    }

    #[test]
    fn views_reach_the_hub_once_per_change_in_config_order() {
        let hub = Arc::new(EventHub::default());
        let names = ["a".to_string(), "b".to_string()];
        let board = CampaignBoard::new(hub.clone(), Arc::new(SystemClock), &names);
        let view = |name: &str, answered| CampaignView {
            name: name.into(),
            answered,
            ..CampaignView::default()
        };
        let mut updates = hub.subscribe_supervisor();
        board.update(view("b", 1));
        board.update(view("b", 1));
        board.update(view("a", 0));
        board.update(view("nope", 0));
        let lists: Vec<Vec<String>> = std::iter::from_fn(|| updates.try_recv().ok())
            .map(|u| match u.kind {
                Some(agent_gateway::proto::supervisor::status_update::Kind::Campaigns(l)) => {
                    l.campaigns.into_iter().map(|c| c.name).collect()
                }
                other => panic!("not a campaign list: {other:?}"),
            })
            .collect();
        assert_eq!(lists, [vec!["b"], vec!["a", "b"]]);
        assert!(board.set_live("a", Live::new(2, 1)));
        assert!(!board.set_live("a", Live::new(2, 1)));
        assert_eq!(board.live("a").agents, 2);
        assert_eq!(board.live("b"), Live::default());
    }
}
