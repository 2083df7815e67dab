use super::*;

const EXAMPLE: &str = include_str!("../../../examples/police-rms.toml");

use crate::map::params::Param;
use crate::sql::Sql;

fn mapping(text: &str) -> Mapping {
    toml::from_str(text).unwrap()
}

const MINIMAL: &str = r#"
[person]
source_id = "{ID}"
search_sql = "SELECT ID, NAME FROM P WHERE UPPER(NAME) = UPPER(:family_name) LIMIT :limit"
get_sql = "SELECT ID, NAME FROM P WHERE ID = :source_id LIMIT :limit"
[[person.names]]
family_name = "NAME"
"#;

#[test]
fn the_police_example_compiles() {
    let plan = compile::<Sql>(
        &mapping(EXAMPLE),
        "police-rms",
        "eastborough-police",
        "Synthetic RMS",
    )
    .unwrap();
    assert_eq!(
        plan.classification,
        Classification::OfficialSensitive as i32
    );
    let kinds: Vec<_> = plan.records.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![
            RecordKind::Incident,
            RecordKind::WarningMarker,
            RecordKind::SafeguardingConcern,
            RecordKind::RiskAssessment,
            RecordKind::Relationship,
        ]
    );
    assert_eq!(plan.person.source_id_type, SourceIdType::Integer);
    assert!(
        plan.person
            .access
            .search
            .columns
            .iter()
            .any(|c| c == "NHS_NO")
    );
    assert!(
        plan.person
            .access
            .search
            .params
            .contains(&Param::PostcodeCompact)
    );
    assert!(!plan.person.access.search.sql.contains(":family_name"));
    let address = plan.person.addresses.first().unwrap();
    assert_eq!(
        address.from.as_ref().unwrap().columns,
        vec!["ADDR_1", "ADDR_2", "FROM_DT", "PCODE", "TOWN"]
    );
}

#[test]
fn a_minimal_mapping_compiles_with_defaults() {
    let plan = compile::<Sql>(&mapping(MINIMAL), "d", "a", "s").unwrap();
    assert_eq!(plan.classification, Classification::Unspecified as i32);
    assert_eq!(plan.max_search_results, 100);
    assert_eq!(plan.max_records, 500);
    assert_eq!(plan.max_list_rows, 50);
    assert_eq!(plan.offset, UtcOffset::UTC);
    assert!(plan.records.is_empty());
}

#[test]
fn every_problem_in_a_mapping_is_listed_with_its_key() {
    let text = r#"
classification = "CLASSIFICATION_TOP"
max_records = 0
source_utc_offset = "BST"
[formats]
broken = "[day]/[mnth]"
[code_lists.risk]
codes = { H = "RISK_LEVEL_HIGH", X = "EXTREME" }
[person]
source_id = "NOM_ID"
search_sql = "SELECT * FROM N WHERE A = :nhs LIMIT :limit"
get_sql = "SELECT * FROM N WHERE ID = :source_id"
date_of_birth = { column = "DOB", format = "dmy" }
gender = { column = "SEX", value = "x" }
[[person.names]]
family_name = { column = "SURNAME", codes = "missing" }
[[person.identifiers]]
scheme = "IDENTIFIER_SCHEME_PASSPORT"
value = "PASS"
[records.risk_assessment]
sql = "SELECT * FROM R WHERE N = :source_id LIMIT :limit"
source_id = "R/{ID"
[records.risk_assessment.fields]
level = { column = "L", codes = "risk" }
summary = { column = "S", format = "[year]" }
"#;
    let problems = compile::<Sql>(&mapping(text), "d", "a", "s").unwrap_err();
    let expected = [
        "formats.broken: `[day]/[mnth]` is not a format description",
        "max_records: must be at least 1",
        "classification: `CLASSIFICATION_TOP` is not a `Classification` value",
        "source_utc_offset: `BST` is not an offset such as `+01:00`",
        "person.source_id: names no column, so every row would get the same id",
        "person.date_of_birth: names format `dmy`, which is neither defined",
        "person.gender: needs exactly one of `column`, `columns`, `template` and `value`",
        "person.names[0].family_name: names code list `missing`, which is not defined",
        "person.identifiers[0].scheme: `IDENTIFIER_SCHEME_PASSPORT` is not an `IdentifierScheme` value",
        "person.search_sql: the sql uses `:nhs`, which is not a parameter here",
        "person.get_sql: the sql does not use `:limit`",
        "records.risk_assessment.source_id: template `R/{ID` has an unclosed `{`",
        "risk_assessment.level: `EXTREME` is not a `RiskLevel` value",
        "risk_assessment.summary: has a `format` but is not a date or timestamp",
    ];
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

#[test]
fn templates_parse_columns_literals_and_escapes() {
    let t = Template::parse("DASH_RISK/{RISK_ID}/{{x}}").unwrap();
    assert_eq!(
        t.parts,
        vec![
            Part::Text("DASH_RISK/".into()),
            Part::Column("RISK_ID".into()),
            Part::Text("/{x}".into()),
        ]
    );
    assert!(Template::parse("{}").is_err());
    assert!(Template::parse("a}").is_err());
}

#[test]
fn format_shapes_are_detected() {
    let shape_of = |text: &str| match description(text).unwrap() {
        Format::Description { shape, .. } => shape,
        other => panic!("{other:?}"),
    };
    assert_eq!(shape_of("[day]/[month]/[year]"), Shape::Date);
    assert_eq!(
        shape_of("[year][month][day][hour][minute][second]"),
        Shape::DateTime
    );
    assert_eq!(
        shape_of("[day]/[month]/[year] [hour]:[minute]"),
        Shape::DateTime
    );
    assert_eq!(
        shape_of("[year]-[month]-[day] [hour]:[minute] [offset_hour]:[offset_minute]"),
        Shape::DateTimeOffset
    );
    assert!(description("[day]/[month]").is_err());
    assert!(description("[hour]:[minute]").is_err());
}

#[test]
fn code_lists_match_without_regard_to_case_unless_asked() {
    let m = mapping(
        r#"
[code_lists.loose]
codes = { h = "high" }
[code_lists.strict]
codes = { h = "high" }
default = "other"
case_sensitive = true
[person]
source_id = "{ID}"
search_sql = "SELECT ID FROM P LIMIT :limit"
get_sql = "SELECT ID FROM P WHERE ID = :source_id LIMIT :limit"
[[person.names]]
family_name = "NAME"
"#,
    );
    let c = Compiler::new(&m);
    let loose = c.code_lists.get("loose").unwrap();
    assert_eq!(loose.translate("H"), Some("high"));
    assert_eq!(loose.translate(" h"), None);
    assert_eq!(loose.translate("x"), None);
    let strict = c.code_lists.get("strict").unwrap();
    assert_eq!(strict.translate("h"), Some("high"));
    assert_eq!(strict.translate("H"), Some("other"));
}
