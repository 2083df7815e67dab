//! Connecting: URLs, schema creation and versioning, SQLite durability settings.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

mod common;

use std::time::Duration;

use common::Raw;
use liaison_ledger::test_util::{fresh_sqlite_db, sample_entry};
use liaison_ledger::{Backend, Ledger, LedgerError, LedgerOptions};
use tokio::task::JoinSet;

on_both_backends!(
    schema_is_created_once_and_versioned,
    newer_schema_is_refused,
    simultaneous_first_connects_agree,
);

async fn schema_is_created_once_and_versioned(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    ledger.append(sample_entry(1)).await.unwrap();
    let again = Ledger::connect(url).await.unwrap();
    assert_eq!(again.size().await.unwrap(), 1);
    assert_eq!(
        again.backend(),
        if url.starts_with("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    );

    let versions: Vec<i64> = match Raw::connect(url).await {
        Raw::Sqlite(pool) => sqlx::query_scalar("SELECT version FROM ledger_schema")
            .fetch_all(&pool)
            .await
            .unwrap(),
        Raw::Postgres(pool) => sqlx::query_scalar("SELECT version FROM ledger_schema")
            .fetch_all(&pool)
            .await
            .unwrap(),
    };
    assert_eq!(versions, [1, 2, 3]);
}

async fn newer_schema_is_refused(url: &str) {
    Ledger::connect(url).await.unwrap();
    Raw::connect(url)
        .await
        .exec("INSERT INTO ledger_schema (version, description) VALUES (99, 'from the future')")
        .await;
    let err = Ledger::connect(url).await.unwrap_err();
    assert_eq!(
        err,
        LedgerError::SchemaTooNew {
            found: 99,
            supported: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "ledger schema version 99 is newer than the supported version 3"
    );
}

/// Several gateway processes starting together against an empty database.
async fn simultaneous_first_connects_agree(url: &str) {
    let mut connects = JoinSet::new();
    for _ in 0..4 {
        let url = url.to_owned();
        connects.spawn(async move { Ledger::connect(&url).await });
    }
    let mut ledgers = Vec::new();
    while let Some(ledger) = connects.join_next().await {
        ledgers.push(ledger.unwrap().unwrap());
    }
    for (n, ledger) in (1..).zip(&ledgers) {
        assert_eq!(ledger.append(sample_entry(n)).await.unwrap().seq, n);
    }
}

#[tokio::test]
async fn urls_without_a_supported_scheme_are_refused() {
    for (url, scheme) in [
        ("mysql://root@localhost/ledger", "mysql"),
        ("ledger.db", ""),
    ] {
        let err = Ledger::connect(url).await.unwrap_err();
        assert_eq!(
            err,
            LedgerError::UnsupportedUrl {
                scheme: scheme.into()
            }
        );
    }
    assert_eq!(
        Ledger::connect("mysql://root:secret@localhost/ledger")
            .await
            .unwrap_err()
            .to_string(),
        "ledger url has unsupported scheme `mysql`; expected `sqlite:` or `postgres:`",
        "credentials never appear in the message"
    );
    assert!(matches!(
        Ledger::connect("postgres://user:secret@host:notaport/ledger")
            .await
            .unwrap_err(),
        LedgerError::InvalidUrl { .. }
    ));
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    let mut options = LedgerOptions::default();
    options.acquire_timeout = Duration::from_secs(1);
    let err = Ledger::connect_with("postgres://postgres@127.0.0.1:1/postgres", options)
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let (url, dir) = fresh_sqlite_db();
    assert!(!dir.path().join("ledger.db").exists());
    Ledger::connect(&url).await.unwrap();
    assert!(dir.path().join("ledger.db").exists());
    let Raw::Sqlite(pool) = Raw::connect(&url).await else {
        unreachable!()
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}
