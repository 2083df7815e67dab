use liaison_proto::v1::RiskLevel;

use super::*;
use crate::map::compile::{EnumKind, test_field};
use crate::map::row::{ResultSet, SetRow};
use crate::mapping::{FieldSpec, SqlMapping};

const MAPPING: &str = r#"
[formats]
dmy = "[day]/[month]/[year]"
oracle = "[day]-[month repr:short case_sensitive:false]-[year]"
[code_lists.risk]
codes = { H = "RISK_LEVEL_HIGH", M = "RISK_LEVEL_MEDIUM", S = "RISK_LEVEL_STANDARD" }
[code_lists.risk_or_unknown]
codes = { H = "RISK_LEVEL_HIGH" }
default = "RISK_LEVEL_UNSPECIFIED"
[person]
source_id = "{ID}"
search_sql = "SELECT ID FROM P LIMIT :limit"
get_sql = "SELECT ID FROM P WHERE ID = :source_id LIMIT :limit"
[[person.names]]
family_name = "NAME"
"#;

fn field(spec: &str, target: Target) -> Field {
    #[derive(serde::Deserialize)]
    struct Holder {
        f: FieldSpec,
    }
    let mapping: SqlMapping = toml::from_str(MAPPING).unwrap();
    let spec = toml::from_str::<Holder>(&format!("f = {spec}")).unwrap().f;
    test_field(&mapping, &spec, target).unwrap()
}

fn one_row(cells: Vec<(&str, Cell)>) -> ResultSet {
    let (names, row): (Vec<String>, Vec<Cell>) =
        cells.into_iter().map(|(n, c)| (n.to_owned(), c)).unzip();
    ResultSet::new(&names, vec![row])
}

fn read<T>(set: &ResultSet, f: impl FnOnce(&mut RowReader<'_>) -> T) -> (T, Vec<String>, bool) {
    let row = SetRow {
        set,
        row: set.rows.first().unwrap(),
    };
    let mut r = RowReader::new(&row, UtcOffset::UTC);
    let value = f(&mut r);
    (value, r.problems, r.skip)
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_owned())
}

fn date(year: i32, month: i32, day: i32) -> Date {
    Date { year, month, day }
}

#[test]
fn codes_translate_to_enum_values() {
    let level = field(
        r#"{ column = "L", codes = "risk", required = true }"#,
        Target::Enum(EnumKind::RiskLevel),
    );
    for (code, want) in [
        ("H", RiskLevel::High),
        ("m", RiskLevel::Medium),
        (" S ", RiskLevel::Standard),
    ] {
        let set = one_row(vec![("L", text(code))]);
        let (value, problems, skip) = read(&set, |r| r.enumeration(Some(&level)));
        assert_eq!(value, Some(want as i32), "{code}");
        assert!(problems.is_empty() && !skip);
    }
}

#[test]
fn unknown_codes_skip_required_rows_or_take_the_default() {
    let level = field(
        r#"{ column = "L", codes = "risk", required = true }"#,
        Target::Enum(EnumKind::RiskLevel),
    );
    let set = one_row(vec![("L", text("X"))]);
    let (value, problems, skip) = read(&set, |r| r.enumeration(Some(&level)));
    assert_eq!(value, None);
    assert!(skip);
    assert_eq!(
        problems,
        vec!["`test.field` (column `L`): `X` is not in code list `risk`; row skipped"]
    );

    let defaulted = field(
        r#"{ column = "L", codes = "risk_or_unknown" }"#,
        Target::Enum(EnumKind::RiskLevel),
    );
    let (value, problems, skip) = read(&set, |r| r.enumeration(Some(&defaulted)));
    assert_eq!(value, Some(RiskLevel::Unspecified as i32));
    assert!(problems.is_empty() && !skip);
}

