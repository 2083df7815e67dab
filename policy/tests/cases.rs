//! `policy test`: case files are read strictly, run against a policy, and every failure says
//! what differed.

mod support;

use std::path::Path;

use liaison_policy::{
    Action, DenyReason, Expectation, FieldMask, Mismatch, PolicyError, RequestSpec, TestCases,
    run_case_file,
};
use support::{DEMO, DEMO_DENY, engine};
use time::macros::datetime;

const DEMO_CASES: &str = include_str!("../examples/demo_cases.yaml");
const DEMO_CASES_DENY: &str = include_str!("../examples/demo_cases_deny.yaml");

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

#[test]
fn the_demo_cases_pass_against_the_demo() {
    let report = run_case_file(&examples().join("demo_cases.yaml"), None).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!((report.passed(), report.failed()), (15, 0));
    let text = report.to_string();
    assert!(text.starts_with("policy sha256:"), "{text}");
    assert!(
        text.contains("ok    a team manager also sees who the child is connected to\n"),
        "{text}"
    );
    assert!(text.ends_with("15 cases: 15 passed, 0 failed"), "{text}");
}

#[test]
fn the_negative_twin_fails_on_the_paused_purpose_only() {
    let report = run_case_file(&examples().join("demo_cases_deny.yaml"), None).unwrap();
    assert!(!report.is_ok());
    assert_eq!((report.passed(), report.failed()), (14, 1));
    let failed: Vec<_> = report.results.iter().filter(|r| !r.passed()).collect();
    let [failure] = failed.as_slice() else {
        panic!("expected one failure: {report}");
    };
    assert_eq!(failure.name, "a social worker searches for a missing child");
    assert_eq!(
        failure.mismatches,
        [Mismatch::Denied {
            reason: Some(DenyReason::ExplicitDeny {
                rule_id: "pause-missing-person-police-records".into()
            })
        }]
    );
    let text = report.to_string();
    assert!(
        text.contains(
            "FAIL  a social worker searches for a missing child\n        expected allow, got \
             deny: POLICY_DENIED (operator rule `pause-missing-person-police-records` denies \
             this share)\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("15 cases: 14 passed, 1 failed"), "{text}");
}

#[test]
fn the_twins_differ_only_in_the_policy_they_name() {
    let positive = TestCases::from_yaml(DEMO_CASES).unwrap();
    let negative = TestCases::from_yaml(DEMO_CASES_DENY).unwrap();
    assert_eq!(positive.policy.as_deref(), Some(Path::new("demo.toml")));
    assert_eq!(
        negative.policy.as_deref(),
        Some(Path::new("demo_deny.toml"))
    );
    assert_eq!(positive.cases, negative.cases);
}

#[test]
fn cases_inherit_defaults_and_override_them() {
    let cases = TestCases::from_yaml(DEMO_CASES).unwrap();
    let search = &cases.cases[1];
    assert_eq!(
        search.request,
        RequestSpec {
            agency: "hackney-childrens".into(),
            roles: vec!["social-worker".into()],
            action: Action::Search,
            dataset: "police.records".into(),
            purpose: "missing-person".into(),
            isa: "met-hackney-children".into(),
            at: datetime!(2026-06-01 10:00 +01:00),
            break_glass: false,
            markers: vec![],
        }
    );
    let invoked = &cases.cases[4];
    assert!(invoked.request.break_glass);
    assert!(matches!(
        invoked.expect,
        Expectation::Allow {
            break_glass: true,
            ..
        }
    ));
    // A plain date is midnight UTC.
    assert_eq!(cases.cases[13].request.at, datetime!(2028-01-01 00:00 UTC));
}

/// The same cases as TOML; the format follows the file extension.
const TOML_CASES: &str = r#"
policy = "demo.toml"

[defaults]
agency = "hackney-childrens"
roles = ["social-worker"]
action = "read"
dataset = "police.records"
purpose = "safeguarding-children"
isa = "met-hackney-children"
at = 2026-06-01T10:00:00+01:00

[[cases]]
name = "a team manager sees relationships"
request = { roles = ["team-manager"] }
expect = { decision = "allow", fields = ["person", "relationship"] }

[[cases]]
name = "subscriptions are refused"
request = { action = "subscribe", at = 2026-07-01 }
expect = { decision = "deny", reason = "ACTION_NOT_PERMITTED" }
"#;

#[test]
fn toml_cases_read_like_yaml_ones() {
    let cases = TestCases::from_toml(TOML_CASES).unwrap();
    assert_eq!(cases.cases.len(), 2);
    assert_eq!(cases.cases[0].request.roles, ["team-manager"]);
    assert_eq!(cases.cases[1].request.at, datetime!(2026-07-01 00:00 UTC));
    assert_eq!(
        cases.cases[0].expect,
        Expectation::Allow {
            fields: FieldMask::new(["person", "relationship"]),
            break_glass: false,
            records: None,
        }
    );
}

#[test]
fn every_kind_of_difference_is_reported() {
    let cases = TestCases::from_toml(TOML_CASES).unwrap();
    let report = cases.run(&engine(DEMO));
    // The team manager gets named fields of `person`, not all of it.
    assert_eq!(report.failed(), 1, "{report}");
    let Mismatch::Fields {
        missing,
        unexpected,
    } = &report.results[0].mismatches[0]
    else {
        panic!("{report}");
    };
    assert_eq!(missing, &["person"]);
    assert!(
        unexpected.contains(&"person.names".to_owned()),
        "{unexpected:?}"
    );
    assert!(!unexpected.contains(&"relationship".to_owned()));
    let text = report.to_string();
    assert!(
        text.contains(
            "allowed, but the fields differ: expected but not released: person; released but \
             not expected: incident.category"
        ),
        "{text}"
    );

    let yaml = r#"
defaults:
  agency: hackney-childrens
  roles: [social-worker]
  action: read
  dataset: police.records
  purpose: missing-person
  isa: met-hackney-children
  at: 2026-06-01
cases:
  - name: expects a denial that does not come
    request: { purpose: safeguarding-children }
    expect: { decision: deny, reason: PURPOSE_NOT_PERMITTED }
  - name: expects the wrong reason
    request: { action: subscribe }
    expect: { decision: deny, reason: ROLE_NOT_PERMITTED }
  - name: expects the wrong rule
    expect: { decision: deny, reason: POLICY_DENIED, rule: some-other-rule }
  - name: expects the right rule
    expect: { decision: deny, reason: POLICY_DENIED, rule: pause-missing-person-police-records }
"#;
    let report = TestCases::from_yaml(yaml).unwrap().run(&engine(DEMO_DENY));
    let lines: Vec<String> = report
        .results
        .iter()
        .flat_map(|r| r.mismatches.iter().map(ToString::to_string))
        .collect();
    assert_eq!(
        lines,
        [
            "expected deny (PURPOSE_NOT_PERMITTED), got allow releasing incident.category, \
             incident.occurred_at, incident.summary, person.addresses, person.date_of_birth, \
             person.names, risk_assessment.assessed_at, risk_assessment.level, \
             safeguarding_concern, warning_marker.marker",
            "expected deny for ROLE_NOT_PERMITTED, got deny for ACTION_NOT_PERMITTED (isa \
             `met-hackney-children` does not permit `subscribe` on dataset `police.records`)",
            "expected operator rule `some-other-rule` to deny, but rule \
             `pause-missing-person-police-records` did",
        ]
    );
    assert_eq!((report.passed(), report.failed()), (1, 3));
}

/// The message of the error reading `yaml` as cases; anything else, described, fails the
/// comparison that follows.
fn load_error(yaml: &str) -> String {
    match TestCases::from_yaml(yaml) {
        Err(PolicyError::Document {
            what: "test cases",
            message,
            ..
        }) => message,
        other => format!("expected a document error, got {other:?}"),
    }
}

#[test]
fn an_allow_must_say_what_it_releases_and_a_deny_why() {
    let message = load_error(
        "defaults: { agency: a, roles: [r], action: read, dataset: d, purpose: p, isa: i, at: 2026-01-01 }
cases:
  - name: silent allow
    expect: { decision: allow }
  - name: silent deny
    expect: { decision: deny }
  - name: made-up reason
    expect: { decision: deny, reason: NOT_TODAY }
  - name: rule without POLICY_DENIED
    expect: { decision: deny, reason: ISA_UNKNOWN, rule: x }
  - name: deny releasing fields
    expect: { decision: deny, reason: ISA_UNKNOWN, fields: [person] }
",
    );
    assert_eq!(
        message,
        "case `silent allow`: an expected allow must list the `fields` it releases; \
         case `silent deny`: an expected deny must name its `reason` code; \
         case `made-up reason`: reason `NOT_TODAY` is not a reason code; expected one of \
         `ISA_UNKNOWN`, `ISA_NOT_ACTIVE`, `ISA_EXPIRED`, `AGENCY_NOT_RECIPIENT`, \
         `PURPOSE_NOT_PERMITTED`, `DATASET_NOT_COVERED`, `ACTION_NOT_PERMITTED`, \
         `ROLE_NOT_PERMITTED`, `POLICY_DENIED`, `BREAK_GLASS_NOT_PERMITTED`; \
         case `rule without POLICY_DENIED`: `rule` only goes with reason `POLICY_DENIED` or \
         `BREAK_GLASS_NOT_PERMITTED`, not `ISA_UNKNOWN`; \
         case `deny releasing fields`: a deny releases no fields; remove `fields`"
    );
}

#[test]
fn incomplete_requests_and_repeated_names_are_refused() {
    let message = load_error(
        "cases:
  - name: nothing set
    expect: { decision: deny, reason: ISA_UNKNOWN }
  - name: nothing set
    request: { agency: a, roles: [], action: read, dataset: d, purpose: p, isa: i }
    expect: { decision: deny, reason: ISA_UNKNOWN }
",
    );
    assert_eq!(
        message,
        "case `nothing set`: the request has no agency, roles, action, dataset, purpose, isa, at \
         (set them in the case or in `defaults`); \
         case `nothing set`: the name is used more than once; \
         case `nothing set`: the request has no at (set it in the case or in `defaults`)"
    );
    assert_eq!(load_error("cases: []\n"), "the file holds no cases");
}

#[test]
fn malformed_files_are_refused_with_a_line() {
    let err =
        TestCases::from_yaml("cases:\n  - name: x\n    expect: { decision: maybe }\n").unwrap_err();
    let PolicyError::Document { line, message, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*line, Some(3), "{err}");
    assert_eq!(
        message,
        "column 25: unknown variant `maybe`, expected one of allow, deny"
    );
    assert_eq!(
        err.to_string(),
        "test cases are not valid at line 3: column 25: unknown variant `maybe`, expected one of \
         allow, deny"
    );

    let err = TestCases::from_yaml("cases:\n  - name: x\n    colour: red\n").unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");

    let err = TestCases::from_toml("[[cases]]\nname = 1\n").unwrap_err();
    let PolicyError::Document { line, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*line, Some(2), "{err}");
    assert!(
        err.to_string()
            .starts_with("test cases are not valid at line 2: "),
        "{err}"
    );

    let err =
        TestCases::from_yaml("defaults: { at: 2026-06-01T10:00:00 }\ncases: []\n").unwrap_err();
    assert!(err.to_string().contains("has no offset"), "{err}");
}

#[test]
fn files_are_read_by_extension_and_must_name_a_policy() {
    let dir = std::env::temp_dir().join(format!("liaison-policy-cases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("demo.toml"), DEMO).unwrap();
    std::fs::write(dir.join("cases.toml"), TOML_CASES).unwrap();
    let report = run_case_file(&dir.join("cases.toml"), None).unwrap();
    assert_eq!(report.results.len(), 2);

    // An explicit policy wins over the one the file names.
    std::fs::write(dir.join("other.toml"), DEMO_DENY).unwrap();
    let report = run_case_file(&dir.join("cases.toml"), Some(&dir.join("other.toml"))).unwrap();
    assert_ne!(report.policy_version, engine(DEMO).version());

    std::fs::write(dir.join("cases.json"), "{}").unwrap();
    let err = run_case_file(&dir.join("cases.json"), None).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected a `.yaml`, `.yml` or `.toml` file"),
        "{err}"
    );

    std::fs::write(
        dir.join("orphan.yaml"),
        "cases:\n  - name: x\n    request: { agency: a, roles: [], action: read, dataset: d, \
         purpose: p, isa: i, at: 2026-01-01 }\n    expect: { decision: deny, reason: ISA_UNKNOWN }\n",
    )
    .unwrap();
    let err = run_case_file(&dir.join("orphan.yaml"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "test cases are not valid: the file names no `policy`, and none was given"
    );
    let err = run_case_file(&dir.join("missing.yaml"), None).unwrap_err();
    assert!(matches!(err, PolicyError::Read { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_request_file_reads_alone() {
    let request = RequestSpec::from_yaml(
        "agency: hackney-childrens\nroles: [social-worker]\naction: read\ndataset: police.records\n\
         purpose: safeguarding-children\nisa: met-hackney-children\nat: 2026-06-01T10:00:00+01:00\n",
    )
    .unwrap();
    assert!(engine(DEMO).decide(&request.as_request()).is_allowed());
    let err = RequestSpec::from_toml("agency = \"a\"\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "request is not valid: the request has no roles, action, dataset, purpose, isa, at"
    );
}

#[test]
fn a_break_glass_allow_must_be_expected_as_one() {
    let yaml = r#"
defaults:
  agency: hackney-childrens
  roles: [team-manager]
  action: read
  dataset: police.records
  purpose: safeguarding-children
  isa: met-hackney-children
  at: 2026-06-01
cases:
  - name: expects a normal allow for an invocation
    request: { break_glass: true }
    expect: { decision: allow, fields: [person] }
  - name: expects break-glass that was not invoked
    expect: { decision: allow, break_glass: true, fields: [person] }
"#;
    let report = TestCases::from_yaml(yaml).unwrap().run(&engine(DEMO));
    let first: Vec<String> = report.results[0]
        .mismatches
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        first[0],
        "expected a normal allow, got an allow under break-glass"
    );
    assert!(first[1].contains("incident.location"), "{first:?}");
    assert_eq!(
        report.results[1].mismatches[0].to_string(),
        "expected an allow under break-glass, got a normal allow"
    );
    let refused = load_error(
        "cases:\n  - name: x\n    request: { agency: a, roles: [r], action: read, dataset: d, \
         purpose: p, isa: i, at: 2026-06-01 }\n    expect: { decision: deny, reason: \
         BREAK_GLASS_NOT_PERMITTED, break_glass: true }\n",
    );
    assert!(
        refused.contains("remove `break_glass` from `expect`"),
        "{refused}"
    );
}

#[test]
fn cases_state_record_markers_and_expect_them_withheld_or_released() {
    let policy = format!(
        "{DEMO}\n[[rule]]\nid = \"no-witness-protection\"\neffect = \"deny\"\nagency = \"*\"\n\
         role = \"social-worker\"\ndataset = \"*\"\npurpose = \"*\"\naction = \"*\"\n\
         marker = \"witness-protection\"\ndescription = \"never to partners\"\n"
    );
    let yaml = r#"
defaults:
  agency: hackney-childrens
  roles: [social-worker]
  action: read
  dataset: police.records
  purpose: safeguarding-children
  isa: met-hackney-children
  at: 2026-06-01
  markers: [witness-protection]
cases:
  - name: withheld from a social worker
    expect: { decision: allow, fields: [person.names, incident.summary, incident.category, incident.occurred_at, warning_marker.marker], records: withheld, rule: no-witness-protection }
  - name: released to a team manager
    request: { roles: [team-manager] }
    expect: { decision: allow, fields: [person.names, person.date_of_birth, incident, warning_marker.marker, relationship], records: released }
  - name: expected released but withheld
    expect: { decision: allow, fields: [person.names, incident.summary, incident.category, incident.occurred_at, warning_marker.marker], records: released }
  - name: expected withheld but released
    request: { markers: [child-sexual-exploitation] }
    expect: { decision: allow, fields: [person.names, incident.summary, incident.category, incident.occurred_at, warning_marker.marker], records: withheld }
"#;
    let cases = TestCases::from_yaml(yaml).unwrap();
    assert_eq!(cases.cases[0].request.markers, ["witness-protection"]);
    let report = cases.run(&engine(&policy));
    let records: Vec<Vec<String>> = report
        .results
        .iter()
        .map(|r| {
            r.mismatches
                .iter()
                .filter(|m| {
                    matches!(
                        m,
                        Mismatch::RecordsReleased | Mismatch::RecordsWithheld { .. }
                    )
                })
                .map(ToString::to_string)
                .collect()
        })
        .collect();
    assert!(records[0].is_empty() && records[1].is_empty(), "{report}");
    assert_eq!(
        records[2],
        [
            "expected records carrying the request's markers to be released, but rule \
          `no-witness-protection` withholds them"
        ]
    );
    assert_eq!(
        records[3],
        ["expected records carrying the request's markers to be withheld, but they are released"]
    );

    // With markers stated, an allow must say what becomes of such records; without, it may not.
    let missing = load_error(
        "cases:\n  - name: x\n    request: { agency: a, roles: [r], action: read, dataset: d, \
         purpose: p, isa: i, at: 2026-06-01, markers: [m] }\n    expect: { decision: allow, \
         fields: [person] }\n",
    );
    assert!(missing.contains("`released` or `withheld`"), "{missing}");
    let stray = load_error(
        "cases:\n  - name: x\n    request: { agency: a, roles: [r], action: read, dataset: d, \
         purpose: p, isa: i, at: 2026-06-01 }\n    expect: { decision: allow, \
         fields: [person], records: withheld }\n",
    );
    assert!(stray.contains("the request has none"), "{stray}");
}
