//! Call detail records: one row per call, inserted once and never updated.

use super::{Cdr, Direction, EndReason, HungUpBy, Record, Store, StoreError, database, with_pool};

macro_rules! columns {
    () => {
        "call_id, direction, caller, callee, route, started_at_ms, answered_at_ms, \
         ended_at_ms, hung_up_by, end_reason, sip_status, legs_json, media_quality_json"
    };
}

#[derive(sqlx::FromRow)]
struct CdrRow {
    call_id: String,
    direction: String,
    caller: String,
    callee: String,
    route: String,
    started_at_ms: i64,
    answered_at_ms: Option<i64>,
    ended_at_ms: i64,
    hung_up_by: String,
    end_reason: String,
    sip_status: i64,
    legs_json: String,
    media_quality_json: Option<String>,
}

impl TryFrom<CdrRow> for Cdr {
    type Error = StoreError;

    fn try_from(row: CdrRow) -> Result<Self, StoreError> {
        let corrupt = |column, value| StoreError::Corrupt { column, value };
        Ok(Cdr {
            direction: row
                .direction
                .parse::<Direction>()
                .map_err(|e| corrupt("cdrs.direction", e.0))?,
            hung_up_by: row
                .hung_up_by
                .parse::<HungUpBy>()
                .map_err(|e| corrupt("cdrs.hung_up_by", e.0))?,
            end_reason: row
                .end_reason
                .parse::<EndReason>()
                .map_err(|e| corrupt("cdrs.end_reason", e.0))?,
            sip_status: u16::try_from(row.sip_status)
                .map_err(|_| corrupt("cdrs.sip_status", row.sip_status.to_string()))?,
            call_id: row.call_id,
            caller: row.caller,
            callee: row.callee,
            route: row.route,
            started_at_ms: row.started_at_ms,
            answered_at_ms: row.answered_at_ms,
            ended_at_ms: row.ended_at_ms,
            legs_json: row.legs_json,
            media_quality_json: row.media_quality_json,
        })
    }
}

impl Store {
    /// Writes the CDR. A second write for the same call id changes nothing and returns
    /// [`StoreError::Duplicate`], so a retried flush can never overwrite or double-count.
    pub async fn insert_cdr(&self, cdr: &Cdr) -> Result<(), StoreError> {
        // `DO NOTHING` instead of catching the unique violation: on PostgreSQL a failed
        // statement would abort a surrounding transaction, and the error codes differ.
        let sql = concat!(
            "INSERT INTO cdrs (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
               ON CONFLICT (call_id) DO NOTHING"
        );
        let inserted = with_pool!(self, pool => sqlx::query(sql)
            .bind(&cdr.call_id)
            .bind(cdr.direction.as_str())
            .bind(&cdr.caller)
            .bind(&cdr.callee)
            .bind(&cdr.route)
            .bind(cdr.started_at_ms)
            .bind(cdr.answered_at_ms)
            .bind(cdr.ended_at_ms)
            .bind(cdr.hung_up_by.as_str())
            .bind(cdr.end_reason.as_str())
            .bind(i64::from(cdr.sip_status))
            .bind(&cdr.legs_json)
            .bind(&cdr.media_quality_json)
            .execute(pool)
            .await
            .map_err(database("writing a CDR"))?
            .rows_affected());
        if inserted == 0 {
            return Err(StoreError::Duplicate {
                record: Record::Cdr,
                key: cdr.call_id.clone(),
            });
        }
        Ok(())
    }

    pub async fn cdr(&self, call_id: &str) -> Result<Option<Cdr>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM cdrs WHERE call_id = $1");
        let row = with_pool!(self, pool => sqlx::query_as::<_, CdrRow>(sql)
            .bind(call_id)
            .fetch_optional(pool)
            .await
            .map_err(database("reading a CDR"))?);
        row.map(Cdr::try_from).transpose()
    }

    /// CDRs of calls that started in `[from_ms, to_ms)`, oldest first.
    pub async fn cdrs_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Cdr>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM cdrs WHERE started_at_ms >= $1 AND started_at_ms < $2"
        );
        let rows = with_pool!(self, pool => sqlx::query_as::<_, CdrRow>(sql)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await
            .map_err(database("reading CDRs"))?);
        let mut cdrs = rows
            .into_iter()
            .map(Cdr::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        // Sorted here rather than by ORDER BY so the call-id tie-break compares bytes on
        // both backends (PostgreSQL would use the database's collation).
        cdrs.sort_by(|a, b| (a.started_at_ms, &a.call_id).cmp(&(b.started_at_ms, &b.call_id)));
        Ok(cdrs)
    }
}
