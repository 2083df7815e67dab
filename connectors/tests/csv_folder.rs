//! The CSV folder connector over the synthetic children's services export:
//! mapping, complete-file rules, watching, and malformed rows contained.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use liaison_connectors::synthetic::council::{self, write_council_export};
use liaison_connectors::{
    Connector, ConnectorConfig, ConnectorError, CsvFolderConfig, CsvFolderConnector, Fault,
    PersonQuery,
};
use liaison_proto::v1::record::Body;
use liaison_proto::v1::{
    Address, Classification, Date, Identifier, IdentifierScheme, NameUse, Person, PersonName,
    Provenance, Record, RecordKind, SafeguardingConcern, WarningMarker,
};
use prost_types::Timestamp;

const HANDLING: &str =
    "children's services information: share only with the named safeguarding partner";

fn example_mapping() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/council-csv.toml")
}

fn config(folder: &Path, extra: &str) -> CsvFolderConfig {
    let text = format!(
        r#"
kind = "csv-folder"
id = "council-csv"
agency = "eastborough-council"
title = "Eastborough children's services nightly export"
system = "Synthetic CMS"
folder = "{}"
settle_ms = 50
poll_interval_ms = 100
mapping_file = "{}"
{extra}
"#,
        folder.display(),
        example_mapping().display()
    );
    match toml::from_str::<ConnectorConfig>(&text).unwrap() {
        ConnectorConfig::CsvFolder(c) => c,
        other => panic!("{other:?}"),
    }
}

/// Writes the export and waits for it to settle, then opens the connector.
async fn fixture() -> (tempfile::TempDir, CsvFolderConnector) {
    let dir = tempfile::tempdir().unwrap();
    write_council_export(dir.path(), 100, 3, false).unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let c = CsvFolderConnector::new(&config(dir.path(), ""))
        .await
        .unwrap();
    assert!(c.report().is_some(), "the settled export is read at once");
    (dir, c)
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
        agency_id: "eastborough-council".into(),
        dataset_id: "council-csv".into(),
        system: "Synthetic CMS".into(),
        source_id: source_id.into(),
        updated_at,
    })
}

fn identifier(scheme: IdentifierScheme, value: &str, system: &str) -> Identifier {
    Identifier {
        scheme: scheme as i32,
        value: value.into(),
        system: system.into(),
    }
}

fn leah() -> Person {
    Person {
        person_id: "council-csv:5001".into(),
        names: vec![PersonName {
            given_names: "Leah Jade".into(),
            family_name: "Marsh".into(),
            r#use: NameUse::Usual as i32,
        }],
        date_of_birth: Some(date(2013, 5, 14)),
        addresses: vec![Address {
            lines: vec!["Flat 3, Kingsmead House".into(), "27 Albion Drive".into()],
            locality: "London".into(),
            postcode: "E8 1DY".into(),
            from: None,
            to: None,
        }],
        identifiers: vec![
            identifier(IdentifierScheme::NhsNumber, "9434765919", ""),
            identifier(IdentifierScheme::Upn, "A12345678901B", ""),
            identifier(IdentifierScheme::Local, "5001", "Synthetic CMS person"),
        ],
        gender: "female".into(),
        provenance: provenance(
            "5001",
            Some(at(time::macros::datetime!(2024-06-12 20:15:00 UTC))),
        ),
        classification: Classification::OfficialSensitive as i32,
    }
}

