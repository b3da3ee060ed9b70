//! Campaign contact import from CSV: `comm-server import contacts --campaign NAME FILE.csv`.
//!
//! Owns: reading the file, checking every row, merging rows with the same number, and
//! handing the store one batch for one transaction. Must not own: how contacts are
//! stored or linked to customers (the store does that) or terminal output (the CLI
//! draws the progress bar from the callback). Follows [`crate::customer_csv`]: the
//! same row numbering (the header is row 1), the same error list, nothing written
//! when any row is bad.
//!
//! Columns, by header name (case and `-`/space against `_` do not matter): `phone`
//! (required, one number, normalised to E.164), `name`, `time_zone` (an IANA zone such
//! as `Europe/London`; empty: the campaign's default); any other column becomes an
//! attribute, kept as text. Rows with the same number are one contact: later rows
//! override the name and zone and add attributes.

use std::collections::HashMap;
use std::io::Read;

use chrono_tz::Tz;
use serde_json::Value as Json;

use crate::customer_csv::{CsvImportError, MAX_ROW_ERRORS, RowError};
use crate::phone::{self, DialPlan};
use crate::store::{ImportFailure, ImportSummary, NewCampaignContact, Store};

/// The checked file: one record per number, with the row each came from first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedContacts {
    pub contacts: Vec<NewCampaignContact>,
    /// For each contact, the first row that named it.
    pub rows: Vec<u64>,
    /// Data rows read (more than `contacts` when rows were merged).
    pub row_count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Phone,
    Name,
    TimeZone,
    Attribute,
}

fn column_of(header: &str) -> (Column, String) {
    let key: String = header
        .trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let column = match key.as_str() {
        "phone" => Column::Phone,
        "name" => Column::Name,
        "time_zone" | "timezone" | "tz" => Column::TimeZone,
        _ => Column::Attribute,
    };
    let name = if column == Column::Attribute {
        header.trim().to_owned()
    } else {
        key
    };
    (column, name)
}

/// Reads and checks a whole file; `path` names it in errors.
pub fn parse(
    input: impl Read,
    path: &str,
    plan: &DialPlan,
) -> Result<ParsedContacts, CsvImportError> {
    let file_error = |message: String| CsvImportError::File {
        path: path.to_owned(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| file_error(format!("cannot read the header row: {e}")))?
        .clone();
    let columns: Vec<(Column, String)> = headers.iter().map(column_of).collect();
    let mut seen = HashMap::new();
    for (i, (_, name)) in columns.iter().enumerate() {
        if name.is_empty() {
            return Err(file_error(format!("row 1: column {} has no name", i + 1)));
        }
        if let Some(first) = seen.insert(name.clone(), i) {
            return Err(file_error(format!(
                "row 1: column {:?} appears twice (columns {} and {})",
                name,
                first + 1,
                i + 1
            )));
        }
    }
    if !columns.iter().any(|(c, _)| *c == Column::Phone) {
        return Err(file_error("row 1: no \"phone\" column".into()));
    }

    let mut out = ParsedContacts::default();
    let mut errors = Vec::new();
    let mut more = 0;
    let mut by_phone: HashMap<String, usize> = HashMap::new();
    let mut record = csv::StringRecord::new();
    loop {
        let row_start = reader.position().line();
        let mut report = |e: RowError| {
            if errors.len() < MAX_ROW_ERRORS {
                errors.push(e);
            } else {
                more += 1;
            }
        };
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let row = e.position().map_or(row_start, |p| p.line());
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("{len} field(s), the header has {expected_len}"),
                    csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".into(),
                    _ => e.to_string(),
                };
                let recoverable = matches!(
                    e.kind(),
                    csv::ErrorKind::UnequalLengths { .. } | csv::ErrorKind::Utf8 { .. }
                );
                report(RowError {
                    row,
                    field: None,
                    value: None,
                    message,
                });
                if !recoverable {
                    // An I/O error: nothing after it can be trusted.
                    break;
                }
                continue;
            }
        }
        out.row_count += 1;
        let row = record.position().map_or(row_start, |p| p.line());
        match contact_of(&record, &columns, plan, row) {
            Ok(contact) => match by_phone.get(&contact.e164) {
                Some(&i) => {
                    let into = &mut out.contacts[i];
                    if !contact.name.is_empty() {
                        into.name = contact.name;
                    }
                    into.time_zone = contact.time_zone.or(into.time_zone.take());
                    into.attributes.extend(contact.attributes);
                }
                None => {
                    by_phone.insert(contact.e164.clone(), out.contacts.len());
                    out.contacts.push(contact);
                    out.rows.push(row);
                }
            },
            Err(row_errors) => row_errors.into_iter().for_each(&mut report),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(CsvImportError::Rows {
            path: path.to_owned(),
            errors,
            more,
        })
    }
}

