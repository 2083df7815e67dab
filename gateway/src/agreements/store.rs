//! [`AgreementStore`]: every version of every agreement, in the ledger's
//! database, so all replicas enforce the same register.
//!
//! A version is written in two steps around its audit entry: reserved
//! (stored but not yet in force), then committed with the id of the entry
//! that recorded it. Only committed versions are ever loaded, so a change
//! whose audit append failed never takes effect anywhere; a reservation left
//! by a crashed process is cleared once it is older than
//! [`STALE_RESERVATION`].

use std::{collections::HashMap, time::Duration};

use liaison_policy::{Agreement, PolicySet};
use sqlx::{
    Row,
    postgres::{PgPool, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions},
};

/// How old an uncommitted version must be before a new change may take its
/// number: far longer than an audit append can take.
pub const STALE_RESERVATION: Duration = Duration::from_secs(60);

/// The PostgreSQL channel a committed change is announced on.
pub const CHANNEL: &str = "liaison_policy";

/// Guards concurrent schema creation by several replicas starting at once.
const SCHEMA_LOCK_KEY: i64 = i64::from_be_bytes(*b"policydb");

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS agreement_versions (
        isa_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        body TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        provider TEXT NOT NULL,
        status TEXT NOT NULL,
        changed_by_agency TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        justification TEXT NOT NULL,
        recorded_at BIGINT NOT NULL,
        audit_entry_id TEXT NOT NULL DEFAULT '',
        committed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (isa_id, version)
    )",
    "CREATE TABLE IF NOT EXISTS policy_epoch (
        id INTEGER PRIMARY KEY,
        epoch BIGINT NOT NULL
    )",
    "INSERT INTO policy_epoch (id, epoch) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
];

/// What can go wrong reading or writing the register.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the statement.
    #[error("agreement store: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored version no longer parses: someone edited the table by hand.
    #[error("agreement `{isa_id}` version {version} as stored is not valid: {message}")]
    Corrupt {
        /// The agreement.
        isa_id: String,
        /// The version.
        version: u32,
        /// What is wrong.
        message: String,
    },
    /// The change is based on a version that is no longer current.
    #[error("{0}")]
    Conflict(String),
    /// The URL names no database this store can use.
    #[error("agreement store: unsupported database URL `{0}`")]
    Url(String),
    /// The ledger could not be indexed.
    #[error("ledger index: {0}")]
    Ledger(#[from] liaison_ledger::LedgerError),
}

/// Who made a change and why.
#[derive(Debug, Clone)]
pub struct Change {
    /// The agency of whoever made it.
    pub agency: String,
    /// Their subject id, or `policy-file`.
    pub by: String,
    /// Why.
    pub justification: String,
}

/// A version reserved but not yet in force.
#[derive(Debug, Clone)]
pub struct Reserved {
    /// The agreement at its new version.
    pub agreement: Agreement,
    /// Its content hash.
    pub content_hash: String,
}

/// One committed version with its history.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// The agreement at this version.
    pub agreement: Agreement,
    /// Its content hash.
    pub content_hash: String,
    /// Who changed it, and why.
    pub change: Change,
    /// When, in Unix microseconds.
    pub recorded_at_micros: i64,
    /// The audit entry that recorded the change.
    pub audit_entry_id: String,
}

/// The register's pool, shared with the trust registry's store so both
/// registers live in the ledger's database on one pool (SQLite has one
/// writer anyway).
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same statement on whichever pool the store has.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::agreements::store::Db::Sqlite($pool) => $body,
            $crate::agreements::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// The register of agreements.
#[derive(Debug, Clone)]
pub struct AgreementStore {
    db: Db,
    url: String,
}

