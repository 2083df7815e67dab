//! The synthetic police system behind the example mapping, and the
//! behaviours every database must show through it. Each scenario takes a
//! connector so SQLite and PostgreSQL are held to the same assertions.

#![allow(dead_code, reason = "each test binary uses some of these helpers")]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail the test that called them"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use liaison_connectors::synthetic::{self, SyntheticSummary};
use liaison_connectors::{
    Connector, ConnectorError, Fault, PersonQuery, RowProblem, SqlConnector, SqlConnectorConfig,
};
use liaison_proto::v1::record::Body;
use liaison_proto::v1::{
    Address, Classification, Date, Identifier, IdentifierScheme, Incident, NameUse, Person,
    PersonName, Provenance, Record, RecordKind, Relationship, RiskAssessment, RiskLevel,
    SafeguardingConcern, WarningMarker,
};
use prost_types::Timestamp;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub const DATASET: &str = "police-rms";
pub const AGENCY: &str = "eastborough-police";
pub const SYSTEM: &str = "Synthetic RMS";
pub const PEOPLE: usize = 200;
pub const SEED: u64 = 42;
const POLICE_HANDLING: &str = "police information: do not disclose to the subject or a third party without consulting the provider";

pub fn example_mapping() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/police-rms.toml")
}

pub fn config(url: &str) -> SqlConnectorConfig {
    SqlConnectorConfig {
        id: DATASET.into(),
        agency: AGENCY.into(),
        title: "Eastborough Police records management".into(),
        system: SYSTEM.into(),
        url: url.into(),
        max_connections: Some(2),
        mapping: None,
        mapping_file: Some(example_mapping()),
        resilience: Default::default(),
    }
}

/// Generates the synthetic system into a SQLite file under `dir` and opens
/// the example mapping over it, read-only.
pub async fn sqlite_police(dir: &Path) -> (SqlConnector, SyntheticSummary) {
    let url = format!("sqlite://{}", dir.join("police-rms.db").display());
    let summary = synthetic::generate_police_rms(&url, PEOPLE, SEED)
        .await
        .unwrap();
    let connector = SqlConnector::new(&config(&format!("{url}?mode=ro")))
        .await
        .unwrap();
    (connector, summary)
}

/// A PostgreSQL database made for one test, dropped with it.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    /// Creates a fresh database. Fails, rather than skipping, when
    /// PostgreSQL cannot be reached: a skipped test proves nothing.
    pub async fn create() -> Self {
        let admin_url = std::env::var("LIAISON_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut conn = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {admin_url} ({e}); these tests need it \
                 (set LIAISON_TEST_POSTGRES_URL to point elsewhere)"
            )
        });
        let name = format!("conn_test_{}", unique_suffix());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    // Runs on success and on a failed assertion alike, so no test leaves a
    // database behind. `WITH (FORCE)` closes connections still open.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin_url).await?;
                sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
                conn.close().await
            })
        })
        .join();
        if !std::thread::panicking() {
            dropped.unwrap().unwrap();
        }
    }
}

/// Generates the synthetic system into a fresh PostgreSQL database and
/// opens the example mapping over it.
pub async fn postgres_police() -> (PgDatabase, SqlConnector, SyntheticSummary) {
    let db = PgDatabase::create().await;
    let summary = synthetic::generate_police_rms(&db.url, PEOPLE, SEED)
        .await
        .unwrap();
    let connector = SqlConnector::new(&config(&db.url)).await.unwrap();
    (db, connector, summary)
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{:x}_{:x}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The URL with its database replaced by `name`, query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_and_path = &base[scheme_end..];
    let host = host_and_path.split('/').next().unwrap();
    format!("{}{host}/{name}{query}", &base[..scheme_end])
}

pub fn date(year: i32, month: i32, day: i32) -> Date {
    Date { year, month, day }
}

pub fn at(when: time::OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: when.unix_timestamp(),
        nanos: 0,
    }
}

