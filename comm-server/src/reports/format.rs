//! Reports as text: an aligned table for people, CSV for spreadsheets, JSON for programs.
//!
//! Every format prints the same columns. Durations are seconds (three decimals in the
//! table and CSV, a number in JSON), ratios are fractions (0.8, not 80 %), and a figure
//! that has no value (an average over nothing) is empty in the table and CSV and `null`
//! in JSON.

use std::fmt::Write as _;
use std::time::Duration;

use super::campaigns::CampaignFigures;
use super::ivr::{PathFigures, ScriptFigures};
use super::voicemail::MailboxFigures;
use super::{AgentFigures, QueueFigures};

/// How to print a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown format {other:?}: expected table, csv or json"
            )),
        }
    }
}

/// One figure of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Count(u64),
    Secs(Option<Duration>),
    Ratio(Option<f64>),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Count(n) => n.to_string(),
            Cell::Secs(d) => d.map_or(String::new(), |d| format!("{:.3}", d.as_secs_f64())),
            Cell::Ratio(r) => r.map_or(String::new(), |r| format!("{r:.3}")),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Text(s) => s.clone().into(),
            Cell::Count(n) => (*n).into(),
            Cell::Secs(d) => d.map_or(serde_json::Value::Null, |d| {
                // Milliseconds are what the log keeps; no float noise past them.
                (d.as_millis() as f64 / 1000.0).into()
            }),
            Cell::Ratio(r) => r.map_or(serde_json::Value::Null, Into::into),
        }
    }
}

/// Columns of the per-queue report.
pub fn queue_rows(figures: &[QueueFigures]) -> (Vec<String>, Vec<Vec<Cell>>) {
    let header = [
        "queue",
        "offered",
        "answered",
        "abandoned",
        "abandoned_short",
        "overflowed",
        "transferred",
        "asa_s",
        "service_level",
        "handled",
        "aht_s",
        "avg_talk_s",
        "avg_wrap_up_s",
        "vm_tasks",
        "vm_tasks_handled",
        "avg_vm_task_s",
    ];
    let rows = figures
        .iter()
        .map(|q| {
            vec![
                Cell::Text(q.queue.clone()),
                Cell::Count(q.offered),
                Cell::Count(q.answered),
                Cell::Count(q.abandoned),
                Cell::Count(q.abandoned_short),
                Cell::Count(q.overflowed),
                Cell::Count(q.transferred),
                Cell::Secs(q.asa()),
                Cell::Ratio(q.service_level()),
                Cell::Count(q.handled),
                Cell::Secs(q.aht()),
                Cell::Secs(q.average_talk()),
                Cell::Secs(q.average_wrap_up()),
                Cell::Count(q.tasks_offered),
                Cell::Count(q.tasks_handled),
                Cell::Secs(q.average_task()),
            ]
        })
        .collect();
    (header.iter().map(|s| s.to_string()).collect(), rows)
}

