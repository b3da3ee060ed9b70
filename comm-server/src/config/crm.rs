//! The external CRM (customer relationship management system) keys of `[customers]`:
//! the lookup order, `[customers.http]` (a URL template and a JSON field mapping) and
//! `[customers.sql]` (a foreign table's columns). Every value is parsed into a checked
//! type while the file is read, so a bad one is a load error with its line: URL
//! templates name only known placeholders, JSON pointers are RFC 6901 pointers, SQL
//! identifiers are plain names (no quoting, no injection). What the lookups do with
//! them is `crate::crm`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::HumanDuration;

/// How long one external lookup may take by default. The screen pop of a call that
/// waits in a queue is looked up when it enters the queue, so a second is rarely felt;
/// past it the offer goes out with the local record or none.
pub const DEFAULT_CRM_TIMEOUT: Duration = Duration::from_secs(1);

/// Which record a screen pop shows when the local store and the CRM both may know
/// the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LookupOrder {
    /// The local store's record when it has one (the CRM is not asked); the CRM's
    /// for callers the store does not know. Cheapest; local edits win.
    #[default]
    LocalFirst,
    /// The CRM is asked on every call; its fields win over the local record's
    /// (attributes merged key by key), the local record alone when the CRM fails or
    /// does not know the caller.
    CrmFirst,
}

/// `[customers.http]`: a CRM asked with one GET per caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpCrmSection {
    /// `http://` URL with `{e164}` (`+442079460958`) or `{number}` (`442079460958`),
    /// percent-encoded into the URL.
    pub url: UrlTemplate,
    /// The whole exchange's bound. Default "1s".
    #[serde(default = "default_crm_timeout")]
    pub timeout: HumanDuration,
    /// Sent with every request (an API key, `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<HeaderName, String>,
    /// Where the record's fields are in the JSON reply.
    pub fields: HttpFields,
}

/// JSON pointers (RFC 6901, `/data/0/name`) into the CRM's reply. A reply without a
/// non-empty `name` means the CRM does not know the caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpFields {
    pub name: JsonPointer,
    /// The CRM's own key for the record (shown as the screen pop's id, `crm:…`).
    #[serde(default)]
    pub id: Option<JsonPointer>,
    #[serde(default)]
    pub account: Option<JsonPointer>,
    #[serde(default)]
    pub email: Option<JsonPointer>,
    /// Further fields, by the name the screen pop shows them under.
    #[serde(default)]
    pub attributes: BTreeMap<String, JsonPointer>,
}

/// `[customers.sql]`: a table in another database, read with one query per caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SqlCrmSection {
    /// `sqlite://PATH` or `postgres://…`; opened on first use, read only.
    pub url: SqlUrl,
    pub table: SqlIdent,
    /// Matched against the caller's number in the forms a table usually holds it
    /// (see `crate::crm::sql`).
    pub phone_column: SqlIdent,
    pub name_column: SqlIdent,
    #[serde(default)]
    pub id_column: Option<SqlIdent>,
    #[serde(default)]
    pub account_column: Option<SqlIdent>,
    #[serde(default)]
    pub email_column: Option<SqlIdent>,
    /// Further columns, shown under their own names.
    #[serde(default)]
    pub attribute_columns: Vec<SqlIdent>,
    /// The query's bound. Default "1s".
    #[serde(default = "default_crm_timeout")]
    pub timeout: HumanDuration,
}

fn default_crm_timeout() -> HumanDuration {
    HumanDuration(DEFAULT_CRM_TIMEOUT)
}

/// An `http://` URL with placeholders for the caller's number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct UrlTemplate(String);

/// The placeholders a [`UrlTemplate`] may hold.
pub const URL_PLACEHOLDERS: [&str; 2] = ["{e164}", "{number}"];

impl TryFrom<String> for UrlTemplate {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        let mut rest = url.as_str();
        let mut placeholders = 0;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("{url:?}: unclosed \"{{\""))?;
            let name = &rest[open..open + close + 1];
            if !URL_PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "{url:?}: unknown placeholder {name}: use {{e164}} or {{number}}"
                ));
            }
            placeholders += 1;
            rest = &rest[open + close + 1..];
        }
        if placeholders == 0 {
            return Err(format!(
                "{url:?} has no {{e164}} or {{number}}: every caller would get the same record"
            ));
        }
        let probe = UrlTemplate(url.clone()).fill("+10");
        match probe.parse::<hyper::Uri>() {
            Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => Ok(UrlTemplate(url)),
            Ok(u) if u.scheme_str() == Some("https") => Err(format!(
                "{url:?}: https is not supported by this build; use an http:// URL (a local TLS proxy)"
            )),
            _ => Err(format!("{url:?} is not an http:// URL")),
        }
    }
}

impl UrlTemplate {
    /// The URL for a caller (`e164` with its `+`).
    pub fn fill(&self, e164: &str) -> String {
        let digits = e164.trim_start_matches('+');
        self.0
            .replace("{e164}", &format!("%2B{digits}"))
            .replace("{number}", digits)
    }
}

/// An RFC 6901 JSON pointer: "" (the whole reply) or `/`-separated tokens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct JsonPointer(String);

impl TryFrom<String> for JsonPointer {
    type Error = String;
    fn try_from(p: String) -> Result<Self, String> {
        if !p.is_empty() && !p.starts_with('/') {
            return Err(format!(
                "{p:?} is not a JSON pointer: write it as \"/{p}\" (RFC 6901)"
            ));
        }
        Ok(JsonPointer(p))
    }
}

