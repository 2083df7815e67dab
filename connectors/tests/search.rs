//! Searching the synthetic police system through the example mapping, on SQLite.

mod common;

use common::*;

#[tokio::test]
async fn finds_leah_by_name_and_date_of_birth_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    finds_leah_by_name_and_date_of_birth(&c).await;
}

#[tokio::test]
async fn finds_the_marshes_by_family_name_and_postcode_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    finds_the_marshes_by_family_name_and_postcode(&c).await;
}

#[tokio::test]
async fn finds_people_by_identifier_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    finds_people_by_identifier(&c).await;
}

#[tokio::test]
async fn malformed_searches_are_the_callers_fault_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    malformed_searches_are_the_callers_fault(&c).await;
}

#[tokio::test]
async fn generated_people_are_searchable_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (c, summary) = sqlite_police(dir.path()).await;
    generated_people_are_searchable(&c, &summary).await;
}