#[test]
fn nulls_are_tolerated_unless_required() {
    let optional = field(r#""NAME""#, Target::Text);
    let required = field(r#"{ column = "NAME", required = true }"#, Target::Text);
    let defaulted = field(r#"{ column = "NAME", default = "unknown" }"#, Target::Text);
    let set = one_row(vec![("NAME", Cell::Null)]);
    assert_eq!(
        read(&set, |r| r.text(Some(&optional))),
        (None, vec![], false)
    );
    assert_eq!(
        read(&set, |r| r.text(Some(&defaulted))),
        (Some("unknown".to_owned()), vec![], false)
    );
    let (value, problems, skip) = read(&set, |r| r.text(Some(&required)));
    assert_eq!(value, None);
    assert!(skip);
    assert_eq!(
        problems,
        vec!["`test.field` (column `NAME`) is empty; row skipped"]
    );
    // Blank text counts as absent too.
    let blank = one_row(vec![("NAME", text("   "))]);
    assert_eq!(
        read(&blank, |r| r.text(Some(&optional))),
        (None, vec![], false)
    );
}

#[test]
fn oversized_text_is_cut_and_reported() {
    let summary = field(r#""MO_TEXT""#, Target::Text);
    let set = one_row(vec![("MO_TEXT", text(&"x".repeat(100 * 1024)))]);
    let (value, problems, skip) = read(&set, |r| r.text(Some(&summary)));
    assert_eq!(value.unwrap().len(), 4096);
    assert!(!skip);
    assert_eq!(
        problems,
        vec!["`test.field` (column `MO_TEXT`) was cut from 102400 to 4096 bytes"]
    );
    let short = field(r#"{ column = "MO_TEXT", max_bytes = 10 }"#, Target::Text);
    let (value, _, _) = read(&set, |r| r.text(Some(&short)));
    assert_eq!(value.unwrap().len(), 10);
}

#[test]
fn columns_are_joined_and_wrong_types_reported() {
    let given = field(r#"{ columns = ["F1", "F2"] }"#, Target::Text);
    let set = one_row(vec![("F1", text("Leah")), ("F2", Cell::Null)]);
    assert_eq!(
        read(&set, |r| r.text(Some(&given))).0.as_deref(),
        Some("Leah")
    );
    let set = one_row(vec![("F1", text("Leah")), ("F2", Cell::Int(7))]);
    assert_eq!(
        read(&set, |r| r.text(Some(&given))).0.as_deref(),
        Some("Leah 7")
    );

    let name = field(r#""N""#, Target::Text);
    let cases = [
        (
            Cell::Bytes(vec![0xff, 0xfe]),
            "column `N` holds binary data, not text",
        ),
        (
            Cell::Unsupported("NUMERIC".into()),
            "column `N` has type `NUMERIC`",
        ),
        (
            Cell::Float(f64::NAN),
            "column `N` holds a number that is not finite",
        ),
    ];
    for (cell, want) in cases {
        let set = one_row(vec![("N", cell)]);
        let (value, problems, skip) = read(&set, |r| r.text(Some(&name)));
        assert_eq!(value, None);
        assert!(!skip);
        assert!(problems.first().unwrap().contains(want), "{problems:?}");
    }
}

#[test]
fn dates_are_read_in_the_source_formats() {
    let dmy = field(r#"{ column = "D", format = "dmy" }"#, Target::Date);
    let compact = field(
        r#"{ column = "D", format = "[year][month][day]" }"#,
        Target::Date,
    );
    let oracle = field(r#"{ column = "D", format = "oracle" }"#, Target::Date);
    let iso = field(r#""D""#, Target::Date);
    let cases = [
        (&dmy, text("14/05/2013"), date(2013, 5, 14)),
        (&compact, Cell::Int(20_210_901), date(2021, 9, 1)),
        (&oracle, text("15-jan-2019"), date(2019, 1, 15)),
        (&oracle, text("15-JAN-2019"), date(2019, 1, 15)),
        (&iso, text("2024-03-02"), date(2024, 3, 2)),
        (
            &iso,
            Cell::Date(time::macros::date!(2024 - 03 - 02)),
            date(2024, 3, 2),
        ),
    ];
    for (f, cell, want) in cases {
        let set = one_row(vec![("D", cell.clone())]);
        assert_eq!(
            read(&set, |r| r.date(Some(f))),
            (Some(want), vec![], false),
            "{cell:?}"
        );
    }
}

#[test]
fn impossible_dates_are_dropped_and_reported() {
    let dmy = field(r#"{ column = "D", format = "dmy" }"#, Target::Date);
    let set = one_row(vec![("D", text("31/02/2010"))]);
    let (value, problems, skip) = read(&set, |r| r.date(Some(&dmy)));
    assert_eq!(value, None);
    assert!(!skip);
    let problem = problems.first().unwrap();
    assert!(
        problem
            .starts_with("`test.field` (column `D`): not a date in format `[day]/[month]/[year]`"),
        "{problem}"
    );
    assert!(problem.ends_with("; value dropped"), "{problem}");
    assert!(
        !problem.contains("31/02/2010"),
        "problems must not quote the value"
    );
}

#[test]
fn timestamps_are_read_with_the_source_offset() {
    let compact = field(
        r#"{ column = "T", format = "[year][month][day][hour][minute][second]" }"#,
        Target::Timestamp,
    );
    let rfc = field(r#"{ column = "T", format = "rfc3339" }"#, Target::Timestamp);
    let day = field(
        r#"{ column = "T", format = "[year]-[month]-[day]" }"#,
        Target::Timestamp,
    );
    let utc = time::macros::datetime!(2024-06-12 20:15:00 UTC).unix_timestamp();

    let set = one_row(vec![("T", text("20240612201500"))]);
    assert_eq!(
        read(&set, |r| r.timestamp(Some(&compact)))
            .0
            .unwrap()
            .seconds,
        utc
    );
    let row = set.iter().next().unwrap();
    let mut bst = RowReader::new(&row, time::macros::offset!(+1));
    assert_eq!(bst.timestamp(Some(&compact)).unwrap().seconds, utc - 3600);

    let set = one_row(vec![("T", text("2024-06-12T21:15:00+01:00"))]);
    assert_eq!(
        read(&set, |r| r.timestamp(Some(&rfc))).0.unwrap().seconds,
        utc
    );

    let set = one_row(vec![("T", text("2024-06-12"))]);
    let midnight = time::macros::datetime!(2024-06-12 00:00:00 UTC).unix_timestamp();
    assert_eq!(
        read(&set, |r| r.timestamp(Some(&day))).0.unwrap().seconds,
        midnight
    );

    let set = one_row(vec![("T", text("yesterday"))]);
    let (value, problems, _) = read(&set, |r| r.timestamp(Some(&rfc)));
    assert_eq!(value, None);
    assert!(
        problems
            .first()
            .unwrap()
            .contains("not an rfc 3339 timestamp")
    );
}

#[test]
fn source_ids_need_every_column() {
    let template = crate::map::compile::Template {
        parts: vec![
            crate::map::compile::Part::Text("DASH_RISK/".into()),
            crate::map::compile::Part::Column("RISK_ID".into()),
        ],
    };
    let set = one_row(vec![("RISK_ID", Cell::Int(2))]);
    let row = set.iter().next().unwrap();
    assert_eq!(
        RowReader::new(&row, UtcOffset::UTC)
            .source_id(&template)
            .unwrap(),
        "DASH_RISK/2"
    );
    let set = one_row(vec![("RISK_ID", Cell::Null)]);
    let row = set.iter().next().unwrap();
    assert_eq!(
        RowReader::new(&row, UtcOffset::UTC)
            .source_id(&template)
            .unwrap_err(),
        "column `RISK_ID` is empty"
    );
}
