//! Preview dialling, in the ACD driver: a preview-mode campaign hands each due
//! contact to the ACD as a callback task ([`crate::acd::ItemKind::CallbackTask`]), so
//! the core reserves an agent for it exactly as for a queued callback. Instead of
//! dialling at once, the driver offers the contact on the agent's desktop (a
//! `CallOffered` with `preview` set) and waits for the agent: PreviewDial hands the
//! item to the callback dialler ([`super::callback_call`]: the agent's phone rings,
//! then the customer is dialled and connected), PreviewSkip frees the agent and closes
//! the contact. The campaign hears the end through [`PreviewEnd`].
//!
//! ```text
//!   waiting --agent reserved--> offered --PreviewDial--> dialling --> (callback dial)
//!                                  |                        '--agent missed--> waiting
//!                                  '--PreviewSkip--> skipped
//! ```
//!
//! It must not own policy: which agent is the core's, pacing is the campaign's.

use super::acd::AcdDriver;
use super::*;
use crate::acd::{AgentId, CallerInfo, Input as AcdInput, ItemId, ItemKind, NewItem};
use crate::campaigns::Outcome;
use agent_gateway::BackendError;

/// How a preview ended, for its campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PreviewEnd {
    /// The agent skipped the contact: nothing was dialled.
    Skipped,
    /// The queue refused it (its length limit): not offered, nothing dialled.
    NotOffered,
    /// The agent dialled; what became of the customer's leg.
    Dialled {
        outcome: Outcome,
        answered_at_ms: Option<i64>,
        agent: String,
    },
}

/// What the callback dialler needs to dial a preview as its campaign would.
#[derive(Clone)]
pub(super) struct PreviewDial {
    pub(super) report: mpsc::UnboundedSender<PreviewEnd>,
    /// The customer leg's Call-ID: names the campaign attempt.
    pub(super) call_id: String,
    pub(super) trunk: Trunk,
    pub(super) caller_id: String,
}

/// A campaign contact to preview (see [`AcdRequest::EnqueuePreview`]).
pub(super) struct NewPreview {
    pub(super) item: u64,
    pub(super) queue: String,
    pub(super) e164: String,
    pub(super) customer: Option<i64>,
    pub(super) dial: PreviewDial,
}

struct PreviewItem {
    e164: String,
    /// The agent the core reserved, once it has.
    agent: Option<AgentId>,
    /// The agent chose to dial: the next reservation dials without asking again.
    dialling: bool,
    dial: PreviewDial,
}

/// The previews in the ACD, and the dials the agents asked for.
#[derive(Default)]
pub(super) struct Previews {
    items: HashMap<ItemId, PreviewItem>,
    due: Vec<(ItemId, AgentId)>,
}

impl Previews {
    /// The campaign's dial settings, when `item` is a preview being dialled.
    pub(super) fn dialling(&self, item: ItemId) -> Option<PreviewDial> {
        self.items
            .get(&item)
            .filter(|p| p.dialling)
            .map(|p| p.dial.clone())
    }

    /// The dial did not reach the agent: the next reservation asks again.
    pub(super) fn agent_missed(&mut self, item: ItemId) {
        if let Some(p) = self.items.get_mut(&item) {
            p.dialling = false;
            p.agent = None;
        }
    }

    /// The item is over (answered or not reached).
    pub(super) fn forget(&mut self, item: ItemId) {
        self.items.remove(&item);
    }
}

impl AcdDriver {
    /// A preview-mode campaign's contact waits for an agent.
    pub(super) fn enqueue_preview(&mut self, p: NewPreview) {
        let item = ItemId(p.item);
        let Some(&queue) = self.queues.get(&p.queue) else {
            let _ = p.dial.report.send(PreviewEnd::Skipped);
            return;
        };
        self.desk
            .enqueued(now(), item, Some(p.e164.clone()), &p.queue);
        self.desk.campaign_call(item, p.dial.call_id.clone());
        self.desk.preview(item);
        if let Some(customer) = p.customer {
            self.customers.insert(item, customer);
        }
        self.features
            .waiting_in(item, &p.queue, Some(p.e164.clone()));
        self.previews.items.insert(
            item,
            PreviewItem {
                e164: p.e164.clone(),
                agent: None,
                dialling: false,
                dial: p.dial,
            },
        );
        self.input(AcdInput::Enqueue(NewItem {
            id: item,
            kind: ItemKind::CallbackTask,
            queue,
            priority: u8::MAX,
            skills: Vec::new(),
            caller: CallerInfo {
                number: Some(p.e164),
                name: None,
            },
        }));
    }

    /// The core reserved `agent` for `item`: a preview not yet decided is offered on
    /// the agent's desktop (true); anything else is dialled as a callback (false).
    pub(super) async fn offer_preview(&mut self, item: ItemId, agent: AgentId) -> bool {
        match self.previews.items.get_mut(&item) {
            Some(p) if !p.dialling => p.agent = Some(agent),
            _ => return false,
        }
        tracing::info!(?item, ?agent, "offering a campaign preview");
        self.desk_action(&crate::acd::Action::Offer {
            item,
            agent,
            ring_timeout: Duration::ZERO,
        });
        true
    }

    /// The agent's PreviewDial (`dial`) or PreviewSkip.
    pub(super) fn preview_decision(
        &mut self,
        agent: &str,
        item: ItemId,
        dial: bool,
    ) -> Result<(), BackendError> {
        let id = self.agent_id(agent)?;
        let Some(p) = self.previews.items.get_mut(&item) else {
            return Err(BackendError::FailedPrecondition(format!(
                "call {} is not a campaign preview",
                item.0
            )));
        };
        if p.agent != Some(id) || p.dialling {
            return Err(BackendError::FailedPrecondition(format!(
                "the preview {} is not waiting for {agent}'s decision",
                item.0
            )));
        }
        if dial {
            tracing::info!(%agent, ?item, "preview: the agent dials");
            p.dialling = true;
            self.previews.due.push((item, id));
            return Ok(());
        }
        tracing::info!(%agent, ?item, "preview: the agent skips");
        let _ = p.dial.report.send(PreviewEnd::Skipped);
        self.previews.forget(item);
        self.features.forget(item);
        self.desk_item_ended(item);
        self.customers.remove(&item);
        self.input(AcdInput::CustomerNotReached(item));
        Ok(())
    }

    /// The queue refused a preview (an entry rule): true when `item` was one; its
    /// campaign hears it was not offered.
    pub(super) fn preview_refused(&mut self, item: ItemId) -> bool {
        let Some(p) = self.previews.items.remove(&item) else {
            return false;
        };
        tracing::info!(?item, "the queue refused a campaign preview");
        let _ = p.dial.report.send(PreviewEnd::NotOffered);
        self.features.forget(item);
        self.desk_item_ended(item);
        self.customers.remove(&item);
        true
    }

    /// Dials the previews the agents chose to dial (from the driver's async drain).
    pub(super) async fn dial_previews(&mut self) {
        for (item, agent) in std::mem::take(&mut self.previews.due) {
            let number = self.previews.items.get(&item).map(|p| p.e164.clone());
            if number.is_some() {
                self.dial_customer(item, agent, number).await;
            }
        }
    }
}
