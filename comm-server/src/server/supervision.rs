//! The supervisor service's reports and campaign control, on the server's side of the
//! gateway ([`super::gateway::ServerBackend`]): reports through [`super::reports`] (the CLI's code),
//! campaigns through the store the campaign driver polls (as `comm-server campaign`
//! does), so a change made here is picked up at the driver's next tick.

use agent_gateway::proto::supervisor::{
    CampaignCommand, CampaignView, ReportKind, ReportRequest, ReportResponse, ReportRow,
    ReportValue, report_value,
};

use super::campaign_board::{CampaignBoard, Live};
use super::reports::{Kind, QueryError, ReportQuery, compute};
use crate::campaigns::DialMode;
use crate::campaigns::settings::Campaign;
use crate::reports::format::Cell;
use crate::reports::{DEFAULT_SERVICE_LEVEL, Period, Settings};
use crate::store::{CampaignState, Store};
use agent_gateway::BackendError;

/// Short abandons when the request gives no threshold, as the CLI's default.
const DEFAULT_SHORT_ABANDON: std::time::Duration = std::time::Duration::from_secs(5);

fn internal(e: impl std::fmt::Display) -> BackendError {
    // Logged in full; the supervisor gets what failed, not the internals.
    tracing::warn!(error = %e, "supervisor request failed");
    BackendError::Unavailable("the store could not be read; try again".into())
}

pub(super) async fn report(
    store: &Store,
    campaigns: &[Campaign],
    r: ReportRequest,
) -> Result<ReportResponse, BackendError> {
    let kind = match r.kind() {
        ReportKind::Unspecified => {
            return Err(BackendError::InvalidArgument(
                "report kind is required".into(),
            ));
        }
        ReportKind::Calls => Kind::Calls,
        ReportKind::Agents => Kind::Agents,
        ReportKind::Campaigns => Kind::Campaigns,
        ReportKind::Ivr => Kind::Ivr,
        ReportKind::IvrPaths => Kind::IvrPaths,
        ReportKind::Voicemail => Kind::Voicemail,
    };
    let secs = |s: u32, default| {
        if s == 0 {
            default
        } else {
            std::time::Duration::from_secs(u64::from(s))
        }
    };
    let query = ReportQuery {
        kind,
        period: Period {
            from_ms: r.from_unix_ms,
            to_ms: r.to_unix_ms,
        },
        settings: Settings {
            service_level: secs(r.service_level_s, DEFAULT_SERVICE_LEVEL),
            short_abandon: secs(r.short_abandon_s, DEFAULT_SHORT_ABANDON),
        },
        only: (!r.only.is_empty()).then_some(r.only),
        campaigns: campaigns.iter().map(|c| c.name.clone()).collect(),
        interval: (r.interval_s > 0)
            .then(|| std::time::Duration::from_secs(u64::from(r.interval_s))),
    };
    let (columns, rows) = compute(store, &query).await.map_err(|e| match e {
        QueryError::BadInterval(why) => BackendError::InvalidArgument(why),
        e => internal(e),
    })?;
    Ok(ReportResponse {
        columns,
        rows: rows
            .into_iter()
            .map(|row| ReportRow {
                values: row.into_iter().map(value).collect(),
            })
            .collect(),
    })
}

fn value(cell: Cell) -> ReportValue {
    use report_value::Value;
    ReportValue {
        value: match cell {
            Cell::Text(t) => Some(Value::Text(t)),
            Cell::Count(n) => Some(Value::Count(n)),
            Cell::Secs(d) => d.map(|d| Value::Seconds(d.as_millis() as f64 / 1000.0)),
            Cell::Ratio(r) => r.map(Value::Ratio),
        },
    }
}

/// Every configured campaign from the store, with the drivers' live figures (agents,
/// dial ratio) from the `board`.
pub(super) async fn campaigns(
    store: &Store,
    campaigns: &[Campaign],
    board: &CampaignBoard,
) -> Result<Vec<CampaignView>, BackendError> {
    let mut views = Vec::with_capacity(campaigns.len());
    for c in campaigns {
        views.push(campaign_view(store, c, board.live(&c.name)).await?);
    }
    Ok(views)
}

