//! The host side of dialog-script actions (`<webhook>`, `<email>`, `<update-customer>`,
//! `<log>`): one function both hosts call, the call task for voice and the web
//! self-service host, so a script does the same thing on every channel.
//!
//! Owns running one [`Action`] and turning the outcome into the [`Input`] the session
//! expects: `ActionDone({"status", "body"})` for a webhook (the script's `<result>`s
//! read `response` from it), `ActionDone({})` for the others, `ActionFailed(why)` for
//! any failure (the script's `on-error` runs). Must not own the interpreter, routing
//! (`<enqueue>`, `<transfer>`, `<voicemail>` need a call) or retries.

use std::sync::Arc;

use script_engine::{Action, Input};
use serde_json::{Value as Json, json};

use crate::http_client::HttpClient;
use crate::mail::{MailError, Mailer};
use crate::store::{CustomerKey, NewCustomer, Store};
use crate::time::Clock;

/// What actions run with; cheap to clone.
#[derive(Clone)]
pub struct ScriptActions {
    http: HttpClient,
    mailer: Option<Mailer>,
    store: Option<Store>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ScriptActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptActions")
            .field("mailer", &self.mailer)
            .field("store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl ScriptActions {
    /// `mailer` None: e-mail actions fail; `store` None: customer updates fail.
    pub fn new(mailer: Option<Mailer>, store: Option<Store>, clock: Arc<dyn Clock>) -> Self {
        ScriptActions {
            http: HttpClient::new(),
            mailer,
            store,
            clock,
        }
    }

    pub fn mailer(&self) -> Option<&Mailer> {
        self.mailer.as_ref()
    }

    /// Runs `action` for the session whose customer is `customer` (the store's id,
    /// when the host knows who it is) and returns the session's next input.
    pub async fn run(&self, action: &Action, customer: Option<i64>) -> Input {
        let result = match action {
            Action::Log { level, message } => {
                match level.as_str() {
                    "error" => tracing::error!(%message, "script log"),
                    "warn" => tracing::warn!(%message, "script log"),
                    _ => tracing::info!(%message, "script log"),
                }
                Ok(json!({}))
            }
            Action::Webhook {
                url,
                method,
                body,
                timeout,
            } => self
                .http
                .send_json(method, url, body.as_ref(), *timeout)
                .await
                .map(|reply| reply.to_json())
                .map_err(|e| format!("webhook {method} {url}: {e}")),
            Action::Email { to, subject, body } => match &self.mailer {
                Some(m) => m
                    .send(to, subject, body, &[])
                    .await
                    .map(|()| json!({}))
                    .map_err(|e| format!("e-mail to {to:?}: {e}")),
                None => Err(format!("e-mail to {to:?}: {}", MailError::NotConfigured)),
            },
            Action::UpdateCustomer { fields } => self
                .update_customer(customer, fields)
                .await
                .map(|()| json!({})),
        };
        match result {
            Ok(reply) => Input::ActionDone(reply),
            Err(why) => {
                tracing::warn!(error = %why, "script action failed");
                Input::ActionFailed(why)
            }
        }
    }

    /// Merges `fields` into the customer's record: `name`, `email` and `account` are the
    /// stored columns, anything else an attribute.
    async fn update_customer(
        &self,
        customer: Option<i64>,
        fields: &serde_json::Map<String, Json>,
    ) -> Result<(), String> {
        let store = self
            .store
            .as_ref()
            .ok_or("update-customer: no customer store on this host")?;
        let id =
            customer.ok_or("update-customer: the customer is not known (no lookup found one)")?;
        let current = store
            .customer(&CustomerKey::Id(id))
            .await
            .map_err(|e| format!("update-customer: {e}"))?
            .ok_or_else(|| format!("update-customer: customer {id} no longer exists"))?;
        if current.external_ref.is_none() && current.phones.is_empty() {
            // Upserts find the record by its external reference or a phone.
            return Err(format!(
                "update-customer: customer {id} has no phone or external reference to update by"
            ));
        }
        let text = |v: &Json| match v {
            Json::String(s) => Some(s.clone()),
            Json::Null => None,
            other => Some(other.to_string()),
        };
        let mut update = NewCustomer {
            external_ref: current.external_ref.clone(),
            name: String::new(),
            account: current.account.clone(),
            email: current.email.clone(),
            phones: current.phones.clone(),
            attributes: serde_json::Map::new(),
        };
        for (key, value) in fields {
            match key.as_str() {
                "name" => update.name = text(value).unwrap_or_default(),
                "email" => update.email = text(value),
                "account" => update.account = text(value),
                "id" | "phone" | "phones" | "external_ref" => {
                    return Err(format!(
                        "update-customer: the field {key:?} cannot be set by a script"
                    ));
                }
                _ => {
                    update.attributes.insert(key.clone(), value.clone());
                }
            }
        }
        store
            .upsert_customer(&update, self.clock.unix_ms())
            .await
            .map_err(|e| format!("update-customer: {e}"))?;
        Ok(())
    }
}