fn provenance(source_id: &str, updated_at: Option<Timestamp>) -> Option<Provenance> {
    Some(Provenance {
        agency_id: AGENCY.into(),
        dataset_id: DATASET.into(),
        system: SYSTEM.into(),
        source_id: source_id.into(),
        updated_at,
    })
}

fn nhs(value: &str) -> Identifier {
    Identifier {
        scheme: IdentifierScheme::NhsNumber as i32,
        value: value.into(),
        system: String::new(),
    }
}

fn local(value: &str) -> Identifier {
    Identifier {
        scheme: IdentifierScheme::Local as i32,
        value: value.into(),
        system: "Synthetic RMS nominal".into(),
    }
}

fn name(given: &str, family: &str) -> Vec<PersonName> {
    vec![PersonName {
        given_names: given.into(),
        family_name: family.into(),
        r#use: NameUse::Usual as i32,
    }]
}

fn albion_drive() -> Address {
    Address {
        lines: vec!["Flat 3, Kingsmead House".into(), "27 Albion Drive".into()],
        locality: "London".into(),
        postcode: "E8 1DY".into(),
        from: Some(date(2021, 9, 1)),
        to: None,
    }
}

/// Leah Marsh exactly as the mapping must produce her.
pub fn leah() -> Person {
    Person {
        person_id: "police-rms:100001".into(),
        names: name("Leah Jade", "Marsh"),
        date_of_birth: Some(date(2013, 5, 14)),
        addresses: vec![
            albion_drive(),
            Address {
                lines: vec!["12 Mill Lane".into()],
                locality: "Bromley".into(),
                postcode: "BR1 3PQ".into(),
                from: Some(date(2013, 6, 1)),
                to: None,
            },
        ],
        identifiers: vec![nhs("9434765919"), local("100001")],
        gender: "female".into(),
        provenance: provenance(
            "100001",
            Some(at(time::macros::datetime!(2024-06-12 20:15:00 UTC))),
        ),
        classification: Classification::OfficialSensitive as i32,
    }
}

/// Kerry Marsh exactly as the mapping must produce her.
pub fn kerry() -> Person {
    Person {
        person_id: "police-rms:100002".into(),
        names: name("Kerry Anne", "Marsh"),
        date_of_birth: Some(date(1989, 11, 2)),
        addresses: vec![albion_drive()],
        identifiers: vec![nhs("9990000018"), local("100002")],
        gender: "female".into(),
        provenance: provenance(
            "100002",
            Some(at(time::macros::datetime!(2024-03-02 09:00:00 UTC))),
        ),
        classification: Classification::OfficialSensitive as i32,
    }
}

fn record(
    source_id: &str,
    person: &str,
    kind: RecordKind,
    handling: &[&str],
    body: Body,
) -> Record {
    let mut handling_instructions = vec![POLICE_HANDLING.to_owned()];
    handling_instructions.extend(handling.iter().map(|h| (*h).to_owned()));
    Record {
        record_id: format!("police-rms:{source_id}"),
        person_id: format!("police-rms:{person}"),
        kind: kind as i32,
        provenance: provenance(source_id, None),
        classification: Classification::OfficialSensitive as i32,
        handling_instructions,
        sensitivity_markers: Vec::new(),
        body: Some(body),
    }
}

