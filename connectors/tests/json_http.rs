//! The JSON over HTTP connector against the synthetic health API: mapping,
//! paging, and every way an answer can be unusable, contained.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use liaison_connectors::synthetic::health::{self, HealthServer};
use liaison_connectors::trace::{TraceParent, with_trace_parent};
use liaison_connectors::{
    Connector, ConnectorConfig, ConnectorError, Fault, JsonHttpConfig, JsonHttpConnector,
    PersonQuery, Registry, ResilienceConfig,
};
use liaison_proto::v1::record::Body;
use liaison_proto::v1::{
    Address, Classification, Date, Identifier, IdentifierScheme, NameUse, Person, PersonName,
    Provenance, Record, RecordKind, SafeguardingConcern, WarningMarker,
};
use prost_types::Timestamp;

const HANDLING: &str =
    "health information: share only with the safeguarding lead named in the request";

fn example_mapping() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/health-api.toml")
}

fn config(server: &HealthServer, token_file: &Path) -> JsonHttpConfig {
    let text = format!(
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
        token_file.display(),
        example_mapping().display()
    );
    match toml::from_str::<ConnectorConfig>(&text).unwrap() {
        ConnectorConfig::JsonHttp(c) => c,
        other => panic!("{other:?}"),
    }
}

struct Fixture {
    server: HealthServer,
    connector: JsonHttpConnector,
    _dir: tempfile::TempDir,
    config: JsonHttpConfig,
}

async fn fixture() -> Fixture {
    let server = HealthServer::start(200, 7).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let config = config(&server, &token);
    let connector = JsonHttpConnector::new(&config).await.unwrap();
    Fixture {
        server,
        connector,
        _dir: dir,
        config,
    }
}

fn date(year: i32, month: i32, day: i32) -> Date {
    Date { year, month, day }
}

fn at(when: time::OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: when.unix_timestamp(),
        nanos: 0,
    }
}

fn provenance(source_id: &str, updated_at: Option<Timestamp>) -> Option<Provenance> {
    Some(Provenance {
        agency_id: "eastborough-health".into(),
        dataset_id: "health-api".into(),
        system: "Synthetic PAS".into(),
        source_id: source_id.into(),
        updated_at,
    })
}

fn leah() -> Person {
    Person {
        person_id: "health-api:H1001".into(),
        names: vec![PersonName {
            given_names: "Leah Jade".into(),
            family_name: "MARSH".into(),
            r#use: NameUse::Usual as i32,
        }],
        date_of_birth: Some(date(2013, 5, 14)),
        addresses: vec![Address {
            lines: vec!["Flat 3, Kingsmead House".into(), "27 Albion Drive".into()],
            locality: "London".into(),
            postcode: "E8 1DY".into(),
            from: Some(date(2021, 9, 1)),
            to: None,
        }],
        identifiers: vec![
            Identifier {
                scheme: IdentifierScheme::NhsNumber as i32,
                value: "9434765919".into(),
                system: String::new(),
            },
            Identifier {
                scheme: IdentifierScheme::Local as i32,
                value: "H1001".into(),
                system: "Synthetic PAS patient".into(),
            },
        ],
        gender: "female".into(),
        provenance: provenance(
            "H1001",
            Some(at(time::macros::datetime!(2024-06-12 20:15:00 UTC))),
        ),
        classification: Classification::OfficialSensitive as i32,
    }
}

fn leah_records() -> Vec<Record> {
    vec![
        Record {
            record_id: "health-api:ALERT/AL-1".into(),
            person_id: "health-api:H1001".into(),
            kind: RecordKind::WarningMarker as i32,
            provenance: provenance("ALERT/AL-1", None),
            classification: Classification::OfficialSensitive as i32,
            handling_instructions: vec![HANDLING.into()],
            sensitivity_markers: Vec::new(),
            body: Some(Body::WarningMarker(WarningMarker {
                marker: "child-protection-plan".into(),
                description: "Subject to a child protection plan".into(),
                from: Some(date(2024, 3, 5)),
                until: None,
            })),
        },
        Record {
            record_id: "health-api:SAFEGUARDING/SG-1".into(),
            person_id: "health-api:H1001".into(),
            kind: RecordKind::SafeguardingConcern as i32,
            provenance: provenance("SAFEGUARDING/SG-1", None),
            classification: Classification::OfficialSensitive as i32,
            handling_instructions: vec![
                HANDLING.into(),
                "health safeguarding record: consult the named nurse before acting".into(),
            ],
            sensitivity_markers: Vec::new(),
            body: Some(Body::SafeguardingConcern(SafeguardingConcern {
                category: "neglect".into(),
                summary: "Missed immunisations and dental appointments; health visitor concerned."
                    .into(),
                raised_at: Some(at(time::macros::datetime!(2024-03-04 10:00:00 UTC))),
                status: "open".into(),
                lead: "Named nurse for safeguarding children".into(),
            })),
        },
    ]
}

