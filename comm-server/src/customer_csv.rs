//! Customer import from CSV: `comm-server import customers FILE.csv`.
//!
//! Owns: reading the file (a header row names the columns), checking every row,
//! merging rows that are the same customer, and handing the store one batch to write
//! in one transaction. Must not own: how records are stored or merged with what is
//! already in the database (the store does that), or terminal output (the CLI draws
//! the progress bar from the callback).
//!
//! Columns, by header name (case and `-`/space against `_` do not matter):
//! `name` (required), `phone` (numbers separated by `;`, normalised to E.164),
//! `account`, `email`, `external_ref`; any other column becomes an attribute
//! (`customer.<column>` in scripts), kept as text. Empty cells are absent values.
//!
//! Row numbers are the file's line numbers, the header being row 1, so an editor
//! jumps straight to them. Every bad row is reported (up to [`MAX_ROW_ERRORS`]), and
//! then nothing is written. Rows with the same phone or external reference are one
//! customer: later rows add phones and attributes and override the other fields.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use serde_json::Value as Json;

use crate::phone::{self, DialPlan};
use crate::store::{ImportFailure, ImportSummary, NewCustomer, Store};

/// Errors listed before the import gives up reading; the rest are counted.
pub const MAX_ROW_ERRORS: usize = 50;

/// One problem in the file: where, which field, what value, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The line in the file (the header is row 1).
    pub row: u64,
    /// The column, when the problem is in one cell.
    pub field: Option<String>,
    pub value: Option<String>,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}: ", self.row)?;
        match (&self.field, &self.value) {
            (Some(field), Some(value)) => write!(f, "{field} {value:?}: ")?,
            (Some(field), None) => write!(f, "{field}: ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

/// Why a file cannot be imported; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CsvImportError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// Bad rows, in file order, with how many more were not listed.
    #[error("{path}: {} problem(s), nothing imported:\n{}", .errors.len() + .more, list(.errors, *.more))]
    Rows {
        path: String,
        errors: Vec<RowError>,
        more: usize,
    },
    #[error("{path}: row {row}: {source}; nothing imported")]
    Store {
        path: String,
        row: u64,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("{path}: {source}; nothing imported")]
    Database {
        path: String,
        #[source]
        source: crate::store::StoreError,
    },
}

fn list(errors: &[RowError], more: usize) -> String {
    let mut out: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    if more > 0 {
        out.push(format!("  … and {more} more"));
    }
    out.join("\n")
}

/// The checked file: one record per customer, with the row each came from first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedCustomers {
    pub customers: Vec<NewCustomer>,
    /// For each customer, the first row that named it.
    pub rows: Vec<u64>,
    /// Data rows read (more than `customers` when rows were merged).
    pub row_count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Name,
    Phone,
    Account,
    Email,
    ExternalRef,
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
        "name" => Column::Name,
        "phone" | "phones" => Column::Phone,
        "account" => Column::Account,
        "email" | "e_mail" => Column::Email,
        "external_ref" => Column::ExternalRef,
        _ => Column::Attribute,
    };
    // Attributes keep the header as written (trimmed): it is what scripts will name.
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
) -> Result<ParsedCustomers, CsvImportError> {
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
    if !columns.iter().any(|(c, _)| *c == Column::Name) {
        return Err(file_error("row 1: no \"name\" column".into()));
    }

    let mut out = ParsedCustomers::default();
    let mut errors = Vec::new();
    let mut more = 0;
    let mut by_phone: HashMap<String, usize> = HashMap::new();
    let mut by_ref: HashMap<String, usize> = HashMap::new();
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
                report(RowError {
                    row,
                    field: None,
                    value: None,
                    message,
                });
                if !matches!(
                    e.kind(),
                    csv::ErrorKind::UnequalLengths { .. } | csv::ErrorKind::Utf8 { .. }
                ) {
                    // An I/O error: nothing after it can be trusted.
                    break;
                }
                continue;
            }
        }
        out.row_count += 1;
        let row = record.position().map_or(row_start, |p| p.line());
        match customer_of(&record, &columns, plan, row) {
            Ok(customer) => {
                if let Err(e) = merge(&mut out, &mut by_phone, &mut by_ref, customer, row) {
                    report(e);
                }
            }
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

fn customer_of(
    record: &csv::StringRecord,
    columns: &[(Column, String)],
    plan: &DialPlan,
    row: u64,
) -> Result<NewCustomer, Vec<RowError>> {
    let mut customer = NewCustomer::default();
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
        let present = (!value.is_empty()).then(|| value.to_owned());
        match column {
            Column::Name => customer.name = value.to_owned(),
            Column::Account => customer.account = present,
            Column::ExternalRef => customer.external_ref = present,
            Column::Email => {
                if let Some(email) = &present
                    && !is_email(email)
                {
                    bad("email", email, "not an e-mail address".into());
                }
                customer.email = present;
            }
            Column::Phone => {
                for number in value.split(';').map(str::trim).filter(|n| !n.is_empty()) {
                    match phone::normalise(number, plan) {
                        Ok(e164) => {
                            let e164 = e164.into_string();
                            if !customer.phones.contains(&e164) {
                                customer.phones.push(e164);
                            }
                        }
                        Err(e) => bad("phone", number, e.to_string()),
                    }
                }
            }
            Column::Attribute => {
                if let Some(v) = present {
                    customer.attributes.insert(name.clone(), Json::String(v));
                }
            }
        }
    }
    if customer.name.is_empty() {
        errors.push(RowError {
            row,
            field: Some("name".into()),
            value: None,
            message: "empty; every customer needs a name".into(),
        });
    }
    if errors.is_empty() {
        Ok(customer)
    } else {
        Err(errors)
    }
}

