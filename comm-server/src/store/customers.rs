//! Customer records, their phone numbers and their contact history.
//!
//! A customer is found by id, by any of its E.164 phone numbers (unique across
//! customers), by account, e-mail or external reference (a CRM's key). Upserts merge:
//! an incoming record that names an existing customer's external reference or one of
//! its phones updates that customer (new fields win, attributes are merged key by key,
//! phones are added) instead of creating a second one.
//!
//! Contact history is append-only: one entry per call, IVR session, disposition, note,
//! voicemail or campaign attempt, linked to the customer when known and always to the
//! number. Phone numbers must already be E.164 ([`crate::phone`] makes them so); this
//! module stores what it is given.
//!
//! Every operation is written once against a connection ([`CustomerConn`], implemented
//! for both backends' connections), so the same code runs inside a transaction (CSV
//! import: all or nothing) or on a pooled connection.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value as Json};

use super::{Direction, Store, StoreError, UnknownValue, database, with_pool};

/// A customer as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: i64,
    /// The record's key in another system (a CRM id); unique when present.
    pub external_ref: Option<String>,
    pub name: String,
    pub account: Option<String>,
    pub email: Option<String>,
    /// E.164 numbers, sorted.
    pub phones: Vec<String>,
    /// Any other fields, as imported or updated.
    pub attributes: Map<String, Json>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Customer {
    /// The record as dialog scripts see it (`customer.name`, `customer.account`, …):
    /// attributes first, so the stored fields win over an attribute of the same name.
    pub fn to_json(&self) -> Json {
        let mut out = self.attributes.clone();
        let mut put = |key: &str, value: Json| {
            out.insert(key.into(), value);
        };
        put("id", self.id.into());
        put("name", self.name.clone().into());
        put("account", self.account.clone().into());
        put("email", self.email.clone().into());
        put("external_ref", self.external_ref.clone().into());
        put("phone", self.phones.first().cloned().into());
        put("phones", self.phones.clone().into());
        Json::Object(out)
    }
}

/// A customer to create or merge into an existing one (see the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewCustomer {
    pub external_ref: Option<String>,
    /// Replaces the stored name unless empty.
    pub name: String,
    pub account: Option<String>,
    pub email: Option<String>,
    /// E.164 numbers; added to the customer's.
    pub phones: Vec<String>,
    /// Merged into the stored attributes, key by key.
    pub attributes: Map<String, Json>,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    pub id: i64,
    /// False when an existing customer was updated.
    pub created: bool,
}

/// How an import went: every record written, in one transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub created: usize,
    pub updated: usize,
}

/// A key a customer is looked up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerKey {
    Id(i64),
    /// E.164.
    Phone(String),
    /// Accounts need not be unique; the oldest customer with it is returned.
    Account(String),
    Email(String),
    ExternalRef(String),
}

/// What kind of contact a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactKind {
    Call,
    /// An IVR (interactive voice response) session on its own (a call has `Call`).
    Ivr,
    /// The agent's wrap-up code for a call.
    Disposition,
    Note,
    Voicemail,
    Campaign,
    /// A queued callback the server dialled (the booking was the caller's `Call`).
    Callback,
}

const CONTACT_KINDS: [(ContactKind, &str); 7] = [
    (ContactKind::Call, "call"),
    (ContactKind::Ivr, "ivr"),
    (ContactKind::Disposition, "disposition"),
    (ContactKind::Note, "note"),
    (ContactKind::Voicemail, "voicemail"),
    (ContactKind::Campaign, "campaign"),
    (ContactKind::Callback, "callback"),
];

impl ContactKind {
    pub fn as_str(self) -> &'static str {
        CONTACT_KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("call", |(_, s)| s)
    }
}

impl fmt::Display for ContactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContactKind {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CONTACT_KINDS
            .iter()
            .find(|(_, text)| *text == s)
            .map(|(k, _)| *k)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

/// One contact, as the host writes it to the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub customer_id: Option<i64>,
    /// The other party's number (E.164 when it is one, else as received).
    pub phone: Option<String>,
    pub kind: ContactKind,
    pub direction: Option<Direction>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    /// `answered`, `abandoned`, `voicemail`, `ivr-completed`, a disposition code, …
    pub outcome: Option<String>,
    pub call_id: Option<String>,
    /// Anything else (IVR answers, route, duration), a JSON object.
    pub details: Json,
}