fn nhs(value: &str) -> Identifier {
    Identifier {
        scheme: IdentifierScheme::NhsNumber as i32,
        value: value.into(),
        system: String::new(),
    }
}

#[tokio::test]
async fn finds_and_fetches_leah_through_the_mapping() {
    let f = fixture().await;
    let c = &f.connector;
    let by_name = PersonQuery {
        family_name: Some("marsh".into()),
        given_name: Some("le".into()),
        date_of_birth: Some(date(2013, 5, 14)),
        ..PersonQuery::default()
    };
    let found = c.search(&by_name, 10).await.unwrap();
    assert_eq!(found.persons, vec![leah()]);
    assert_eq!(found.skipped, vec![]);

    let by_nhs = PersonQuery {
        identifiers: vec![nhs("9434765919")],
        ..PersonQuery::default()
    };
    assert_eq!(c.search(&by_nhs, 10).await.unwrap().persons, vec![leah()]);

    let fetched = c.fetch("H1001", &[]).await.unwrap();
    assert_eq!(fetched.person, Some(leah()));
    assert_eq!(fetched.records, leah_records());
    assert_eq!(fetched.skipped, vec![]);

    let only_alerts = c
        .fetch("H1001", &[RecordKind::WarningMarker])
        .await
        .unwrap();
    assert_eq!(only_alerts.records, leah_records()[..1]);

    let nobody = c.fetch("H9999", &[]).await.unwrap();
    assert_eq!(nobody, Default::default());
}

#[tokio::test]
async fn searches_follow_next_links_within_their_bounds() {
    let f = fixture().await;
    let c = &f.connector;
    // Generated families have a dozen or so members; the API answers two
    // per page.
    let q = PersonQuery {
        family_name: Some("Patel".into()),
        ..PersonQuery::default()
    };
    let before = f.server.requests();
    let found = c.search(&q, 3).await.unwrap();
    assert_eq!(found.persons.len(), 3);
    assert!(
        found
            .persons
            .iter()
            .all(|p| p.names[0].family_name == "PATEL")
    );
    assert_eq!(
        f.server.requests() - before,
        2,
        "two pages hold three people"
    );

    // `max_pages = 5` bounds the walk whatever the limit.
    let before = f.server.requests();
    let found = c.search(&q, 50).await.unwrap();
    assert!(found.persons.len() <= 10, "{}", found.persons.len());
    assert!(f.server.requests() - before <= 5);

    assert!(c.search(&q, 0).await.unwrap().persons.is_empty());
}

#[tokio::test]
async fn hostile_values_are_dropped_and_reported() {
    let f = fixture().await;
    let fetched = f.connector.fetch(health::JORDAN_HALE, &[]).await.unwrap();
    let person = fetched.person.unwrap();
    assert_eq!(person.date_of_birth, None);
    assert_eq!(person.addresses[0].postcode, "");
    assert_eq!(
        person.identifiers,
        vec![Identifier {
            scheme: IdentifierScheme::Local as i32,
            value: "H1004".into(),
            system: "Synthetic PAS patient".into(),
        }]
    );
    let ids: Vec<&str> = fetched
        .records
        .iter()
        .map(|r| r.record_id.as_str())
        .collect();
    assert_eq!(
        ids,
        vec!["health-api:ALERT/AL-5", "health-api:SAFEGUARDING/SG-2"]
    );
    let problems: Vec<String> = fetched
        .skipped
        .iter()
        .map(|p| format!("{} {}", p.source_id, p.problem))
        .collect();
    let expected = [
        "H1004 `person.date_of_birth` (column `/birthDate`): not an iso 8601 date",
        "H1004 `person.identifiers[0].value` (column `/nhsNo`): the nhs number's check digit does not match; value dropped",
        "H1004 `person.updated_at` (column `/meta/lastUpdated`): not an rfc 3339 timestamp",
        "H1004 `person.addresses[0].postcode` (column `/postalCode`): a postcode has five to seven letters and digits; value dropped",
        "ALERT/AL-4 `warning_marker.marker` (column `/code`): `ZZZ` is not in code list `alert`; row skipped",
        " `records.safeguarding_concern` row for person `H1004` has no usable source id: column `/ref` is empty; row skipped",
        "SAFEGUARDING/SG-2 `safeguarding_concern.summary` (column `/summary`) was cut from 102399 to 4096 bytes",
    ];
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    // No problem quotes the hostile values themselves.
    assert!(problems.iter().all(|p| !p.contains("943 476 5918")));
}

