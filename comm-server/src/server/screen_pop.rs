//! The screen pop's customer part (record and recent history), looked up off the ACD
//! driver's loop: the lookup starts when a call enters a queue ([`Desk::enqueued`]),
//! in its own task, and its result comes back to the driver as
//! [`AcdRequest::PopReady`]. An offer never waits for it: the agent's phone rings at
//! once, and the desktop's offer event goes out as soon as the pop is ready, which is
//! usually before the offer is made. A lookup that outlives its bound gives an empty
//! pop, so the desktop hears of the offer at the latest then.
//!
//! ```text
//!   enqueued ──► Running(offers waiting) ──PopReady──► Done(pop) ──ended──► (gone)
//! ```
//!
//! Owns: the lookup hook ([`CustomerLookup`]), its wire form ([`customer_card`]) and the
//! per-item lookup state. Must not own: who is found ([`crate::crm::Directory`]) or
//! which agent is offered the call (the ACD core).

use std::future::Future;
use std::pin::Pin;

use agent_gateway::proto::agent::{Customer, Interaction, agent_event::Kind};

use super::*;
use crate::acd::{AgentId, ItemId};

/// The customer record and recent history for a caller's number, for the screen
/// pop. The server's default finds nobody; the customer directory plugs in here.
pub type CustomerLookup =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = PopData> + Send>> + Send + Sync>;

/// A screen pop's customer record and last interactions.
pub type PopData = (Option<Customer>, Vec<Interaction>);

/// How long an offer's desktop event waits for a lookup that does not bound itself
/// (one set with [`super::App::set_customer_lookup`]).
pub const DEFAULT_LOOKUP_BOUND: Duration = Duration::from_secs(2);

/// A lookup that never finds anyone.
pub fn no_customers() -> CustomerLookup {
    Arc::new(|_| Box::pin(async { (None, Vec::new()) }))
}

/// The server's lookup: the caller's number normalised with the `[customers]` dial
/// plan, then the directory (store and CRM, see [`crate::crm`]) for the record and the
/// last `limit` contacts. A number that does not normalise finds nobody.
pub fn directory_lookup(
    directory: Arc<crate::crm::Directory>,
    plan: crate::phone::DialPlan,
    limit: u32,
) -> CustomerLookup {
    Arc::new(move |caller: String| {
        let directory = directory.clone();
        let plan = plan.clone();
        Box::pin(async move {
            let Ok(e164) = crate::phone::normalise(&caller, &plan) else {
                return (None, Vec::new());
            };
            let pop = directory.screen_pop(&e164, limit).await;
            (
                pop.customer.map(customer_card),
                pop.history.into_iter().map(interaction).collect(),
            )
        })
    })
}

/// A record as the screen pop shows it: one only the CRM holds has the id `crm:` and
/// the CRM's key; the e-mail is shown among the attributes.
fn customer_card(c: crate::store::Customer) -> Customer {
    let mut attributes: HashMap<String, String> = c
        .attributes
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    if let Some(email) = c.email {
        attributes.entry("email".into()).or_insert(email);
    }
    let id = if c.id == crate::crm::NOT_STORED {
        format!("crm:{}", c.external_ref.unwrap_or_default())
    } else {
        c.id.to_string()
    };
    Customer {
        id,
        name: c.name,
        phone_numbers: c.phones,
        account: c.account.unwrap_or_default(),
        attributes,
    }
}

fn interaction(h: crate::store::HistoryEntry) -> Interaction {
    let c = h.contact;
    let notes = c
        .details
        .get("notes")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    Interaction {
        id: h.id.to_string(),
        channel: c.kind.as_str().to_string(),
        at_unix_ms: c.started_at_ms,
        agent_id: c.agent.unwrap_or_default(),
        disposition: c.outcome.unwrap_or_default(),
        notes,
    }
}

/// One item's lookup.
pub(super) enum PopLookup {
    /// Still running; the offers made meanwhile wait here, unpublished.
    Running(Vec<(AgentId, Kind)>),
    Done(PopData),
}

/// The lookups of the items the desk knows.
pub(super) struct Pops {
    lookup: CustomerLookup,
    bound: Duration,
    /// Where finished lookups report; weak, so the driver still ends when every
    /// call task and the gateway are gone.
    acd: Option<mpsc::WeakUnboundedSender<AcdRequest>>,
    items: HashMap<ItemId, PopLookup>,
}

impl Pops {
    pub(super) fn new(lookup: CustomerLookup, bound: Duration) -> Pops {
        Pops {
            lookup,
            bound,
            acd: None,
            items: HashMap::new(),
        }
    }

    pub(super) fn report_to(&mut self, acd: mpsc::WeakUnboundedSender<AcdRequest>) {
        self.acd = Some(acd);
    }