/// A stored contact.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub id: i64,
    pub contact: Contact,
}

/// What an agent's screen shows when a call is offered: who is calling and what
/// happened with them before.
#[derive(Debug, Clone, PartialEq)]
pub struct ScreenPop {
    pub customer: Option<Customer>,
    /// Newest first: the customer's history when known, else the number's.
    pub history: Vec<HistoryEntry>,
}

macro_rules! customer_columns {
    () => {
        "id, external_ref, name, account, email, attributes_json, created_at_ms, updated_at_ms"
    };
}

macro_rules! history_columns {
    () => {
        "id, customer_id, phone, kind, direction, started_at_ms, ended_at_ms, queue, agent, \
         outcome, call_id, details_json"
    };
}

#[derive(sqlx::FromRow)]
struct CustomerRow {
    id: i64,
    external_ref: Option<String>,
    name: String,
    account: Option<String>,
    email: Option<String>,
    attributes_json: String,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl CustomerRow {
    fn into_customer(self, phones: Vec<String>) -> Result<Customer, StoreError> {
        let attributes = match serde_json::from_str::<Json>(&self.attributes_json) {
            Ok(Json::Object(map)) => map,
            _ => {
                return Err(StoreError::Corrupt {
                    column: "customers.attributes_json",
                    value: self.attributes_json,
                });
            }
        };
        Ok(Customer {
            id: self.id,
            external_ref: self.external_ref,
            name: self.name,
            account: self.account,
            email: self.email,
            phones,
            attributes,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
struct HistoryRow {
    id: i64,
    customer_id: Option<i64>,
    phone: Option<String>,
    kind: String,
    direction: Option<String>,
    started_at_ms: i64,
    ended_at_ms: Option<i64>,
    queue: Option<String>,
    agent: Option<String>,
    outcome: Option<String>,
    call_id: Option<String>,
    details_json: String,
}

impl TryFrom<HistoryRow> for HistoryEntry {
    type Error = StoreError;

    fn try_from(row: HistoryRow) -> Result<Self, StoreError> {
        let corrupt = |column, value| StoreError::Corrupt { column, value };
        let details = serde_json::from_str(&row.details_json)
            .map_err(|_| corrupt("contact_history.details_json", row.details_json.clone()))?;
        Ok(HistoryEntry {
            id: row.id,
            contact: Contact {
                customer_id: row.customer_id,
                phone: row.phone,
                kind: row
                    .kind
                    .parse()
                    .map_err(|e: UnknownValue| corrupt("contact_history.kind", e.0))?,
                direction: row
                    .direction
                    .map(|d| d.parse::<Direction>())
                    .transpose()
                    .map_err(|e| corrupt("contact_history.direction", e.0))?,
                started_at_ms: row.started_at_ms,
                ended_at_ms: row.ended_at_ms,
                queue: row.queue,
                agent: row.agent,
                outcome: row.outcome,
                call_id: row.call_id,
                details,
            },
        })
    }
}

/// Whose history to read.
pub(super) enum HistoryOf<'a> {
    Customer(i64),
    Phone(&'a str),
    /// Every entry of one kind started in `[from_ms, to_ms)`, oldest first (reports).
    Period {
        kind: ContactKind,
        from_ms: i64,
        to_ms: i64,
    },
}

/// The customer operations, on one connection of either backend (a pooled one or a
/// transaction's). Private: the [`Store`] methods are the API.
pub(super) trait CustomerConn {
    async fn find(&mut self, key: &CustomerKey) -> Result<Option<Customer>, StoreError>;
    async fn upsert(&mut self, c: &NewCustomer, now_ms: i64) -> Result<Upserted, StoreError>;
    async fn add_history(&mut self, c: &Contact) -> Result<i64, StoreError>;
    async fn history(
        &mut self,
        of: HistoryOf<'_>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError>;
}

macro_rules! impl_customer_conn {
    ($conn:ty) => {
        impl CustomerConn for $conn {
            async fn find(&mut self, key: &CustomerKey) -> Result<Option<Customer>, StoreError> {
                let read = database("reading a customer");
                let row = match key {
                    CustomerKey::Id(id) => {
                        sqlx::query_as::<_, CustomerRow>(concat!(
                            "SELECT ",
                            customer_columns!(),
                            " FROM customers WHERE id = $1"
                        ))
                        .bind(id)
                        .fetch_optional(&mut *self)
                        .await
                    }
                    CustomerKey::Phone(phone) => {
                        sqlx::query_as::<_, CustomerRow>(concat!(
                            "SELECT ",
                            customer_columns!(),
                            " FROM customers WHERE id = \
                             (SELECT customer_id FROM customer_phones WHERE e164 = $1)"
                        ))
                        .bind(phone)
                        .fetch_optional(&mut *self)
                        .await
                    }
                    CustomerKey::Account(value)
                    | CustomerKey::Email(value)
                    | CustomerKey::ExternalRef(value) => {
                        let sql = match key {
                            CustomerKey::Account(_) => concat!(
                                "SELECT ",
                                customer_columns!(),
                                " FROM customers WHERE account = $1 ORDER BY id LIMIT 1"
                            ),
                            CustomerKey::Email(_) => concat!(
                                "SELECT ",
                                customer_columns!(),
                                " FROM customers WHERE email = $1 ORDER BY id LIMIT 1"
                            ),
                            _ => concat!(
                                "SELECT ",
                                customer_columns!(),
                                " FROM customers WHERE external_ref = $1"
                            ),
                        };
                        sqlx::query_as::<_, CustomerRow>(sql)
                            .bind(value)
                            .fetch_optional(&mut *self)
                            .await
                    }
                }
                .map_err(read)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let phones: Vec<(String,)> = sqlx::query_as(
                    "SELECT e164 FROM customer_phones WHERE customer_id = $1",
                )
                .bind(row.id)
                .fetch_all(&mut *self)
                .await
                .map_err(database("reading a customer's phones"))?;
                // Sorted here so both backends agree byte for byte (no collation).
                let mut phones: Vec<String> = phones.into_iter().map(|(p,)| p).collect();
                phones.sort();
                row.into_customer(phones).map(Some)
            }

            async fn upsert(
                &mut self,
                c: &NewCustomer,
                now_ms: i64,
            ) -> Result<Upserted, StoreError> {
                let mut existing = match &c.external_ref {
                    Some(r) => self.find(&CustomerKey::ExternalRef(r.clone())).await?,
                    None => None,
                };
                for phone in &c.phones {
                    if existing.is_some() {
                        break;
                    }
                    existing = self.find(&CustomerKey::Phone(phone.clone())).await?;
                    // Two records of another system that share a phone stay two customers.
                    if let Some(old) = &existing
                        && let (Some(theirs), Some(ours)) = (&old.external_ref, &c.external_ref)
                        && theirs != ours
                    {
                        return Err(StoreError::PhoneTaken {
                            phone: phone.clone(),
                            owner: old.id,
                        });
                    }
                }
                let (id, created) = match existing {
                    Some(old) => {
                        let mut attributes = old.attributes.clone();
                        attributes.extend(c.attributes.clone());
                        let name = if c.name.is_empty() { &old.name } else { &c.name };
                        sqlx::query(
                            "UPDATE customers SET external_ref = $1, name = $2, account = $3, \
                             email = $4, attributes_json = $5, updated_at_ms = $6 WHERE id = $7",
                        )
                        .bind(c.external_ref.as_ref().or(old.external_ref.as_ref()))
                        .bind(name)
                        .bind(c.account.as_ref().or(old.account.as_ref()))
                        .bind(c.email.as_ref().or(old.email.as_ref()))
                        .bind(Json::Object(attributes).to_string())
                        .bind(now_ms)
                        .bind(old.id)
                        .execute(&mut *self)
                        .await
                        .map_err(database("updating a customer"))?;
                        (old.id, false)
                    }
                    None => {
                        let (id,): (i64,) = sqlx::query_as(
                            "INSERT INTO customers (external_ref, name, account, email, \
                             attributes_json, created_at_ms, updated_at_ms) \
                             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                        )
                        .bind(&c.external_ref)
                        .bind(&c.name)
                        .bind(&c.account)
                        .bind(&c.email)
                        .bind(Json::Object(c.attributes.clone()).to_string())
                        .bind(now_ms)
                        .fetch_one(&mut *self)
                        .await
                        .map_err(database("creating a customer"))?;
                        (id, true)
                    }
                };
                for phone in &c.phones {
                    let owner: Option<(i64,)> =
                        sqlx::query_as("SELECT customer_id FROM customer_phones WHERE e164 = $1")
                            .bind(phone)
                            .fetch_optional(&mut *self)
                            .await
                            .map_err(database("reading a customer's phones"))?;
                    match owner {
                        Some((owner,)) if owner == id => {}
                        Some((owner,)) => {
                            return Err(StoreError::PhoneTaken {
                                phone: phone.clone(),
                                owner,
                            });
                        }
                        None => {
                            sqlx::query(
                                "INSERT INTO customer_phones (customer_id, e164) VALUES ($1, $2)",
                            )
                            .bind(id)
                            .bind(phone)
                            .execute(&mut *self)
                            .await
                            .map_err(database("adding a customer's phone"))?;
                        }
                    }
                }
                Ok(Upserted { id, created })
            }

            async fn add_history(&mut self, c: &Contact) -> Result<i64, StoreError> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO contact_history (customer_id, phone, kind, direction, \
                     started_at_ms, ended_at_ms, queue, agent, outcome, call_id, details_json) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                )
                .bind(c.customer_id)
                .bind(&c.phone)
                .bind(c.kind.as_str())
                .bind(c.direction.map(Direction::as_str))
                .bind(c.started_at_ms)
                .bind(c.ended_at_ms)
                .bind(&c.queue)
                .bind(&c.agent)
                .bind(&c.outcome)
                .bind(&c.call_id)
                .bind(c.details.to_string())
                .fetch_one(&mut *self)
                .await
                .map_err(database("writing contact history"))?;
                Ok(id)
            }

            async fn history(
                &mut self,
                of: HistoryOf<'_>,
                limit: u32,
            ) -> Result<Vec<HistoryEntry>, StoreError> {
                let read = database("reading contact history");
                let rows = match of {
                    HistoryOf::Customer(id) => {
                        sqlx::query_as::<_, HistoryRow>(concat!(
                            "SELECT ",
                            history_columns!(),
                            " FROM contact_history WHERE customer_id = $1 \
                              ORDER BY started_at_ms DESC, id DESC LIMIT $2"
                        ))
                        .bind(id)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self)
                        .await
                    }
                    HistoryOf::Phone(phone) => {
                        sqlx::query_as::<_, HistoryRow>(concat!(
                            "SELECT ",
                            history_columns!(),
                            " FROM contact_history WHERE phone = $1 \
                              ORDER BY started_at_ms DESC, id DESC LIMIT $2"
                        ))
                        .bind(phone)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self)
                        .await
                    }
                    HistoryOf::Period {
                        kind,
                        from_ms,
                        to_ms,
                    } => {
                        sqlx::query_as::<_, HistoryRow>(concat!(
                            "SELECT ",
                            history_columns!(),
                            " FROM contact_history WHERE kind = $1 \
                              AND started_at_ms >= $2 AND started_at_ms < $3 \
                              ORDER BY started_at_ms, id LIMIT $4"
                        ))
                        .bind(kind.as_str())
                        .bind(from_ms)
                        .bind(to_ms)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *self)
                        .await
                    }
                }
                .map_err(read)?;
                rows.into_iter().map(HistoryEntry::try_from).collect()
            }
        }
    };
}

impl_customer_conn!(sqlx::SqliteConnection);
impl_customer_conn!(sqlx::PgConnection);

impl Store {
    pub async fn customer(&self, key: &CustomerKey) -> Result<Option<Customer>, StoreError> {
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(database("reading a customer"))?;
            conn.find(key).await
        })
    }