#[tokio::test]
async fn unusable_answers_are_contained_errors() {
    let f = fixture().await;
    let c = &f.connector;
    let cases = [
        (
            "html",
            Fault::Source,
            "dataset `health-api`: request `person.get` got an unusable answer: the answer is `text/html`, not json",
        ),
        (
            "huge",
            Fault::Source,
            "dataset `health-api`: request `person.get` got an unusable answer: the answer is larger than 1048576 bytes",
        ),
        (
            "redirect",
            Fault::Source,
            "dataset `health-api`: request `person.get` got an unusable answer: redirects are not followed",
        ),
        (
            "unavailable",
            Fault::Source,
            "dataset `health-api`: request `person.get` was answered with status 503",
        ),
        (
            "wrong-person",
            Fault::Configuration,
            "dataset `health-api`: mapping does not fit the source: request `person.get` returned person `H1001` when asked for `wrong-person`",
        ),
    ];
    for (id, fault, message) in cases {
        let err = c.fetch(id, &[]).await.unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(err.fault(), fault, "{id}");
    }
    for (id, reason) in [
        ("", "source ids are not empty"),
        ("..", "source ids are not `.` or `..`"),
    ] {
        let err = c.fetch(id, &[]).await.unwrap_err();
        assert_eq!(err.fault(), Fault::Caller);
        assert_eq!(
            err.to_string(),
            format!("dataset `health-api` has no source id `{id}`: {reason}")
        );
    }
    // A path separator in an id stays inside its segment.
    assert_eq!(
        c.fetch("H1001/alerts", &[]).await.unwrap(),
        Default::default()
    );
}

#[tokio::test]
async fn next_links_to_another_host_are_refused() {
    let f = fixture().await;
    let offsite = PersonQuery {
        family_name: Some("offsite".into()),
        ..PersonQuery::default()
    };
    let before = f.server.requests();
    let err = f.connector.search(&offsite, 10).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "dataset `health-api`: request `person.search` got an unusable answer: a link points to another host"
    );
    assert_eq!(err.fault(), Fault::Source);
    assert_eq!(
        f.server.requests() - before,
        1,
        "the foreign link is never asked"
    );
}

#[tokio::test]
async fn credentials_and_trace_context_are_sent() {
    let f = fixture().await;
    let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    with_trace_parent(parent, f.connector.fetch("H1002", &[]))
        .await
        .unwrap();
    assert_eq!(
        f.server.last_header("traceparent").as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(
        f.server.last_header("authorization").as_deref(),
        Some("Bearer s3cret-token")
    );
    f.connector.fetch("H1002", &[]).await.unwrap();
    assert_eq!(f.server.last_header("traceparent"), None);
    // The secret never shows in debug output.
    assert!(!format!("{:?}", f.connector).contains("s3cret"));
}

#[tokio::test]
async fn the_middleware_retries_a_briefly_failing_api_and_bounds_a_stalled_one() {
    let f = fixture().await;
    let resilience = ResilienceConfig {
        deadline_ms: 300,
        failure_threshold: 10,
        ..ResilienceConfig::default()
    };
    let mut registry = Registry::default();
    let inner: Arc<dyn Connector> = Arc::new(JsonHttpConnector::new(&f.config).await.unwrap());
    registry.insert_resilient(inner, &resilience).unwrap();
    let c = registry.get("health-api").unwrap();

    f.server.fail_next(2);
    let fetched = c.fetch("H1001", &[]).await.unwrap();
    assert_eq!(fetched.person, Some(leah()));
    assert_eq!(registry.stats("health-api").unwrap().retries, 2);

    let started = Instant::now();
    let err = c.fetch("stall", &[]).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, ConnectorError::DeadlineExceeded { .. }),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert_eq!(registry.stats("health-api").unwrap().timeouts, 1);
}

