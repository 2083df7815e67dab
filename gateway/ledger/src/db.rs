//! Opening the database, creating the schema, and the few statements that differ per backend.
//!
//! Both backends run the same queries wherever their SQL agrees (SQLite accepts PostgreSQL's
//! `$1` placeholders), so the ledger's behaviour is written once. [`dispatch!`] expands a block
//! once per backend, type-checking it against each driver, which keeps the code free of the
//! long generic bounds sqlx needs for database-agnostic functions.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::LedgerError;

/// A connection pool for one of the two backends.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The statements whose text differs between the backends.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// Starts an append transaction. SQLite's `BEGIN IMMEDIATE` takes the database write lock at
    /// once (waiting up to the busy timeout for another process), so two appenders never both
    /// read the head and then collide on the upgrade to a write lock.
    pub begin_write: &'static str,
    /// Starts a read-only transaction that sees one snapshot across several statements, so a
    /// verify that pages through the table sees a ledger that is consistent with its head.
    pub begin_snapshot: &'static str,
    /// Serialises sealing (and pruning) between processes for the length of a transaction, on
    /// top of the write transaction itself; `None` on SQLite, whose `begin_write` already does.
    pub seal_lock: Option<&'static str>,
    /// Creates the schema version table if this is a new database.
    create_schema_table: &'static str,
    /// Serialises schema changes between processes starting at the same time.
    schema_lock: Option<&'static str>,
    /// The schema steps, oldest first.
    migrations: &'static [Migration],
}

#[derive(Debug)]
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

pub(crate) const SQLITE: Dialect = Dialect {
    begin_write: "BEGIN IMMEDIATE",
    begin_snapshot: "BEGIN",
    create_schema_table: "CREATE TABLE IF NOT EXISTS ledger_schema (
        version     INTEGER PRIMARY KEY,
        description TEXT    NOT NULL
    ) STRICT",
    seal_lock: None,
    schema_lock: None,
    migrations: &[
        Migration {
            version: 1,
            description: "audit ledger",
            sql: include_str!("../schema/sqlite/0001_audit_ledger.sql"),
        },
        Migration {
            version: 2,
            description: "signed tree heads, tree nodes, retention checkpoints",
            sql: include_str!("../schema/sqlite/0002_sealed_tree.sql"),
        },
        Migration {
            version: 3,
            description: "providing agency and break-glass in the index, s.45 restrictions",
            sql: include_str!("../schema/sqlite/0003_parties_restrictions.sql"),
        },
    ],
};

pub(crate) const POSTGRES: Dialect = Dialect {
    begin_write: "BEGIN ISOLATION LEVEL READ COMMITTED",
    begin_snapshot: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    create_schema_table: "CREATE TABLE IF NOT EXISTS ledger_schema (
        version     BIGINT PRIMARY KEY,
        description TEXT   NOT NULL
    )",
    // The key spells "ledgseal" in ASCII (see `SEAL_LOCK_KEY`).
    seal_lock: Some("SELECT pg_advisory_xact_lock(7810759524224426348)"),
    // The key spells "liaison" in ASCII.
    schema_lock: Some("SELECT pg_advisory_xact_lock(30515164586667886)"),
    migrations: &[
        Migration {
            version: 1,
            description: "audit ledger",
            sql: include_str!("../schema/postgres/0001_audit_ledger.sql"),
        },
        Migration {
            version: 2,
            description: "signed tree heads, tree nodes, retention checkpoints",
            sql: include_str!("../schema/postgres/0002_sealed_tree.sql"),
        },
        Migration {
            version: 3,
            description: "providing agency and break-glass in the index, s.45 restrictions",
            sql: include_str!("../schema/postgres/0003_parties_restrictions.sql"),
        },
    ],
};

/// PostgreSQL advisory lock keys, distinct so schema changes, seal transactions and sealer
/// leadership never wait for one another.
#[cfg(test)]
pub(crate) const SEAL_LOCK_KEY: i64 = i64::from_be_bytes(*b"ledgseal");
/// Held, as a session lock, by the one sealer that is active among all processes sharing a
/// PostgreSQL database, on a connection of its own: if the process dies the server ends the
/// session and the lock passes to a standby.
pub(crate) const LEADER_LOCK_KEY: i64 = i64::from_be_bytes(*b"ledglead");