/// Columns of the per-agent report: one `break_<reason>_s` column per break reason
/// seen in any row.
pub fn agent_rows(figures: &[AgentFigures]) -> (Vec<String>, Vec<Vec<Cell>>) {
    let mut reasons: Vec<&String> = figures.iter().flat_map(|a| a.on_break.keys()).collect();
    reasons.sort();
    reasons.dedup();
    let mut header: Vec<String> = [
        "agent",
        "answered",
        "not_answered",
        "handled",
        "aht_s",
        "logged_in_s",
        "available_s",
        "idle_s",
        "on_break_s",
        "on_call_s",
        "wrap_up_s",
        "vm_tasks",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(reasons.iter().map(|r| format!("break_{r}_s")));
    let rows = figures
        .iter()
        .map(|a| {
            let mut row = vec![
                Cell::Text(a.agent.clone()),
                Cell::Count(a.answered),
                Cell::Count(a.not_answered),
                Cell::Count(a.handled),
                Cell::Secs(a.aht()),
                Cell::Secs(Some(a.logged_in)),
                Cell::Secs(Some(a.available)),
                Cell::Secs(Some(a.idle)),
                Cell::Secs(Some(a.on_break_total())),
                Cell::Secs(Some(a.on_call)),
                Cell::Secs(Some(a.in_wrap_up)),
                Cell::Count(a.tasks_handled),
            ];
            row.extend(
                reasons
                    .iter()
                    .map(|r| Cell::Secs(Some(a.on_break.get(*r).copied().unwrap_or_default()))),
            );
            row
        })
        .collect();
    (header, rows)
}

/// Columns of the per-campaign report: one `disposition_<code>` column per code seen
/// in any row.
pub fn campaign_rows(figures: &[CampaignFigures]) -> (Vec<String>, Vec<Vec<Cell>>) {
    let mut codes: Vec<&String> = figures.iter().flat_map(|c| c.dispositions.keys()).collect();
    codes.sort();
    codes.dedup();
    let mut header: Vec<String> = [
        "campaign",
        "attempts",
        "contacts_dialled",
        "reached",
        "contact_rate",
        "answered",
        "abandoned",
        "abandonment_rate",
        "machine",
        "busy",
        "no_answer",
        "invalid_number",
        "rejected",
        "failed",
        "other",
        "avg_talk_s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(codes.iter().map(|c| format!("disposition_{c}")));
    let rows = figures
        .iter()
        .map(|c| {
            let mut row = vec![
                Cell::Text(c.campaign.clone()),
                Cell::Count(c.attempts),
                Cell::Count(c.contacts_dialled),
                Cell::Count(c.reached),
                Cell::Ratio(c.contact_rate()),
                Cell::Count(c.answered),
                Cell::Count(c.abandoned),
                Cell::Ratio(c.abandonment_rate()),
                Cell::Count(c.machine),
                Cell::Count(c.busy),
                Cell::Count(c.no_answer),
                Cell::Count(c.invalid_number),
                Cell::Count(c.rejected),
                Cell::Count(c.failed),
                Cell::Count(c.other),
                Cell::Secs(c.talk),
            ];
            row.extend(
                codes
                    .iter()
                    .map(|code| Cell::Count(c.dispositions.get(*code).copied().unwrap_or(0))),
            );
            row
        })
        .collect();
    (header, rows)
}

/// Columns of the per-script IVR report: one `outcome_<o>` column per way a script
/// ended and one `left_at_<step>` column per step where callers hung up, as seen in
/// any row.
pub fn script_rows(figures: &[ScriptFigures]) -> (Vec<String>, Vec<Vec<Cell>>) {
    let keys = |f: fn(&ScriptFigures) -> Vec<&String>| {
        let mut k: Vec<&String> = figures.iter().flat_map(f).collect();
        k.sort();
        k.dedup();
        k
    };
    let outcomes = keys(|s| s.outcomes.keys().collect());
    let exits = keys(|s| s.left_at.keys().collect());
    let mut header: Vec<String> = [
        "script",
        "calls",
        "completed",
        "abandoned",
        "failed",
        "avg_time_s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(outcomes.iter().map(|o| format!("outcome_{o}")));
    header.extend(exits.iter().map(|e| format!("left_at_{e}")));
    let rows = figures
        .iter()
        .map(|s| {
            let t = &s.tally;
            let mut row = vec![
                Cell::Text(s.script.clone()),
                Cell::Count(t.calls),
                Cell::Count(t.completed),
                Cell::Count(t.abandoned),
                Cell::Count(t.failed),
                Cell::Secs(t.average_time()),
            ];
            row.extend(
                outcomes
                    .iter()
                    .map(|o| Cell::Count(s.outcomes.get(*o).copied().unwrap_or(0))),
            );
            row.extend(
                exits
                    .iter()
                    .map(|e| Cell::Count(s.left_at.get(*e).copied().unwrap_or(0))),
            );
            row
        })
        .collect();
    (header, rows)
}

/// Columns of the IVR paths report: the steps answered, joined by ` > `.
pub fn path_rows(figures: &[PathFigures]) -> (Vec<String>, Vec<Vec<Cell>>) {
    let header = [
        "script",
        "path",
        "calls",
        "completed",
        "abandoned",
        "failed",
        "avg_time_s",
    ];
    let rows = figures
        .iter()
        .map(|p| {
            let path = if p.path.is_empty() {
                super::ivr::START.to_string()
            } else {
                p.path.join(" > ")
            };
            vec![
                Cell::Text(p.script.clone()),
                Cell::Text(path),
                Cell::Count(p.tally.calls),
                Cell::Count(p.tally.completed),
                Cell::Count(p.tally.abandoned),
                Cell::Count(p.tally.failed),
                Cell::Secs(p.tally.average_time()),
            ]
        })
        .collect();
    (header.iter().map(|s| s.to_string()).collect(), rows)
}

/// Columns of the voicemail report.
pub fn mailbox_rows(figures: &[MailboxFigures]) -> (Vec<String>, Vec<Vec<Cell>>) {
    let header = [
        "mailbox",
        "left",
        "heard",
        "handled",
        "deleted",
        "open",
        "avg_length_s",
        "avg_time_to_handle_s",
        "longest_time_to_handle_s",
    ];
    let rows = figures
        .iter()
        .map(|m| {
            vec![
                Cell::Text(m.mailbox.clone()),
                Cell::Count(m.left),
                Cell::Count(m.heard),
                Cell::Count(m.handled),
                Cell::Count(m.deleted),
                Cell::Count(m.open()),
                Cell::Secs(m.average_length()),
                Cell::Secs(m.average_time_to_handle()),
                Cell::Secs(m.longest_time_to_handle()),
            ]
        })
        .collect();
    (header.iter().map(|s| s.to_string()).collect(), rows)
}

/// Prints rows in a format.
pub fn render(format: Format, header: &[String], rows: &[Vec<Cell>]) -> String {
    match format {
        Format::Table => table(header, rows),
        Format::Csv => {
            let mut out = String::new();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let _ = writeln!(out, "{}", line(header.to_vec()));
            for row in rows {
                let _ = writeln!(out, "{}", line(row.iter().map(Cell::text).collect()));
            }
            out
        }
        Format::Json => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    let object = header
                        .iter()
                        .zip(row)
                        .map(|(h, c)| (h.clone(), c.json()))
                        .collect::<serde_json::Map<_, _>>();
                    serde_json::Value::Object(object)
                })
                .collect();
            let mut out = serde_json::to_string_pretty(&list).unwrap_or_default();
            out.push('\n');
            out
        }
    }
}

/// Quotes a CSV field when it holds a comma, quote or line break (RFC 4180 §2).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn table(header: &[String], rows: &[Vec<Cell>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(Cell::text).collect())
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Names left, figures right.
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(header, &mut out);
    for row in &cells {
        line(row, &mut out);
    }
    if cells.is_empty() {
        out.push_str("(no activity in the period)\n");
    }
    out
}