/// One campaign's status: its state and counts from the store, `live` from its driver.
pub(super) async fn campaign_view(
    store: &Store,
    c: &Campaign,
    live: Live,
) -> Result<CampaignView, BackendError> {
    let state = store
        .campaign_state(&c.name)
        .await
        .map_err(internal)?
        .unwrap_or(CampaignState::Draft);
    let p = store.campaign_progress(&c.name).await.map_err(internal)?;
    let n = |map: &std::collections::BTreeMap<String, u64>, k: &str| {
        u32::try_from(map.get(k).copied().unwrap_or(0)).unwrap_or(u32::MAX)
    };
    let (answered, abandoned) = (n(&p.attempts, "answered"), n(&p.attempts, "abandoned"));
    let answers = answered + abandoned;
    Ok(CampaignView {
        name: c.name.clone(),
        state: state.to_string(),
        mode: match c.mode {
            DialMode::Preview => "preview",
            DialMode::Progressive => "progressive",
            DialMode::Predictive(_) => "predictive",
        }
        .into(),
        queue: c.queue.clone(),
        contacts: u32::try_from(p.contacts.values().sum::<u64>()).unwrap_or(u32::MAX),
        pending: n(&p.contacts, "pending"),
        in_progress: n(&p.contacts, "in-progress"),
        done: n(&p.contacts, "done"),
        attempts: u32::try_from(p.attempts.values().sum::<u64>()).unwrap_or(u32::MAX),
        answered,
        no_answer: n(&p.attempts, "no-answer"),
        busy: n(&p.attempts, "busy"),
        abandoned,
        machine: n(&p.attempts, "machine"),
        failed: n(&p.attempts, "failed")
            + n(&p.attempts, "invalid-number")
            + n(&p.attempts, "rejected"),
        abandonment_rate: if answers == 0 {
            0.0
        } else {
            f64::from(abandoned) / f64::from(answers)
        },
        agents: live.agents,
        dial_ratio: live.dial_ratio,
    })
}

/// The state a command moves a campaign to from `now`, or why it cannot.
pub(super) fn next_state(
    now: CampaignState,
    command: CampaignCommand,
) -> Result<CampaignState, String> {
    use CampaignState::*;
    match (command, now) {
        (CampaignCommand::Unspecified, _) => Err("campaign command is required".into()),
        (CampaignCommand::Stop, _) => Ok(Stopped),
        (_, Stopped) => Err("the campaign is stopped: it is finished and cannot run again".into()),
        (CampaignCommand::Start | CampaignCommand::Resume, _) => Ok(Running),
        (CampaignCommand::Pause, Running | Paused) => Ok(Paused),
        (CampaignCommand::Pause, Draft) => Err("the campaign has not started".into()),
    }
}

pub(super) async fn set_campaign_state(
    store: &Store,
    campaigns: &[Campaign],
    now_ms: i64,
    campaign: &str,
    command: CampaignCommand,
) -> Result<(), BackendError> {
    if !campaigns.iter().any(|c| c.name == campaign) {
        return Err(BackendError::NotFound(format!(
            "no campaign named {campaign:?} is configured"
        )));
    }
    let now = store
        .campaign_state(campaign)
        .await
        .map_err(internal)?
        .unwrap_or(CampaignState::Draft);
    let next = next_state(now, command)
        .map_err(|m| BackendError::FailedPrecondition(format!("{campaign}: {m}")))?;
    store
        .set_campaign_state(campaign, next, now_ms)
        .await
        .map_err(internal)?;
    tracing::info!(%campaign, from = %now, to = %next, "campaign state changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use CampaignState::*;

    #[test]
    fn commands_move_campaigns_as_supervisors_expect() {
        let ok = |now, c| next_state(now, c).unwrap();
        assert_eq!(ok(Draft, CampaignCommand::Start), Running);
        assert_eq!(ok(Running, CampaignCommand::Pause), Paused);
        assert_eq!(ok(Paused, CampaignCommand::Resume), Running);
        assert_eq!(ok(Paused, CampaignCommand::Start), Running);
        assert_eq!(ok(Running, CampaignCommand::Stop), Stopped);
        assert_eq!(ok(Draft, CampaignCommand::Stop), Stopped);
        let err = next_state(Stopped, CampaignCommand::Resume).unwrap_err();
        assert!(err.contains("finished"), "{err}");
        assert!(next_state(Draft, CampaignCommand::Pause).is_err());
        assert!(next_state(Running, CampaignCommand::Unspecified).is_err());
    }

    #[test]
    fn cells_become_typed_values_and_missing_figures_stay_missing() {
        use report_value::Value;
        assert_eq!(value(Cell::Count(3)).value, Some(Value::Count(3)));
        assert_eq!(
            value(Cell::Secs(Some(std::time::Duration::from_millis(1500)))).value,
            Some(Value::Seconds(1.5))
        );
        assert_eq!(value(Cell::Secs(None)).value, None);
        assert_eq!(
            value(Cell::Ratio(Some(0.25))).value,
            Some(Value::Ratio(0.25))
        );
    }
}