fn leah_records() -> Vec<Record> {
    vec![
        Record {
            record_id: "council-csv:CP_PLAN/P-1".into(),
            person_id: "council-csv:5001".into(),
            kind: RecordKind::WarningMarker as i32,
            provenance: provenance("CP_PLAN/P-1", None),
            classification: Classification::OfficialSensitive as i32,
            handling_instructions: vec![HANDLING.into()],
            sensitivity_markers: Vec::new(),
            body: Some(Body::WarningMarker(WarningMarker {
                marker: "child-protection-plan".into(),
                description: "emotional-abuse".into(),
                from: Some(date(2024, 3, 5)),
                until: None,
            })),
        },
        Record {
            record_id: "council-csv:REFERRAL/R-1".into(),
            person_id: "council-csv:5001".into(),
            kind: RecordKind::SafeguardingConcern as i32,
            provenance: provenance("REFERRAL/R-1", None),
            classification: Classification::OfficialSensitive as i32,
            handling_instructions: vec![
                HANDLING.into(),
                "referral information: consult the allocated team before contacting the family"
                    .into(),
            ],
            sensitivity_markers: Vec::new(),
            body: Some(Body::SafeguardingConcern(SafeguardingConcern {
                category: "abuse-or-neglect".into(),
                summary: "Police referral after domestic abuse incident; child present.".into(),
                raised_at: Some(at(time::macros::datetime!(2024-03-02 00:00:00 UTC))),
                status: "section-47-enquiry".into(),
                lead: "Eastborough MASH".into(),
            })),
        },
    ]
}

fn ids(persons: &[Person]) -> Vec<&str> {
    persons.iter().map(|p| p.person_id.as_str()).collect()
}

#[tokio::test]
async fn finds_and_fetches_children_through_the_mapping() {
    let (_dir, c) = fixture().await;
    let q = PersonQuery {
        family_name: Some("MARSH".into()),
        given_name: Some("le".into()),
        date_of_birth: Some(date(2013, 5, 14)),
        ..PersonQuery::default()
    };
    let found = c.search(&q, 10).await.unwrap();
    assert_eq!(found.persons, vec![leah()]);
    assert_eq!(found.skipped, vec![]);

    let by_upn = PersonQuery {
        identifiers: vec![identifier(IdentifierScheme::Upn, "a12345678901b", "")],
        ..PersonQuery::default()
    };
    assert_eq!(c.search(&by_upn, 10).await.unwrap().persons, vec![leah()]);

    let by_postcode = PersonQuery {
        postcode: Some("e81dy".into()),
        ..PersonQuery::default()
    };
    let found = c.search(&by_postcode, 10).await.unwrap();
    assert_eq!(
        ids(&found.persons),
        vec!["council-csv:5001", "council-csv:5002"]
    );
    assert_eq!(
        ids(&c.search(&by_postcode, 1).await.unwrap().persons),
        vec!["council-csv:5001"]
    );

    let by_given = PersonQuery {
        given_name: Some("tyl".into()),
        ..PersonQuery::default()
    };
    assert_eq!(
        ids(&c.search(&by_given, 10).await.unwrap().persons),
        vec!["council-csv:5002"]
    );

    let fetched = c.fetch(council::LEAH_MARSH, &[]).await.unwrap();
    assert_eq!(fetched.person, Some(leah()));
    assert_eq!(fetched.records, leah_records());
    assert_eq!(fetched.skipped, vec![]);
    let only_referrals = c
        .fetch(council::LEAH_MARSH, &[RecordKind::SafeguardingConcern])
        .await
        .unwrap();
    assert_eq!(only_referrals.records, leah_records()[1..]);
    assert_eq!(c.fetch("9999", &[]).await.unwrap(), Default::default());
}

