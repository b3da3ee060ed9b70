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
}

/// Why a report could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] reports::ReportError),
}

/// A report as columns and rows, ready for [`reports::format::render`].
pub type Table = (Vec<String>, Vec<Vec<Cell>>);

/// Computes one report.
pub async fn compute(store: &Store, q: &ReportQuery) -> Result<Table, QueryError> {
    let Period { from_ms, to_ms } = q.period;
    let only = q.only.as_deref();
    Ok(match q.kind {
        Kind::Calls | Kind::Agents => {
            let since = store
                .last_acd_event_before(reports::log::SERVER_STARTED, from_ms)
                .await?
                .unwrap_or(i64::MIN);
            let records = store.acd_events_between(since, to_ms).await?;
            let events = reports::log::parse_all(&records)?;
            if q.kind == Kind::Calls {
                let mut figures = reports::call_report(&events, q.period, &q.settings);
                figures.retain(|f| only.is_none_or(|o| f.queue == o));
                reports::format::queue_rows(&figures)
            } else {
                let mut figures = reports::agent_report(&events, q.period, &q.settings);
                figures.retain(|f| only.is_none_or(|o| f.agent == o));
                reports::format::agent_rows(&figures)
            }
        }
        Kind::Campaigns => {
            let names: Vec<&str> = match only {
                Some(c) => vec![c],
                None => q.campaigns.iter().map(String::as_str).collect(),
            };
            let mut figures = Vec::new();
            for name in names {
                let attempts: Vec<reports::campaigns::Attempt> = store
                    .campaign_attempts(name)
                    .await?
                    .into_iter()
                    .map(Into::into)
                    .collect();
                figures.push(reports::campaigns::campaign_report(
                    name, &attempts, q.period,
                ));
            }
            reports::format::campaign_rows(&figures)
        }
        Kind::Voicemail => {
            let messages: Vec<reports::voicemail::Message> = store
                .voicemails_between(from_ms, to_ms)
                .await?
                .into_iter()
                .map(|(m, handling)| reports::voicemail::Message {
                    mailbox: m.mailbox,
                    left_ms: m.created_at_ms,
                    duration_ms: m.duration_ms,
                    heard: m.heard,
                    handled_ms: handling.map(|h| h.at_ms),
                })
                .collect();
            let mut figures = reports::voicemail::voicemail_report(&messages, q.period);
            figures.retain(|f| only.is_none_or(|o| f.mailbox == o));
            reports::format::mailbox_rows(&figures)
        }
        Kind::Ivr | Kind::IvrPaths => {
            let calls: Vec<reports::ivr::IvrCall> = store
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
                .collect();
            if q.kind == Kind::Ivr {
                reports::format::script_rows(&reports::ivr::script_report(&calls, q.period))
            } else {
                reports::format::path_rows(&reports::ivr::path_report(&calls, q.period))
            }
        }
    })
}
