//! Hostile legacy rows and hostile queries, on SQLite.

mod common;

use common::*;

#[tokio::test]
async fn hostile_rows_are_skipped_or_trimmed_and_reported_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    hostile_rows_are_skipped_or_trimmed_and_reported(&c).await;
}

#[tokio::test]
async fn sql_metacharacters_in_a_query_are_only_data_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    sql_metacharacters_in_a_query_are_only_data(&c).await;
}

#[tokio::test]
async fn sql_in_a_name_comes_back_as_data_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    sql_in_a_name_comes_back_as_data(&c).await;
}
