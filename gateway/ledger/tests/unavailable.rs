//! When the database cannot record, appends fail `Unavailable` (or `Busy`) without panicking and
//! without acknowledging anything, and the ledger recovers by itself when the database returns.
//!
//! Tests run as root in CI containers, and root ignores file permissions, so "the SQLite file is
//! read-only" cannot be staged with chmod. The real failures used instead: another process
//! holding the database's write lock (what a stuck backup or a second writer causes), and the
//! ledger's tables disappearing under it (a damaged or replaced file). For PostgreSQL the server
//! kills every connection, and then refuses new ones until it is allowed again.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

mod common;

use std::time::Duration;

use common::Raw;
use liaison_ledger::test_util::{fresh_postgres_db, fresh_sqlite_db, sample_entry};
use liaison_ledger::{Fault, Ledger, LedgerError, LedgerOptions};
use sqlx::{AssertSqlSafe, Connection, PgPool, SqliteConnection};

on_both_backends!(dropped_tables_make_the_ledger_unavailable);

fn quick_options() -> LedgerOptions {
    let mut options = LedgerOptions::default();
    options.acquire_timeout = Duration::from_secs(2);
    options.busy_timeout = Duration::from_millis(200);
    options
}

fn assert_unavailable(err: &LedgerError, mentions: &str) {
    match err {
        LedgerError::Unavailable { reason } => {
            assert!(reason.contains(mentions), "{reason:?} lacks {mentions:?}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(err.fault(), Fault::Gateway);
    assert!(err.to_string().starts_with("audit ledger unavailable: "));
}

async fn dropped_tables_make_the_ledger_unavailable(url: &str) {
    let ledger = Ledger::connect_with(url, quick_options()).await.unwrap();
    ledger.append(sample_entry(1)).await.unwrap();
    let raw = Raw::connect(url).await;
    raw.drop_append_only_guards().await;
    raw.exec("DROP TABLE audit_subjects; DROP TABLE audit_entries;")
        .await;

    assert_unavailable(
        &ledger.append(sample_entry(2)).await.unwrap_err(),
        "audit_entries",
    );
    assert_unavailable(&ledger.verify().await.unwrap_err(), "audit_entries");
    assert_unavailable(
        &ledger.get("entry-000001").await.unwrap_err(),
        "audit_entries",
    );
    assert_eq!(ledger.stats().failed_transactions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_by_another_process_fails_then_recovers() {
    let (url, _dir) = fresh_sqlite_db();
    let ledger = Ledger::connect_with(&url, quick_options()).await.unwrap();
    ledger.append(sample_entry(1)).await.unwrap();

    let mut other = SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    let err = ledger.append(sample_entry(2)).await.unwrap_err();
    assert_unavailable(&err, "locked");
    // Readers are not blocked by a writer in WAL mode.
    assert_eq!(ledger.size().await.unwrap(), 1);

    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    let receipt = ledger.append(sample_entry(2)).await.unwrap();
    assert_eq!(receipt.seq, 2);
    assert_eq!(ledger.verify().await.unwrap().entries, 2);
    assert_eq!(ledger.stats().failed_transactions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_fails_fast_with_busy() {
    let (url, _dir) = fresh_sqlite_db();
    let mut options = quick_options();
    options.queue_capacity = 2;
    options.max_batch = 1;
    options.busy_timeout = Duration::from_secs(30);
    let ledger = Ledger::connect_with(&url, options).await.unwrap();

    // Stall the writer on the database lock, then fill the queue behind it.
    let mut other = SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    let spawn = |n| {
        let ledger = ledger.clone();
        tokio::spawn(async move { ledger.append(sample_entry(n)).await })
    };
    let writing = spawn(1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = [spawn(2), spawn(3)];
    tokio::time::sleep(Duration::from_millis(200)).await;

    let err = ledger.append(sample_entry(4)).await.unwrap_err();
    assert_eq!(err, LedgerError::Busy { capacity: 2 });
    assert_eq!(err.fault(), Fault::Gateway);
    assert_eq!(
        err.to_string(),
        "audit ledger is busy: 2 appends already queued"
    );

    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    assert_eq!(writing.await.unwrap().unwrap().seq, 1);
    for task in queued {
        task.await.unwrap().unwrap();
    }
    assert_eq!(ledger.append(sample_entry(4)).await.unwrap().seq, 4);
    assert_eq!(ledger.verify().await.unwrap().entries, 4);
}

/// The server ends every connection (a restart or failover); the pool replaces them and the
/// next append succeeds without the gateway doing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_terminated_connections_are_replaced() {
    let (url, db) = fresh_postgres_db().await;
    let ledger = Ledger::connect_with(&url, quick_options()).await.unwrap();
    ledger.append(sample_entry(1)).await.unwrap();
    ledger.verify().await.unwrap();

    let admin = PgPool::connect(db.admin_url()).await.unwrap();
    let killed = terminate_connections(&admin, db.name()).await;
    assert!(killed > 0, "the ledger had connections to end");

    assert_eq!(ledger.append(sample_entry(2)).await.unwrap().seq, 2);
    assert_eq!(ledger.verify().await.unwrap().entries, 2);
}

/// The database refuses connections: appends fail `Unavailable` until it accepts them again,
/// then the ledger carries on without a restart and with no trace of the failed append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_then_recovers() {
    let (url, db) = fresh_postgres_db().await;
    let ledger = Ledger::connect_with(&url, quick_options()).await.unwrap();
    ledger.append(sample_entry(1)).await.unwrap();

    let admin = PgPool::connect(db.admin_url()).await.unwrap();
    let name = db.name().to_owned();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
    )))
    .execute(&admin)
    .await
    .unwrap();
    terminate_connections(&admin, &name).await;

    let err = ledger.append(sample_entry(2)).await.unwrap_err();
    assert!(matches!(err, LedgerError::Unavailable { .. }), "{err:?}");
    assert!(matches!(
        ledger.verify().await.unwrap_err(),
        LedgerError::Unavailable { .. }
    ));

    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let receipt = ledger.append(sample_entry(3)).await.unwrap();
    assert_eq!(receipt.seq, 2, "the failed append left no entry");
    assert_eq!(ledger.get("entry-000002").await.unwrap(), None);
    assert_eq!(ledger.verify().await.unwrap().entries, 2);
    assert!(ledger.stats().failed_transactions >= 1);
}

async fn terminate_connections(admin: &PgPool, database: &str) -> usize {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_all(admin)
    .await
    .unwrap()
    .len()
}
