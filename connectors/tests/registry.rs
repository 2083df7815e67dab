//! Building connectors from configuration, and what goes wrong when the
//! configuration or the source is wrong.

mod common;

use std::sync::Arc;

use common::*;
use liaison_connectors::{
    Connector, ConnectorConfig, ConnectorError, Fault, PersonQuery, Registry, SqlConnector,
};
use liaison_proto::v1::RecordKind;

#[expect(
    clippy::unwrap_used,
    reason = "a test helper fails the test that called it"
)]
fn write_config(dir: &std::path::Path, id: &str, url: &str) -> std::path::PathBuf {
    let maps = dir.join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    std::fs::copy(example_mapping(), maps.join("police-rms.toml")).unwrap();
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
kind = "sql"
id = "{id}"
agency = "eastborough-police"
title = "Eastborough Police records management"
system = "Synthetic RMS"
url = "{url}"
max_connections = 2
mapping_file = "maps/police-rms.toml"
"#
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn a_registry_is_built_from_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rms.db");
    let url = format!("sqlite://{}", db.display());
    liaison_connectors::synthetic::generate_police_rms(&url, 20, 1)
        .await
        .unwrap();
    let config = ConnectorConfig::from_file(&write_config(dir.path(), "police-rms", &url)).unwrap();

    let registry = Registry::from_configs(&[config]).await.unwrap();
    assert_eq!(registry.len(), 1);
    let c = registry.get("police-rms").unwrap();
    let d = c.descriptor();
    assert_eq!(d.id, "police-rms");
    assert_eq!(d.agency, "eastborough-police");
    assert_eq!(d.system, "Synthetic RMS");
    assert_eq!(
        d.record_kinds,
        vec![
            RecordKind::Incident,
            RecordKind::WarningMarker,
            RecordKind::SafeguardingConcern,
            RecordKind::RiskAssessment,
            RecordKind::Relationship,
        ]
    );
    c.check().await.unwrap();
    let fetched = c.fetch("100001", &[]).await.unwrap();
    assert_eq!(fetched.person, Some(leah()));
    assert_eq!(registry.iter().count(), 1);
    assert!(registry.get("health").is_none());
}

#[tokio::test]
async fn duplicate_datasets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rms.db").display());
    let config = ConnectorConfig::from_file(&write_config(dir.path(), "police-rms", &url)).unwrap();
    let err = Registry::from_configs(&[config.clone(), config])
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Configuration);
    assert_eq!(
        err.to_string(),
        "dataset `police-rms` is configured more than once"
    );

    let mut registry = Registry::default();
    let c: Arc<dyn Connector> = Arc::new(SqlConnector::new(&common::config(&url)).await.unwrap());
    registry.insert(c.clone()).unwrap();
    assert!(matches!(
        registry.insert(c),
        Err(ConnectorError::DuplicateDataset(id)) if id == "police-rms"
    ));
}

#[tokio::test]
async fn a_missing_mapping_file_is_a_configuration_fault() {
    let mut c = config("sqlite://nowhere.db");
    c.mapping_file = Some("/nonexistent/police-rms.toml".into());
    let err = SqlConnector::new(&c).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Configuration);
    assert!(
        err.to_string()
            .starts_with("cannot read `/nonexistent/police-rms.toml`: "),
        "{err}"
    );
}

#[tokio::test]
async fn bad_urls_and_ids_are_configuration_faults() {
    let mut c = config("mysql://user:hunter2@db/rms");
    c.id = "Police RMS".into();
    let err = SqlConnector::new(&c).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Configuration);
    let message = err.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(
        message.contains("id: must be 1 to 64 lower-case letters, digits, `-`, `_` or `.`"),
        "{message}"
    );

    let c = config("mysql://user:hunter2@db/rms");
    let err = SqlConnector::new(&c).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "connector `police-rms` is misconfigured: url: scheme `mysql` is not supported; use `sqlite:` or `postgres:`"
    );
}

#[tokio::test]
async fn an_unreachable_source_is_the_sources_fault_and_reported_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    // The file does not exist and read-only connections will not create it;
    // building the connector still succeeds, so the gateway starts.
    let url = format!(
        "sqlite://{}?mode=ro",
        dir.path().join("missing.db").display()
    );
    let c = SqlConnector::new(&config(&url)).await.unwrap();
    let q = PersonQuery {
        family_name: Some("Marsh".into()),
        ..PersonQuery::default()
    };
    let err = c.search(&q, 10).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Source, "{err:?}");
    assert!(
        err.to_string()
            .starts_with("dataset `police-rms` is unavailable: "),
        "{err}"
    );
    assert_eq!(c.check().await.unwrap_err().fault(), Fault::Source);
}

