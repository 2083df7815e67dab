//! Every built-in connector passes the connector kit over its synthetic
//! source, built the way the gateway builds it (from configuration, through
//! the registry, so behind the resilience middleware); and a deliberately
//! broken mapping fails it, naming the check.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use liaison_conformance::kit::{KitExpectations, KitReport, run_kit};
use liaison_connectors::synthetic::council::write_council_export;
use liaison_connectors::synthetic::generate_police_rms;
use liaison_connectors::synthetic::health::HealthServer;
use liaison_connectors::{Connector, ConnectorConfig, JsonHttpConnector, Registry};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

fn manifest(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn expectations(dataset: &str) -> KitExpectations {
    KitExpectations::from_file(&manifest(&format!("src/kit/datasets/{dataset}.toml"))).unwrap()
}

fn example(name: &str) -> String {
    manifest(&format!("../connectors/examples/{name}"))
        .display()
        .to_string()
}

/// Builds one connector from configuration text through the registry, as
/// the gateway does.
async fn through_registry(text: &str) -> Arc<dyn Connector> {
    let config: ConnectorConfig = toml::from_str(text).unwrap();
    let id = config.id().to_owned();
    let registry = Registry::from_configs(&[config]).await.unwrap();
    registry.get(&id).unwrap().clone()
}

fn assert_passed(report: &KitReport) {
    println!("{report}");
    assert!(report.passed(), "{report}");
    assert!(report.checks.len() >= 25, "{report}");
}

fn police_config(url: &str) -> String {
    format!(
        r#"
kind = "sql"
id = "police-rms"
agency = "eastborough-police"
title = "Eastborough Police records management"
system = "Synthetic RMS"
url = "{url}"
max_connections = 2
mapping_file = "{}"
"#,
        example("police-rms.toml")
    )
}

#[tokio::test]
async fn the_sql_connector_on_sqlite_passes_the_kit() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rms.db").display());
    generate_police_rms(&url, 50, 11).await.unwrap();
    let connector = through_registry(&police_config(&format!("{url}?mode=ro"))).await;
    assert_passed(&run_kit(connector, expectations("police-rms")).await);
}

#[tokio::test]
async fn the_sql_connector_on_postgres_passes_the_kit() {
    let admin = std::env::var("LIAISON_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is unreachable at {admin} ({e}); set LIAISON_TEST_POSTGRES_URL")
    });
    let name = format!("kit_{}_{}", std::process::id(), rand_suffix());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    let url = if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    };
    generate_police_rms(&url, 50, 11).await.unwrap();
    let connector = through_registry(&police_config(&url)).await;
    let report = run_kit(connector.clone(), expectations("police-rms")).await;
    drop(connector);
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_passed(&report);
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

fn health_config(server: &HealthServer, token: &Path) -> String {
    format!(
        r#"
kind = "json-http"
id = "health-api"
agency = "eastborough-health"
title = "Eastborough Health patient administration"
system = "Synthetic PAS"
base_url = "{}"
headers = [{{ name = "Authorization", value_file = "{}", prefix = "Bearer " }}]
mapping_file = "{}"
"#,
        server.base_url(),
        token.display(),
        example("health-api.toml")
    )
}

#[tokio::test]
async fn the_json_http_connector_passes_the_kit() {
    let server = HealthServer::start(50, 11).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "kit-token").unwrap();
    // A history for the change-feed checks to walk, across page boundaries.
    for patient in [
        "H1001", "H1002", "H2001", "H1001", "H2003", "H2002", "H1004",
    ] {
        server.log_change(patient);
    }
    let connector = through_registry(&health_config(&server, &token)).await;
    let report = run_kit(connector, expectations("health-api")).await;
    assert_passed(&report);
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "changes.walk" && c.detail.starts_with("7 changes")),
        "{report}"
    );
}

#[tokio::test]
async fn the_csv_folder_connector_passes_the_kit() {
    let dir = tempfile::tempdir().unwrap();
    write_council_export(dir.path(), 50, 11, false).unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let text = format!(
        r#"
kind = "csv-folder"
id = "council-csv"
agency = "eastborough-council"
title = "Eastborough children's services nightly export"
system = "Synthetic CMS"
folder = "{}"
settle_ms = 50
mapping_file = "{}"
"#,
        dir.path().display(),
        example("council-csv.toml")
    );
    let connector = through_registry(&text).await;
    // The next night's export: the generated children differ, the fixed
    // ones do not. The kit walks the feed from before it.
    let before = connector.changes(None, 1).await.unwrap().cursor;
    write_council_export(dir.path(), 50, 12, false).unwrap();
    let started = std::time::Instant::now();
    while connector.changes(None, 1).await.unwrap().cursor == before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new export was not read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut expected = expectations("council-csv");
    if let Some(changes) = expected.changes.as_mut() {
        changes.from = Some(before.0);
    }
    let report = run_kit(connector, expected).await;
    assert_passed(&report);
    let walk = report
        .checks
        .iter()
        .find(|c| c.name == "changes.walk")
        .unwrap();
    assert!(!walk.detail.starts_with("0 changes"), "{report}");
}

#[tokio::test]
async fn a_broken_mapping_fails_the_kit_naming_the_check() {
    let server = HealthServer::start(10, 11).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "kit-token").unwrap();
    let config = match toml::from_str::<ConnectorConfig>(&health_config(&server, &token)).unwrap() {
        ConnectorConfig::JsonHttp(c) => c,
        other => panic!("{other:?}"),
    };
    // A plausible slip: the family name read from the given names.
    let text = std::fs::read_to_string(example("health-api.toml")).unwrap();
    let broken = text.replace(
        r#"family_name = { column = "/family", required = true, max_bytes = 200 }
given_names = "/given""#,
        r#"family_name = { column = "/given", required = true, max_bytes = 200 }
given_names = "/family""#,
    );
    assert_ne!(broken, text);
    let mapping = toml::from_str(&broken).unwrap();
    let connector = Arc::new(JsonHttpConnector::with_mapping(&config, &mapping).unwrap());
    let report = run_kit(connector, expectations("health-api")).await;
    println!("{report}");
    assert!(!report.passed());
    assert!(report.failed("search.by_family_name[H1001]"), "{report}");
    assert!(report.failed("fetch.mapped[H1001]"), "{report}");
    assert!(report.failed("search.limits"), "{report}");
    let shown = report.to_string();
    assert!(
        shown.contains(
            "FAIL  search.by_family_name[H1001]: `H1001` was not among the 0 people found"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("FAIL  fetch.mapped[H1001]: no name has family name `Marsh`"),
        "{shown}"
    );
    // Checks that do not depend on names still pass.
    assert!(!report.failed("ids."), "{report}");
    assert!(!report.failed("deadline."), "{report}");
}

#[test]
fn expectation_files_are_checked() {
    for dataset in ["police-rms", "health-api", "council-csv"] {
        expectations(dataset);
    }
    let err = KitExpectations::from_toml(
        r#"
dataset = "d"
absent_source_id = "x"
[[people]]
source_id = "1"
family_name = "A"
date_of_birth = "14/05/2013"
"#,
    )
    .unwrap_err();
    assert_eq!(err, "person `1`: `14/05/2013` is not a date `YYYY-MM-DD`");
    assert!(KitExpectations::from_toml("dataset = 1").is_err());
}
