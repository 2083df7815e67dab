//! [`VersionStore`]: every version of every value of one register, one row
//! a version, and the register's change counter.

use std::{collections::HashMap, fmt, marker::PhantomData, sync::Arc, time::Duration};

use sqlx::{AssertSqlSafe, Row};

use super::db::{ConnectError, Db, now_micros, on_db};

/// How old an uncommitted version must be before a new change may take its
/// number: far longer than an audit append can take.
pub const STALE_RESERVATION: Duration = Duration::from_secs(60);

/// What names one register in the database. The names are fixed in the
/// code, never taken from input, and are part of the schema: changing one
/// orphans every version already stored.
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    /// What one value is called in messages: `agreement`, `issuer`.
    pub noun: &'static str,
    /// A change to the register, as log lines name it.
    pub change: &'static str,
    /// The table of versions.
    pub versions: &'static str,
    /// Its key column.
    pub key: &'static str,
    /// Its column for the agency a value belongs to.
    pub party: &'static str,
    /// The one-row table of the change counter.
    pub epoch: &'static str,
    /// The PostgreSQL channel a committed change is announced on.
    pub channel: &'static str,
    /// The advisory lock that keeps replicas starting together from
    /// creating the tables at once.
    pub schema_lock: i64,
}

/// A value a register holds: it names its key, version, agency and status,
/// and reads and writes its own canonical text.
pub trait Versioned: Sized + Send + Sync + 'static {
    /// Where this register lives.
    const TABLES: Tables;
    /// The key its versions share.
    fn key(&self) -> &str;
    /// Its version, from 1.
    fn version(&self) -> u32;
    /// The agency it belongs to.
    fn party(&self) -> &str;
    /// Its status, as stored.
    fn status(&self) -> &str;
    /// Its canonical text and the content hash of that text.
    fn canonical(&self) -> Result<(String, String), String>;
    /// A stored version read back; `Err` says what is wrong with it.
    fn parse(key: &str, version: u32, body: &str, status: &str) -> Result<Self, String>;
}

/// What can go wrong reading or writing a register.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the statement.
    #[error("{register} store: {source}")]
    Database {
        /// The register's noun.
        register: &'static str,
        /// What the database said.
        source: sqlx::Error,
    },
    /// A stored version no longer parses: someone edited the table by hand.
    #[error("{noun} `{key}` version {version} as stored is not valid: {message}")]
    Corrupt {
        /// The register's noun.
        noun: &'static str,
        /// The value's key.
        key: String,
        /// The version.
        version: u32,
        /// What is wrong.
        message: String,
    },
    /// The change is based on a version that is no longer current.
    #[error("{0}")]
    Conflict(String),
    /// The URL names no database a register can use.
    #[error("{register} store: unsupported database URL `{url}`")]
    Url {
        /// The register's noun.
        register: &'static str,
        /// The URL, without any password.
        url: String,
    },
    /// The ledger could not be indexed.
    #[error("ledger index: {0}")]
    Ledger(#[from] liaison_ledger::LedgerError),
}

/// Who made a change and why.
#[derive(Debug, Clone)]
pub struct Change {
    /// The agency of whoever made it.
    pub agency: String,
    /// Their subject id, or the file it was imported from.
    pub by: String,
    /// Why.
    pub justification: String,
}

/// A version reserved but not yet in force.
#[derive(Debug, Clone)]
pub struct Reserved<T> {
    /// The value at its new version.
    pub value: T,
    /// The content hash stored with it.
    pub content_hash: String,
}

/// One committed version with its history.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    /// The value at this version.
    pub value: T,
    /// The content hash stored with it.
    pub content_hash: String,
    /// Who changed it, and why.
    pub change: Change,
    /// When, in Unix microseconds.
    pub recorded_at_micros: i64,
    /// The audit entry that recorded the change.
    pub audit_entry_id: String,
}

/// The register of `T`s.
pub struct VersionStore<T> {
    db: Db,
    url: String,
    sql: Arc<Statements>,
    values: PhantomData<fn() -> T>,
}

