//! The caller as a customer, for one call: who it is (looked up by caller ID before
//! the IVR or the queue sees the call, and again when a script's `<lookup>` asks),
//! what the IVR learned, and the contact-history entry written when the call ends.
//!
//! Lookups never hold up or fail a call: a database error is logged and the call goes
//! on as from an unknown number.

use serde_json::{Map, Value as Json, json};

use super::*;
use crate::phone;
use crate::store::{Contact, ContactKind, Customer, CustomerKey};

/// What one call knows about its customer.
#[derive(Debug, Default)]
pub(super) struct CallContact {
    /// The other party's number in E.164, when it is a phone number.
    pub(super) phone: Option<String>,
    /// The other party as received (a SIP user part), for the history of non-numbers.
    pub(super) party: Option<String>,
    pub(super) customer: Option<Customer>,
    /// IVR answers by question id, as the script's history records give them
    /// (answers to sensitive questions are withheld there, and so here).
    pub(super) answers: Map<String, Json>,
    /// How the script ended (`<hangup outcome>`), when it did.
    pub(super) ivr_outcome: Option<String>,
    /// The script handed the call to a mailbox.
    pub(super) voicemail: bool,
    /// The script steps the caller went through, in order (a step retried or
    /// re-entered at once counts once): the IVR report's paths and exits.
    pub(super) path: Vec<String>,
    /// When the script ended (Unix ms): time in the script ends here, or at hang-up.
    pub(super) ivr_ended_ms: Option<i64>,
}

impl CallContact {
    /// Normalises the other party's number and looks the customer up; for inbound
    /// calls the caller (From), for outbound the callee (Request-URI).
    pub(super) async fn identify(
        shared: &Shared,
        invite: &Request,
        direction: Direction,
    ) -> CallContact {
        let party = match direction {
            Direction::Outbound => header::uri_user(&invite.uri),
            _ => invite.headers.get("From").and_then(registrar::user_of),
        };
        let plan = shared.config.customers.dial_plan().unwrap_or_default();
        let phone = party
            .as_deref()
            .and_then(|p| phone::normalise(p, &plan).ok())
            .map(phone::E164::into_string);
        let customer = match &phone {
            Some(p) => find(shared, &CustomerKey::Phone(p.clone())).await,
            None => None,
        };
        if let Some(c) = &customer {
            tracing::info!(customer = c.id, "caller is a known customer");
        }
        CallContact {
            phone,
            party,
            customer,
            ..CallContact::default()
        }
    }

    /// The customer as scripts see it: `{}` when unknown, so `has(customer.name)` works.
    pub(super) fn customer_json(&self) -> Json {
        self.customer
            .as_ref()
            .map_or_else(|| json!({}), Customer::to_json)
    }

    /// The caller ID scripts see as `call.caller_id` (`<lookup by="caller-id">`).
    pub(super) fn caller_id(&self) -> Json {
        self.phone.clone().or_else(|| self.party.clone()).into()
    }

    /// A script's `<lookup field value>`: `phone` (normalised first), `id`,
    /// `account`, `email` or `external_ref`. A customer found becomes the call's.
    pub(super) async fn lookup(
        &mut self,
        shared: &Shared,
        field: &str,
        value: &Json,
    ) -> Option<Json> {
        let text = match value {
            Json::String(s) => s.trim().to_owned(),
            Json::Number(n) => n.to_string(),
            other => {
                tracing::info!(%field, value = %other, "lookup value is not text or a number");
                return None;
            }
        };
        let key = match field {
            "phone" | "caller_id" => {
                let plan = shared.config.customers.dial_plan().unwrap_or_default();
                match phone::normalise(&text, &plan) {
                    Ok(e164) => CustomerKey::Phone(e164.into_string()),
                    Err(e) => {
                        tracing::info!(%field, error = %e, "lookup: not a phone number");
                        return None;
                    }
                }
            }
            "id" => CustomerKey::Id(text.parse().ok()?),
            "account" | "account_number" => CustomerKey::Account(text),
            "email" => CustomerKey::Email(text),
            "external_ref" => CustomerKey::ExternalRef(text),
            other => {
                tracing::warn!(
                    field = other,
                    "lookup by a field the customer store does not index"
                );
                return None;
            }
        };
        let found = find(shared, &key).await?;
        let out = found.to_json();
        self.customer = Some(found);
        Some(out)
    }

    /// Keeps what a script's history record says about the call.
    pub(super) fn note(&mut self, record: &script_engine::HistoryRecord) {
        use script_engine::HistoryEvent;
        if self.path.last() != Some(&record.step) {
            self.path.push(record.step.clone());
        }
        match &record.event {
            HistoryEvent::Answer { value } => {
                self.answers.insert(record.step.clone(), value.clone());
            }
            HistoryEvent::Ended { outcome } => {
                self.ivr_outcome = Some(outcome.clone());
                self.ivr_ended_ms = Some(crate::time::unix_ms_of(record.at));
            }
            _ => {}
        }
    }

    /// The history entry for a call that ended.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn entry(
        &self,
        call_id: &str,
        direction: Direction,
        route: &str,
        queue: Option<&str>,
        agent: Option<&str>,
        script: Option<&str>,
        summary: &crate::call::Summary,
        (started_ms, answered_ms, ended_ms): (i64, Option<i64>, i64),
    ) -> Contact {
        let outcome = if agent.is_some() {
            "answered"
        } else if self.voicemail {
            "voicemail"
        } else if queue.is_some() {
            // In a queue and no agent took it: the caller gave up or was sent away.
            match summary.hung_up_by {
                HungUpBy::Caller => "abandoned",
                _ => summary.result.as_str(),
            }
        } else if script.is_some() {
            match (&self.ivr_outcome, summary.hung_up_by) {
                (Some(_), _) => "ivr-completed",
                (None, HungUpBy::Caller) => "abandoned",
                (None, _) => summary.result.as_str(),
            }
        } else {
            summary.result.as_str()
        };
        let mut details = json!({
            "route": route,
            "result": summary.result,
            "sip_status": summary.status,
            "duration_ms": ended_ms - started_ms,
        });
        if let Some(answered) = answered_ms {
            details["answered_at_ms"] = answered.into();
        }
        if let Some(script) = script {
            details["script"] = script.into();
            details["answers"] = Json::Object(self.answers.clone());
            if let Some(o) = &self.ivr_outcome {
                details["ivr_outcome"] = o.clone().into();
            }
            details["path"] = self.path.clone().into();
            let script_start = answered_ms.unwrap_or(started_ms);
            details["script_ms"] = (self.ivr_ended_ms.unwrap_or(ended_ms) - script_start)
                .max(0)
                .into();
        }
        Contact {
            customer_id: self.customer.as_ref().map(|c| c.id),
            phone: self.phone.clone().or_else(|| self.party.clone()),
            kind: ContactKind::Call,
            direction: Some(direction),
            started_at_ms: started_ms,
            ended_at_ms: Some(ended_ms),
            queue: queue.map(str::to_owned),
            agent: agent.map(str::to_owned),
            outcome: Some(outcome.to_owned()),
            call_id: Some(call_id.to_owned()),
            details,
        }
    }
}

/// One customer lookup; errors are logged and count as not found.
async fn find(shared: &Shared, key: &CustomerKey) -> Option<Customer> {
    match shared.store.customer(key).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, ?key, "customer lookup failed");
            None
        }
    }
}
