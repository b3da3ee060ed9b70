//! Registration bindings (RFC 3261 §10), keyed by (address-of-record, contact).
//!
//! Expiry is an absolute Unix-millisecond time compared against the caller's `now_ms`;
//! expired rows are invisible to reads and removed by [`Store::purge_expired`].

use std::net::SocketAddr;

use super::{Binding, QValue, Store, StoreError, Transport, database, with_pool};

macro_rules! columns {
    () => {
        "aor, contact, source, transport, call_id, cseq, expires_at_ms, q_milli, instance_id"
    };
}

#[derive(sqlx::FromRow)]
struct BindingRow {
    aor: String,
    contact: String,
    source: String,
    transport: String,
    call_id: String,
    cseq: i64,
    expires_at_ms: i64,
    q_milli: Option<i64>,
    instance_id: Option<String>,
}

impl TryFrom<BindingRow> for Binding {
    type Error = StoreError;

    fn try_from(row: BindingRow) -> Result<Self, StoreError> {
        let corrupt = |column, value: String| StoreError::Corrupt { column, value };
        let source = row
            .source
            .parse::<SocketAddr>()
            .map_err(|_| corrupt("bindings.source", row.source.clone()))?;
        let transport = row
            .transport
            .parse::<Transport>()
            .map_err(|e| corrupt("bindings.transport", e.0))?;
        let cseq =
            u32::try_from(row.cseq).map_err(|_| corrupt("bindings.cseq", row.cseq.to_string()))?;
        let q = row
            .q_milli
            .map(|millis| {
                u16::try_from(millis)
                    .ok()
                    .and_then(QValue::from_millis)
                    .ok_or_else(|| corrupt("bindings.q_milli", millis.to_string()))
            })
            .transpose()?;
        Ok(Binding {
            aor: row.aor,
            contact: row.contact,
            source,
            transport,
            call_id: row.call_id,
            cseq,
            expires_at_ms: row.expires_at_ms,
            q,
            instance_id: row.instance_id,
        })
    }
}

/// Parses rows and sorts them by `key`. Sorting happens here, not in ORDER BY, because
/// PostgreSQL compares text by the database's collation and SQLite by bytes, and both
/// backends must answer alike.
fn bindings_from<K: Ord>(
    rows: Vec<BindingRow>,
    key: impl FnMut(&Binding) -> K,
) -> Result<Vec<Binding>, StoreError> {
    let mut bindings = rows
        .into_iter()
        .map(Binding::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    bindings.sort_by_key(key);
    Ok(bindings)
}

impl Store {
    /// Adds the binding, or replaces the one with the same address-of-record and contact
    /// (a refresh, RFC 3261 §10.3 step 8).
    pub async fn save_binding(&self, binding: &Binding) -> Result<(), StoreError> {
        let sql = "INSERT INTO bindings (aor, contact, source, transport, call_id, cseq, expires_at_ms, q_milli, instance_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                   ON CONFLICT (aor, contact) DO UPDATE SET
                       source = excluded.source,
                       transport = excluded.transport,
                       call_id = excluded.call_id,
                       cseq = excluded.cseq,
                       expires_at_ms = excluded.expires_at_ms,
                       q_milli = excluded.q_milli,
                       instance_id = excluded.instance_id";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(&binding.aor)
            .bind(&binding.contact)
            .bind(binding.source.to_string())
            .bind(binding.transport.as_str())
            .bind(&binding.call_id)
            .bind(i64::from(binding.cseq))
            .bind(binding.expires_at_ms)
            .bind(binding.q.map(|q| i64::from(q.millis())))
            .bind(&binding.instance_id)
            .execute(pool)
            .await
            .map_err(database("saving a registration binding"))?
            .rows_affected());
        Ok(())
    }

    /// Removes one binding (a Contact with `expires=0`). Returns whether it existed:
    /// removing an unknown contact is not an error for the registrar (§10.3 step 8).
    pub async fn remove_binding(&self, aor: &str, contact: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM bindings WHERE aor = $1 AND contact = $2";
        let removed = with_pool!(self, pool => sqlx::query(sql)
            .bind(aor)
            .bind(contact)
            .execute(pool)
            .await
            .map_err(database("removing a registration binding"))?
            .rows_affected());
        Ok(removed > 0)
    }

    /// Removes every binding of an address-of-record (`Contact: *`, §10.2.2); returns
    /// how many there were.
    pub async fn remove_all_bindings(&self, aor: &str) -> Result<u64, StoreError> {
        let sql = "DELETE FROM bindings WHERE aor = $1";
        let removed = with_pool!(self, pool => sqlx::query(sql)
            .bind(aor)
            .execute(pool)
            .await
            .map_err(database("removing registration bindings"))?
            .rows_affected());
        Ok(removed)
    }

    /// The unexpired bindings of one address-of-record, most preferred first (highest
    /// `q`, a missing `q` counting as 1.0), then by contact for a stable order.
    pub async fn bindings(&self, aor: &str, now_ms: i64) -> Result<Vec<Binding>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM bindings WHERE aor = $1 AND expires_at_ms > $2"
        );
        let rows = with_pool!(self, pool => sqlx::query_as::<_, BindingRow>(sql)
            .bind(aor)
            .bind(now_ms)
            .fetch_all(pool)
            .await
            .map_err(database("reading registration bindings"))?);
        bindings_from(rows, |b| {
            (
                std::cmp::Reverse(b.q.unwrap_or(QValue::MAX)),
                b.contact.clone(),
            )
        })
    }

    /// Every unexpired binding, ordered by address-of-record then contact; what a
    /// restarted registrar loads.
    pub async fn active_bindings(&self, now_ms: i64) -> Result<Vec<Binding>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM bindings WHERE expires_at_ms > $1"
        );
        let rows = with_pool!(self, pool => sqlx::query_as::<_, BindingRow>(sql)
            .bind(now_ms)
            .fetch_all(pool)
            .await
            .map_err(database("reading registration bindings"))?);
        bindings_from(rows, |b| (b.aor.clone(), b.contact.clone()))
    }

    /// Deletes bindings that expired at or before `now_ms`; returns how many.
    pub async fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM bindings WHERE expires_at_ms <= $1";
        let removed = with_pool!(self, pool => sqlx::query(sql)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(database("purging expired bindings"))?
            .rows_affected());
        Ok(removed)
    }
}