    /// The customer with this E.164 number.
    pub async fn customer_by_phone(&self, e164: &str) -> Result<Option<Customer>, StoreError> {
        self.customer(&CustomerKey::Phone(e164.into())).await
    }

    pub async fn customer_by_id(&self, id: i64) -> Result<Option<Customer>, StoreError> {
        self.customer(&CustomerKey::Id(id)).await
    }

    /// The oldest customer with this account.
    pub async fn customer_by_account(&self, account: &str) -> Result<Option<Customer>, StoreError> {
        self.customer(&CustomerKey::Account(account.into())).await
    }

    /// Creates the customer, or merges it into the one with the same external
    /// reference or one of the same phones (see the module docs). A phone that belongs
    /// to another customer is [`StoreError::PhoneTaken`], and nothing is changed.
    pub async fn upsert_customer(
        &self,
        customer: &NewCustomer,
        now_ms: i64,
    ) -> Result<Upserted, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(database("updating a customer"))?;
            let done = (*tx).upsert(customer, now_ms).await?;
            tx.commit().await.map_err(database("updating a customer"))?;
            Ok(done)
        })
    }

    /// Upserts every record in one transaction: on any error nothing is written, and
    /// the error names the record's index. `progress` hears each record written.
    pub async fn import_customers(
        &self,
        customers: &[NewCustomer],
        now_ms: i64,
        progress: &mut dyn FnMut(usize),
    ) -> Result<ImportSummary, ImportFailure> {
        let whole = |error| ImportFailure { index: None, error };
        with_pool!(self, pool => {
            let mut tx = pool
                .begin()
                .await
                .map_err(|e| whole(database("starting an import")(e)))?;
            let mut summary = ImportSummary::default();
            for (index, customer) in customers.iter().enumerate() {
                let done = (*tx)
                    .upsert(customer, now_ms)
                    .await
                    .map_err(|error| ImportFailure { index: Some(index), error })?;
                if done.created {
                    summary.created += 1;
                } else {
                    summary.updated += 1;
                }
                progress(index + 1);
            }
            tx.commit()
                .await
                .map_err(|e| whole(database("committing an import")(e)))?;
            Ok(summary)
        })
    }

    /// Appends to the contact history; the new entry's id.
    pub async fn add_history(&self, contact: &Contact) -> Result<i64, StoreError> {
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(database("writing contact history"))?;
            conn.add_history(contact).await
        })
    }

    /// The customer's contacts, newest first, at most `limit`.
    pub async fn history_for_customer(
        &self,
        customer_id: i64,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(database("reading contact history"))?;
            conn.history(HistoryOf::Customer(customer_id), limit).await
        })
    }

    /// The contacts with this number, newest first, at most `limit`.
    pub async fn history_for_phone(
        &self,
        phone: &str,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(database("reading contact history"))?;
            conn.history(HistoryOf::Phone(phone), limit).await
        })
    }

    /// Every contact of `kind` started in `[from_ms, to_ms)`, oldest first: what the
    /// reports read.
    pub async fn history_between(
        &self,
        kind: ContactKind,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        with_pool!(self, pool => {
            let mut conn = pool.acquire().await.map_err(database("reading contact history"))?;
            conn.history(HistoryOf::Period { kind, from_ms, to_ms }, u32::MAX).await
        })
    }

    /// What an agent's screen shows for a call from `e164`: the customer with that
    /// number, and the latest `limit` contacts (the customer's, or the number's when
    /// no customer has it).
    pub async fn screen_pop_data(&self, e164: &str, limit: u32) -> Result<ScreenPop, StoreError> {
        let customer = self.customer_by_phone(e164).await?;
        let history = match &customer {
            Some(c) => self.history_for_customer(c.id, limit).await?,
            None => self.history_for_phone(e164, limit).await?,
        };
        Ok(ScreenPop { customer, history })
    }
}

/// Why an import wrote nothing: the record at `index` (or the transaction itself,
/// `None`) failed.
#[derive(Debug)]
pub struct ImportFailure {
    pub index: Option<usize>,
    pub error: StoreError,
}

impl fmt::Display for ImportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "record {}: {}", i + 1, self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for ImportFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
