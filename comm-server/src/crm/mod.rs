//! The customer directory: who is calling, for an agent's screen pop, from the local
//! customer store and, when configured, an external CRM (customer relationship
//! management system) asked over HTTP ([`http`]) or read from another database's table
//! ([`sql`]), so a company can keep its CRM where it is.
//!
//! Order (`[customers] lookup-order`):
//! - `local-first` (default): the store's record when it has one, and the CRM is not
//!   asked; otherwise the CRM's record (HTTP, then SQL: the first that knows the
//!   caller).
//! - `crm-first`: the CRM is asked on every call; its name, account, e-mail and id
//!   win over the store's, attributes are merged key by key (the CRM's win). The
//!   store's record alone when the CRM fails or does not know the caller.
//!
//! The history a pop carries is always the store's: the customer's when the store
//! knows them, else the number's. A CRM record is never written to the store.
//!
//! Every source is bounded in time (`timeout` of each section; the store by
//! [`LOCAL_TIMEOUT`]): a slow, failing or confused CRM costs a warning in the log and
//! a count in `comm_crm_lookups_failed_total`, and the pop goes out with what the
//! store knows. Must not own: when the lookup runs (the ACD driver prefetches it when
//! a call enters a queue, `server/gateway.rs`) or the pop's wire form.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::config::CustomersSection;
use crate::config::crm::LookupOrder;
use crate::metrics::Metrics;
use crate::phone::E164;
use crate::store::{Customer, ScreenPop, Store};

pub mod http;
pub mod sql;

/// How long the local store may take for a pop's record and history: it is a local
/// database, so this only guards against a stuck pool.
pub const LOCAL_TIMEOUT: Duration = Duration::from_millis(250);

/// The id of a record only the CRM holds (the store's ids start at 1).
pub const NOT_STORED: i64 = 0;

/// Why an external lookup gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("CRM over HTTP: {0}")]
    Http(#[from] crate::http_client::HttpError),
    #[error("CRM reply is not JSON: {0}")]
    NotJson(String),
    #[error("CRM database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("CRM gave no answer within {0:?}")]
    Timeout(Duration),
}

/// A customer as an external CRM knows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrmRecord {
    /// The CRM's key for the record, when the mapping names it.
    pub id: Option<String>,
    pub name: String,
    pub account: Option<String>,
    pub email: Option<String>,
    pub attributes: Map<String, Json>,
}

/// One external source (boxed: the HTTP client is large, and there are at most two).
enum Source {
    Http(Box<http::HttpCrm>),
    Sql(sql::SqlCrm),
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::Http(_) => "http",
            Source::Sql(_) => "sql",
        }
    }

    fn timeout(&self) -> Duration {
        match self {
            Source::Http(s) => s.timeout(),
            Source::Sql(s) => s.timeout(),
        }
    }

    async fn find(&self, e164: &E164) -> Result<Option<CrmRecord>, CrmError> {
        let timeout = self.timeout();
        let lookup = async {
            match self {
                Source::Http(s) => s.find(e164).await,
                Source::Sql(s) => s.find(e164).await,
            }
        };
        tokio::time::timeout(timeout, lookup)
            .await
            .map_err(|_| CrmError::Timeout(timeout))?
    }
}

/// The store and the configured CRM sources; cheap to share.
pub struct Directory {
    store: Store,
    order: LookupOrder,
    sources: Vec<Source>,
    metrics: Arc<Metrics>,
}

