//! A managed PostgreSQL usually requires TLS: the ledger connects with
//! `sslmode=require` (rustls), and its connections are encrypted.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "integration tests fail by panicking"
)]

use liaison_ledger::Ledger;
use liaison_ledger::test_util::{fresh_postgres_db, sample_entry};
use sqlx::Connection as _;

#[tokio::test]
async fn the_ledger_speaks_tls_to_postgres_when_asked() {
    let (url, _db) = fresh_postgres_db().await;
    let separator = if url.contains('?') { '&' } else { '?' };
    let tls_url = format!("{url}{separator}sslmode=require");
    let ledger = Ledger::connect(&tls_url).await.unwrap();
    assert_eq!(ledger.append(sample_entry(1)).await.unwrap().seq, 1);
    ledger.verify().await.unwrap();

    // The same options give an encrypted session.
    let mut conn = sqlx::PgConnection::connect(&tls_url).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(encrypted);
}
