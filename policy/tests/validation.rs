//! A policy file with mistakes is refused with every mistake listed, each with its entry's id
//! and line; a file that is not TOML names the line and column.

use liaison_policy::{PolicyError, PolicySet, Problem};

const BROKEN: &str = r#"
[[agreement]]
id = "dup"
version = 1
title = "first"
provider = "met-police"
recipients = ["hackney-childrens"]
purposes = []
legal_basis = "Children Act 1989 s.47"
valid_from = 2026-04-01
valid_until = 2026-03-31
status = "active"

[[agreement.datasets]]
dataset = "police.records"
actions = ["read"]

[[agreement.datasets.roles]]
role = "social-worker"
fields = ["person.names", "person..dob"]

[[agreement]]
id = "dup"
version = 2
title = "second"
provider = "met-police"
recipients = ["*"]
purposes = ["safeguarding-children"]
legal_basis = "Children Act 1989 s.47"
valid_from = 2026-04-01
status = "active"
datasets = []

[[agreement]]
id = "typo"
version = 1
title = "status misspelt"
provider = "met-police"
recipients = ["hackney-childrens"]
purposes = ["safeguarding-children"]
legal_basis = "Children Act 1989 s.47"
valid_from = 2026-04-01
status = "actve"
datasets = []

[[rule]]
id = "maybe"
effect = "perhaps"
agency = "*"
role = "*"
dataset = "*"
purpose = "*"
action = "*"
description = "unknown effect"
"#;

fn problem(subject: &str, line: usize, message: &str) -> Problem {
    Problem {
        subject: subject.into(),
        line: Some(line),
        message: message.into(),
    }
}

#[test]
fn every_problem_is_reported_with_its_entry() {
    let err = PolicySet::from_toml(BROKEN).unwrap_err();
    assert_eq!(
        err.problems(),
        [
            problem("agreement `dup`", 2, "purposes is empty"),
            problem(
                "agreement `dup`",
                2,
                "valid_until 2026-03-31 is before valid_from 2026-04-01",
            ),
            problem(
                "agreement `dup`",
                2,
                "dataset `police.records`: role `social-worker`: field `person..dob` is not a \
                 path such as `person.names` or `incident.*`",
            ),
            problem(
                "agreement `dup`",
                22,
                "recipient may not be `*`; an agreement names each recipient it covers",
            ),
            problem("agreement `dup`", 22, "datasets is empty"),
            problem(
                "agreement `typo`",
                34,
                "unknown variant `actve`, expected one of `draft`, `active`, `suspended`, `expired`",
            ),
            problem(
                "rule `maybe`",
                46,
                "unknown variant `perhaps`, expected `allow` or `deny`",
            ),
            Problem {
                subject: "agreement `dup`".into(),
                line: None,
                message: "is defined 2 times (versions 1, 2); a policy holds one version of each \
                          agreement"
                    .into(),
            },
        ]
    );
}

#[test]
fn the_message_lists_the_problems_on_one_line() {
    let err = PolicySet::from_toml(BROKEN).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("policy has 8 problems: agreement `dup` (line 2): purposes is empty; "),
        "{message}"
    );
    assert!(!message.contains('\n'));
    assert!(!message.ends_with('.'));
}

#[test]
fn a_clean_file_has_no_problems() {
    let fixed = BROKEN
        .replace("purposes = []", r#"purposes = ["safeguarding-children"]"#)
        .replace("valid_until = 2026-03-31\n", "")
        .replace(r#""person..dob""#, r#""person.date_of_birth""#)
        .replace(
            r#"recipients = ["*"]"#,
            r#"recipients = ["hackney-childrens"]"#,
        )
        .replace("id = \"dup\"\nversion = 2", "id = \"other\"\nversion = 2")
        .replace("\"actve\"", "\"active\"")
        .replace("\"perhaps\"", "\"deny\"");
    // Both remaining `datasets = []` agreements still share nothing.
    let err = PolicySet::from_toml(&fixed).unwrap_err();
    let messages: Vec<_> = err.problems().iter().map(|p| p.message.as_str()).collect();
    assert_eq!(messages, ["datasets is empty", "datasets is empty"]);
}

#[test]
fn a_toml_syntax_error_names_line_and_column() {
    let text = "[[agreement]]\nid = \"x\"\nversion = \n";
    let err = PolicySet::from_toml(text).unwrap_err();
    let PolicyError::Syntax { line, column, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!((*line, *column), (3, 11));
    assert!(
        err.to_string()
            .starts_with("policy file is not valid at line 3, column 11: "),
        "{err}"
    );
}

#[test]
fn an_unknown_top_level_table_is_a_syntax_error() {
    let err = PolicySet::from_toml("[[agreements]]\nid = \"x\"\n").unwrap_err();
    assert!(matches!(err, PolicyError::Syntax { line: 1, .. }), "{err}");
    assert!(
        err.to_string().contains("unknown field `agreements`"),
        "{err}"
    );
}

#[test]
fn an_unknown_field_in_an_agreement_is_reported() {
    let text =
        include_str!("../examples/demo.toml").replace("version = 3", "version = 3\nowner = \"x\"");
    let err = PolicySet::from_toml(&text).unwrap_err();
    let [problem] = err.problems() else {
        panic!("{err}")
    };
    assert_eq!(problem.subject, "agreement `met-hackney-children`");
    assert!(
        problem.message.starts_with("unknown field `owner`"),
        "{}",
        problem.message
    );
}

#[test]
fn dates_may_be_quoted() {
    let text = include_str!("../examples/demo.toml")
        .replace("valid_from = 2026-01-01", r#"valid_from = "2026-01-01""#);
    let set = PolicySet::from_toml(&text).unwrap();
    assert_eq!(
        set.agreements()[0].valid_from,
        time::macros::date!(2026 - 01 - 01)
    );
}

#[test]
fn a_date_with_a_time_is_refused() {
    let text = include_str!("../examples/demo.toml").replace(
        "valid_from = 2026-01-01",
        "valid_from = 2026-01-01T09:00:00Z",
    );
    let err = PolicySet::from_toml(&text).unwrap_err();
    let [problem] = err.problems() else {
        panic!("{err}")
    };
    assert_eq!(
        problem.message,
        "`2026-01-01T09:00:00Z` is not a plain date; agreements run from day to day"
    );
}

#[test]
fn an_empty_file_is_an_empty_policy() {
    let set = PolicySet::from_toml("").unwrap();
    assert!(set.agreements().is_empty());
    assert!(set.rules().is_empty());
}

#[test]
fn policies_built_in_code_are_checked_too() {
    let mut agreement = PolicySet::from_toml(include_str!("../examples/demo.toml"))
        .unwrap()
        .agreements()[0]
        .clone();
    agreement.purposes.clear();
    agreement.version = 0;
    let err = PolicySet::new(vec![agreement], vec![]).unwrap_err();
    assert_eq!(
        err.problems(),
        [
            Problem {
                subject: "agreement `met-hackney-children`".into(),
                line: None,
                message: "version must be 1 or more".into(),
            },
            Problem {
                subject: "agreement `met-hackney-children`".into(),
                line: None,
                message: "purposes is empty".into(),
            },
        ]
    );
}
