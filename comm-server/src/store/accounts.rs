//! SIP accounts: the registrar's credential table. Rows hold HA1 digests only.

use super::{Record, SipAccount, Store, StoreError, database, with_pool};

// A macro, not a const, so `concat!` can build `&'static str` queries: sqlx 0.9 only
// takes dynamic SQL behind an explicit `AssertSqlSafe`.
macro_rules! columns {
    () => {
        "username, realm, ha1_md5, ha1_sha256, display_name, enabled"
    };
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    username: String,
    realm: String,
    ha1_md5: String,
    ha1_sha256: String,
    display_name: Option<String>,
    enabled: bool,
}

impl From<AccountRow> for SipAccount {
    fn from(row: AccountRow) -> Self {
        SipAccount {
            username: row.username,
            realm: row.realm,
            ha1_md5: row.ha1_md5,
            ha1_sha256: row.ha1_sha256,
            display_name: row.display_name,
            enabled: row.enabled,
        }
    }
}

impl Store {
    /// Creates the account, or replaces every field of the one with the same username.
    pub async fn upsert_sip_account(&self, account: &SipAccount) -> Result<(), StoreError> {
        let sql =
            "INSERT INTO sip_accounts (username, realm, ha1_md5, ha1_sha256, display_name, enabled)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (username) DO UPDATE SET
                       realm = excluded.realm,
                       ha1_md5 = excluded.ha1_md5,
                       ha1_sha256 = excluded.ha1_sha256,
                       display_name = excluded.display_name,
                       enabled = excluded.enabled";
        with_pool!(self, pool => sqlx::query(sql)
            .bind(&account.username)
            .bind(&account.realm)
            .bind(&account.ha1_md5)
            .bind(&account.ha1_sha256)
            .bind(&account.display_name)
            .bind(account.enabled)
            .execute(pool)
            .await
            .map_err(database("saving a SIP account"))?
            .rows_affected());
        Ok(())
    }

    /// The account with exactly this username (user parts compare case-sensitively,
    /// RFC 3261 §19.1.4), whether enabled or not.
    pub async fn sip_account(&self, username: &str) -> Result<Option<SipAccount>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM sip_accounts WHERE username = $1"
        );
        let row = with_pool!(self, pool => sqlx::query_as::<_, AccountRow>(sql)
            .bind(username)
            .fetch_optional(pool)
            .await
            .map_err(database("reading a SIP account"))?);
        Ok(row.map(SipAccount::from))
    }

    /// Every account, ordered by username.
    pub async fn sip_accounts(&self) -> Result<Vec<SipAccount>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM sip_accounts");
        let rows = with_pool!(self, pool => sqlx::query_as::<_, AccountRow>(sql)
            .fetch_all(pool)
            .await
            .map_err(database("listing SIP accounts"))?);
        let mut accounts: Vec<SipAccount> = rows.into_iter().map(SipAccount::from).collect();
        // Sorted here, not by ORDER BY: PostgreSQL would use the database's collation
        // and SQLite plain bytes, and both backends must answer alike.
        accounts.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(accounts)
    }

    /// Deletes the account; [`StoreError::NotFound`] if there was none. Its bindings are
    /// left for the registrar to remove (they expire on their own anyway).
    pub async fn delete_sip_account(&self, username: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM sip_accounts WHERE username = $1";
        let deleted = with_pool!(self, pool => sqlx::query(sql)
            .bind(username)
            .execute(pool)
            .await
            .map_err(database("deleting a SIP account"))?
            .rows_affected());
        if deleted == 0 {
            return Err(StoreError::NotFound {
                record: Record::SipAccount,
                key: username.to_owned(),
            });
        }
        Ok(())
    }
}