#[tokio::test]
async fn malformed_rows_are_skipped_and_reported_by_file_and_line() {
    let (_dir, c) = fixture().await;
    let report = c.report().unwrap();
    assert_eq!(report.generation, 1);
    assert_eq!(report.rows.get("CHILDREN.csv"), Some(&103));
    let problems: Vec<String> = report
        .problems
        .iter()
        .map(|p| format!("{}:{} {} {}", p.file, p.line, p.source_id, p.problem))
        .collect();
    let expected = [
        "CHILDREN.csv:4 5004 `person.date_of_birth` (column `DOB`): not a date in format `[day]/[month]/[year]`",
        "CHILDREN.csv:4 5004 `person.identifiers[0].value` (column `NHS_NUMBER`): the nhs number's check digit does not match; value dropped",
        "CHILDREN.csv:4 5004 `person.identifiers[1].value` (column `UPN`): a upn has a letter, eleven digits and a digit or letter; value dropped",
        "CHILDREN.csv:4 5004 `person.updated_at` (column `LAST_MODIFIED`): not a time in format",
        "CHILDREN.csv:4 5004 `person.addresses[0].postcode` (column `POSTCODE`): a postcode has five to seven letters and digits; value dropped",
        "CHILDREN.csv:5  the row has 3 fields where the header has 12; row skipped",
        "REFERRALS.csv:",
        "CP_PLANS.csv:3  the row is for person `9999`, who is not in `CHILDREN.csv`; row skipped",
    ];
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    let binary = problems
        .iter()
        .find(|p| p.starts_with("REFERRALS.csv:"))
        .unwrap();
    assert!(
        binary.ends_with(
            "REFERRAL/R-3 `safeguarding_concern.summary` (column `NOTES`): column `NOTES` holds binary data, not text; value dropped"
        ),
        "{binary}"
    );
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    // Jordan is still served, without the values that failed.
    let fetched = c.fetch(council::JORDAN_HALE, &[]).await.unwrap();
    let jordan = fetched.person.unwrap();
    assert_eq!(jordan.date_of_birth, None);
    assert_eq!(
        jordan.identifiers,
        vec![identifier(
            IdentifierScheme::Local,
            "5004",
            "Synthetic CMS person"
        )]
    );
    assert!(
        fetched
            .skipped
            .iter()
            .all(|p| p.problem.starts_with("`CHILDREN.csv` line 4: ")
                || p.problem.starts_with("`REFERRALS.csv` line ")),
        "{:#?}",
        fetched.skipped
    );
    assert!(
        !problems
            .iter()
            .any(|p| p.contains("943 476 5918") || p.contains("Short"))
    );
}

#[tokio::test]
async fn a_new_export_is_picked_up_once_complete() {
    let (dir, c) = fixture().await;
    let generation = c.report().unwrap().generation;
    // An exporter writing in place: the fresh file is not read until it has
    // settled.
    let children = dir.path().join("CHILDREN.csv");
    let mut text = std::fs::read_to_string(&children).unwrap();
    text.push_str(
        "7001,Newcomer,Ada,01/01/2020,2,,,1 New Street,,London,E9 5AA,2024-07-01 10:00\n",
    );
    std::fs::write(&children, &text).unwrap();
    assert_eq!(
        c.refresh().await.unwrap().unwrap().generation,
        generation,
        "a file modified just now is not read"
    );
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(5), c.changed_since(generation))
        .await
        .expect("the watcher reads the settled export")
        .unwrap();
    let took = started.elapsed();
    assert_eq!(report.generation, generation + 1);
    assert!(took >= Duration::from_millis(30), "{took:?}");
    let q = PersonQuery {
        family_name: Some("newcomer".into()),
        ..PersonQuery::default()
    };
    assert_eq!(
        ids(&c.search(&q, 10).await.unwrap().persons),
        vec!["council-csv:7001"]
    );
}

#[tokio::test]
async fn done_markers_gate_reading_when_required() {
    let dir = tempfile::tempdir().unwrap();
    write_council_export(dir.path(), 5, 3, false).unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let c = CsvFolderConnector::new(&config(dir.path(), "require_done_marker = true"))
        .await
        .unwrap();
    assert_eq!(c.report(), None);
    let err = c.fetch(council::LEAH_MARSH, &[]).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Source);
    assert_eq!(
        err.to_string(),
        "dataset `council-csv` is unreachable: no complete export has been read from the folder yet"
    );
    write_council_export(dir.path(), 5, 3, true).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), c.changed_since(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.generation, 1);
    assert!(
        c.fetch(council::LEAH_MARSH, &[])
            .await
            .unwrap()
            .person
            .is_some()
    );
}

