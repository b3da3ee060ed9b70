//! Reports read from the store: the one place the CLI (`comm-server report`) and the
//! supervisor service (`GetReport`) compute them, so both print the same figures.
//!
//! The figures themselves are pure ([`crate::reports`]); this reads what they are
//! computed from: the ACD event log for queues and agents (replayed from the last
//! server start before the period, so every agent's status at its beginning is
//! known), the stored attempts for campaigns, the contact history for scripts, and
//! the mailbox index for voicemail.

use crate::reports::format::Cell;
use crate::reports::{self, Period, Settings};
use crate::store::{ContactKind, Store, StoreError};

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Per queue.
    Calls,
    /// Per agent.
    Agents,
    /// Per outbound campaign.
    Campaigns,
    /// Per dialog script.
    Ivr,
    /// Per dialog script and path.
    IvrPaths,
    /// Per mailbox.
    Voicemail,
}

/// A report to compute.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    pub kind: Kind,
    pub period: Period,
    pub settings: Settings,
    /// Only this queue, agent, campaign or mailbox (by the report's kind); ignored by
    /// the IVR reports.
    pub only: Option<String>,
    /// The campaigns to report on when `only` is unset: the configured ones.
    pub campaigns: Vec<String>,
    /// Split the period into intervals of this length (an hourly chart, a daily
    /// trend): the rows of every interval, each starting with an `interval_start`
    /// column. None: one table for the whole period.
    pub interval: Option<std::time::Duration>,
}

/// Most intervals one report may have: a month by hour is 744.
pub const MAX_INTERVALS: i64 = 1_000;

/// Why a report could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] reports::ReportError),
    /// The interval is zero, or splits the period into too many parts.
    #[error("{0}")]
    BadInterval(String),
}

/// A report as columns and rows, ready for [`reports::format::render`].
pub type Table = (Vec<String>, Vec<Vec<Cell>>);

/// What a report is computed from, read once for the whole period.
enum Source {
    Log(Vec<reports::LoggedEvent>),
    Campaigns(Vec<(String, Vec<reports::campaigns::Attempt>)>),
    Voicemail(Vec<reports::voicemail::Message>),
    Ivr(Vec<reports::ivr::IvrCall>),
}

/// Computes one report.
pub async fn compute(store: &Store, q: &ReportQuery) -> Result<Table, QueryError> {
    let slices = slices(q.period, q.interval)?;
    let source = read(store, q).await?;
    let Some(slices) = slices else {
        return Ok(table(q, &source, q.period));
    };
    let mut header = vec!["interval_start".to_string()];
    let mut rows = Vec::new();
    for period in slices {
        let (columns, part) = table(q, &source, period);
        if header.len() == 1 {
            header.extend(columns);
        }
        let start = Cell::Text(rfc3339(period.from_ms));
        rows.extend(part.into_iter().map(|row| {
            let mut r = Vec::with_capacity(row.len() + 1);
            r.push(start.clone());
            r.extend(row);
            r
        }));
    }
    if header.len() == 1 {
        // No interval at all (cannot happen: the period is not empty); keep the shape.
        header.extend(table(q, &source, q.period).0);
    }
    Ok((header, rows))
}

/// The period cut into `interval`s, the last one shortened to end with the period.
fn slices(
    period: Period,
    interval: Option<std::time::Duration>,
) -> Result<Option<Vec<Period>>, QueryError> {
    let Some(interval) = interval else {
        return Ok(None);
    };
    let step = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    if step < 1000 {
        return Err(QueryError::BadInterval(
            "the interval must be at least one second".into(),
        ));
    }
    let span = period.to_ms.saturating_sub(period.from_ms);
    if period.from_ms == i64::MIN || period.to_ms == i64::MAX || span / step >= MAX_INTERVALS {
        return Err(QueryError::BadInterval(format!(
            "the period holds more than {MAX_INTERVALS} intervals of {} s; \
             choose a longer interval or a shorter period",
            step / 1000
        )));
    }
    let mut out = Vec::new();
    let mut from_ms = period.from_ms;
    while from_ms < period.to_ms {
        let to_ms = from_ms.saturating_add(step).min(period.to_ms);
        out.push(Period { from_ms, to_ms });
        from_ms = to_ms;
    }
    Ok(Some(out))
}

/// `2026-11-01T08:00:00Z`.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

