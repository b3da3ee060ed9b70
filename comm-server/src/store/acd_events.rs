//! The ACD's durable event log: rows appended in batches, read back in order.

use super::{AcdEventRecord, Store, StoreError, database, with_pool};

#[derive(sqlx::FromRow)]
struct AcdEventRow {
    at_ms: i64,
    kind: String,
    item_id: Option<i64>,
    queue: Option<String>,
    agent: Option<String>,
    details_json: String,
}

impl From<AcdEventRow> for AcdEventRecord {
    fn from(row: AcdEventRow) -> Self {
        AcdEventRecord {
            at_ms: row.at_ms,
            kind: row.kind,
            item: row.item_id,
            queue: row.queue,
            agent: row.agent,
            details_json: row.details_json,
        }
    }
}

impl Store {
    /// Appends events in one transaction: all of the batch is written, or none.
    pub async fn insert_acd_events(&self, events: &[AcdEventRecord]) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO acd_events (at_ms, kind, item_id, queue, agent, details_json)
                           VALUES ($1, $2, $3, $4, $5, $6)";
        if events.is_empty() {
            return Ok(());
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(database("writing ACD events"))?;
            for e in events {
                sqlx::query(SQL)
                    .bind(e.at_ms)
                    .bind(&e.kind)
                    .bind(e.item)
                    .bind(&e.queue)
                    .bind(&e.agent)
                    .bind(&e.details_json)
                    .execute(&mut *tx)
                    .await
                    .map_err(database("writing ACD events"))?;
            }
            tx.commit().await.map_err(database("writing ACD events"))?;
        });
        Ok(())
    }

    /// Events with `from_ms <= at_ms < to_ms`, in the order they were written.
    pub async fn acd_events_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AcdEventRecord>, StoreError> {
        const SQL: &str = "SELECT at_ms, kind, item_id, queue, agent, details_json
                           FROM acd_events WHERE at_ms >= $1 AND at_ms < $2
                           ORDER BY at_ms, id";
        let rows = with_pool!(self, pool => sqlx::query_as::<_, AcdEventRow>(SQL)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await
            .map_err(database("reading ACD events"))?);
        Ok(rows.into_iter().map(AcdEventRecord::from).collect())
    }

    /// When the latest event of `kind` at or before `at_ms` happened, if any. Reports use
    /// it to find the last server start, where every agent's state is known (logged out).
    pub async fn last_acd_event_before(
        &self,
        kind: &str,
        at_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        const SQL: &str = "SELECT MAX(at_ms) FROM acd_events WHERE kind = $1 AND at_ms <= $2";
        let at: Option<i64> = with_pool!(self, pool => sqlx::query_scalar(SQL)
            .bind(kind)
            .bind(at_ms)
            .fetch_one(pool)
            .await
            .map_err(database("reading ACD events"))?);
        Ok(at)
    }

    /// Whether the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map_err(database("checking the database"))?;
        });
        Ok(())
    }
}