#[tokio::test]
async fn a_mapping_that_does_not_fit_the_schema_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rms.db").display());
    liaison_connectors::synthetic::generate_police_rms(&url, 5, 1)
        .await
        .unwrap();
    let mut mapping: liaison_connectors::sql::SqlMapping =
        toml::from_str(&std::fs::read_to_string(example_mapping()).unwrap()).unwrap();
    mapping.person.gender = Some(liaison_connectors::sql::mapping::FieldSpec::column(
        "GENDER",
    ));
    let c = SqlConnector::with_mapping(&config(&url), &mapping).unwrap();

    let expected = "dataset `police-rms`: mapping does not fit the source: \
                    query `person.get_sql` does not return column `GENDER`";
    let err = c.check().await.unwrap_err();
    assert_eq!(err.fault(), Fault::Configuration);
    assert_eq!(
        err.to_string(),
        expected.replace("person.get_sql", "person.search_sql")
    );
    let err = c.fetch("100001", &[]).await.unwrap_err();
    assert_eq!(err.to_string(), expected);
}

#[tokio::test]
async fn the_connector_never_writes_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rms.db").display());
    liaison_connectors::synthetic::generate_police_rms(&url, 5, 1)
        .await
        .unwrap();
    let mut mapping: liaison_connectors::sql::SqlMapping =
        toml::from_str(&std::fs::read_to_string(example_mapping()).unwrap()).unwrap();
    mapping.person.get_sql =
        "UPDATE NOMINAL SET SURNAME = 'x' WHERE NOM_ID = :source_id RETURNING NOM_ID, SURNAME, :limit".to_owned().into();
    // No `?mode=ro` in the URL: the connector opens read-only regardless.
    let c = SqlConnector::with_mapping(&config(&url), &mapping).unwrap();
    let err = c.fetch("100001", &[]).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Source);
    assert!(err.to_string().contains("readonly"), "{err}");
}

#[tokio::test]
async fn every_kind_is_built_behind_the_middleware_with_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rms.db").display());
    liaison_connectors::synthetic::generate_police_rms(&url, 5, 1)
        .await
        .unwrap();
    let server = liaison_connectors::synthetic::health::HealthServer::start(5, 1)
        .await
        .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let exports = dir.path().join("exports");
    liaison_connectors::synthetic::council::write_council_export(&exports, 5, 1, false).unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let text = format!(
        r#"
[[connectors]]
kind = "sql"
id = "police-rms"
agency = "eastborough-police"
title = "Police"
system = "Synthetic RMS"
url = "{url}"
mapping_file = "{examples}/police-rms.toml"
resilience = {{ deadline_ms = 750, max_concurrency = 2 }}

[[connectors]]
kind = "json-http"
id = "health-api"
agency = "eastborough-health"
title = "Health"
system = "Synthetic PAS"
base_url = "{base}"
headers = [{{ name = "Authorization", value_file = "{token}", prefix = "Bearer " }}]
mapping_file = "{examples}/health-api.toml"

[[connectors]]
kind = "csv-folder"
id = "council-csv"
agency = "eastborough-council"
title = "Council"
system = "Synthetic CMS"
folder = "{exports}"
settle_ms = 0
mapping_file = "{examples}/council-csv.toml"
"#,
        examples = examples.display(),
        base = server.base_url(),
        token = token.display(),
        exports = exports.display(),
    );
    #[derive(serde::Deserialize)]
    struct File {
        connectors: Vec<ConnectorConfig>,
    }
    let file: File = toml::from_str(&text).unwrap();
    let registry = Registry::from_configs(&file.connectors).await.unwrap();
    let ids: Vec<&str> = registry
        .iter()
        .map(|c| c.descriptor().id.as_str())
        .collect();
    assert_eq!(ids, vec!["council-csv", "health-api", "police-rms"]);
    for id in ids {
        let c = registry.get(id).unwrap();
        let fetched = c.fetch("nobody", &[]).await;
        // Integer ids refuse `nobody`; the others find no one.
        assert!(fetched.is_ok() || id == "police-rms", "{id}: {fetched:?}");
        let stats = registry.stats(id).unwrap();
        assert_eq!(stats.calls, 1, "{id}");
        assert_eq!(stats.circuit, liaison_connectors::CircuitState::Closed);
    }
    assert_eq!(registry.all_stats().len(), 3);

    let mut bad = file.connectors;
    bad.truncate(1);
    let ConnectorConfig::Sql(sql) = &mut bad[0] else {
        panic!("not sql")
    };
    sql.resilience.deadline_ms = 0;
    let err = Registry::from_configs(&bad).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "connector `police-rms` is misconfigured: resilience.deadline_ms: must be at least 1"
    );
}