    /// Starts `item`'s lookup, once; a call without a number has an empty pop.
    pub(super) fn start(&mut self, item: ItemId, caller: Option<&str>) {
        if self.items.contains_key(&item) {
            return;
        }
        let (Some(caller), Some(acd)) = (caller.filter(|c| !c.is_empty()), self.acd.clone()) else {
            self.items.insert(item, PopLookup::Done((None, Vec::new())));
            return;
        };
        self.items.insert(item, PopLookup::Running(Vec::new()));
        let lookup = (self.lookup)(caller.to_owned());
        let bound = self.bound;
        tokio::spawn(
            async move {
                let pop = tokio::time::timeout(bound, lookup)
                    .await
                    .unwrap_or_else(|_| {
                        tracing::warn!(?bound, "screen pop lookup too slow; offered without it");
                        (None, Vec::new())
                    });
                if let Some(acd) = acd.upgrade() {
                    let _ = acd.send(AcdRequest::PopReady { item, pop });
                }
            }
            .instrument(tracing::info_span!("screen-pop", item = item.0)),
        );
    }

    pub(super) fn forget(&mut self, item: ItemId) {
        self.items.remove(&item);
    }

    /// Takes back an offer still waiting for its pop (so it was never shown); false
    /// when the desktop has it.
    pub(super) fn withdraw(&mut self, agent: AgentId, item: ItemId) -> bool {
        self.take_unshown(agent, item).is_some()
    }

    /// Whether an offer of `item` to `agent` still waits for its pop.
    pub(super) fn has_unshown(&self, agent: AgentId, item: ItemId) -> bool {
        matches!(self.items.get(&item), Some(PopLookup::Running(w)) if w.iter().any(|(a, _)| *a == agent))
    }

    /// Queues `event` to go out right after the waiting offer of `item` to `agent`.
    pub(super) fn after_offer(&mut self, agent: AgentId, item: ItemId, event: Kind) {
        if let Some(PopLookup::Running(waiting)) = self.items.get_mut(&item) {
            waiting.push((agent, event));
        }
    }

    /// Everything for `agent` about `item` still waiting for the pop (the offer, and
    /// the connection queued behind it), taken out in order.
    pub(super) fn take_all_unshown(&mut self, agent: AgentId, item: ItemId) -> Vec<Kind> {
        let Some(PopLookup::Running(waiting)) = self.items.get_mut(&item) else {
            return Vec::new();
        };
        let (mine, others): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|(a, _)| *a == agent);
        *waiting = others;
        mine.into_iter().map(|(_, event)| event).collect()
    }

    /// The offer of `item` to `agent` that still waits for its pop, taken out.
    pub(super) fn take_unshown(&mut self, agent: AgentId, item: ItemId) -> Option<Kind> {
        let Some(PopLookup::Running(waiting)) = self.items.get_mut(&item) else {
            return None;
        };
        let at = waiting.iter().position(|(a, _)| *a == agent)?;
        Some(waiting.remove(at).1)
    }
}

impl AcdDriver {
    /// Shows `offer` on `agent`'s desktop with `item`'s screen pop: now when the
    /// lookup is done, else when it ends (see the module docs).
    pub(super) fn offer_with_pop(
        &mut self,
        agent: AgentId,
        item: ItemId,
        caller: &str,
        mut offer: Kind,
    ) {
        self.desk.ringing(agent, item);
        self.desk.pops.start(item, Some(caller));
        match self.desk.pops.items.get_mut(&item) {
            Some(PopLookup::Running(waiting)) => waiting.push((agent, offer)),
            Some(PopLookup::Done(pop)) => {
                fill(&mut offer, pop.clone());
                self.publish(agent, offer);
            }
            None => self.publish(agent, offer),
        }
    }

    /// A lookup ended: the offers that waited for it go out, to agents still
    /// offered the item.
    pub(super) fn pop_ready(&mut self, item: ItemId, pop: PopData) {
        let Some(entry) = self.desk.pops.items.get_mut(&item) else {
            return; // the call ended meanwhile
        };
        let PopLookup::Running(waiting) = std::mem::replace(entry, PopLookup::Done(pop.clone()))
        else {
            return;
        };
        for (agent, mut offer) in waiting {
            if self.desk.is_on(agent, item) {
                fill(&mut offer, pop.clone());
                self.publish(agent, offer);
            }
        }
    }
}

fn fill(offer: &mut Kind, (customer, history): PopData) {
    let pop = match offer {
        Kind::CallOffered(o) => o.screen_pop.as_mut(),
        Kind::VoicemailTask(t) => t.screen_pop.as_mut(),
        _ => None,
    };
    if let Some(pop) = pop {
        pop.customer = customer;
        pop.last_interactions = history;
    }
}