/// Enough of RFC 5322 to catch a wrong column: one `@` with text on both sides, no spaces.
fn is_email(s: &str) -> bool {
    matches!(s.split_once('@'), Some((local, domain))
        if !local.is_empty() && domain.contains('.') && !domain.contains('@') && !s.contains(char::is_whitespace))
}

/// Adds `customer` as a new record, or folds it into the earlier row with the same
/// external reference or phone.
fn merge(
    out: &mut ParsedCustomers,
    by_phone: &mut HashMap<String, usize>,
    by_ref: &mut HashMap<String, usize>,
    customer: NewCustomer,
    row: u64,
) -> Result<(), RowError> {
    let by_reference = customer
        .external_ref
        .as_ref()
        .and_then(|r| by_ref.get(r).copied());
    let by_number = customer
        .phones
        .iter()
        .find_map(|p| by_phone.get(p).map(|&i| (p, i)));
    let conflict = |phone: &str, other: usize| RowError {
        row,
        field: Some("phone".into()),
        value: Some(phone.to_owned()),
        message: format!(
            "also on row {}, a customer with another external_ref",
            out.rows[other]
        ),
    };
    let target = match (by_reference, by_number) {
        (Some(a), Some((phone, b))) if a != b => return Err(conflict(phone, b)),
        (Some(a), _) => Some(a),
        (None, Some((phone, b))) => {
            if let (Some(theirs), Some(ours)) =
                (&out.customers[b].external_ref, &customer.external_ref)
                && theirs != ours
            {
                return Err(conflict(phone, b));
            }
            Some(b)
        }
        (None, None) => None,
    };
    // A phone of this row that an earlier, different customer already has.
    if let Some((phone, &other)) = customer
        .phones
        .iter()
        .find_map(|p| by_phone.get_key_value(p))
        .filter(|(_, other)| Some(**other) != target)
    {
        return Err(conflict(phone, other));
    }
    let index = match target {
        Some(i) => {
            let into = &mut out.customers[i];
            into.name = customer.name;
            into.account = customer.account.or(into.account.take());
            into.email = customer.email.or(into.email.take());
            into.external_ref = customer.external_ref.or(into.external_ref.take());
            for p in customer.phones {
                if !into.phones.contains(&p) {
                    into.phones.push(p);
                }
            }
            into.attributes.extend(customer.attributes);
            i
        }
        None => {
            out.customers.push(customer);
            out.rows.push(row);
            out.customers.len() - 1
        }
    };
    let merged = &out.customers[index];
    for p in &merged.phones {
        by_phone.insert(p.clone(), index);
    }
    if let Some(r) = &merged.external_ref {
        by_ref.insert(r.clone(), index);
    }
    Ok(())
}

