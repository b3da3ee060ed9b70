//! Voicemail messages: inserted once the WAV is in place, marked heard, deleted.
//! The files are the server's business (`server::voicemail`); this is the index.
//!
//! Deleting keeps the row, marked `deleted_at_ms`, so the voicemail report of a past
//! period still counts what callers left; every listing reads only listed rows.

use super::{Record, Store, StoreError, database, with_pool};
use crate::store::model::{VoicemailHandling, VoicemailMessage};

macro_rules! columns {
    () => {
        "id, mailbox, caller, duration_ms, created_at_ms, heard, file"
    };
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: String,
    mailbox: String,
    caller: String,
    duration_ms: i64,
    created_at_ms: i64,
    heard: bool,
    file: String,
}

impl From<MessageRow> for VoicemailMessage {
    fn from(r: MessageRow) -> Self {
        VoicemailMessage {
            id: r.id,
            mailbox: r.mailbox,
            caller: r.caller,
            duration_ms: r.duration_ms,
            created_at_ms: r.created_at_ms,
            heard: r.heard,
            file: r.file,
        }
    }
}

/// A message as the voicemail report reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftMessage {
    pub message: VoicemailMessage,
    /// How an agent handled it, if one did.
    pub handling: Option<VoicemailHandling>,
    /// When it was deleted (Unix ms); none while listed.
    pub deleted_at_ms: Option<i64>,
}

/// Sorted oldest first, ties by id, compared as bytes on both backends.
fn sorted(rows: Vec<MessageRow>) -> Vec<VoicemailMessage> {
    let mut out: Vec<VoicemailMessage> = rows.into_iter().map(Into::into).collect();
    out.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    out
}

impl Store {
    /// Lists a message whose file is complete and in place. A second insert of the same
    /// id changes nothing and returns [`StoreError::Duplicate`].
    pub async fn insert_voicemail(&self, m: &VoicemailMessage) -> Result<(), StoreError> {
        let sql = concat!(
            "INSERT INTO voicemail_messages (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING"
        );
        let inserted = with_pool!(self, pool => sqlx::query(sql)
            .bind(&m.id)
            .bind(&m.mailbox)
            .bind(&m.caller)
            .bind(m.duration_ms)
            .bind(m.created_at_ms)
            .bind(m.heard)
            .bind(&m.file)
            .execute(pool)
            .await
            .map_err(database("writing a voicemail message"))?
            .rows_affected());
        if inserted == 0 {
            return Err(StoreError::Duplicate {
                record: Record::VoicemailMessage,
                key: m.id.clone(),
            });
        }
        Ok(())
    }