/// Every record Leah has, in the order the mapping returns them.
pub fn leah_records() -> Vec<Record> {
    vec![
        record(
            "CAD/2024/002345/100001",
            "100001",
            RecordKind::Incident,
            &[],
            Body::Incident(Incident {
                reference: "CAD/2024/002345".into(),
                category: "missing-person".into(),
                summary: "Child did not return from school; found safe at a friend's address four hours later.".into(),
                occurred_at: Some(at(time::macros::datetime!(2024-06-12 19:40:00 UTC))),
                location: "Hackney Downs".into(),
                person_role: "involved".into(),
            }),
        ),
        record(
            "CAD/2024/001234/100001",
            "100001",
            RecordKind::Incident,
            &[],
            Body::Incident(Incident {
                reference: "CAD/2024/001234".into(),
                category: "domestic-abuse".into(),
                summary: "Neighbour reported shouting and a child crying. Male ex-partner arrested at scene.".into(),
                occurred_at: Some(at(time::macros::datetime!(2024-03-01 22:15:00 UTC))),
                location: "27 Albion Drive, London".into(),
                person_role: "witness".into(),
            }),
        ),
        record(
            "CHILD_CONCERN/1",
            "100001",
            RecordKind::SafeguardingConcern,
            &["concerns about a child: consult the lead before contacting the family"],
            Body::SafeguardingConcern(SafeguardingConcern {
                category: "emotional-abuse".into(),
                summary: "Child present during domestic abuse incident CAD/2024/001234; referred to children's social care.".into(),
                raised_at: Some(at(time::macros::datetime!(2024-03-02 00:00:00 UTC))),
                status: "referred".into(),
                lead: "Eastborough MASH".into(),
            }),
        ),
        record(
            "ASSOC/100001/100002",
            "100001",
            RecordKind::Relationship,
            &[],
            Body::Relationship(Relationship {
                related_person_id: "police-rms:100002".into(),
                relationship: "parent".into(),
                related_name: "Kerry Marsh".into(),
            }),
        ),
    ]
}

pub fn query() -> PersonQuery {
    PersonQuery::default()
}

pub fn ids(persons: &[Person]) -> Vec<&str> {
    persons.iter().map(|p| p.person_id.as_str()).collect()
}

fn problem(source_id: &str, problem: &str) -> RowProblem {
    RowProblem {
        source_id: source_id.into(),
        problem: problem.into(),
    }
}

// ---- search -------------------------------------------------------------

pub async fn finds_leah_by_name_and_date_of_birth(c: &dyn Connector) {
    let q = PersonQuery {
        family_name: Some("marsh".into()),
        given_name: Some("le".into()),
        date_of_birth: Some(date(2013, 5, 14)),
        ..query()
    };
    let found = c.search(&q, 10).await.unwrap();
    assert_eq!(found.persons, vec![leah()]);
    assert_eq!(found.skipped, vec![]);
}

pub async fn finds_the_marshes_by_family_name_and_postcode(c: &dyn Connector) {
    let by_name = PersonQuery {
        family_name: Some("MARSH".into()),
        ..query()
    };
    let found = c.search(&by_name, 10).await.unwrap();
    assert_eq!(found.persons, vec![kerry(), leah()]);

    // Stored as `e81dy` for Leah and `E8 1DY` for Kerry; asked as a third way.
    let by_postcode = PersonQuery {
        postcode: Some(" e8  1dy".into()),
        ..query()
    };
    let found = c.search(&by_postcode, 10).await.unwrap();
    assert_eq!(
        ids(&found.persons),
        vec!["police-rms:100002", "police-rms:100001"]
    );

    let limited = c.search(&by_name, 1).await.unwrap();
    assert_eq!(ids(&limited.persons), vec!["police-rms:100002"]);
    assert!(c.search(&by_name, 0).await.unwrap().persons.is_empty());
}

pub async fn finds_people_by_identifier(c: &dyn Connector) {
    let by_nhs = PersonQuery {
        identifiers: vec![Identifier {
            scheme: IdentifierScheme::NhsNumber as i32,
            value: "943 476 5919".into(),
            system: String::new(),
        }],
        ..query()
    };
    let found = c.search(&by_nhs, 10).await.unwrap();
    assert_eq!(found.persons, vec![leah()]);

    let by_pnc = PersonQuery {
        identifiers: vec![Identifier {
            scheme: IdentifierScheme::PncId as i32,
            value: "08/123456k".into(),
            system: String::new(),
        }],
        ..query()
    };
    let found = c.search(&by_pnc, 10).await.unwrap();
    assert_eq!(ids(&found.persons), vec!["police-rms:100003"]);
    let wayne = found.persons.first().unwrap();
    assert_eq!(
        wayne.identifiers,
        vec![
            nhs("9990000026"),
            Identifier {
                scheme: IdentifierScheme::PncId as i32,
                value: "08/123456K".into(),
                system: String::new(),
            },
            local("100003"),
        ]
    );
    assert_eq!(wayne.addresses.first().unwrap().postcode, "N16 7AB");

    // Both identifiers must match: Leah's NHS number and Wayne's PNC id
    // belong to no one person.
    let both = PersonQuery {
        identifiers: [by_nhs.identifiers, by_pnc.identifiers].concat(),
        ..query()
    };
    assert!(c.search(&both, 10).await.unwrap().persons.is_empty());
}