impl<T> Clone for VersionStore<T> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            url: self.url.clone(),
            sql: self.sql.clone(),
            values: PhantomData,
        }
    }
}

impl<T: Versioned> fmt::Debug for VersionStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionStore")
            .field("versions", &T::TABLES.versions)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// A history row before its value is parsed.
type HistoryRow = (i64, String, String, String, Change, i64, String);

impl<T: Versioned> VersionStore<T> {
    /// Opens the register in the database at `url` (the ledger's), creating
    /// its tables if needed.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let db = Db::connect(url).await.map_err(|e| match e {
            ConnectError::Url(url) => StoreError::Url {
                register: T::TABLES.noun,
                url,
            },
            ConnectError::Database(source) => database::<T>(source),
        })?;
        Self::on(db, url).await
    }

    /// Opens the register in the same database, and on the same pool, as
    /// `other`, creating its tables if needed.
    pub async fn beside<U>(other: &VersionStore<U>) -> Result<Self, StoreError> {
        Self::on(other.db.clone(), &other.url).await
    }

    async fn on(db: Db, url: &str) -> Result<Self, StoreError> {
        let store = Self {
            db,
            url: url.to_owned(),
            sql: Arc::new(Statements::of(&T::TABLES)),
            values: PhantomData,
        };
        store.create_schema().await.map_err(database::<T>)?;
        Ok(store)
    }

    async fn create_schema(&self) -> Result<(), sqlx::Error> {
        match &self.db {
            Db::Sqlite(pool) => {
                for statement in &self.sql.schema {
                    sqlx::query(AssertSqlSafe(statement.as_str()))
                        .execute(pool)
                        .await?;
                }
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(T::TABLES.schema_lock)
                    .execute(&mut *tx)
                    .await?;
                for statement in &self.sql.schema {
                    sqlx::query(AssertSqlSafe(statement.as_str()))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// A listener for committed changes, on PostgreSQL; `None` on SQLite,
    /// where replicas (processes on one file) rely on polling.
    pub async fn listener(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match &self.db {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(_) => {
                let listen = async {
                    let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
                    listener.listen(T::TABLES.channel).await?;
                    Ok(Some(listener))
                };
                listen.await.map_err(database::<T>)
            }
        }
    }

    /// A counter every committed change increments: cheap to poll.
    pub async fn epoch(&self) -> Result<i64, StoreError> {
        let sql = AssertSqlSafe(self.sql.epoch.as_str());
        let epoch: Result<i64, sqlx::Error> = on_db!(&self.db, pool => {
            sqlx::query_scalar(sql).fetch_one(pool).await
        });
        epoch.map_err(database::<T>)
    }

    /// Each value's latest committed version, whatever its status, in key
    /// order.
    pub async fn current(&self) -> Result<Vec<T>, StoreError> {
        let sql = AssertSqlSafe(self.sql.current.as_str());
        let rows: Result<Vec<(String, i64, String, String)>, sqlx::Error> =
            on_db!(&self.db, pool => sqlx::query_as(sql).fetch_all(pool).await);
        rows.map_err(database::<T>)?
            .into_iter()
            .map(|(key, version, body, status)| parse(&key, version, &body, &status))
            .collect()
    }

    /// The latest committed version of one value.
    pub async fn latest(&self, key: &str) -> Result<Option<T>, StoreError> {
        let sql = AssertSqlSafe(self.sql.latest.as_str());
        let row: Result<Option<(i64, String, String)>, sqlx::Error> = on_db!(&self.db, pool => {
            sqlx::query_as(sql).bind(key).fetch_optional(pool).await
        });
        row.map_err(database::<T>)?
            .map(|(version, body, status)| parse(key, version, &body, &status))
            .transpose()
    }

    /// The latest committed version of one value made by `by` (a file's
    /// imports, for instance).
    pub async fn latest_by(&self, key: &str, by: &str) -> Result<Option<T>, StoreError> {
        let sql = AssertSqlSafe(self.sql.latest_by.as_str());
        let row: Result<Option<(i64, String, String)>, sqlx::Error> = on_db!(&self.db, pool => {
            sqlx::query_as(sql).bind(key).bind(by).fetch_optional(pool).await
        });
        row.map_err(database::<T>)?
            .map(|(version, body, status)| parse(key, version, &body, &status))
            .transpose()
    }

    /// The keys `by` has committed a version of, in order.
    pub async fn keys_changed_by(&self, by: &str) -> Result<Vec<String>, StoreError> {
        let sql = AssertSqlSafe(self.sql.changed_by.as_str());
        let keys: Result<Vec<String>, sqlx::Error> = on_db!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(by).fetch_all(pool).await
        });
        keys.map_err(database::<T>)
    }

    /// Every committed version of one value, oldest first.
    pub async fn versions(&self, key: &str) -> Result<Vec<Stored<T>>, StoreError> {
        let sql = AssertSqlSafe(self.sql.versions.as_str());
        let rows: Result<Vec<HistoryRow>, sqlx::Error> = on_db!(&self.db, pool => {
            match sqlx::query(sql).bind(key).fetch_all(pool).await {
                Ok(rows) => rows.iter().map(|row| {
                    Ok((
                        row.try_get(0)?,
                        row.try_get(1)?,
                        row.try_get(2)?,
                        row.try_get(3)?,
                        Change {
                            agency: row.try_get(4)?,
                            by: row.try_get(5)?,
                            justification: row.try_get(6)?,
                        },
                        row.try_get(7)?,
                        row.try_get(8)?,
                    ))
                }).collect(),
                Err(e) => Err(e),
            }
        });
        rows.map_err(database::<T>)?
            .into_iter()
            .map(
                |(
                    version,
                    body,
                    status,
                    content_hash,
                    change,
                    recorded_at_micros,
                    audit_entry_id,
                )| {
                    Ok(Stored {
                        value: parse(key, version, &body, &status)?,
                        content_hash,
                        change,
                        recorded_at_micros,
                        audit_entry_id,
                    })
                },
            )
            .collect()
    }

    /// The agency of every value ever committed, by key. A value's agency
    /// is fixed for all its versions.
    pub async fn parties(&self) -> Result<HashMap<String, String>, StoreError> {
        let sql = AssertSqlSafe(self.sql.parties.as_str());
        let rows: Result<Vec<(String, String)>, sqlx::Error> =
            on_db!(&self.db, pool => sqlx::query_as(sql).fetch_all(pool).await);
        Ok(rows.map_err(database::<T>)?.into_iter().collect())
    }

    /// The content hash of one stored version (committed or not), and
    /// whether it is committed.
    pub async fn stored_hash(
        &self,
        key: &str,
        version: u32,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let sql = AssertSqlSafe(self.sql.stored_hash.as_str());
        let row: Result<Option<(String, i32)>, sqlx::Error> = on_db!(&self.db, pool => {
            sqlx::query_as(sql)
                .bind(key)
                .bind(i64::from(version))
                .fetch_optional(pool)
                .await
        });
        Ok(row
            .map_err(database::<T>)?
            .map(|(hash, committed)| (hash, committed == 1)))
    }

    /// Stores `value` at its version, which must follow `base` (the latest
    /// committed version; 0 for a new value), not yet in force. Fails with
    /// [`StoreError::Conflict`] if `base` is not the latest committed
    /// version or another change holds the number.
    pub async fn reserve(
        &self,
        value: T,
        base: u32,
        change: &Change,
    ) -> Result<Reserved<T>, StoreError> {
        let noun = T::TABLES.noun;
        let key = value.key().to_owned();
        let latest = self.latest(&key).await?.map_or(0, |v| v.version());
        if latest != base {
            return Err(StoreError::Conflict(format!(
                "{noun} `{key}` is at version {latest}, not {base}; read it again"
            )));
        }
        if value.version() <= base {
            return Err(StoreError::Conflict(format!(
                "{noun} `{key}` version {} does not follow version {base}",
                value.version()
            )));
        }
        let (body, content_hash) = value.canonical().map_err(|message| StoreError::Corrupt {
            noun,
            key: key.clone(),
            version: value.version(),
            message,
        })?;
        let now = now_micros();
        let stale = now.saturating_sub(i64::try_from(STALE_RESERVATION.as_micros()).unwrap_or(0));
        let (clear, insert) = (
            AssertSqlSafe(self.sql.clear.as_str()),
            AssertSqlSafe(self.sql.insert.as_str()),
        );
        let inserted: Result<u64, sqlx::Error> = on_db!(&self.db, pool => {
            match sqlx::query(clear).bind(&key).bind(stale).execute(pool).await {
                Ok(_) => sqlx::query(insert)
                    .bind(&key)
                    .bind(i64::from(value.version()))
                    .bind(&body)
                    .bind(&content_hash)
                    .bind(value.party())
                    .bind(value.status())
                    .bind(&change.agency)
                    .bind(&change.by)
                    .bind(&change.justification)
                    .bind(now)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected()),
                Err(e) => return Err(database::<T>(e)),
            }
        });
        match inserted {
            Ok(_) => Ok(Reserved {
                value,
                content_hash,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("another change to {noun} `{key}` is being recorded; read it again"),
            )),
            Err(e) => Err(database::<T>(e)),
        }
    }

    /// Puts a reserved version in force, naming the audit entry that
    /// recorded it, and tells every replica: the epoch moves and, on
    /// PostgreSQL, the channel is notified, in the commit's transaction.
    pub async fn commit(
        &self,
        reserved: &Reserved<T>,
        audit_entry_id: &str,
    ) -> Result<(), StoreError> {
        let key = reserved.value.key();
        let version = i64::from(reserved.value.version());
        let (commit, bump) = (
            AssertSqlSafe(self.sql.commit.as_str()),
            AssertSqlSafe(self.sql.bump.as_str()),
        );
        // Only PostgreSQL has a channel; SQLite replicas poll the epoch.
        let notify = matches!(self.db, Db::Postgres(_));
        let updated: Result<u64, sqlx::Error> = on_db!(&self.db, pool => {
            async {
                let mut tx = pool.begin().await?;
                let n = sqlx::query(commit)
                    .bind(key)
                    .bind(version)
                    .bind(audit_entry_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(bump).execute(&mut *tx).await?;
                if notify {
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(T::TABLES.channel)
                        .bind(format!("{key}@{version}"))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(n)
            }
            .await
        });
        if updated.map_err(database::<T>)? == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "{} `{key}` version {version} was no longer reserved",
                T::TABLES.noun
            )))
        }
    }

    /// Drops a reservation whose audit append failed.
    pub async fn abandon(&self, reserved: &Reserved<T>) -> Result<(), StoreError> {
        let sql = AssertSqlSafe(self.sql.abandon.as_str());
        let done: Result<_, sqlx::Error> = on_db!(&self.db, pool => {
            sqlx::query(sql)
                .bind(reserved.value.key())
                .bind(i64::from(reserved.value.version()))
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        });
        done.map(|_| ()).map_err(database::<T>)
    }

    /// Closes the pool, which any register opened beside this one shares.
    pub async fn close(&self) {
        on_db!(&self.db, pool => pool.close().await);
    }
}