#[tokio::test]
async fn configurations_are_checked_before_any_request() {
    let f = fixture().await;
    let mut bad = f.config.clone();
    bad.base_url = "http://user:pw@127.0.0.1:1/fhir".into();
    bad.headers[0].value_file = Some("/nonexistent/token".into());
    let err = JsonHttpConnector::new(&bad).await.unwrap_err();
    let message = err.to_string();
    assert_eq!(err.fault(), Fault::Configuration);
    assert!(
        message.contains("base_url: must not hold credentials; use `headers`"),
        "{message}"
    );
    assert!(
        message.contains("headers[0].value_file: cannot read `/nonexistent/token`"),
        "{message}"
    );
    assert!(!message.contains("pw@"), "{message}");

    // Keys of other connector kinds are refused by name.
    let mut mapping: liaison_connectors::mapping::Mapping =
        toml::from_str(&std::fs::read_to_string(example_mapping()).unwrap()).unwrap();
    mapping.person.search_sql = Some("SELECT 1".into());
    mapping.person.get = None;
    mapping.person.names[0].sql = Some("SELECT 1".into());
    let err = JsonHttpConnector::with_mapping(&f.config, &mapping).unwrap_err();
    let ConnectorError::InvalidConfig { problems, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        problems,
        vec![
            "person.search_sql: is only read by `sql` connectors",
            "person.names[0].sql: is only read by `sql` connectors",
            "person.get: is required by `json-http` connectors",
        ]
    );
}

#[tokio::test]
async fn an_unreachable_api_is_the_sources_fault() {
    let f = fixture().await;
    let mut config = f.config.clone();
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    config.base_url = format!("http://127.0.0.1:{port}/fhir");
    let c = JsonHttpConnector::new(&config).await.unwrap();
    let err = c.fetch("H1001", &[]).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .starts_with("dataset `health-api` is unreachable: cannot connect"),
        "{err}"
    );
    assert!(!err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn the_change_feed_follows_the_apis_log_from_now_and_resumes_anywhere() {
    let f = fixture().await;
    let c = &f.connector;
    // Nothing logged yet: "now" is the start.
    let now = c.changes(None, 10).await.unwrap();
    assert_eq!(now, liaison_connectors::Changes::default());
    let alert = f
        .server
        .add_alert(health::LEAH_MARSH, "VUL", "Vulnerable adult at home");
    f.server.log_change(health::KERRY_MARSH);
    f.server.log_change(health::LEAH_MARSH);

    let first = c.changes(Some(&now.cursor), 2).await.unwrap();
    let seen: Vec<(&str, &str)> = first
        .changes
        .iter()
        .map(|c| (c.source_id.as_str(), c.cursor.0.as_str()))
        .collect();
    assert_eq!(seen, [("H1001", "1"), ("H1002", "2")]);
    assert_eq!(first.cursor.0, "2");
    // The feed's requests carry the connector's credentials.
    assert_eq!(
        f.server.last_header("authorization").as_deref(),
        Some("Bearer s3cret-token")
    );
    let rest = c.changes(Some(&first.cursor), 2).await.unwrap();
    assert_eq!(rest.changes.len(), 1);
    assert_eq!(rest.cursor.0, "3");
    let end = c.changes(Some(&rest.cursor), 2).await.unwrap();
    assert!(end.changes.is_empty());
    assert_eq!(end.cursor, rest.cursor);
    // "Now" is the latest change, and the changed person reads anew.
    assert_eq!(c.changes(None, 1).await.unwrap().cursor.0, "3");
    let leah = c.fetch(health::LEAH_MARSH, &[]).await.unwrap();
    assert!(
        leah.records
            .iter()
            .any(|r| r.record_id == format!("health-api:ALERT/{alert}")),
        "{:?}",
        leah.records
    );

    // A cursor that is not the feed's kind is the caller's fault; a source
    // that fails is the source's, and the cursor is not lost.
    let err = c
        .changes(Some(&liaison_connectors::ChangeCursor("abc".into())), 2)
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Caller);
    f.server.fail_next(1);
    let err = c.changes(Some(&first.cursor), 2).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Source, "{err:?}");
    assert_eq!(
        c.changes(Some(&first.cursor), 2).await.unwrap().cursor.0,
        "3"
    );
}

#[tokio::test]
async fn a_change_feed_mapping_is_checked_when_the_connector_is_built() {
    let f = fixture().await;
    let mut mapping: liaison_connectors::mapping::Mapping =
        toml::from_str(&std::fs::read_to_string(example_mapping()).unwrap()).unwrap();
    let changes = mapping.changes.as_mut().unwrap();
    changes.request.as_mut().unwrap().query.clear();
    changes.head = None;
    changes.sql = Some("SELECT 1".into());
    changes.cursor = "seq".into();
    let err = JsonHttpConnector::with_mapping(&f.config, &mapping).unwrap_err();
    let ConnectorError::InvalidConfig { problems, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        problems,
        [
            "changes.sql: is only read by `sql` connectors",
            "changes.request: does not use `{after}`, so the feed would never move on",
            "changes.head: is required by `json-http` connectors",
            "changes.cursor: `seq` is not a json pointer; pointers start with `/`",
        ]
    );
}
