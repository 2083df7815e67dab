//! The SQL connector's change feed: polling a change log from a
//! high-water mark, resumable and at least once.

mod common;

use common::*;
use liaison_connectors::{ChangeCursor, Connector, ConnectorError, Fault, SqlConnector};
use sqlx::{Connection, SqliteConnection};

#[expect(
    clippy::unwrap_used,
    reason = "a test helper fails the test that called it"
)]
async fn log_change(path: &std::path::Path, seq: i64, nom_id: i64) {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO CHANGE_LOG (CHANGE_SEQ, NOM_ID, CHANGED_AT) VALUES ($1, $2, '20250101000000')",
    )
    .bind(seq)
    .bind(nom_id)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn the_feed_starts_now_resumes_from_its_cursor_and_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (c, summary) = sqlite_police(dir.path()).await;
    assert_eq!(summary.changes, summary.people);
    let db = dir.path().join("police-rms.db");

    // From now: no changes, and the latest cursor.
    let now = c.changes(None, 10).await.unwrap();
    assert!(now.changes.is_empty());
    assert_eq!(now.cursor, ChangeCursor(summary.changes.to_string()));

    let head = i64::try_from(summary.changes).unwrap();
    log_change(&db, head + 1, 100_002).await;
    log_change(&db, head + 2, 100_001).await;
    log_change(&db, head + 3, 100_003).await;

    let page = c.changes(Some(&now.cursor), 2).await.unwrap();
    let seen: Vec<(&str, &str)> = page
        .changes
        .iter()
        .map(|ch| (ch.cursor.0.as_str(), ch.source_id.as_str()))
        .collect();
    let (a, b) = ((head + 1).to_string(), (head + 2).to_string());
    assert_eq!(seen, vec![(a.as_str(), "100002"), (b.as_str(), "100001")]);
    assert_eq!(page.cursor, ChangeCursor(b.clone()));

    let rest = c.changes(Some(&page.cursor), 10).await.unwrap();
    assert_eq!(rest.changes.len(), 1);
    assert_eq!(rest.changes[0].source_id, "100003");
    let idle = c.changes(Some(&rest.cursor), 10).await.unwrap();
    assert!(idle.changes.is_empty());
    assert_eq!(idle.cursor, rest.cursor, "an idle feed keeps its place");

    // At least once: resuming from an older cursor delivers again.
    let again = c.changes(Some(&now.cursor), 10).await.unwrap();
    assert_eq!(again.changes.len(), 3);

    // From the very start, an empty cursor reads the whole log, bounded.
    let start = c
        .changes(Some(&ChangeCursor(String::new())), 5)
        .await
        .unwrap();
    assert_eq!(start.changes.len(), 5);
    assert_eq!(start.changes[0].source_id, "100001");
}

#[tokio::test]
async fn cursors_the_dataset_never_issued_are_the_callers_fault() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = sqlite_police(dir.path()).await;
    let err = c
        .changes(Some(&ChangeCursor("abc".into())), 10)
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Caller);
    assert_eq!(
        err.to_string(),
        "dataset `police-rms` did not issue change cursor `abc`"
    );
}

#[tokio::test]
async fn datasets_without_a_feed_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rms.db").display());
    liaison_connectors::synthetic::generate_police_rms(&url, 5, 1)
        .await
        .unwrap();
    let mut mapping: liaison_connectors::mapping::Mapping =
        toml::from_str(&std::fs::read_to_string(example_mapping()).unwrap()).unwrap();
    mapping.changes = None;
    let c = SqlConnector::with_mapping(&config(&url), &mapping).unwrap();
    let err = c.changes(None, 10).await.unwrap_err();
    assert!(matches!(err, ConnectorError::ChangesNotOffered { .. }));
    assert_eq!(
        err.to_string(),
        "dataset `police-rms` offers no change feed"
    );

    // A CSV folder makes its own feed by comparing exports; a mapping
    // cannot declare one.
    let council: liaison_connectors::mapping::Mapping = toml::from_str(&format!(
        "{}\n[changes]\nsql = \"x\"\nhead_sql = \"y\"\ncursor = \"C\"\nperson_source_id = \"{{P}}\"\n",
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/council-csv.toml")
        )
        .unwrap()
    ))
    .unwrap();
    let csv: liaison_connectors::CsvFolderConfig = toml::from_str(&format!(
        r#"
id = "council-csv"
agency = "a"
title = "t"
system = "s"
folder = "{}"
"#,
        dir.path().display()
    ))
    .unwrap();
    let err = liaison_connectors::CsvFolderConnector::with_mapping(&csv, &council)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("changes: is not read by `csv-folder` connectors"),
        "{err}"
    );
}
