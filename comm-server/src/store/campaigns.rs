//! Outbound campaigns as stored: each campaign's run state (the CLI writes it, the
//! running server polls it), its contact list, the do-not-call lists and every attempt.
//!
//! A contact is `pending` until the driver claims it (`in-progress`, one more attempt
//! counted), then back to `pending` with a later `next_attempt_at_ms` or `done`. The
//! retry decision is the caller's ([`crate::campaigns::RetryPolicy`]); this module
//! stores what it is told. Imported contacts are linked to customer records by phone,
//! a customer being created when the number is unknown.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value as Json};

use super::customers::CustomerConn;
use super::{
    CustomerKey, ImportFailure, ImportSummary, NewCustomer, Store, StoreError, UnknownValue,
    database, with_pool,
};

/// Whether a campaign dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CampaignState {
    /// Configured, never started.
    Draft,
    Running,
    /// Stopped for now; calls in progress finish, nothing new is dialled.
    Paused,
    /// Finished by a supervisor; like paused, but meant to stay so.
    Stopped,
}

/// Where a contact is in its campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactState {
    /// Waiting for `next_attempt_at_ms`.
    Pending,
    /// Being dialled (or talking) right now.
    InProgress,
    /// Reached, barred, or out of attempts.
    Done,
}

macro_rules! state_text {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(UnknownValue(other.to_owned())),
                }
            }
        }
    };
}

state_text!(CampaignState { Draft => "draft", Running => "running", Paused => "paused", Stopped => "stopped" });
state_text!(ContactState { Pending => "pending", InProgress => "in-progress", Done => "done" });

/// A contact to import into a campaign.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewCampaignContact {
    /// E.164.
    pub e164: String,
    pub name: String,
    /// An IANA zone name; `None`: the campaign's default.
    pub time_zone: Option<String>,
    /// Any other columns; also merged into the customer record.
    pub attributes: Map<String, Json>,
}

/// A contact as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignContact {
    pub id: i64,
    pub campaign: String,
    pub e164: String,
    pub customer_id: Option<i64>,
    pub name: String,
    pub time_zone: Option<String>,
    pub attributes: Map<String, Json>,
    /// Attempts started so far.
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    pub state: ContactState,
    pub last_outcome: Option<String>,
    /// A callback an agent booked in their disposition (Unix ms), until it is dialled:
    /// the attempts limit does not stop that dial.
    pub callback_at_ms: Option<i64>,
}

/// One finished dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignAttempt {
    pub contact_id: i64,
    pub call_id: Option<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    /// [`crate::campaigns::Outcome::as_str`].
    pub outcome: String,
    pub agent: Option<String>,
    pub disposition: Option<String>,
}

impl From<CampaignAttempt> for crate::reports::campaigns::Attempt {
    fn from(a: CampaignAttempt) -> Self {
        crate::reports::campaigns::Attempt {
            contact: a.contact_id,
            started_ms: a.started_at_ms,
            ended_ms: a.ended_at_ms,
            outcome: a.outcome,
            agent: a.agent,
            disposition: a.disposition,
        }
    }
}

/// How far a campaign has got: its contacts by state and its attempts by outcome
/// ([`crate::campaigns::Outcome::as_str`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignProgress {
    pub contacts: std::collections::BTreeMap<String, u64>,
    pub attempts: std::collections::BTreeMap<String, u64>,
}

/// The do-not-call lists that apply to one campaign, E.164 numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoNotCallLists {
    pub global: Vec<String>,
    pub campaign: Vec<String>,
}

macro_rules! contact_columns {
    () => {
        "id, campaign, e164, customer_id, name, time_zone, attributes_json, attempts, \
         next_attempt_at_ms, state, last_outcome, callback_at_ms"
    };
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    id: i64,
    campaign: String,
    e164: String,
    customer_id: Option<i64>,
    name: String,
    time_zone: Option<String>,
    attributes_json: String,
    attempts: i64,
    next_attempt_at_ms: i64,
    state: String,
    last_outcome: Option<String>,
    callback_at_ms: Option<i64>,
}

impl TryFrom<ContactRow> for CampaignContact {
    type Error = StoreError;

    fn try_from(row: ContactRow) -> Result<Self, StoreError> {
        let corrupt = |column, value| StoreError::Corrupt { column, value };
        let attributes = match serde_json::from_str::<Json>(&row.attributes_json) {
            Ok(Json::Object(map)) => map,
            _ => {
                return Err(corrupt(
                    "campaign_contacts.attributes_json",
                    row.attributes_json,
                ));
            }
        };
        Ok(CampaignContact {
            id: row.id,
            campaign: row.campaign,
            e164: row.e164,
            customer_id: row.customer_id,
            name: row.name,
            time_zone: row.time_zone,
            attributes,
            attempts: u32::try_from(row.attempts)
                .map_err(|_| corrupt("campaign_contacts.attempts", row.attempts.to_string()))?,
            next_attempt_at_ms: row.next_attempt_at_ms,
            state: row
                .state
                .parse()
                .map_err(|e: UnknownValue| corrupt("campaign_contacts.state", e.0))?,
            last_outcome: row.last_outcome,
            callback_at_ms: row.callback_at_ms,
        })
    }
}

