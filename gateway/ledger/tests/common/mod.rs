//! Shared by the integration tests: run a test on both backends, and reach under the ledger
//! with raw SQL the way an attacker or a failing disk would.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::str::FromStr;

use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

/// Generates `sqlite::<name>` and `postgres::<name>` tests that call `<name>(url)` with a fresh
/// database of each kind.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (url, _dir) = liaison_ledger::test_util::fresh_sqlite_db();
                    super::$name(&url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (url, _db) = liaison_ledger::test_util::fresh_postgres_db().await;
                    super::$name(&url).await;
                }
            )*
        }
    };
}

/// A direct connection to the ledger's database, bypassing the ledger.
pub enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Raw {
    pub async fn connect(url: &str) -> Self {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .unwrap()
                .create_if_missing(true);
            Self::Sqlite(SqlitePool::connect_with(options).await.unwrap())
        } else {
            Self::Postgres(PgPool::connect(url).await.unwrap())
        }
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, Self::Sqlite(_))
    }

    /// Runs one or more statements.
    pub async fn exec(&self, sql: &'static str) {
        self.try_exec(sql).await.unwrap();
    }

    /// Runs a statement the test built (from its own paths and names, never from input).
    pub async fn exec_owned(&self, sql: String) {
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            Self::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
        .unwrap()
    }

    pub async fn try_exec(&self, sql: &'static str) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
    }

    /// Drops the triggers that make the entry tables append-only, as someone with full database
    /// rights could.
    pub async fn drop_append_only_guards(&self) {
        match self {
            Self::Sqlite(_) => {
                self.exec(
                    "DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete;
                     DROP TRIGGER audit_subjects_no_update; DROP TRIGGER audit_subjects_no_delete;
                     DROP TRIGGER tree_nodes_no_update; DROP TRIGGER tree_nodes_no_delete;
                     DROP TRIGGER tree_heads_no_update; DROP TRIGGER tree_heads_no_delete;",
                )
                .await
            }
            Self::Postgres(_) => {
                self.exec(
                    "DROP TRIGGER audit_entries_no_delete ON audit_entries;
                     DROP TRIGGER audit_entries_backfill_only ON audit_entries;
                     DROP TRIGGER audit_entries_no_truncate ON audit_entries;
                     DROP TRIGGER audit_subjects_append_only ON audit_subjects;
                     DROP TRIGGER audit_subjects_no_truncate ON audit_subjects;
                     DROP TRIGGER tree_nodes_append_only ON tree_nodes;
                     DROP TRIGGER tree_nodes_no_truncate ON tree_nodes;
                     DROP TRIGGER tree_heads_append_only ON tree_heads;
                     DROP TRIGGER tree_heads_no_truncate ON tree_heads;",
                )
                .await
            }
        }
    }

    pub async fn body(&self, seq: i64) -> Vec<u8> {
        let sql = "SELECT body FROM audit_entries WHERE seq = $1";
        match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).bind(seq).fetch_one(pool).await,
            Self::Postgres(pool) => sqlx::query_scalar(sql).bind(seq).fetch_one(pool).await,
        }
        .unwrap()
    }

    pub async fn set_column(&self, seq: i64, column: Column, value: &[u8]) {
        let sql = match column {
            Column::Body => "UPDATE audit_entries SET body = $1 WHERE seq = $2",
            Column::LeafHash => "UPDATE audit_entries SET leaf_hash = $1 WHERE seq = $2",
            Column::ChainHash => "UPDATE audit_entries SET chain_hash = $1 WHERE seq = $2",
        };
        self.try_bind_exec(sql, value, seq).await.unwrap();
    }

    pub async fn try_set_body(&self, seq: i64, value: &[u8]) -> Result<(), sqlx::Error> {
        self.try_bind_exec(
            "UPDATE audit_entries SET body = $1 WHERE seq = $2",
            value,
            seq,
        )
        .await
    }

    async fn try_bind_exec(
        &self,
        sql: &'static str,
        value: &[u8],
        seq: i64,
    ) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => sqlx::query(sql)
                .bind(value)
                .bind(seq)
                .execute(pool)
                .await
                .map(drop),
            Self::Postgres(pool) => sqlx::query(sql)
                .bind(value)
                .bind(seq)
                .execute(pool)
                .await
                .map(drop),
        }
    }

    pub async fn delete_entry(&self, seq: i64) {
        for sql in [
            "DELETE FROM audit_subjects WHERE seq = $1",
            "DELETE FROM audit_entries WHERE seq = $1",
        ] {
            match self {
                Self::Sqlite(pool) => sqlx::query(sql).bind(seq).execute(pool).await.map(drop),
                Self::Postgres(pool) => sqlx::query(sql).bind(seq).execute(pool).await.map(drop),
            }
            .unwrap();
        }
    }

    /// The number of rows in `table` (a name from the schema, never input).
    pub async fn count(&self, table: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap()
    }

    /// Inserts an entry row directly, with empty search columns.
    pub async fn insert_entry(
        &self,
        seq: i64,
        entry_id: &str,
        body: &[u8],
        leaf: &[u8; 32],
        chain: &[u8; 32],
    ) {
        let sql = "INSERT INTO audit_entries (seq, entry_id, recorded_at, body, leaf_hash, \
                   chain_hash, agency, subject, recipient, action, purpose, isa_id, outcome) \
                   VALUES ($1, $2, $3, $4, $5, $6, '', '', '', '', '', '', '')";
        let recorded_at = 1_700_000_000_000_000_000i64 + seq;
        match self {
            Self::Sqlite(pool) => sqlx::query(sql)
                .bind(seq)
                .bind(entry_id)
                .bind(recorded_at)
                .bind(body)
                .bind(&leaf[..])
                .bind(&chain[..])
                .execute(pool)
                .await
                .map(drop),
            Self::Postgres(pool) => sqlx::query(sql)
                .bind(seq)
                .bind(entry_id)
                .bind(recorded_at)
                .bind(body)
                .bind(&leaf[..])
                .bind(&chain[..])
                .execute(pool)
                .await
                .map(drop),
        }
        .unwrap();
    }

    /// Rewrites the head row.
    pub async fn set_head(&self, size: i64, chain: &[u8; 32]) {
        let sql = "UPDATE ledger_head SET size = $1, chain_hash = $2 WHERE id = 1";
        match self {
            Self::Sqlite(pool) => sqlx::query(sql)
                .bind(size)
                .bind(&chain[..])
                .execute(pool)
                .await
                .map(drop),
            Self::Postgres(pool) => sqlx::query(sql)
                .bind(size)
                .bind(&chain[..])
                .execute(pool)
                .await
                .map(drop),
        }
        .unwrap();
    }

    pub async fn close(self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Column {
    Body,
    LeafHash,
    ChainHash,
}