/// One connection of either backend, for work that must stay on one session.
#[derive(Debug)]
pub(crate) enum Conn<'a> {
    Sqlite(&'a mut sqlx::SqliteConnection),
    Postgres(&'a mut sqlx::PgConnection),
}

/// How to open the pool, from [`crate::LedgerOptions`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub busy_timeout: Duration,
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$dialect` to its [`Dialect`].
macro_rules! dispatch {
    ($db:expr, |$pool:ident, $dialect:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => {
                #[allow(unused_variables)]
                let $dialect = &$crate::db::SQLITE;
                $body
            }
            $crate::db::Db::Postgres($pool) => {
                #[allow(unused_variables)]
                let $dialect = &$crate::db::POSTGRES;
                $body
            }
        }
    };
}
pub(crate) use dispatch;

/// Like [`dispatch!`] for a [`Conn`]: runs `$body` with `$conn` bound to the concrete
/// `&mut Connection`.
macro_rules! dispatch_conn {
    ($db:expr, |$conn:ident, $dialect:ident| $body:expr) => {
        match $db {
            $crate::db::Conn::Sqlite($conn) => {
                #[allow(unused_variables)]
                let $dialect = &$crate::db::SQLITE;
                $body
            }
            $crate::db::Conn::Postgres($conn) => {
                #[allow(unused_variables)]
                let $dialect = &$crate::db::POSTGRES;
                $body
            }
        }
    };
}
pub(crate) use dispatch_conn;

impl Db {
    /// Opens a pool for `url` and brings the schema up to date.
    pub(crate) async fn open(url: &str, settings: PoolSettings) -> Result<Self, LedgerError> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        let db = match scheme {
            "sqlite" => Self::Sqlite(open_sqlite(url, settings).await?),
            "postgres" | "postgresql" => Self::Postgres(open_postgres(url, settings).await?),
            _ => {
                return Err(LedgerError::UnsupportedUrl {
                    scheme: scheme.chars().take(32).collect(),
                });
            }
        };
        db.migrate().await?;
        Ok(db)
    }

    pub(crate) async fn close(&self) {
        dispatch!(self, |pool, dialect| pool.close().await)
    }

    /// Applies the schema steps this database has not seen, in one transaction.
    async fn migrate(&self) -> Result<(), LedgerError> {
        dispatch!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write).await?;
            if let Some(lock) = dialect.schema_lock {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            sqlx::raw_sql(dialect.create_schema_table)
                .execute(&mut *tx)
                .await?;
            let current: i64 =
                sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM ledger_schema")
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("v")?;
            let supported = dialect.migrations.last().map_or(0, |m| m.version);
            if current > supported {
                return Err(LedgerError::SchemaTooNew {
                    found: current,
                    supported,
                });
            }
            for step in dialect.migrations.iter().filter(|m| m.version > current) {
                sqlx::raw_sql(step.sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO ledger_schema (version, description) VALUES ($1, $2)")
                    .bind(step.version)
                    .bind(step.description)
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(version = step.version, "ledger schema updated");
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

async fn open_sqlite(url: &str, settings: PoolSettings) -> Result<SqlitePool, LedgerError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|err| LedgerError::InvalidUrl {
            reason: err.to_string(),
        })?
        // WAL lets readers (oversight queries, verify) run while the writer commits; FULL makes
        // every commit fsync the WAL, so an acknowledged entry survives a power cut.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(settings.busy_timeout)
        .foreign_keys(true)
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(settings.max_connections)
        // An in-process connection does not go away by itself; pinging it before each use only
        // costs a round trip to its worker thread.
        .test_before_acquire(false)
        .acquire_timeout(settings.acquire_timeout);
    // Switching a new database file to WAL needs an exclusive lock, and SQLite answers "busy"
    // at once rather than calling the busy handler when another process holds it (several
    // gateways starting together on one file). Retry for as long as the busy timeout allows.
    let give_up = tokio::time::Instant::now() + settings.busy_timeout;
    loop {
        match pool.clone().connect_with(options.clone()).await {
            Ok(pool) => return Ok(pool),
            Err(err) if is_sqlite_busy(&err) && tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(err) => return Err(LedgerError::unavailable(&err)),
        }
    }
}

/// SQLITE_BUSY, including its extended codes.
fn is_sqlite_busy(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|err| err.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

async fn open_postgres(url: &str, settings: PoolSettings) -> Result<PgPool, LedgerError> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|err| LedgerError::InvalidUrl {
            reason: err.to_string(),
        })?
        .application_name("liaison-ledger")
        // A commit must be on disk before an append is acknowledged, whatever the server
        // default; the gateway relies on that to release data only after the entry is durable.
        // Every statement is planned for its parameters: a generic plan cached while a table was
        // small (a sequential scan) would otherwise turn O(log n) proofs and appends into O(n)
        // until the next ANALYZE. Planning these statements costs microseconds.
        .options([
            ("synchronous_commit", "on"),
            ("plan_cache_mode", "force_custom_plan"),
        ]);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(|err| LedgerError::unavailable(&err))
}

pub(crate) fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL literals spell the keys the constants compute, so the locks never collide.
    #[test]
    fn advisory_lock_keys_are_distinct_and_match_their_sql() {
        assert_eq!(
            POSTGRES.seal_lock,
            Some(format!("SELECT pg_advisory_xact_lock({SEAL_LOCK_KEY})").as_str())
        );
        assert_eq!(
            POSTGRES.schema_lock,
            Some(
                format!(
                    "SELECT pg_advisory_xact_lock({})",
                    i64::from_be_bytes(*b"\0liaison")
                )
                .as_str()
            )
        );
        assert_ne!(SEAL_LOCK_KEY, LEADER_LOCK_KEY);
    }
}