pub async fn sql_metacharacters_in_a_query_are_only_data(c: &dyn Connector) {
    let hostile = [
        PersonQuery {
            family_name: Some("Marsh' OR '1'='1".into()),
            ..query()
        },
        PersonQuery {
            family_name: Some("Marsh'; DROP TABLE NOMINAL;--".into()),
            ..query()
        },
        // Unescaped, `%` would match every Marsh.
        PersonQuery {
            family_name: Some("Marsh".into()),
            given_name: Some("%".into()),
            ..query()
        },
        PersonQuery {
            family_name: Some("Marsh".into()),
            given_name: Some("_eah".into()),
            ..query()
        },
        PersonQuery {
            identifiers: vec![Identifier {
                scheme: IdentifierScheme::Local as i32,
                value: "1 OR 1=1".into(),
                system: String::new(),
            }],
            ..query()
        },
    ];
    for q in &hostile {
        let found = c.search(q, 10).await.unwrap();
        assert_eq!(found.persons, vec![], "{q:?}");
    }
    // And the tables are all still there.
    let marshes = PersonQuery {
        family_name: Some("Marsh".into()),
        ..query()
    };
    assert_eq!(c.search(&marshes, 10).await.unwrap().persons.len(), 2);
}

pub async fn sql_in_a_name_comes_back_as_data(c: &dyn Connector) {
    let q = PersonQuery {
        family_name: Some("Tables".into()),
        given_name: Some("Robert'); DROP".into()),
        ..query()
    };
    let found = c.search(&q, 10).await.unwrap();
    assert_eq!(ids(&found.persons), vec!["police-rms:100005"]);
    let robert = found.persons.first().unwrap();
    assert_eq!(
        robert.names,
        name("Robert'); DROP TABLE NOMINAL;--", "Tables")
    );
    let fetched = c.fetch("100005", &[]).await.unwrap();
    assert_eq!(fetched.person.as_ref(), Some(robert));
}

pub async fn malformed_searches_are_the_callers_fault(c: &dyn Connector) {
    let cases = [
        (
            query(),
            "dataset `police-rms` cannot run the search: the query has no criteria",
        ),
        (
            PersonQuery {
                family_name: Some("   ".into()),
                ..query()
            },
            "dataset `police-rms` cannot run the search: the query has no criteria",
        ),
        (
            PersonQuery {
                date_of_birth: Some(date(2010, 2, 31)),
                ..query()
            },
            "dataset `police-rms` cannot run the search: `date_of_birth` 2010-02-31 is not a calendar date",
        ),
        (
            PersonQuery {
                postcode: Some("E8 1D".into()),
                ..query()
            },
            "dataset `police-rms` cannot run the search: `postcode` `E8 1D` is not valid: a postcode has five to seven letters and digits",
        ),
        (
            PersonQuery {
                identifiers: vec![nhs("943 476 5918")],
                ..query()
            },
            "dataset `police-rms` cannot run the search: identifier `943 476 5918` of scheme `IDENTIFIER_SCHEME_NHS_NUMBER` is not valid: the nhs number's check digit does not match",
        ),
        (
            PersonQuery {
                identifiers: vec![nhs("943 476 5919"), nhs("999 000 0018")],
                ..query()
            },
            "dataset `police-rms` cannot run the search: the query holds more than one identifier of scheme `IDENTIFIER_SCHEME_NHS_NUMBER`",
        ),
        (
            PersonQuery {
                family_name: Some("x".repeat(300)),
                ..query()
            },
            "dataset `police-rms` cannot run the search: `family_name` is longer than 256 bytes",
        ),
    ];
    for (q, message) in cases {
        let err = c.search(&q, 10).await.unwrap_err();
        assert!(
            matches!(err, ConnectorError::InvalidQuery { .. }),
            "{err:?}"
        );
        assert_eq!(err.fault(), Fault::Caller);
        assert_eq!(err.to_string(), message);
    }
}