fn contact_of(
    record: &csv::StringRecord,
    columns: &[(Column, String)],
    plan: &DialPlan,
    row: u64,
) -> Result<NewCampaignContact, Vec<RowError>> {
    let mut contact = NewCampaignContact::default();
    let mut errors = Vec::new();
    let mut bad = |field: &str, value: &str, message: String| {
        errors.push(RowError {
            row,
            field: Some(field.to_owned()),
            value: Some(value.to_owned()),
            message,
        })
    };
    for ((column, name), cell) in columns.iter().zip(record.iter()) {
        let value = cell.trim();
        match column {
            Column::Name => contact.name = value.to_owned(),
            Column::Phone if value.is_empty() => {}
            Column::Phone => match phone::normalise(value, plan) {
                Ok(e164) => contact.e164 = e164.into_string(),
                Err(e) => bad("phone", value, e.to_string()),
            },
            Column::TimeZone if value.is_empty() => {}
            Column::TimeZone => match value.parse::<Tz>() {
                Ok(tz) => contact.time_zone = Some(tz.name().to_owned()),
                Err(_) => bad(
                    "time_zone",
                    value,
                    "not an IANA time zone (e.g. \"Europe/London\")".into(),
                ),
            },
            Column::Attribute => {
                if !value.is_empty() {
                    contact
                        .attributes
                        .insert(name.clone(), Json::String(value.to_owned()));
                }
            }
        }
    }
    let phone_cell = columns
        .iter()
        .zip(record.iter())
        .find(|((c, _), _)| *c == Column::Phone)
        .map(|(_, cell)| cell.trim());
    if phone_cell.is_none_or(str::is_empty) {
        errors.push(RowError {
            row,
            field: Some("phone".into()),
            value: None,
            message: "empty; every contact needs a number".into(),
        });
    }
    if errors.is_empty() {
        Ok(contact)
    } else {
        Err(errors)
    }
}

/// Writes the checked contacts into `campaign` in one transaction; `progress` hears
/// each one written.
pub async fn import(
    store: &Store,
    campaign: &str,
    parsed: &ParsedContacts,
    path: &str,
    now_ms: i64,
    progress: &mut dyn FnMut(usize),
) -> Result<ImportSummary, CsvImportError> {
    store
        .import_campaign_contacts(campaign, &parsed.contacts, now_ms, progress)
        .await
        .map_err(|ImportFailure { index, error }| match index {
            Some(i) => CsvImportError::Store {
                path: path.to_owned(),
                row: parsed.rows.get(i).copied().unwrap_or_default(),
                source: error,
            },
            None => CsvImportError::Database {
                path: path.to_owned(),
                source: error,
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uk() -> DialPlan {
        DialPlan::new(Some("44"), "0", "00").unwrap()
    }

    fn parse_str(text: &str) -> Result<ParsedContacts, CsvImportError> {
        parse(text.as_bytes(), "c.csv", &uk())
    }

    #[test]
    fn columns_zones_and_attributes() {
        let parsed = parse_str(
            "Phone,Name,Time Zone,Plan\n\
             020 7946 0958,Ada,Europe/London,gold\n\
             +1 212 555 0100,Bo,,\n",
        )
        .unwrap();
        assert_eq!(parsed.rows, vec![2, 3]);
        let ada = &parsed.contacts[0];
        assert_eq!(ada.e164, "+442079460958");
        assert_eq!(ada.name, "Ada");
        assert_eq!(ada.time_zone.as_deref(), Some("Europe/London"));
        assert_eq!(ada.attributes["Plan"], "gold");
        assert_eq!(parsed.contacts[1].e164, "+12125550100");
        assert_eq!(parsed.contacts[1].time_zone, None);
        assert!(parsed.contacts[1].attributes.is_empty());
    }

    #[test]
    fn every_bad_row_is_named_with_its_field() {
        let err = parse_str(
            "phone,name,time_zone\n\
             +442079460958,Ada,Europe/London\n\
             abc,Bo,\n\
             ,Cy,Mars/Olympus\n\
             1,2\n",
        )
        .unwrap_err();
        let CsvImportError::Rows { errors, .. } = &err else {
            panic!("{err}");
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "row 3: phone \"abc\": not a phone number: 'a' is not a digit",
                "row 4: time_zone \"Mars/Olympus\": not an IANA time zone (e.g. \"Europe/London\")",
                "row 4: phone: empty; every contact needs a number",
                "row 5: 2 field(s), the header has 3",
            ]
        );
        assert!(
            err.to_string()
                .starts_with("c.csv: 4 problem(s), nothing imported:\n  row 3")
        );
    }

    #[test]
    fn the_same_number_twice_is_one_contact() {
        let parsed = parse_str(
            "phone,name,colour\n\
             +442079460958,Ada,red\n\
             02079460958,Ada L,\n",
        )
        .unwrap();
        assert_eq!(parsed.row_count, 2);
        assert_eq!(parsed.rows, vec![2]);
        assert_eq!(parsed.contacts[0].name, "Ada L");
        assert_eq!(parsed.contacts[0].attributes["colour"], "red");
    }

    #[test]
    fn header_without_phone_is_row_1() {
        assert_eq!(
            parse_str("name\nAda\n").unwrap_err().to_string(),
            "c.csv: row 1: no \"phone\" column"
        );
    }

    #[tokio::test]
    async fn import_links_customers_and_names_the_row() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let parsed = parse_str("phone,name\n+442079460958,Ada\n+442079460959,Bo\n").unwrap();
        let mut seen = vec![];
        let summary = import(&store, "renewals", &parsed, "c.csv", 1, &mut |n| {
            seen.push(n)
        })
        .await
        .unwrap();
        assert_eq!((summary.created, summary.updated), (2, 0));
        assert_eq!(seen, vec![1, 2]);
        let contacts = store.campaign_contacts("renewals").await.unwrap();
        let ada = store.customer_by_phone("+442079460958").await.unwrap();
        assert_eq!(contacts[0].customer_id, ada.map(|c| c.id));
    }
}