impl Store {
    /// Records a configured campaign (as `draft`) unless it is already known; its state
    /// is left alone when it is.
    pub async fn ensure_campaign(&self, name: &str, now_ms: i64) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO campaigns (name, state, updated_at_ms) VALUES ($1, 'draft', $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(database("recording a campaign"))?;
            Ok(())
        })
    }

    /// The campaign's state, `None` when it was never recorded.
    pub async fn campaign_state(&self, name: &str) -> Result<Option<CampaignState>, StoreError> {
        let row: Option<(String,)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT state FROM campaigns WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
                .map_err(database("reading a campaign"))?
        });
        row.map(|(state,)| {
            state
                .parse()
                .map_err(|e: UnknownValue| StoreError::Corrupt {
                    column: "campaigns.state",
                    value: e.0,
                })
        })
        .transpose()
    }

    /// Starts, pauses or stops a campaign (recording it if it was not yet).
    pub async fn set_campaign_state(
        &self,
        name: &str,
        state: CampaignState,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO campaigns (name, state, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET state = $2, updated_at_ms = $3",
            )
            .bind(name)
            .bind(state.as_str())
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(database("changing a campaign's state"))?;
            Ok(())
        })
    }

    /// Adds or updates contacts of `campaign`, all in one transaction: on any error
    /// nothing is written and the error names the record's index. Each contact is linked
    /// to the customer with its number, created when there is none. A contact already in
    /// the campaign keeps its attempts and state; its name, zone and attributes change.
    pub async fn import_campaign_contacts(
        &self,
        campaign: &str,
        contacts: &[NewCampaignContact],
        now_ms: i64,
        progress: &mut dyn FnMut(usize),
    ) -> Result<ImportSummary, ImportFailure> {
        let whole = |error| ImportFailure { index: None, error };
        with_pool!(self, pool => {
            let mut tx = pool
                .begin()
                .await
                .map_err(|e| whole(database("starting an import")(e)))?;
            sqlx::query(
                "INSERT INTO campaigns (name, state, updated_at_ms) VALUES ($1, 'draft', $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(campaign)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| whole(database("recording a campaign")(e)))?;
            let mut summary = ImportSummary::default();
            for (index, contact) in contacts.iter().enumerate() {
                let at = |error| ImportFailure { index: Some(index), error };
                let customer_id = match (*tx)
                    .find(&CustomerKey::Phone(contact.e164.clone()))
                    .await
                    .map_err(at)?
                {
                    Some(customer) => customer.id,
                    None => {
                        let new = NewCustomer {
                            name: contact.name.clone(),
                            phones: vec![contact.e164.clone()],
                            attributes: contact.attributes.clone(),
                            ..NewCustomer::default()
                        };
                        (*tx).upsert(&new, now_ms).await.map_err(at)?.id
                    }
                };
                let existing: Option<(i64,)> = sqlx::query_as(
                    "SELECT id FROM campaign_contacts WHERE campaign = $1 AND e164 = $2",
                )
                .bind(campaign)
                .bind(&contact.e164)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| at(database("reading a campaign contact")(e)))?;
                let attributes = Json::Object(contact.attributes.clone()).to_string();
                match existing {
                    Some((id,)) => {
                        sqlx::query(
                            "UPDATE campaign_contacts SET customer_id = $1, name = $2, \
                             time_zone = $3, attributes_json = $4 WHERE id = $5",
                        )
                        .bind(customer_id)
                        .bind(&contact.name)
                        .bind(&contact.time_zone)
                        .bind(attributes)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| at(database("updating a campaign contact")(e)))?;
                        summary.updated += 1;
                    }
                    None => {
                        sqlx::query(
                            "INSERT INTO campaign_contacts (campaign, e164, customer_id, name, \
                             time_zone, attributes_json, attempts, next_attempt_at_ms, state) \
                             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 'pending')",
                        )
                        .bind(campaign)
                        .bind(&contact.e164)
                        .bind(customer_id)
                        .bind(&contact.name)
                        .bind(&contact.time_zone)
                        .bind(attributes)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| at(database("adding a campaign contact")(e)))?;
                        summary.created += 1;
                    }
                }
                progress(index + 1);
            }
            tx.commit()
                .await
                .map_err(|e| whole(database("committing an import")(e)))?;
            Ok(summary)
        })
    }

    /// Every contact of the campaign, in import order.
    pub async fn campaign_contacts(
        &self,
        campaign: &str,
    ) -> Result<Vec<CampaignContact>, StoreError> {
        let rows: Vec<ContactRow> = with_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                contact_columns!(),
                " FROM campaign_contacts WHERE campaign = $1 ORDER BY id"
            ))
            .bind(campaign)
            .fetch_all(pool)
            .await
            .map_err(database("reading campaign contacts"))?
        });
        rows.into_iter().map(CampaignContact::try_from).collect()
    }

    /// Pending contacts whose next attempt is due at `now_ms`, soonest first, at most
    /// `limit`.
    pub async fn due_campaign_contacts(
        &self,
        campaign: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<CampaignContact>, StoreError> {
        let rows: Vec<ContactRow> = with_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                contact_columns!(),
                " FROM campaign_contacts WHERE campaign = $1 AND state = 'pending' \
                  AND next_attempt_at_ms <= $2 ORDER BY next_attempt_at_ms, id LIMIT $3"
            ))
            .bind(campaign)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(database("reading due campaign contacts"))?
        });
        rows.into_iter().map(CampaignContact::try_from).collect()
    }

    /// Marks a pending contact in progress and counts one more attempt; false when it
    /// was not pending (another driver took it).
    pub async fn claim_campaign_contact(&self, id: i64) -> Result<bool, StoreError> {
        let done = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE campaign_contacts SET state = 'in-progress', attempts = attempts + 1, \
                 callback_at_ms = NULL WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .execute(pool)
            .await
            .map_err(database("claiming a campaign contact"))?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Puts a contact back or ends it without an attempt (a barred number, calling
    /// hours closed): `retry_at_ms` `None` ends it.
    pub async fn reschedule_campaign_contact(
        &self,
        id: i64,
        retry_at_ms: Option<i64>,
        outcome: Option<&str>,
    ) -> Result<(), StoreError> {
        let (state, at) = match retry_at_ms {
            Some(at) => (ContactState::Pending, Some(at)),
            None => (ContactState::Done, None),
        };
        with_pool!(self, pool => {
            sqlx::query(
                "UPDATE campaign_contacts SET state = $1, \
                 next_attempt_at_ms = COALESCE($2, next_attempt_at_ms), \
                 last_outcome = COALESCE($3, last_outcome) WHERE id = $4",
            )
            .bind(state.as_str())
            .bind(at)
            .bind(outcome)
            .bind(id)
            .execute(pool)
            .await
            .map_err(database("rescheduling a campaign contact"))?;
            Ok(())
        })
    }

    /// Records a finished attempt and where its contact goes next (`retry_at_ms`
    /// `None`: done), in one transaction.
    pub async fn finish_campaign_attempt(
        &self,
        attempt: &CampaignAttempt,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let state = match retry_at_ms {
            Some(_) => ContactState::Pending,
            None => ContactState::Done,
        };
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(database("recording an attempt"))?;
            // The contact first: an unknown one is `NotFound`, not a foreign-key error.
            let updated = sqlx::query(
                "UPDATE campaign_contacts SET state = $1, \
                 next_attempt_at_ms = COALESCE($2, next_attempt_at_ms), last_outcome = $3 \
                 WHERE id = $4",
            )
            .bind(state.as_str())
            .bind(retry_at_ms)
            .bind(&attempt.outcome)
            .bind(attempt.contact_id)
            .execute(&mut *tx)
            .await
            .map_err(database("recording an attempt"))?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound {
                    record: super::Record::CampaignContact,
                    key: attempt.contact_id.to_string(),
                });
            }
            sqlx::query(
                "INSERT INTO campaign_attempts (contact_id, call_id, started_at_ms, \
                 ended_at_ms, outcome, agent, disposition) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(attempt.contact_id)
            .bind(&attempt.call_id)
            .bind(attempt.started_at_ms)
            .bind(attempt.ended_at_ms)
            .bind(&attempt.outcome)
            .bind(&attempt.agent)
            .bind(&attempt.disposition)
            .execute(&mut *tx)
            .await
            .map_err(database("recording an attempt"))?;
            tx.commit().await.map_err(database("recording an attempt"))?;
            Ok(())
        })
    }

    /// Contacts left in progress by a server that stopped mid-call go back to pending
    /// (they are due again at once); how many there were.
    pub async fn release_campaign_contacts(&self, campaign: &str) -> Result<u64, StoreError> {
        let done = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE campaign_contacts SET state = 'pending' \
                 WHERE campaign = $1 AND state = 'in-progress'",
            )
            .bind(campaign)
            .execute(pool)
            .await
            .map_err(database("releasing campaign contacts"))?
            .rows_affected()
        });
        Ok(done)
    }

    /// The campaign's contacts counted by state and attempts by outcome: two grouped
    /// counts, cheap enough for a supervisor's screen to ask every few seconds.
    pub async fn campaign_progress(&self, campaign: &str) -> Result<CampaignProgress, StoreError> {
        type Counts = Vec<(String, i64)>;
        let (contacts, attempts): (Counts, Counts) = with_pool!(self, pool => {
            let contacts = sqlx::query_as(
                "SELECT state, COUNT(*) FROM campaign_contacts WHERE campaign = $1 \
                 GROUP BY state",
            )
            .bind(campaign)
            .fetch_all(pool)
            .await
            .map_err(database("counting campaign contacts"))?;
            let attempts = sqlx::query_as(
                "SELECT a.outcome, COUNT(*) FROM campaign_attempts a \
                 JOIN campaign_contacts c ON c.id = a.contact_id \
                 WHERE c.campaign = $1 GROUP BY a.outcome",
            )
            .bind(campaign)
            .fetch_all(pool)
            .await
            .map_err(database("counting campaign attempts"))?;
            (contacts, attempts)
        });
        let count = |rows: Vec<(String, i64)>| {
            rows.into_iter()
                .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
                .collect()
        };
        Ok(CampaignProgress {
            contacts: count(contacts),
            attempts: count(attempts),
        })
    }

    /// Sets the agent's disposition on the attempt with this Call-ID; false when no
    /// attempt has it (yet).
    pub async fn set_campaign_attempt_disposition(
        &self,
        call_id: &str,
        disposition: &str,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(self, pool => {
            sqlx::query("UPDATE campaign_attempts SET disposition = $1 WHERE call_id = $2")
                .bind(disposition)
                .bind(call_id)
                .execute(pool)
                .await
                .map_err(database("writing a campaign disposition"))?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Books the callback an agent set in the disposition of the attempt with this
    /// Call-ID: its contact is pending again, due at `at_ms`, marked as a callback.
    /// False when there is no such attempt (yet).
    pub async fn book_campaign_callback(
        &self,
        call_id: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(self, pool => {
            sqlx::query(
                "UPDATE campaign_contacts SET state = 'pending', next_attempt_at_ms = $1, \
                 callback_at_ms = $1 WHERE id IN \
                 (SELECT contact_id FROM campaign_attempts WHERE call_id = $2)",
            )
            .bind(at_ms)
            .bind(call_id)
            .execute(pool)
            .await
            .map_err(database("booking a campaign callback"))?
            .rows_affected()
        });
        Ok(done > 0)
    }

    /// Every attempt of the campaign, oldest first.
    pub async fn campaign_attempts(
        &self,
        campaign: &str,
    ) -> Result<Vec<CampaignAttempt>, StoreError> {
        type Row = (
            i64,
            Option<String>,
            i64,
            i64,
            String,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT a.contact_id, a.call_id, a.started_at_ms, a.ended_at_ms, a.outcome, \
                 a.agent, a.disposition FROM campaign_attempts a \
                 JOIN campaign_contacts c ON c.id = a.contact_id \
                 WHERE c.campaign = $1 ORDER BY a.started_at_ms, a.id",
            )
            .bind(campaign)
            .fetch_all(pool)
            .await
            .map_err(database("reading campaign attempts"))?
        });
        Ok(rows
            .into_iter()
            .map(
                |(contact_id, call_id, started_at_ms, ended_at_ms, outcome, agent, disposition)| {
                    CampaignAttempt {
                        contact_id,
                        call_id,
                        started_at_ms,
                        ended_at_ms,
                        outcome,
                        agent,
                        disposition,
                    }
                },
            )
            .collect())
    }

    /// Bars `e164` for one campaign, or for all (`campaign` `None`). Adding a number
    /// twice changes nothing.
    pub async fn add_do_not_call(
        &self,
        e164: &str,
        campaign: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO do_not_call (e164, campaign, added_at_ms) \
                 SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM do_not_call \
                 WHERE e164 = $1 AND campaign IS NOT DISTINCT FROM $2)",
            )
            .bind(e164)
            .bind(campaign)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(database("adding to the do-not-call list"))?;
            Ok(())
        })
    }

    /// The lists that apply to `campaign`: the global one and its own, sorted.
    pub async fn do_not_call_lists(&self, campaign: &str) -> Result<DoNotCallLists, StoreError> {
        let rows: Vec<(String, Option<String>)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT e164, campaign FROM do_not_call \
                 WHERE campaign IS NULL OR campaign = $1 ORDER BY e164",
            )
            .bind(campaign)
            .fetch_all(pool)
            .await
            .map_err(database("reading the do-not-call lists"))?
        });
        let mut lists = DoNotCallLists::default();
        for (e164, owner) in rows {
            match owner {
                Some(_) => lists.campaign.push(e164),
                None => lists.global.push(e164),
            }
        }
        Ok(lists)
    }
}