async fn read(store: &Store, q: &ReportQuery) -> Result<Source, QueryError> {
    let Period { from_ms, to_ms } = q.period;
    Ok(match q.kind {
        Kind::Calls | Kind::Agents => {
            let since = store
                .last_acd_event_before(reports::log::SERVER_STARTED, from_ms)
                .await?
                .unwrap_or(i64::MIN);
            let records = store.acd_events_between(since, to_ms).await?;
            Source::Log(reports::log::parse_all(&records)?)
        }
        Kind::Campaigns => {
            let names: Vec<&str> = match q.only.as_deref() {
                Some(c) => vec![c],
                None => q.campaigns.iter().map(String::as_str).collect(),
            };
            let mut campaigns = Vec::new();
            for name in names {
                let attempts = store
                    .campaign_attempts(name)
                    .await?
                    .into_iter()
                    .map(Into::into)
                    .collect();
                campaigns.push((name.to_string(), attempts));
            }
            Source::Campaigns(campaigns)
        }
        Kind::Voicemail => Source::Voicemail(
            store
                .voicemails_between(from_ms, to_ms)
                .await?
                .into_iter()
                .map(|m| reports::voicemail::Message {
                    handled_ms: m.handling.map(|h| h.at_ms),
                    deleted_ms: m.deleted_at_ms,
                    mailbox: m.message.mailbox,
                    left_ms: m.message.created_at_ms,
                    duration_ms: m.message.duration_ms,
                    heard: m.message.heard,
                })
                .collect(),
        ),
        Kind::Ivr | Kind::IvrPaths => Source::Ivr(
            store
                .history_between(ContactKind::Call, from_ms, to_ms)
                .await?
                .iter()
                .filter_map(|h| {
                    let c = &h.contact;
                    reports::ivr::IvrCall::from_history(
                        c.started_at_ms,
                        c.outcome.as_deref(),
                        &c.details,
                    )
                })
                .collect(),
        ),
    })
}

/// One table of the report for `period` (the whole query's, or one interval of it).
fn table(q: &ReportQuery, source: &Source, period: Period) -> Table {
    let only = q.only.as_deref();
    match source {
        Source::Log(events) if q.kind == Kind::Calls => {
            let mut figures = reports::call_report(events, period, &q.settings);
            figures.retain(|f| only.is_none_or(|o| f.queue == o));
            reports::format::queue_rows(&figures)
        }
        Source::Log(events) => {
            let mut figures = reports::agent_report(events, period, &q.settings);
            figures.retain(|f| only.is_none_or(|o| f.agent == o));
            reports::format::agent_rows(&figures)
        }
        Source::Campaigns(campaigns) => {
            let figures: Vec<_> = campaigns
                .iter()
                .map(|(name, attempts)| reports::campaigns::campaign_report(name, attempts, period))
                .collect();
            reports::format::campaign_rows(&figures)
        }
        Source::Voicemail(messages) => {
            let mut figures = reports::voicemail::voicemail_report(messages, period);
            figures.retain(|f| only.is_none_or(|o| f.mailbox == o));
            reports::format::mailbox_rows(&figures)
        }
        Source::Ivr(calls) if q.kind == Kind::Ivr => {
            reports::format::script_rows(&reports::ivr::script_report(calls, period))
        }
        Source::Ivr(calls) => reports::format::path_rows(&reports::ivr::path_report(calls, period)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_by_hour_is_24_slices_and_the_last_is_cut_short() {
        let hour = std::time::Duration::from_secs(3600);
        let day = Period {
            from_ms: 0,
            to_ms: 86_400_000,
        };
        let s = slices(day, Some(hour)).unwrap().unwrap();
        assert_eq!(s.len(), 24);
        assert_eq!(
            s[23],
            Period {
                from_ms: 82_800_000,
                to_ms: 86_400_000
            }
        );
        let odd = Period {
            from_ms: 0,
            to_ms: 5_400_000,
        };
        let s = slices(odd, Some(hour)).unwrap().unwrap();
        assert_eq!(
            s[1],
            Period {
                from_ms: 3_600_000,
                to_ms: 5_400_000
            }
        );
        assert!(slices(day, None).unwrap().is_none());
        assert_eq!(rfc3339(3_600_000), "1970-01-01T01:00:00Z");
    }

    #[test]
    fn too_many_or_too_short_intervals_are_refused() {
        let year = Period {
            from_ms: 0,
            to_ms: 365 * 86_400_000,
        };
        let e = slices(year, Some(std::time::Duration::from_secs(3600))).unwrap_err();
        assert!(
            e.to_string().contains("more than 1000 intervals of 3600 s"),
            "{e}"
        );
        let e = slices(year, Some(std::time::Duration::from_millis(10))).unwrap_err();
        assert!(e.to_string().contains("at least one second"), "{e}");
        let e = slices(
            Period::whole(),
            Some(std::time::Duration::from_secs(86_400)),
        )
        .unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
    }
}
