//! Reading people and their records through the example mapping, on SQLite.

mod common;

use common::*;

#[tokio::test]
async fn fetches_leah_and_every_record_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    fetches_leah_and_every_record(&c).await;
}

#[tokio::test]
async fn fetches_records_by_kind_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    fetches_records_by_kind(&c).await;
}

#[tokio::test]
async fn unknown_and_malformed_ids_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    unknown_and_malformed_ids(&c).await;
}