/// Writes the checked records in one transaction; `progress` hears each one written.
pub async fn import(
    store: &Store,
    parsed: &ParsedCustomers,
    path: &str,
    now_ms: i64,
    progress: &mut dyn FnMut(usize),
) -> Result<ImportSummary, CsvImportError> {
    store
        .import_customers(&parsed.customers, now_ms, progress)
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

    fn attributes_json(c: &NewCustomer) -> Json {
        Json::Object(c.attributes.clone())
    }

    fn uk() -> DialPlan {
        DialPlan::new(Some("44"), "0", "00").unwrap()
    }

    fn parse_str(text: &str) -> Result<ParsedCustomers, CsvImportError> {
        parse(text.as_bytes(), "c.csv", &uk())
    }

    #[test]
    fn columns_phones_and_attributes() {
        let parsed = parse_str(
            "Name,Phone,Account,E-mail,External Ref,Tier\n\
             Ada,020 7946 0958; +44 7700 900123,A1,ada@example.com,crm-1,gold\n\
             Bo,,B2,,,\n",
        )
        .unwrap();
        assert_eq!(parsed.row_count, 2);
        assert_eq!(parsed.rows, vec![2, 3]);
        let ada = &parsed.customers[0];
        assert_eq!(ada.name, "Ada");
        assert_eq!(ada.phones, vec!["+442079460958", "+447700900123"]);
        assert_eq!(ada.account.as_deref(), Some("A1"));
        assert_eq!(ada.external_ref.as_deref(), Some("crm-1"));
        assert_eq!(ada.email.as_deref(), Some("ada@example.com"));
        assert_eq!(attributes_json(ada), serde_json::json!({"Tier": "gold"}));
        assert!(parsed.customers[1].phones.is_empty());
    }

    #[test]
    fn every_bad_row_is_named_with_its_field() {
        let err = parse_str(
            "name,phone,email\n\
             Ada,+442079460958,ada@example.com\n\
             Bo,abc,bo@example.com\n\
             ,020 7946 0000,nobody\n\
             Cy,1;2\n",
        )
        .unwrap_err();
        let CsvImportError::Rows { errors, more, .. } = &err else {
            panic!("{err}");
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "row 3: phone \"abc\": not a phone number: 'a' is not a digit",
                "row 4: email \"nobody\": not an e-mail address",
                "row 4: name: empty; every customer needs a name",
                "row 5: 2 field(s), the header has 3",
            ]
        );
        assert_eq!(*more, 0);
        assert!(
            err.to_string()
                .starts_with("c.csv: 4 problem(s), nothing imported:\n  row 3")
        );
    }

    #[test]
    fn errors_past_the_cap_are_counted() {
        let mut text = String::from("name,phone\n");
        for _ in 0..MAX_ROW_ERRORS + 7 {
            text.push_str("X,nope\n");
        }
        let Err(CsvImportError::Rows { errors, more, .. }) = parse_str(&text) else {
            panic!("bad rows accepted");
        };
        assert_eq!((errors.len(), more), (MAX_ROW_ERRORS, 7));
    }

    #[test]
    fn duplicates_by_phone_or_reference_are_merged() {
        let parsed = parse_str(
            "name,phone,external_ref,account,colour\n\
             Ada,+442079460958,,A1,red\n\
             Ada L,02079460958;07700900123,crm-1,,\n\
             Bo,,crm-2,B1,\n\
             Bo B,+447700900999,crm-2,,blue\n",
        )
        .unwrap();
        assert_eq!(parsed.row_count, 4);
        assert_eq!(parsed.rows, vec![2, 4]);
        let ada = &parsed.customers[0];
        assert_eq!(ada.name, "Ada L");
        assert_eq!(ada.phones, vec!["+442079460958", "+447700900123"]);
        assert_eq!(
            (ada.account.as_deref(), ada.external_ref.as_deref()),
            (Some("A1"), Some("crm-1"))
        );
        assert_eq!(attributes_json(ada), serde_json::json!({"colour": "red"}));
        let bo = &parsed.customers[1];
        assert_eq!(bo.phones, vec!["+447700900999"]);
        assert_eq!(bo.account.as_deref(), Some("B1"));
    }

    #[test]
    fn one_phone_for_two_references_is_an_error() {
        let err = parse_str(
            "name,phone,external_ref\n\
             Ada,+442079460958,crm-1\n\
             Bo,+442079460958,crm-2\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "row 3: phone \"+442079460958\": also on row 2, a customer with another external_ref"
            ),
            "{err}"
        );
    }

    #[test]
    fn header_problems_name_row_1() {
        for (text, message) in [
            ("phone\n+442079460958\n", "c.csv: row 1: no \"name\" column"),
            (
                "name,Name\nx,y\n",
                "c.csv: row 1: column \"name\" appears twice (columns 1 and 2)",
            ),
            ("name,\nx,y\n", "c.csv: row 1: column 2 has no name"),
        ] {
            assert_eq!(parse_str(text).unwrap_err().to_string(), message);
        }
    }
}