// ---- fetch --------------------------------------------------------------

pub async fn fetches_leah_and_every_record(c: &dyn Connector) {
    let fetched = c.fetch("100001", &[]).await.unwrap();
    assert_eq!(fetched.person, Some(leah()));
    assert_eq!(fetched.records, leah_records());
    assert_eq!(fetched.skipped, vec![]);
}

pub async fn fetches_records_by_kind(c: &dyn Connector) {
    let only_incidents = c.fetch("100001", &[RecordKind::Incident]).await.unwrap();
    let incidents: Vec<Record> = leah_records()
        .into_iter()
        .filter(|r| r.kind == RecordKind::Incident as i32)
        .collect();
    assert_eq!(only_incidents.records, incidents);
    assert_eq!(only_incidents.person, Some(leah()));

    let risk = c
        .fetch("100002", &[RecordKind::RiskAssessment])
        .await
        .unwrap();
    assert_eq!(
        risk.records,
        vec![record(
            "DASH_RISK/1",
            "100002",
            RecordKind::RiskAssessment,
            &["marac information: share only with marac members"],
            Body::RiskAssessment(RiskAssessment {
                framework: "DASH".into(),
                level: RiskLevel::High as i32,
                assessed_at: Some(at(time::macros::datetime!(2024-03-02 01:30:00 UTC))),
                summary: "Escalating abuse; strangulation disclosed. Referred to MARAC.".into(),
            }),
        )]
    );

    let markers = c
        .fetch(
            "100003",
            &[RecordKind::WarningMarker, RecordKind::Relationship],
        )
        .await
        .unwrap();
    assert_eq!(
        markers.records,
        vec![
            record(
                "WARN_FLAG/2",
                "100003",
                RecordKind::WarningMarker,
                &[],
                Body::WarningMarker(WarningMarker {
                    marker: "violent".into(),
                    description: "Violent towards partners.".into(),
                    from: Some(date(2019, 1, 15)),
                    until: None,
                }),
            ),
            record(
                "WARN_FLAG/3",
                "100003",
                RecordKind::WarningMarker,
                &[],
                Body::WarningMarker(WarningMarker {
                    marker: "weapons".into(),
                    description: "Known to carry a knife.".into(),
                    from: Some(date(2019, 1, 15)),
                    until: Some(date(2025, 1, 15)),
                }),
            ),
            record(
                "ASSOC/100003/100002",
                "100003",
                RecordKind::Relationship,
                &[],
                Body::Relationship(Relationship {
                    related_person_id: "police-rms:100002".into(),
                    relationship: "ex-partner".into(),
                    related_name: "Kerry Marsh".into(),
                }),
            ),
        ]
    );
}

pub async fn unknown_and_malformed_ids(c: &dyn Connector) {
    let nobody = c.fetch("999999", &[]).await.unwrap();
    assert_eq!(nobody, Default::default());
    // Integer ids are read as integers, so a leading zero finds Leah.
    let padded = c
        .fetch("0100001", &[RecordKind::Relationship])
        .await
        .unwrap();
    assert_eq!(padded.person, Some(leah()));

    for (id, reason) in [
        ("abc", "this dataset's source ids are integers"),
        (
            "1; DROP TABLE NOMINAL",
            "this dataset's source ids are integers",
        ),
        ("", "source ids are not empty"),
    ] {
        let err = c.fetch(id, &[]).await.unwrap_err();
        assert_eq!(err.fault(), Fault::Caller);
        assert_eq!(
            err.to_string(),
            format!("dataset `police-rms` has no source id `{id}`: {reason}")
        );
    }
}

