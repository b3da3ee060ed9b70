//! The IVR report: how callers fared in each dialog script.
//!
//! Computed from the contact history: every call that ran a script is stored with the
//! script, the steps the caller answered in order (`path`), how the script ended
//! (`ivr_outcome`: the `<hangup outcome>`, or the route it took), the call's outcome
//! and the time spent in the script (`script_ms`, from answer to the script's end, or
//! to the hang-up when the caller left first).
//!
//! # Definitions
//! A call counts in the period in which it started.
//! * **completed**: the script reached an end of its own (a hang-up with an outcome,
//!   or a route: queue, mailbox, transfer);
//! * **abandoned**: the caller hung up inside the script; **left at** is the last step
//!   they answered (`(start)` when they answered none): where callers give up;
//! * **failed**: neither (a script error, a network failure);
//! * **time in script**: the mean of `script_ms` over the calls that have it;
//! * **paths**: the sequence of steps answered, one row per distinct sequence, so a
//!   supervisor sees which ways through the menu callers take and where each ends.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;

/// Where a caller who answered nothing left.
pub const START: &str = "(start)";

/// One call that ran a script, as the report needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvrCall {
    pub script: String,
    pub started_ms: i64,
    pub path: Vec<String>,
    pub ivr_outcome: Option<String>,
    /// The call's outcome in the history (`abandoned` when the caller hung up first).
    pub outcome: String,
    pub script_ms: Option<i64>,
}

