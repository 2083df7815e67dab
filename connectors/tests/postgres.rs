//! The same behaviours against PostgreSQL, each test in a database of its
//! own. These fail when PostgreSQL is unreachable
//! (`postgres://postgres@127.0.0.1:5432/postgres`, or
//! `LIAISON_TEST_POSTGRES_URL`).

mod common;

use common::*;
use liaison_connectors::Connector;

#[tokio::test]
async fn searches_on_postgres() {
    let (db, c, summary) = postgres_police().await;
    finds_leah_by_name_and_date_of_birth(&c).await;
    finds_the_marshes_by_family_name_and_postcode(&c).await;
    finds_people_by_identifier(&c).await;
    malformed_searches_are_the_callers_fault(&c).await;
    generated_people_are_searchable(&c, &summary).await;
    c.close().await;
    drop(db);
}

#[tokio::test]
async fn fetches_on_postgres() {
    let (db, c, _) = postgres_police().await;
    fetches_leah_and_every_record(&c).await;
    fetches_records_by_kind(&c).await;
    unknown_and_malformed_ids(&c).await;
    c.close().await;
    drop(db);
}

#[tokio::test]
async fn hostile_data_on_postgres() {
    let (db, c, _) = postgres_police().await;
    hostile_rows_are_skipped_or_trimmed_and_reported(&c).await;
    sql_metacharacters_in_a_query_are_only_data(&c).await;
    sql_in_a_name_comes_back_as_data(&c).await;
    c.close().await;
    drop(db);
}

#[tokio::test]
async fn the_mapping_checks_against_postgres() {
    let (db, c, summary) = postgres_police().await;
    c.check().await.unwrap();
    // The change feed's integer cursor binds as PostgreSQL's `int8`.
    let now = c.changes(None, 10).await.unwrap();
    assert_eq!(now.cursor.0, summary.changes.to_string());
    let start = liaison_connectors::ChangeCursor(String::new());
    let first = c.changes(Some(&start), 2).await.unwrap();
    let ids: Vec<&str> = first
        .changes
        .iter()
        .map(|ch| ch.source_id.as_str())
        .collect();
    assert_eq!(ids, vec!["100001", "100002"]);
    c.close().await;
    drop(db);
}

#[tokio::test]
async fn connections_are_read_only_on_postgres() {
    let (db, c, _) = postgres_police().await;
    // The connector's sessions refuse writes, whatever the mapping's SQL.
    let mut mapping: liaison_connectors::sql::SqlMapping =
        toml::from_str(&std::fs::read_to_string(example_mapping()).unwrap()).unwrap();
    mapping.person.get_sql =
        "UPDATE NOMINAL SET SURNAME = 'x' WHERE NOM_ID = :source_id RETURNING NOM_ID, SURNAME, :limit AS L".to_owned().into();
    let writer =
        liaison_connectors::SqlConnector::with_mapping(&config(&db.url), &mapping).unwrap();
    let err = writer.fetch("100001", &[]).await.unwrap_err();
    assert_eq!(err.fault(), liaison_connectors::Fault::Source);
    assert!(err.to_string().contains("read-only transaction"), "{err}");
    writer.close().await;
    c.close().await;
    drop(db);
}