#[tokio::test]
async fn a_missing_folder_is_the_sources_fault_until_an_export_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("not-yet");
    let c = CsvFolderConnector::new(&config(&folder, "")).await.unwrap();
    let q = PersonQuery {
        family_name: Some("Marsh".into()),
        ..PersonQuery::default()
    };
    let err = c.search(&q, 10).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "dataset `council-csv` is unreachable: `CHILDREN.csv` is not in the folder"
    );
    write_council_export(&folder, 5, 3, false).unwrap();
    tokio::time::timeout(Duration::from_secs(5), c.changed_since(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.search(&q, 10).await.unwrap().persons.len(), 2);
}

#[tokio::test]
async fn an_export_that_does_not_fit_the_mapping_leaves_the_last_good_one_in_service() {
    let (dir, c) = fixture().await;
    std::fs::write(
        dir.path().join("CHILDREN.csv"),
        "PERSON_ID,SURNAME\n1,Renamed\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let err = c.refresh().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "dataset `council-csv`: mapping does not fit the source: `CHILDREN.csv` has no columns \
         `ADDRESS_1`, `ADDRESS_2`, `DOB`, `FORENAMES`, `GENDER`, `LAST_MODIFIED`, `LEGAL_SURNAME`, \
         `NHS_NUMBER`, `POSTCODE`, `TOWN`, `UPN`"
    );
    assert_eq!(err.fault(), Fault::Configuration);
    assert_eq!(c.report().unwrap().generation, 1);
    assert!(
        c.fetch(council::LEAH_MARSH, &[])
            .await
            .unwrap()
            .person
            .is_some()
    );
}

#[tokio::test]
async fn mappings_naming_other_kinds_keys_or_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut mapping: liaison_connectors::mapping::Mapping =
        toml::from_str(&std::fs::read_to_string(example_mapping()).unwrap()).unwrap();
    mapping.person.file = Some("../etc/passwd".into());
    mapping.person.names[0].each = Some("/name".into());
    mapping
        .records
        .safeguarding_concern
        .as_mut()
        .unwrap()
        .person_source_id = None;
    let err = CsvFolderConnector::with_mapping(&config(dir.path(), ""), &mapping)
        .await
        .unwrap_err();
    let ConnectorError::InvalidConfig { problems, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        problems,
        vec![
            "person.names[0].each: is only read by `json-http` connectors",
            "person.file: `../etc/passwd` is not a plain file name in the folder",
            "records.safeguarding_concern.person_source_id: is required by `csv-folder` connectors",
        ]
    );
}

/// Replaces one file of the export as an exporter should: written under
/// another name, then renamed into place.
fn replace(dir: &Path, name: &str, text: impl AsRef<[u8]>) {
    let temporary = dir.join(format!(".{name}.partial"));
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join(name)).unwrap();
}

fn changed(changes: &liaison_connectors::Changes) -> Vec<&str> {
    changes
        .changes
        .iter()
        .map(|c| c.source_id.as_str())
        .collect()
}