impl JsonPointer {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An HTTP header name, checked as hyper checks it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct HeaderName(String);

impl TryFrom<String> for HeaderName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        hyper::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not an HTTP header name"))?;
        Ok(HeaderName(name))
    }
}

impl HeaderName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A table or column name: `[A-Za-z_][A-Za-z0-9_]*`, so it can be put in a query as
/// is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SqlIdent(String);

impl TryFrom<String> for SqlIdent {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{name:?} is not a plain SQL name: use letters, digits and _ \
                 (not starting with a digit)"
            ));
        }
        Ok(SqlIdent(name))
    }
}

impl fmt::Display for SqlIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SqlIdent {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which database a [`SqlUrl`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlBackend {
    Sqlite,
    Postgres,
}

/// A database URL, `sqlite:` or `postgres:`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SqlUrl {
    pub backend: SqlBackend,
    pub url: String,
}

/// The URL may hold a password: never print it.
impl fmt::Debug for SqlUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlUrl({:?})", self.backend)
    }
}

impl TryFrom<String> for SqlUrl {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        use std::str::FromStr;
        // The driver's own parser: what it refuses here would fail at the first call.
        let backend = if url.starts_with("sqlite:") {
            sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .map_err(|e| format!("the CRM database URL: {e}"))?;
            SqlBackend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            sqlx::postgres::PgConnectOptions::from_str(&url)
                .map_err(|e| format!("the CRM database URL: {e}"))?;
            SqlBackend::Postgres
        } else {
            return Err("the CRM database URL must start with sqlite: or postgres:".into());
        };
        Ok(SqlUrl { backend, url })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(extra: &str) -> Result<Config, String> {
        Config::parse(extra, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn http_and_sql_sections_load_with_defaults() {
        let cfg = load(
            "[customers]\nlookup-order = \"crm-first\"\n\
             [customers.http]\nurl = \"http://crm:8080/people?tel={e164}\"\n\
             headers = { X-Api-Key = \"k\" }\n\
             fields = { name = \"/data/name\", attributes = { tier = \"/data/tier\" } }\n\
             [customers.sql]\nurl = \"sqlite:///tmp/crm.db\"\ntable = \"crm_contacts\"\n\
             phone-column = \"tel\"\nname-column = \"full_name\"\n",
        )
        .unwrap();
        assert_eq!(cfg.customers.lookup_order, LookupOrder::CrmFirst);
        let http = cfg.customers.http.unwrap();
        assert_eq!(http.timeout.0, DEFAULT_CRM_TIMEOUT);
        assert_eq!(
            http.url.fill("+442079460958"),
            "http://crm:8080/people?tel=%2B442079460958"
        );
        let sql = cfg.customers.sql.unwrap();
        assert_eq!(sql.url.backend, SqlBackend::Sqlite);
        assert_eq!(sql.table.as_str(), "crm_contacts");
    }

    /// The commented examples in `deploy/comm-server.toml`, uncommented, load.
    #[test]
    fn the_documented_examples_load() {
        let demo = crate::config::DEMO_CONFIG;
        let mut example = String::new();
        for table in ["# [customers.http]", "# [customers.sql]"] {
            let start = demo.find(table).unwrap();
            let block = demo[start..].split("\n\n").next().unwrap();
            for line in block.lines() {
                example.push_str(line.trim_start_matches("# "));
                example.push('\n');
            }
        }
        let cfg = load(&example).unwrap();
        let http = cfg.customers.http.unwrap();
        assert_eq!(http.headers.len(), 1);
        assert!(http.fields.email.is_some());
        assert_eq!(cfg.customers.sql.unwrap().attribute_columns.len(), 2);
    }

    #[test]
    fn bad_crm_values_are_load_errors_with_their_line() {
        let sql = |table: &str| {
            format!(
                "[customers.sql]\nurl = \"sqlite://x.db\"\ntable = \"{table}\"\n\
                 phone-column = \"tel\"\nname-column = \"n\"\n"
            )
        };
        let e = load(&sql("contacts; DROP TABLE x")).unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("not a plain SQL name"),
            "{e}"
        );
        assert!(load(&sql("1abc")).is_err());
        assert!(load(&sql("_ok_2")).is_ok());
        let http = |url: &str, name: &str| {
            format!("[customers.http]\nurl = \"{url}\"\nfields = {{ name = \"{name}\" }}\n")
        };
        for (url, pointer, says) in [
            ("http://crm/x", "/n", "no {e164} or {number}"),
            ("http://crm/{phone}", "/n", "unknown placeholder {phone}"),
            ("https://crm/{e164}", "/n", "https is not supported"),
            ("ftp://crm/{e164}", "/n", "not an http:// URL"),
            ("http://crm/{number}", "name", "not a JSON pointer"),
        ] {
            let e = load(&http(url, pointer)).unwrap_err();
            assert!(e.contains(says), "{url} {pointer}: {e}");
            assert!(e.contains("line 2") || e.contains("line 3"), "{e}");
        }
        let e = load(
            "[customers.sql]\nurl = \"mysql://x\"\ntable = \"t\"\n\
             phone-column = \"tel\"\nname-column = \"n\"\n",
        )
        .unwrap_err();
        assert!(e.contains("sqlite: or postgres:"), "{e}");
    }
}
