//! Persistent storage: SIP accounts, registration bindings, call detail records (CDRs),
//! customers and their contact history, the ACD's durable event log and the voicemail
//! message index, and outbound campaigns (contact lists, do-not-call lists, attempts).
//!
//! Owns the database connection pool, the schema (`comm-server/migrations/{sqlite,postgres}`,
//! applied on [`Store::open`]) and the mapping between rows and the checked types in
//! [`model`]. SQLite is the default; PostgreSQL is used when the URL says `postgres://`.
//!
//! Must not own policy: it does not hash passwords (the digest module hands it HA1
//! strings), decide how long a binding lives (the registrar passes an absolute expiry),
//! or read a clock (every "now" is an argument, in Unix milliseconds).
//!
//! Both backends run the same SQL text: SQLite accepts PostgreSQL's `$1` placeholders,
//! and `ON CONFLICT` upserts exist in both. Queries are checked at run time, not by the
//! `query!` macros, so building needs no database.

mod accounts;
mod acd_events;
mod bindings;
mod campaigns;
mod cdrs;
mod customers;
pub mod model;
#[cfg(test)]
mod tests;
mod voicemail;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection};

pub use campaigns::{
    CampaignAttempt, CampaignContact, CampaignProgress, CampaignState, ContactState,
    DoNotCallLists, NewCampaignContact,
};
pub use customers::{
    Contact, ContactKind, Customer, CustomerKey, HistoryEntry, ImportFailure, ImportSummary,
    NewCustomer, ScreenPop, Upserted,
};
pub use model::{
    AcdEventRecord, Binding, Cdr, Direction, EndReason, HungUpBy, QValue, SipAccount, Transport,
    UnknownValue,
};
pub use model::{VoicemailHandling, VoicemailMessage};
pub use voicemail::LeftMessage;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How long a SQLite writer waits for another connection's lock before failing. Writes
/// are short (one row), so waiting a few seconds beats surfacing `SQLITE_BUSY`.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections per pool. Each call writes one CDR and each REGISTER one binding, so a
/// handful of connections covers a 2-core host; SQLite serialises writers anyway.
const MAX_CONNECTIONS: u32 = 8;

/// How long to wait for a pooled connection (or the first connection at open) before
/// reporting the database as unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on the database. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

// Names the backend only: the options hold the PostgreSQL password.
impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        };
        f.debug_struct("Store").field("backend", &backend).finish()
    }
}

/// Runs `$body` with `$pool` bound to whichever backend pool the store has. The body is
/// compiled once per backend, so each arm is type-checked against its own driver.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
use with_pool;

/// The kind of record an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    SipAccount,
    Cdr,
    VoicemailMessage,
    CampaignContact,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Record::SipAccount => "SIP account",
            Record::Cdr => "CDR",
            Record::VoicemailMessage => "voicemail message",
            Record::CampaignContact => "campaign contact",
        })
    }
}

/// Why a store operation failed. The messages name what failed and where, never SQL
/// text; the driver's error stays reachable through `source()` for logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres://`, or the driver rejected it.
    #[error(
        "database URL {url:?} is not usable: expected sqlite://PATH, sqlite::memory: or postgres://USER@HOST/DATABASE"
    )]
    BadUrl {
        /// The URL with any password removed.
        url: String,
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The database could not be opened or reached.
    #[error("cannot open database {location}")]
    Open {
        /// The SQLite file path, or the PostgreSQL URL without its password.
        location: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed for {location}")]
    Migrate {
        location: String,
        #[source]
        source: MigrateError,
    },
    /// A record that must be written once already exists; nothing was changed.
    #[error("{record} {key:?} already exists")]
    Duplicate { record: Record, key: String },
    /// A phone number given for one customer already belongs to another (one with a
    /// different external reference); nothing was changed: merging two customers is a
    /// decision for a person, not for an import.
    #[error("phone {phone} already belongs to customer {owner}")]
    PhoneTaken { phone: String, owner: i64 },
    #[error("{record} {key:?} not found")]
    NotFound { record: Record, key: String },
    /// A stored value does not parse back into its type (a hand-edited row, or a newer
    /// server's value read by an older one).
    #[error("stored {column} value {value:?} is not valid")]
    Corrupt { column: &'static str, value: String },
    /// Any other failure while talking to the database.
    #[error("database error while {operation}")]
    Database {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// Wraps a driver error with what we were doing, for `map_err`.
fn database(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { operation, source }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    ///
    /// - `sqlite://path/to/file.db` (relative) or `sqlite:///abs/file.db`: created if
    ///   missing (its directory must exist), WAL journal, foreign keys on, busy timeout.
    /// - `sqlite::memory:`: a private in-memory database for tests, one connection.
    /// - `postgres://user:password@host/database`: the database must exist.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let bad_url = |source| StoreError::BadUrl {
            url: redact(url),
            source,
        };
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(|e| bad_url(Some(e)))?;
            Pool::Sqlite(open_sqlite(options, is_sqlite_memory(url)).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| bad_url(Some(e)))?;
            Pool::Postgres(open_postgres(options, redact(url)).await?)
        } else {
            return Err(bad_url(None));
        };
        Ok(Store { pool })
    }

    /// Waits for in-flight queries, then closes every connection. SQLite checkpoints its
    /// WAL on the last close, so the file is complete on disk afterwards.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}

async fn open_sqlite(
    options: SqliteConnectOptions,
    memory: bool,
) -> Result<SqlitePool, StoreError> {
    let location = options.get_filename().display().to_string();
    let options = options.foreign_keys(true).busy_timeout(SQLITE_BUSY_TIMEOUT);
    let pool_options = SqlitePoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
    let (options, pool_options) = if memory {
        // An in-memory database lives as long as its last connection: keep exactly one,
        // forever, so the data outlives idle periods and every query sees the same tables.
        let pool_options = pool_options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
        (options, pool_options)
    } else {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        (options, pool_options.max_connections(MAX_CONNECTIONS))
    };
    let pool = pool_options
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Open {
            location: location.clone(),
            source,
        })?;
    SQLITE_MIGRATIONS
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate { location, source })?;
    Ok(pool)
}

async fn open_postgres(options: PgConnectOptions, location: String) -> Result<PgPool, StoreError> {
    let open_error = |source| StoreError::Open {
        location: location.clone(),
        source,
    };
    // One direct connection first: the pool retries a refused connection until its
    // acquire timeout, but a server started against a wrong URL should say so at once.
    let probe = options.connect().await.map_err(open_error)?;
    probe.close().await.map_err(open_error)?;
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(open_error)?;
    POSTGRES_MIGRATIONS
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate { location, source })?;
    Ok(pool)
}

/// Whether a `sqlite:` URL names an in-memory database (`sqlite::memory:`,
/// `sqlite://:memory:` or `?mode=memory`), which needs a pool of exactly one connection.
fn is_sqlite_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

/// The URL with the password (if any) replaced, so it can go into errors and logs.
fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut redacted = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
            match authority.rsplit_once('@') {
                Some((userinfo, _)) if userinfo.contains(':') => {
                    let user = userinfo.split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}:***{}", &rest[userinfo.len()..])
                }
                _ => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    // libpq-style URLs can also carry the password as a query parameter.
    if let Some(query) = query {
        let params: Vec<&str> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => param,
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&params.join("&"));
    }
    redacted
}