#[tokio::test]
async fn a_new_export_becomes_changes_for_exactly_the_people_who_differ() {
    let (dir, c) = fixture().await;
    let generation = c.report().unwrap().generation;
    let now = c.changes(None, 10).await.unwrap();
    assert!(now.changes.is_empty() && !now.resync);

    // Leah's referral now has an outcome; a child is added; the rest of
    // the export is rewritten row for row, only reordered.
    // (The hostile referral's notes are not UTF-8, so the file is bytes.)
    let referrals = std::fs::read(dir.path().join("REFERRALS.csv")).unwrap();
    let mut lines: Vec<Vec<u8>> = referrals
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let from: &[u8] = b"R-1,5001,02/03/2024,N1,S47,";
            if l.starts_with(from) {
                [b"R-1,5001,02/03/2024,N1,CP,".as_slice(), &l[from.len()..]].concat()
            } else {
                l.to_vec()
            }
        })
        .collect();
    lines[1..].reverse();
    let mut text = lines.join(&b'\n');
    text.push(b'\n');
    replace(dir.path(), "REFERRALS.csv", &text);
    let mut children = std::fs::read_to_string(dir.path().join("CHILDREN.csv")).unwrap();
    children.push_str(
        "7001,Newcomer,Ada,01/01/2020,2,,,1 New Street,,London,E9 5AA,2024-07-01 10:00\n",
    );
    replace(dir.path(), "CHILDREN.csv", &children);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let report = c.refresh().await.unwrap().unwrap();
    assert!(report.generation > generation);

    let page = c.changes(Some(&now.cursor), 1).await.unwrap();
    assert_eq!(changed(&page), [council::LEAH_MARSH]);
    let rest = c.changes(Some(&page.cursor), 10).await.unwrap();
    assert_eq!(
        changed(&rest),
        ["7001"],
        "Tyler and the others did not change"
    );
    let end = c.changes(Some(&rest.cursor), 10).await.unwrap();
    assert!(end.changes.is_empty() && !end.resync);
    assert_eq!(end.cursor, c.changes(None, 1).await.unwrap().cursor);

    // The same export written again is read, but nobody changed.
    let generation = c.report().unwrap().generation;
    replace(dir.path(), "CHILDREN.csv", &children);
    tokio::time::timeout(Duration::from_secs(5), c.changed_since(generation))
        .await
        .unwrap()
        .unwrap();
    let again = c.changes(Some(&rest.cursor), 10).await.unwrap();
    assert!(again.changes.is_empty() && !again.resync, "{again:?}");

    // A replacement that does not fit the mapping is refused: no changes,
    // however different it is.
    replace(dir.path(), "CHILDREN.csv", "PERSON_ID,SURNAME\n1,Renamed\n");
    tokio::time::sleep(Duration::from_millis(80)).await;
    c.refresh().await.unwrap_err();
    let refused = c.changes(Some(&rest.cursor), 10).await.unwrap();
    assert!(refused.changes.is_empty() && !refused.resync, "{refused:?}");

    // A cursor from another process (a restarted gateway) that had seen
    // every change of the export in service resumes as it is; one that
    // had not is told to resynchronise; one never issued is refused.
    replace(dir.path(), "CHILDREN.csv", &children);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let restarted = CsvFolderConnector::new(&config(dir.path(), ""))
        .await
        .unwrap();
    assert!(restarted.report().is_some());
    let resumed = restarted.changes(Some(&rest.cursor), 10).await.unwrap();
    assert!(!resumed.resync && resumed.changes.is_empty(), "{resumed:?}");
    let behind = restarted.changes(Some(&now.cursor), 10).await.unwrap();
    assert!(behind.resync && behind.changes.is_empty(), "{behind:?}");
    assert_eq!(
        behind.cursor,
        restarted.changes(None, 1).await.unwrap().cursor
    );
    let err = c
        .changes(Some(&liaison_connectors::ChangeCursor("1.2".into())), 10)
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Caller);
}

#[tokio::test]
async fn a_feed_longer_than_its_log_resynchronises_rather_than_skipping() {
    let dir = tempfile::tempdir().unwrap();
    write_council_export(dir.path(), 20, 3, false).unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let c = CsvFolderConnector::new(&config(dir.path(), "max_logged_changes = 5"))
        .await
        .unwrap();
    let now = c.changes(None, 10).await.unwrap();
    // Another night: every generated child differs.
    let generation = c.report().unwrap().generation;
    write_council_export(dir.path(), 20, 4, false).unwrap();
    tokio::time::timeout(Duration::from_secs(5), c.changed_since(generation))
        .await
        .unwrap()
        .unwrap();
    let page = c.changes(Some(&now.cursor), 10).await.unwrap();
    assert!(page.resync && page.changes.is_empty(), "{page:?}");
    let after = c.changes(Some(&page.cursor), 10).await.unwrap();
    assert!(!after.resync && after.changes.is_empty());
}
