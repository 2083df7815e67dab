//! The pool the registers share: both live in the ledger's database, on one
//! pool (SQLite has one writer anyway).

use std::time::Duration;

use sqlx::{
    postgres::{PgPool, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions},
};

/// The registers' pool, on whichever database the ledger uses.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same statement on whichever pool the register has.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::register::Db::Sqlite($pool) => $body,
            $crate::register::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// What [`Db::connect`] could not do.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The URL names no database the registers can use (password removed).
    Url(String),
    /// The database refused the connection.
    Database(sqlx::Error),
}

impl Db {
    /// Opens a pool on the database at `url` (the ledger's).
    pub(crate) async fn connect(url: &str) -> Result<Self, ConnectError> {
        if url.starts_with("sqlite:") {
            let options: SqliteConnectOptions = url
                .parse::<SqliteConnectOptions>()
                .map_err(ConnectError::Database)?
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
                .await
                .map_err(ConnectError::Database)?;
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await
                .map_err(ConnectError::Database)?;
            Ok(Self::Postgres(pool))
        } else {
            Err(ConnectError::Url(redact(url)))
        }
    }
}

/// Now, in Unix microseconds: how the registers store times.
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