fn database<T: Versioned>(source: sqlx::Error) -> StoreError {
    StoreError::Database {
        register: T::TABLES.noun,
        source,
    }
}

fn parse<T: Versioned>(key: &str, version: i64, body: &str, status: &str) -> Result<T, StoreError> {
    let version = u32::try_from(version).unwrap_or(0);
    T::parse(key, version, body, status).map_err(|message| StoreError::Corrupt {
        noun: T::TABLES.noun,
        key: key.to_owned(),
        version,
        message,
    })
}

/// One register's statements, written once from its [`Tables`].
#[derive(Debug)]
struct Statements {
    schema: [String; 3],
    epoch: String,
    current: String,
    latest: String,
    latest_by: String,
    changed_by: String,
    versions: String,
    parties: String,
    stored_hash: String,
    clear: String,
    insert: String,
    commit: String,
    bump: String,
    abandon: String,
}

impl Statements {
    fn of(t: &Tables) -> Self {
        let Tables {
            versions: table,
            key,
            party,
            epoch,
            ..
        } = *t;
        Self {
            schema: [
                format!(
                    "CREATE TABLE IF NOT EXISTS {table} (
        {key} TEXT NOT NULL,
        version BIGINT NOT NULL,
        body TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        {party} TEXT NOT NULL,
        status TEXT NOT NULL,
        changed_by_agency TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        justification TEXT NOT NULL,
        recorded_at BIGINT NOT NULL,
        audit_entry_id TEXT NOT NULL DEFAULT '',
        committed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY ({key}, version)
    )"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {epoch} (
        id INTEGER PRIMARY KEY,
        epoch BIGINT NOT NULL
    )"
                ),
                format!(
                    "INSERT INTO {epoch} (id, epoch) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
                ),
            ],
            epoch: format!("SELECT epoch FROM {epoch} WHERE id = 1"),
            current: format!(
                "SELECT v.{key}, v.version, v.body, v.status FROM {table} v \
                 WHERE v.committed = 1 AND v.version = (SELECT max(w.version) \
                 FROM {table} w WHERE w.{key} = v.{key} AND w.committed = 1) \
                 ORDER BY v.{key}"
            ),
            latest: format!(
                "SELECT version, body, status FROM {table} \
                 WHERE {key} = $1 AND committed = 1 ORDER BY version DESC LIMIT 1"
            ),
            latest_by: format!(
                "SELECT version, body, status FROM {table} \
                 WHERE {key} = $1 AND changed_by = $2 AND committed = 1 \
                 ORDER BY version DESC LIMIT 1"
            ),
            changed_by: format!(
                "SELECT DISTINCT {key} FROM {table} \
                 WHERE changed_by = $1 AND committed = 1 ORDER BY {key}"
            ),
            versions: format!(
                "SELECT version, body, status, content_hash, changed_by_agency, changed_by, \
                 justification, recorded_at, audit_entry_id FROM {table} \
                 WHERE {key} = $1 AND committed = 1 ORDER BY version"
            ),
            parties: format!("SELECT DISTINCT {key}, {party} FROM {table} WHERE committed = 1"),
            stored_hash: format!(
                "SELECT content_hash, committed FROM {table} WHERE {key} = $1 AND version = $2"
            ),
            clear: format!(
                "DELETE FROM {table} WHERE {key} = $1 AND committed = 0 AND recorded_at < $2"
            ),
            insert: format!(
                "INSERT INTO {table} ({key}, version, body, content_hash, {party}, status, \
                 changed_by_agency, changed_by, justification, recorded_at, committed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)"
            ),
            commit: format!(
                "UPDATE {table} SET committed = 1, audit_entry_id = $3 \
                 WHERE {key} = $1 AND version = $2 AND committed = 0"
            ),
            bump: format!("UPDATE {epoch} SET epoch = epoch + 1 WHERE id = 1"),
            abandon: format!(
                "DELETE FROM {table} WHERE {key} = $1 AND version = $2 AND committed = 0"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements existing databases were created by, word for word:
    /// SQLite keeps a table's `CREATE` text, so a register's schema must
    /// not drift from it.
    #[test]
    fn the_schema_is_the_one_databases_already_hold() {
        let sql = Statements::of(&<liaison_policy::Agreement as Versioned>::TABLES);
        assert_eq!(
            sql.schema[0],
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
    )"
        );
        assert_eq!(
            sql.schema[1],
            "CREATE TABLE IF NOT EXISTS policy_epoch (
        id INTEGER PRIMARY KEY,
        epoch BIGINT NOT NULL
    )"
        );
        assert_eq!(
            sql.commit,
            "UPDATE agreement_versions SET committed = 1, audit_entry_id = $3 \
             WHERE isa_id = $1 AND version = $2 AND committed = 0"
        );
    }
}