impl Directory {
    /// Nothing is opened or sent here: an SQL CRM connects on its first lookup.
    pub fn new(
        config: &CustomersSection,
        plan: crate::phone::DialPlan,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<Directory, CrmError> {
        let mut sources = Vec::new();
        if let Some(h) = &config.http {
            sources.push(Source::Http(Box::new(http::HttpCrm::new(h))));
        }
        if let Some(s) = &config.sql {
            sources.push(Source::Sql(sql::SqlCrm::new(s, plan)?));
        }
        Ok(Directory {
            store,
            order: config.lookup_order,
            sources,
            metrics,
        })
    }

    /// The longest [`Directory::screen_pop`] can take: the store's bound (twice:
    /// record, then history) and each source's.
    pub fn bound(&self) -> Duration {
        self.sources
            .iter()
            .map(Source::timeout)
            .fold(LOCAL_TIMEOUT * 2, |a, b| a + b)
    }

    /// The caller's record by the lookup order, and the latest `limit` contacts.
    pub async fn screen_pop(&self, e164: &E164, limit: u32) -> ScreenPop {
        let local = self
            .local(self.store.customer_by_phone(e164.as_str()))
            .await
            .flatten();
        let customer = match (self.order, local) {
            (LookupOrder::LocalFirst, Some(found)) => Some(found),
            (_, local) => match self.external(e164).await {
                Some(record) => Some(merge(local, record, e164)),
                None => local,
            },
        };
        let history = match &customer {
            Some(c) if c.id != NOT_STORED => {
                self.local(self.store.history_for_customer(c.id, limit))
                    .await
            }
            _ => {
                self.local(self.store.history_for_phone(e164.as_str(), limit))
                    .await
            }
        };
        ScreenPop {
            customer,
            history: history.unwrap_or_default(),
        }
    }

    /// A store read, bounded; errors are logged and give nothing.
    async fn local<T>(
        &self,
        read: impl Future<Output = Result<T, crate::store::StoreError>>,
    ) -> Option<T> {
        match tokio::time::timeout(LOCAL_TIMEOUT, read).await {
            Ok(Ok(found)) => Some(found),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "screen pop: customer store lookup failed");
                None
            }
            Err(_) => {
                tracing::warn!(timeout = ?LOCAL_TIMEOUT, "screen pop: customer store too slow");
                None
            }
        }
    }

    /// The first source that knows the caller; failures are logged and counted.
    async fn external(&self, e164: &E164) -> Option<CrmRecord> {
        for source in &self.sources {
            match source.find(e164).await {
                Ok(Some(record)) => return Some(record),
                Ok(None) => {}
                Err(e) => {
                    self.metrics.crm_lookup_failed();
                    tracing::warn!(source = source.name(), error = %e, "CRM lookup failed; the pop goes out without it");
                }
            }
        }
        None
    }
}

/// The CRM's record over the store's (see the module docs); a record only the CRM
/// holds gets [`NOT_STORED`] as id and the caller's number.
fn merge(local: Option<Customer>, crm: CrmRecord, e164: &E164) -> Customer {
    let mut out = local.unwrap_or_else(|| Customer {
        id: NOT_STORED,
        external_ref: None,
        name: String::new(),
        account: None,
        email: None,
        phones: vec![e164.as_str().to_owned()],
        attributes: Map::new(),
        created_at_ms: 0,
        updated_at_ms: 0,
    });
    out.name = crm.name;
    out.external_ref = crm.id.or(out.external_ref);
    out.account = crm.account.or(out.account);
    out.email = crm.email.or(out.email);
    out.attributes.extend(crm.attributes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e164() -> E164 {
        crate::phone::normalise("+442079460958", &Default::default()).unwrap()
    }

    #[test]
    fn the_crm_wins_field_by_field_and_keeps_the_local_id_and_the_rest() {
        let local = Customer {
            id: 7,
            external_ref: Some("old".into()),
            name: "A. Lovelace".into(),
            account: Some("42".into()),
            email: Some("ada@old.example".into()),
            phones: vec!["+442079460958".into()],
            attributes: serde_json::from_str(r#"{"tier":"silver","vip":true}"#).unwrap(),
            created_at_ms: 1,
            updated_at_ms: 2,
        };
        let crm = CrmRecord {
            id: Some("c-9".into()),
            name: "Ada Lovelace".into(),
            account: None,
            email: Some("ada@new.example".into()),
            attributes: serde_json::from_str(r#"{"tier":"gold"}"#).unwrap(),
        };
        let merged = merge(Some(local), crm.clone(), &e164());
        assert_eq!(merged.id, 7);
        assert_eq!(merged.name, "Ada Lovelace");
        assert_eq!(merged.external_ref.as_deref(), Some("c-9"));
        assert_eq!(
            merged.account.as_deref(),
            Some("42"),
            "kept when the CRM has none"
        );
        assert_eq!(merged.email.as_deref(), Some("ada@new.example"));
        assert_eq!(merged.attributes["tier"], "gold");
        assert_eq!(merged.attributes["vip"], true);
        let alone = merge(None, crm, &e164());
        assert_eq!(alone.id, NOT_STORED);
        assert_eq!(alone.phones, ["+442079460958"]);
    }
}
