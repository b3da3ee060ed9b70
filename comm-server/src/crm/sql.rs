//! A CRM's table in another database (SQLite or PostgreSQL), read with one query per
//! caller: `SELECT name, [id, account, email, attributes…] FROM table WHERE phone IN
//! (…) LIMIT 1`, with the caller's number in each form a table usually holds it
//! ([`crate::phone::DialPlan::written_forms`]: E.164, digits, international prefix,
//! national form). Numbers stored with spaces or punctuation do not match.
//!
//! Table and column names are plain identifiers checked at load
//! ([`crate::config::crm::SqlIdent`]), so the query text holds nothing from a caller;
//! the number is a bound parameter. Every column is read through `CAST(… AS TEXT)` so
//! integer accounts or ids read the same on both backends. The connection is opened
//! lazily and, for SQLite, read only: the CRM's data is never written.

use std::str::FromStr;
use std::time::Duration;

use serde_json::Value as Json;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::{CrmError, CrmRecord};
use crate::config::crm::{SqlBackend, SqlCrmSection, SqlIdent};
use crate::phone::{DialPlan, E164};

/// Connections kept to the CRM's database: lookups are short and one per queued call.
const MAX_CONNECTIONS: u32 = 4;

/// Placeholders in the query: the most forms [`DialPlan::written_forms`] gives.
const FORMS: usize = 4;

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The configured table, its query and a lazily opened pool.
pub struct SqlCrm {
    pool: Pool,
    query: String,
    /// Names of the selected columns after the name: id, account, email (each
    /// optional) and the attributes.
    id: bool,
    account: bool,
    email: bool,
    attributes: Vec<String>,
    plan: DialPlan,
    timeout: Duration,
}

impl SqlCrm {
    pub fn new(config: &SqlCrmSection, plan: DialPlan) -> Result<SqlCrm, CrmError> {
        let timeout = config.timeout.0;
        let pool = match config.url.backend {
            SqlBackend::Sqlite => {
                let options = SqliteConnectOptions::from_str(&config.url.url)?.read_only(true);
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(MAX_CONNECTIONS)
                        .acquire_timeout(timeout)
                        .connect_lazy_with(options),
                )
            }
            SqlBackend::Postgres => {
                let options = PgConnectOptions::from_str(&config.url.url)?;
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(MAX_CONNECTIONS)
                        .acquire_timeout(timeout)
                        .connect_lazy_with(options),
                )
            }
        };
        Ok(SqlCrm {
            pool,
            query: query(config),
            id: config.id_column.is_some(),
            account: config.account_column.is_some(),
            email: config.email_column.is_some(),
            attributes: config
                .attribute_columns
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            plan,
            timeout,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn find(&self, e164: &E164) -> Result<Option<CrmRecord>, CrmError> {
        let mut forms = self.plan.written_forms(e164);
        while forms.len() < FORMS {
            forms.push(e164.as_str().to_owned());
        }
        macro_rules! fetch {
            ($pool:expr) => {{
                let mut q = sqlx::query(sqlx::AssertSqlSafe(self.query.clone()));
                for form in &forms {
                    q = q.bind(form.clone());
                }
                match q.fetch_optional($pool).await? {
                    Some(row) => Some(
                        (0..row.len())
                            .map(|i| row.try_get::<Option<String>, _>(i))
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    None => None,
                }
            }};
        }
        let values = match &self.pool {
            Pool::Sqlite(pool) => fetch!(pool),
            Pool::Postgres(pool) => fetch!(pool),
        };
        Ok(values.and_then(|v| self.record(v)))
    }

    /// The row's values in the query's column order; `None` without a name.
    fn record(&self, values: Vec<Option<String>>) -> Option<CrmRecord> {
        let mut values = values
            .into_iter()
            .map(|v| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()));
        let name = values.next().flatten()?;
        let mut optional = |wanted: bool| {
            if wanted {
                values.next().flatten()
            } else {
                None
            }
        };
        let id = optional(self.id);
        let account = optional(self.account);
        let email = optional(self.email);
        let attributes = self
            .attributes
            .iter()
            .zip(values)
            .filter_map(|(k, v)| Some((k.clone(), Json::String(v?))))
            .collect();
        Some(CrmRecord {
            id,
            name,
            account,
            email,
            attributes,
        })
    }
}

/// The lookup query for a section; every name in it is a checked [`SqlIdent`].
fn query(config: &SqlCrmSection) -> String {
    let columns: Vec<&SqlIdent> = std::iter::once(&config.name_column)
        .chain(&config.id_column)
        .chain(&config.account_column)
        .chain(&config.email_column)
        .chain(&config.attribute_columns)
        .collect();
    let select = columns
        .iter()
        .map(|c| format!("CAST({c} AS TEXT)"))
        .collect::<Vec<_>>()
        .join(", ");
    let params = (1..=FORMS)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {select} FROM {} WHERE {} IN ({params}) LIMIT 1",
        config.table, config.phone_column
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> SqlCrmSection {
        toml::from_str(&format!(
            "url = \"sqlite::memory:\"\ntable = \"crm_contacts\"\nphone-column = \"tel\"\n\
             name-column = \"full_name\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_query_names_only_configured_columns() {
        let q = query(&section(
            "account-column = \"acct\"\nattribute-columns = [\"tier\"]\n",
        ));
        assert_eq!(
            q,
            "SELECT CAST(full_name AS TEXT), CAST(acct AS TEXT), CAST(tier AS TEXT) \
             FROM crm_contacts WHERE tel IN ($1, $2, $3, $4) LIMIT 1"
        );
    }

    #[tokio::test]
    async fn a_row_is_found_by_the_national_form_and_read_as_text() {
        let dir = std::env::temp_dir().join(format!("crm-sql-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("crm.db");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        for sql in [
            "CREATE TABLE crm_contacts (tel TEXT, full_name TEXT, acct INTEGER, tier TEXT)",
            "INSERT INTO crm_contacts VALUES ('02079460958', 'Grace Hopper', 1906, NULL)",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        let mut config = section("account-column = \"acct\"\nattribute-columns = [\"tier\"]\n");
        config.url = format!("sqlite://{}", file.display()).try_into().unwrap();
        let plan = DialPlan::new(Some("44"), "0", "00").unwrap();
        let crm = SqlCrm::new(&config, plan.clone()).unwrap();
        let grace = crm
            .find(&crate::phone::normalise("+442079460958", &plan).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(grace.name, "Grace Hopper");
        assert_eq!(grace.account.as_deref(), Some("1906"));
        assert!(grace.attributes.is_empty(), "NULL is left out");
        let nobody = crate::phone::normalise("+442079460000", &plan).unwrap();
        assert_eq!(crm.find(&nobody).await.unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