impl IvrCall {
    /// Reads a call's history details; `None` when the call ran no script.
    pub fn from_history(started_ms: i64, outcome: Option<&str>, details: &Json) -> Option<Self> {
        let script = details.get("script")?.as_str()?.to_owned();
        let path = details
            .get("path")
            .and_then(Json::as_array)
            .map(|steps| {
                steps
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Some(IvrCall {
            script,
            started_ms,
            path,
            ivr_outcome: details
                .get("ivr_outcome")
                .and_then(Json::as_str)
                .map(str::to_owned),
            outcome: outcome.unwrap_or_default().to_owned(),
            script_ms: details.get("script_ms").and_then(Json::as_i64),
        })
    }

    fn fate(&self) -> Fate {
        if self.ivr_outcome.is_some() {
            Fate::Completed
        } else if self.outcome == "abandoned" {
            Fate::Abandoned
        } else {
            Fate::Failed
        }
    }

    fn left_at(&self) -> &str {
        self.path.last().map_or(START, String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Completed,
    Abandoned,
    Failed,
}

/// Counts and time in script shared by both report rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub calls: u64,
    pub completed: u64,
    pub abandoned: u64,
    pub failed: u64,
    time_ms: i64,
    timed: u64,
}

impl Tally {
    fn add(&mut self, call: &IvrCall) {
        self.calls += 1;
        match call.fate() {
            Fate::Completed => self.completed += 1,
            Fate::Abandoned => self.abandoned += 1,
            Fate::Failed => self.failed += 1,
        }
        if let Some(ms) = call.script_ms {
            self.time_ms += ms.max(0);
            self.timed += 1;
        }
    }

    /// Mean time in the script.
    pub fn average_time(&self) -> Option<Duration> {
        (self.timed > 0)
            .then(|| Duration::from_millis(u64::try_from(self.time_ms).unwrap_or(0) / self.timed))
    }
}

/// One script's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScriptFigures {
    pub script: String,
    pub tally: Tally,
    /// How completed calls ended, by outcome.
    pub outcomes: BTreeMap<String, u64>,
    /// Abandoned calls by the last step answered.
    pub left_at: BTreeMap<String, u64>,
}

/// One way through one script.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathFigures {
    pub script: String,
    pub path: Vec<String>,
    pub tally: Tally,
}

fn in_period(calls: &[IvrCall], period: super::Period) -> impl Iterator<Item = &IvrCall> {
    calls.iter().filter(move |c| period.contains(c.started_ms))
}

/// Per script, by name.
pub fn script_report(calls: &[IvrCall], period: super::Period) -> Vec<ScriptFigures> {
    let mut by: BTreeMap<&str, ScriptFigures> = BTreeMap::new();
    for call in in_period(calls, period) {
        let f = by.entry(&call.script).or_insert_with(|| ScriptFigures {
            script: call.script.clone(),
            ..ScriptFigures::default()
        });
        f.tally.add(call);
        match (call.fate(), &call.ivr_outcome) {
            (Fate::Completed, Some(o)) => *f.outcomes.entry(o.clone()).or_default() += 1,
            (Fate::Abandoned, _) => *f.left_at.entry(call.left_at().to_owned()).or_default() += 1,
            _ => {}
        }
    }
    by.into_values().collect()
}

/// Per script and path, most taken first (then by script and path).
pub fn path_report(calls: &[IvrCall], period: super::Period) -> Vec<PathFigures> {
    let mut by: BTreeMap<(&str, &[String]), PathFigures> = BTreeMap::new();
    for call in in_period(calls, period) {
        by.entry((&call.script, &call.path))
            .or_insert_with(|| PathFigures {
                script: call.script.clone(),
                path: call.path.clone(),
                ..PathFigures::default()
            })
            .tally
            .add(call);
    }
    let mut rows: Vec<PathFigures> = by.into_values().collect();
    rows.sort_by(|a, b| {
        a.script
            .cmp(&b.script)
            .then(b.tally.calls.cmp(&a.tally.calls))
            .then(a.path.cmp(&b.path))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::Period;

    fn call(
        script: &str,
        path: &[&str],
        ivr_outcome: Option<&str>,
        outcome: &str,
        ms: i64,
    ) -> IvrCall {
        IvrCall {
            script: script.into(),
            started_ms: 1_000,
            path: path.iter().map(|s| s.to_string()).collect(),
            ivr_outcome: ivr_outcome.map(str::to_owned),
            outcome: outcome.into(),
            script_ms: Some(ms),
        }
    }

    fn hand_checked() -> Vec<IvrCall> {
        vec![
            // Two callers identify and reach the queue.
            call(
                "bank",
                &["account", "pin", "menu"],
                Some("agent"),
                "answered",
                40_000,
            ),
            call(
                "bank",
                &["account", "pin", "menu"],
                Some("agent"),
                "abandoned",
                50_000,
            ),
            // One hears the balance and the script hangs up.
            call(
                "bank",
                &["account", "pin", "menu"],
                Some("balance"),
                "completed",
                30_000,
            ),
            // Two give up at the PIN, one before answering anything.
            call("bank", &["account"], None, "abandoned", 12_000),
            call("bank", &["account"], None, "abandoned", 8_000),
            call("bank", &[], None, "abandoned", 4_000),
            // A script error.
            call("bank", &["account", "pin"], None, "failed", 16_000),
            call(
                "outage",
                &["postcode"],
                Some("reported"),
                "completed",
                20_000,
            ),
        ]
    }

    #[test]
    fn script_figures_of_a_hand_checked_day() {
        let rows = script_report(&hand_checked(), Period::whole());
        assert_eq!(rows.len(), 2);
        let bank = &rows[0];
        assert_eq!(bank.script, "bank");
        let t = &bank.tally;
        assert_eq!((t.calls, t.completed, t.abandoned, t.failed), (7, 3, 3, 1));
        // (40 + 50 + 30 + 12 + 8 + 4 + 16) / 7 = 22.857 s
        assert_eq!(t.average_time(), Some(Duration::from_millis(22_857)));
        assert_eq!(
            bank.outcomes,
            BTreeMap::from([("agent".into(), 2), ("balance".into(), 1)])
        );
        assert_eq!(
            bank.left_at,
            BTreeMap::from([("account".into(), 2), (START.into(), 1)])
        );
        assert_eq!(rows[1].script, "outage");
        assert_eq!(rows[1].tally.completed, 1);
    }

    #[test]
    fn paths_most_taken_first() {
        let rows = path_report(&hand_checked(), Period::whole());
        let seen: Vec<(&str, String, u64)> = rows
            .iter()
            .map(|r| (r.script.as_str(), r.path.join(">"), r.tally.calls))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("bank", "account>pin>menu".into(), 3),
                ("bank", "account".into(), 2),
                ("bank", "".into(), 1),
                ("bank", "account>pin".into(), 1),
                ("outage", "postcode".into(), 1),
            ]
        );
        assert_eq!(rows[0].tally.completed, 3);
        assert_eq!(rows[1].tally.abandoned, 2);
    }

    #[test]
    fn history_details_read_back_and_calls_without_a_script_are_skipped() {
        let details = serde_json::json!({
            "route": "bank",
            "script": "bank.xml",
            "path": ["account", "pin"],
            "ivr_outcome": "agent",
            "script_ms": 42_000,
        });
        let c = IvrCall::from_history(5, Some("answered"), &details).unwrap();
        assert_eq!(c.script, "bank.xml");
        assert_eq!(c.path, vec!["account".to_string(), "pin".to_string()]);
        assert_eq!(c.ivr_outcome.as_deref(), Some("agent"));
        assert_eq!(c.script_ms, Some(42_000));
        assert_eq!(
            IvrCall::from_history(5, Some("answered"), &serde_json::json!({"route": "500"})),
            None
        );
    }

    #[test]
    fn the_period_selects_by_start() {
        let mut calls = hand_checked();
        calls[0].started_ms = 10_000;
        let rows = script_report(
            &calls,
            Period {
                from_ms: 5_000,
                to_ms: 20_000,
            },
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].tally.calls, 1);
    }
}