// ---- hostile rows -------------------------------------------------------

pub async fn hostile_rows_are_skipped_or_trimmed_and_reported(c: &dyn Connector) {
    let fetched = c.fetch("100004", &[]).await.unwrap();
    let person = fetched.person.unwrap();
    assert_eq!(person.names, name("Jordan", "Hale"));
    assert_eq!(person.date_of_birth, None);
    assert_eq!(person.identifiers, vec![local("100004")]);
    assert_eq!(
        person.addresses,
        vec![Address {
            lines: vec!["9 Cedar Close".into()],
            locality: "London".into(),
            postcode: String::new(),
            from: Some(date(2020, 1, 1)),
            to: None,
        }]
    );

    let kinds: Vec<(&str, i32)> = fetched
        .records
        .iter()
        .map(|r| (r.record_id.as_str(), r.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                "police-rms:CAD/2024/009999/100004",
                RecordKind::Incident as i32
            ),
            ("police-rms:DASH_RISK/3", RecordKind::RiskAssessment as i32),
        ]
    );
    let Some(Body::Incident(incident)) = &fetched.records.first().unwrap().body else {
        panic!("not an incident");
    };
    assert_eq!(incident.category, "other");
    assert_eq!(incident.summary.len(), 4096);
    assert!(incident.summary.starts_with("Repeated narrative text. "));
    let Some(Body::RiskAssessment(risk)) = &fetched.records.get(1).unwrap().body else {
        panic!("not a risk assessment");
    };
    assert_eq!(risk.level, RiskLevel::Medium as i32);

    let mut skipped = fetched.skipped;
    let dob = skipped.remove(0);
    assert_eq!(dob.source_id, "100004");
    assert!(
        dob.problem.starts_with(
            "`person.date_of_birth` (column `DOB`): not a date in format `[day]/[month]/[year]` ("
        ) && dob.problem.ends_with("); value dropped"),
        "{dob:?}"
    );
    assert_eq!(
        skipped,
        vec![
            problem(
                "100004",
                "`person.identifiers[0].value` (column `NHS_NO`): the nhs number's check digit does not match; value dropped",
            ),
            problem(
                "100004",
                "`person.addresses[0].postcode` (column `PCODE`): a postcode has five to seven letters and digits; value dropped",
            ),
            problem(
                "CAD/2024/009999/100004",
                "`incident.summary` (column `MO_TEXT`) was cut from 102400 to 4096 bytes",
            ),
            problem(
                "DASH_RISK/2",
                "`risk_assessment.level` (column `RISK_LVL`): `X` is not in code list `dash_risk`; row skipped",
            ),
        ]
    );

    // A search reports the person's problems beside the person.
    let q = PersonQuery {
        family_name: Some("Hale".into()),
        ..query()
    };
    let found = c.search(&q, 10).await.unwrap();
    assert_eq!(ids(&found.persons), vec!["police-rms:100004"]);
    assert_eq!(found.skipped.len(), 3);
    assert!(found.skipped.iter().all(|p| p.source_id == "100004"));
}

pub async fn generated_people_are_searchable(c: &dyn Connector, summary: &SyntheticSummary) {
    assert_eq!(summary.people, PEOPLE + 5);
    assert_eq!(summary.fixed.leah_marsh, "100001");
    // Any generated person can be found by their own NHS number.
    let fetched = c.fetch("200001", &[]).await.unwrap();
    let person = fetched.person.unwrap();
    let family = person.names.first().unwrap().family_name.clone();
    let q = PersonQuery {
        family_name: Some(family),
        date_of_birth: person.date_of_birth,
        ..query()
    };
    let found = c.search(&q, 50).await.unwrap();
    assert!(found.persons.contains(&person), "{found:?}");
}
