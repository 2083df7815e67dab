//! The gateway on a PostgreSQL ledger: shares are recorded there, and when
//! the database goes away the gateway fails closed (`UNAVAILABLE`, no data)
//! and resumes by itself when it returns.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use liaison_ledger::{Ledger, test_util::fresh_postgres_db};
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tonic::Code;

async fn admin(db: &liaison_ledger::test_util::TestDatabase, sql: String) {
    let mut conn = PgConnection::connect(db.admin_url()).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// Makes the database refuse connections and ends the gateway's: from the
/// gateway's side, PostgreSQL has stopped.
async fn stop(db: &liaison_ledger::test_util::TestDatabase) {
    let name = db.name();
    admin(
        db,
        format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"),
    )
    .await;
    admin(
        db,
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"),
    )
    .await;
}

async fn restart(db: &liaison_ledger::test_util::TestDatabase) {
    admin(
        db,
        format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true", db.name()),
    )
    .await;
}

fn search() -> pb::SearchPersonsRequest {
    pb::SearchPersonsRequest {
        context: Some(context("safeguarding-children")),
        query: Some(leah()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_ledger_records_shares_and_the_gateway_fails_closed_without_it() {
    let (url, db) = fresh_postgres_db().await;
    let world = World::start(Some(url.clone())).await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let mut sharing = SharingServiceClient::new(world.channel.clone());

    let first = sharing
        .search_persons(authed(&sw, search()))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.matches.is_empty());
    let first_receipt = first.receipt.unwrap();

    stop(&db).await;
    let err = sharing
        .search_persons(authed(&sw, search()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(reason(&err).0, "AUDIT_UNAVAILABLE");
    // A status carries no message body: no person left the gateway.
    assert!(
        err.message().contains("nothing was disclosed"),
        "{}",
        err.message()
    );

    restart(&db).await;
    let mut resumed = None;
    for _ in 0..50 {
        match sharing.search_persons(authed(&sw, search())).await {
            Ok(r) => {
                resumed = Some(r.into_inner());
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    let resumed =
        resumed.expect("shares resume within 5 s of the database returning, without a restart");
    let second_receipt = resumed.receipt.unwrap();
    assert!(second_receipt.sequence > first_receipt.sequence);

    world.gateway.shutdown().await.unwrap();
    let ledger = Ledger::connect(&url).await.unwrap();
    let report = ledger.verify().await.unwrap();
    assert_eq!(
        report.entries, second_receipt.sequence,
        "no gaps, nothing lost"
    );
    for receipt in [&first_receipt, &second_receipt] {
        let stored = ledger
            .get(&receipt.entry_id)
            .await
            .unwrap()
            .expect("acknowledged entry present");
        assert_eq!(hex::encode(stored.leaf_hash), receipt.leaf_hash);
    }
    ledger.close().await;
}