    /// A mailbox's messages, oldest first.
    pub async fn voicemails(&self, mailbox: &str) -> Result<Vec<VoicemailMessage>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM voicemail_messages WHERE mailbox = $1 AND deleted_at_ms IS NULL"
        );
        let rows = with_pool!(self, pool => sqlx::query_as::<_, MessageRow>(sql)
            .bind(mailbox)
            .fetch_all(pool)
            .await
            .map_err(database("reading voicemail messages"))?);
        Ok(sorted(rows))
    }

    /// A mailbox's messages left before `before_ms` (Unix ms), oldest first: those a
    /// retention policy removes ([`crate::voicemail::expired`] says the same).
    pub async fn voicemails_left_before(
        &self,
        mailbox: &str,
        before_ms: i64,
    ) -> Result<Vec<VoicemailMessage>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM voicemail_messages WHERE mailbox = $1 AND created_at_ms < $2 \
             AND deleted_at_ms IS NULL"
        );
        let rows = with_pool!(self, pool => sqlx::query_as::<_, MessageRow>(sql)
            .bind(mailbox)
            .bind(before_ms)
            .fetch_all(pool)
            .await
            .map_err(database("reading expired voicemail messages"))?);
        Ok(sorted(rows))
    }

    /// Every message of every mailbox (start-up reconciliation), oldest first.
    pub async fn all_voicemails(&self) -> Result<Vec<VoicemailMessage>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM voicemail_messages WHERE deleted_at_ms IS NULL"
        );
        let rows = with_pool!(self, pool => sqlx::query_as::<_, MessageRow>(sql)
            .fetch_all(pool)
            .await
            .map_err(database("reading voicemail messages"))?);
        Ok(sorted(rows))
    }

    /// Marks a message heard (saved); [`StoreError::NotFound`] when it is not listed.
    pub async fn mark_voicemail_heard(&self, id: &str) -> Result<(), StoreError> {
        let sql = "UPDATE voicemail_messages SET heard = TRUE WHERE id = $1";
        let n = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .execute(pool)
            .await
            .map_err(database("marking a voicemail message heard"))?
            .rows_affected());
        if n == 0 {
            return Err(StoreError::NotFound {
                record: Record::VoicemailMessage,
                key: id.to_string(),
            });
        }
        Ok(())
    }

    /// Unlists a message, deleted at `at_ms` (Unix ms); true when it was listed. The
    /// caller removes the file after. The row stays for the reports.
    pub async fn delete_voicemail(&self, id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let sql = "UPDATE voicemail_messages SET deleted_at_ms = $2 \
                   WHERE id = $1 AND deleted_at_ms IS NULL";
        let n = with_pool!(self, pool => sqlx::query(sql)
            .bind(id)
            .bind(at_ms)
            .execute(pool)
            .await
            .map_err(database("deleting a voicemail message"))?
            .rows_affected());
        Ok(n > 0)
    }

    /// New (unheard) and old (heard) message counts, as RFC 3842 reports them.
    pub async fn voicemail_counts(&self, mailbox: &str) -> Result<(u32, u32), StoreError> {
        let messages = self.voicemails(mailbox).await?;
        let new = messages.iter().filter(|m| !m.heard).count() as u32;
        Ok((new, messages.len() as u32 - new))
    }
    /// A mailbox's messages no agent has handled yet, oldest first: the voicemail tasks
    /// to (re-)enqueue for its work queue.
    pub async fn unhandled_voicemails(
        &self,
        mailbox: &str,
    ) -> Result<Vec<VoicemailMessage>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM voicemail_messages WHERE mailbox = $1 AND handled_at_ms IS NULL \
             AND deleted_at_ms IS NULL"
        );
        let rows = with_pool!(self, pool => sqlx::query_as::<_, MessageRow>(sql)
            .bind(mailbox)
            .fetch_all(pool)
            .await
            .map_err(database("reading unhandled voicemail messages"))?);
        Ok(sorted(rows))
    }

    /// Records that an agent handled the message. The first disposition wins: a second
    /// one (or an unknown id) is [`StoreError::NotFound`] and changes nothing.
    pub async fn mark_voicemail_handled(
        &self,
        id: &str,
        handling: &VoicemailHandling,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE voicemail_messages SET handled_by = $1, handled_at_ms = $2, \
                   outcome = $3 WHERE id = $4 AND handled_at_ms IS NULL";
        let n = with_pool!(self, pool => sqlx::query(sql)
            .bind(&handling.agent)
            .bind(handling.at_ms)
            .bind(&handling.outcome)
            .bind(id)
            .execute(pool)
            .await
            .map_err(database("marking a voicemail message handled"))?
            .rows_affected());
        if n == 0 {
            return Err(StoreError::NotFound {
                record: Record::VoicemailMessage,
                key: format!("{id} (unhandled)"),
            });
        }
        Ok(())
    }

    /// Every message left in `[from_ms, to_ms)`, deleted ones included, with how it was
    /// handled and when it was deleted, oldest first: what the voicemail report reads.
    pub async fn voicemails_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<LeftMessage>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            message: MessageRow,
            handled_by: Option<String>,
            handled_at_ms: Option<i64>,
            outcome: Option<String>,
            deleted_at_ms: Option<i64>,
        }
        let sql = concat!(
            "SELECT ",
            columns!(),
            ", handled_by, handled_at_ms, outcome, deleted_at_ms FROM voicemail_messages \
             WHERE created_at_ms >= $1 AND created_at_ms < $2"
        );
        let rows = with_pool!(self, pool => sqlx::query_as::<_, Row>(sql)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await
            .map_err(database("reading voicemail messages"))?);
        let mut out: Vec<LeftMessage> = rows
            .into_iter()
            .map(|r| LeftMessage {
                handling: r.handled_at_ms.map(|at_ms| VoicemailHandling {
                    agent: r.handled_by.unwrap_or_default(),
                    at_ms,
                    outcome: r.outcome.unwrap_or_default(),
                }),
                deleted_at_ms: r.deleted_at_ms,
                message: r.message.into(),
            })
            .collect();
        out.sort_by(|a, b| {
            (a.message.created_at_ms, &a.message.id).cmp(&(b.message.created_at_ms, &b.message.id))
        });
        Ok(out)
    }

    /// How the message was handled; `None` while no agent has (or when not listed).
    pub async fn voicemail_handling(
        &self,
        id: &str,
    ) -> Result<Option<VoicemailHandling>, StoreError> {
        let sql = "SELECT handled_by, handled_at_ms, outcome FROM voicemail_messages \
                   WHERE id = $1 AND handled_at_ms IS NOT NULL";
        let row: Option<(Option<String>, Option<i64>, Option<String>)> = with_pool!(self, pool => sqlx::query_as(sql)
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(database("reading a voicemail message's handling"))?);
        Ok(row.map(|(agent, at_ms, outcome)| VoicemailHandling {
            agent: agent.unwrap_or_default(),
            at_ms: at_ms.unwrap_or_default(),
            outcome: outcome.unwrap_or_default(),
        }))
    }
}