impl AgreementStore {
    /// Opens the register in the database at `url` (the ledger's), creating
    /// its tables if needed.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let db = if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url
                .parse::<SqliteConnectOptions>()?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5));
            // One connection: SQLite has one writer anyway, and an in-memory
            // database exists only on the connection that made it.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await?;
            Db::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            Db::Postgres(pool)
        } else {
            return Err(StoreError::Url(redact(url)));
        };
        let store = Self {
            db,
            url: url.to_owned(),
        };
        store.create_schema().await?;
        Ok(store)
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(pool) => {
                for &statement in SCHEMA {
                    sqlx::query(statement).execute(pool).await?;
                }
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(SCHEMA_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                for &statement in SCHEMA {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// The pool and URL, for the other register kept in the same database.
    pub(crate) fn database(&self) -> (Db, &str) {
        (self.db.clone(), &self.url)
    }

    /// A listener for committed changes, on PostgreSQL; `None` on SQLite,
    /// where replicas (processes on one file) rely on polling.
    pub async fn listener(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match &self.db {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(_) => {
                let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
                listener.listen(CHANNEL).await?;
                Ok(Some(listener))
            }
        }
    }

    /// A counter every committed change increments: cheap to poll.
    pub async fn epoch(&self) -> Result<i64, StoreError> {
        let epoch: i64 = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT epoch FROM policy_epoch WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        Ok(epoch)
    }

    /// The agreements in force: each one's latest committed version.
    pub async fn current(&self) -> Result<Vec<Agreement>, StoreError> {
        const SQL: &str = "SELECT v.isa_id, v.version, v.body FROM agreement_versions v \
            WHERE v.committed = 1 AND v.version = (SELECT max(w.version) \
            FROM agreement_versions w WHERE w.isa_id = v.isa_id AND w.committed = 1) \
            ORDER BY v.isa_id";
        let rows: Vec<(String, i64, String)> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL).fetch_all(pool).await?
        });
        rows.into_iter()
            .map(|(isa_id, version, body)| parse(&isa_id, version, &body))
            .collect()
    }

    /// The latest committed version of one agreement.
    pub async fn latest(&self, isa_id: &str) -> Result<Option<Agreement>, StoreError> {
        const SQL: &str = "SELECT version, body FROM agreement_versions \
            WHERE isa_id = $1 AND committed = 1 ORDER BY version DESC LIMIT 1";
        let row: Option<(i64, String)> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL).bind(isa_id).fetch_optional(pool).await?
        });
        row.map(|(version, body)| parse(isa_id, version, &body))
            .transpose()
    }

    /// Every committed version of one agreement, oldest first.
    pub async fn versions(&self, isa_id: &str) -> Result<Vec<StoredVersion>, StoreError> {
        const SQL: &str = "SELECT version, body, content_hash, changed_by_agency, changed_by, \
            justification, recorded_at, audit_entry_id FROM agreement_versions \
            WHERE isa_id = $1 AND committed = 1 ORDER BY version";
        let rows = on_db!(&self.db, pool => {
            sqlx::query(SQL)
                .bind(isa_id)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| {
                    Ok::<_, sqlx::Error>((
                        row.try_get::<i64, _>(0)?,
                        row.try_get::<String, _>(1)?,
                        row.try_get::<String, _>(2)?,
                        Change {
                            agency: row.try_get(3)?,
                            by: row.try_get(4)?,
                            justification: row.try_get(5)?,
                        },
                        row.try_get::<i64, _>(6)?,
                        row.try_get::<String, _>(7)?,
                    ))
                })
                .collect::<Result<Vec<_>, _>>()?
        });
        rows.into_iter()
            .map(
                |(version, body, content_hash, change, recorded_at_micros, audit_entry_id)| {
                    Ok(StoredVersion {
                        agreement: parse(isa_id, version, &body)?,
                        content_hash,
                        change,
                        recorded_at_micros,
                        audit_entry_id,
                    })
                },
            )
            .collect()
    }

    /// The providing agency of every agreement ever committed, by id. An
    /// agreement's provider is fixed for all its versions.
    pub async fn providers(&self) -> Result<HashMap<String, String>, StoreError> {
        const SQL: &str =
            "SELECT DISTINCT isa_id, provider FROM agreement_versions WHERE committed = 1";
        let rows: Vec<(String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL).fetch_all(pool).await?
        });
        Ok(rows.into_iter().collect())
    }

    /// The content hash of one stored version (committed or not), if any.
    pub async fn stored_hash(
        &self,
        isa_id: &str,
        version: u32,
    ) -> Result<Option<(String, bool)>, StoreError> {
        const SQL: &str = "SELECT content_hash, committed FROM agreement_versions \
            WHERE isa_id = $1 AND version = $2";
        let row: Option<(String, i32)> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL)
                .bind(isa_id)
                .bind(i64::from(version))
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(hash, committed)| (hash, committed == 1)))
    }

    /// Stores `agreement` at its version, which must follow `base` (the
    /// latest committed version; 0 for a new agreement), not yet in force.
    /// Fails with [`StoreError::Conflict`] if `base` is not the latest
    /// committed version or another change holds the number.
    pub async fn reserve(
        &self,
        agreement: Agreement,
        base: u32,
        change: &Change,
    ) -> Result<Reserved, StoreError> {
        let latest = self.latest(&agreement.id).await?.map_or(0, |a| a.version);
        if latest != base {
            return Err(StoreError::Conflict(format!(
                "agreement `{}` is at version {latest}, not {base}; read it again",
                agreement.id
            )));
        }
        if agreement.version <= base {
            return Err(StoreError::Conflict(format!(
                "agreement `{}` version {} does not follow version {base}",
                agreement.id, agreement.version
            )));
        }
        let body = agreement.to_toml().map_err(|e| corrupt(&agreement, &e))?;
        let content_hash = agreement
            .content_hash()
            .map_err(|e| corrupt(&agreement, &e))?;
        let now = now_micros();
        let stale = now.saturating_sub(i64::try_from(STALE_RESERVATION.as_micros()).unwrap_or(0));
        const CLEAR: &str = "DELETE FROM agreement_versions WHERE isa_id = $1 AND committed = 0 AND recorded_at < $2";
        const INSERT: &str = "INSERT INTO agreement_versions (isa_id, version, body, \
            content_hash, provider, status, changed_by_agency, changed_by, justification, \
            recorded_at, committed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)";
        let inserted = on_db!(&self.db, pool => {
            sqlx::query(CLEAR).bind(&agreement.id).bind(stale).execute(pool).await?;
            sqlx::query(INSERT)
                .bind(&agreement.id)
                .bind(i64::from(agreement.version))
                .bind(&body)
                .bind(&content_hash)
                .bind(&agreement.provider)
                .bind(agreement.status.as_str())
                .bind(&change.agency)
                .bind(&change.by)
                .bind(&change.justification)
                .bind(now)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        });
        match inserted {
            Ok(_) => Ok(Reserved {
                agreement,
                content_hash,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(format!(
                    "another change to agreement `{}` is being recorded; read it again",
                    agreement.id
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Puts a reserved version in force, naming the audit entry that
    /// recorded it, and tells every replica.
    pub async fn commit(
        &self,
        reserved: &Reserved,
        audit_entry_id: &str,
    ) -> Result<(), StoreError> {
        const COMMIT: &str = "UPDATE agreement_versions SET committed = 1, audit_entry_id = $3 \
            WHERE isa_id = $1 AND version = $2 AND committed = 0";
        const BUMP: &str = "UPDATE policy_epoch SET epoch = epoch + 1 WHERE id = 1";
        let id = &reserved.agreement.id;
        let version = i64::from(reserved.agreement.version);
        let updated = match &self.db {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let n = sqlx::query(COMMIT)
                    .bind(id)
                    .bind(version)
                    .bind(audit_entry_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(BUMP).execute(&mut *tx).await?;
                tx.commit().await?;
                n
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let n = sqlx::query(COMMIT)
                    .bind(id)
                    .bind(version)
                    .bind(audit_entry_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(BUMP).execute(&mut *tx).await?;
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(format!("{id}@{version}"))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                n
            }
        };
        if updated == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "agreement `{id}` version {version} was no longer reserved"
            )))
        }
    }

    /// Drops a reservation whose audit append failed.
    pub async fn abandon(&self, reserved: &Reserved) -> Result<(), StoreError> {
        const SQL: &str =
            "DELETE FROM agreement_versions WHERE isa_id = $1 AND version = $2 AND committed = 0";
        on_db!(&self.db, pool => {
            sqlx::query(SQL)
                .bind(&reserved.agreement.id)
                .bind(i64::from(reserved.agreement.version))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        on_db!(&self.db, pool => pool.close().await);
    }
}

fn parse(isa_id: &str, version: i64, body: &str) -> Result<Agreement, StoreError> {
    let version = u32::try_from(version).unwrap_or(0);
    let corrupt = |message: String| StoreError::Corrupt {
        isa_id: isa_id.to_owned(),
        version,
        message,
    };
    let agreement = PolicySet::one_agreement(body).map_err(|e| corrupt(e.to_string()))?;
    if agreement.id != isa_id || agreement.version != version {
        return Err(corrupt(format!(
            "the text holds `{}` version {}",
            agreement.id, agreement.version
        )));
    }
    Ok(agreement)
}

fn corrupt(agreement: &Agreement, e: &liaison_policy::PolicyError) -> StoreError {
    StoreError::Corrupt {
        isa_id: agreement.id.clone(),
        version: agreement.version,
        message: e.to_string(),
    }
}

pub(crate) fn now_micros() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// The URL without any password, for messages.
fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => url.to_owned(),
    }
}
