//! `policy check`: what a policy that loads can still get wrong, and the unsafe model it must
//! never run under.

mod support;

use liaison_policy::{
    CheckReport, KnownNames, Lint, LintCode, MODEL, PolicySet, Severity, check, lint, lint_on,
};
use support::{DEMO, DEMO_DENY, demo_with};
use time::Date;
use time::macros::date;

/// The field paths the gateway releases (`gateway/src/share/minimise.rs`), as a deployment would
/// pass them in.
const GATEWAY_FIELDS: [&str; 35] = [
    "person.names.given_names",
    "person.names.family_name",
    "person.names.use",
    "person.date_of_birth",
    "person.addresses.lines",
    "person.addresses.locality",
    "person.addresses.postcode",
    "person.addresses.from",
    "person.addresses.to",
    "person.identifiers.scheme",
    "person.identifiers.value",
    "person.identifiers.system",
    "person.gender",
    "incident.reference",
    "incident.category",
    "incident.summary",
    "incident.occurred_at",
    "incident.location",
    "incident.person_role",
    "warning_marker.marker",
    "warning_marker.description",
    "warning_marker.from",
    "warning_marker.until",
    "safeguarding_concern.category",
    "safeguarding_concern.summary",
    "safeguarding_concern.raised_at",
    "safeguarding_concern.status",
    "safeguarding_concern.lead",
    "risk_assessment.framework",
    "risk_assessment.level",
    "risk_assessment.assessed_at",
    "risk_assessment.summary",
    "relationship.related_person_id",
    "relationship.relationship",
    "relationship.related_name",
];

/// A day the demo agreement is in force and not yet due for review.
const TODAY: Date = date!(2026 - 06 - 01);

fn known() -> KnownNames {
    KnownNames::default()
        .with_agencies(["met-police", "hackney-childrens", "islington-childrens"])
        .with_datasets(["police.records", "health.records"])
        .with_roles(["social-worker", "team-manager"])
        .with_purposes([
            "safeguarding-children",
            "missing-person",
            "crime-prevention",
        ])
        .with_fields(GATEWAY_FIELDS)
}

#[expect(
    clippy::unwrap_used,
    reason = "a test helper: a fixture that does not load fails the test"
)]
fn lints(policy: &str, today: Date) -> Vec<Lint> {
    lint_on(&PolicySet::from_toml(policy).unwrap(), &known(), today)
}

fn codes(lints: &[Lint]) -> Vec<(Severity, LintCode, String, String)> {
    lints
        .iter()
        .map(|l| (l.severity, l.code, l.subject.clone(), l.message.clone()))
        .collect()
}

#[expect(
    clippy::panic,
    reason = "a test helper: more or fewer lints fail the test"
)]
fn one(lints: &[Lint]) -> (Severity, LintCode, String, String) {
    let all = codes(lints);
    let [only] = all.as_slice() else {
        panic!("expected one lint, got {all:#?}");
    };
    only.clone()
}

const ISA: &str = "agreement `met-hackney-children`";

#[test]
fn the_demo_and_its_twin_are_clean() {
    for policy in [DEMO, DEMO_DENY] {
        let report = check(policy, MODEL, &known(), TODAY);
        assert_eq!(report.lints, [], "{report}");
        assert!(report.is_ok());
        assert_eq!(
            (report.agreements, report.errors(), report.warnings()),
            (1, 0, 0)
        );
        assert!(report.version.as_deref().unwrap().starts_with("sha256:"));
    }
    let report = check(DEMO_DENY, MODEL, &known(), TODAY);
    assert_eq!(
        report.to_string(),
        format!(
            "policy {}: 1 agreement, 1 rule; 0 errors, 0 warnings",
            report.version.as_deref().unwrap()
        )
    );
}

#[test]
fn nothing_is_checked_against_lists_not_given() {
    let set = PolicySet::from_toml(&demo_with("person.date_of_birth", "person.birthday")).unwrap();
    assert_eq!(lint_on(&set, &KnownNames::default(), TODAY), []);
    // `lint` judges dates by today's date; the demo runs to the end of 2027.
    assert!(
        lint(&set, &KnownNames::default())
            .iter()
            .all(|l| l.severity == Severity::Warning)
    );
}

#[test]
fn a_model_without_eft_is_refused_by_check() {
    let without_eft = MODEL.replace(
        "p = eft, id, isa, agency, role, dataset, purpose, action",
        "p = id, isa, agency, role, dataset, purpose, action",
    );
    let report = check(DEMO_DENY, &without_eft, &known(), TODAY);
    assert!(!report.is_ok());
    assert_eq!(report.version, None, "an unsafe model is never compiled");
    assert_eq!(
        codes(&report.lints),
        [(
            Severity::Error,
            LintCode::UnsafeModel,
            "casbin model".to_owned(),
            "`policy_definition` has no `eft` column, so casbin would read every deny rule as \
             an allow"
                .to_owned()
        )]
    );
    assert!(
        report.to_string().starts_with(
            "error[unsafe-model]: casbin model: `policy_definition` has no `eft` column"
        ),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .ends_with("policy not compiled: 1 agreement, 1 rule; 1 error, 0 warnings")
    );

    let allow_only = MODEL.replace(
        "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))",
        "e = some(where (p.eft == allow))",
    );
    let report = check(DEMO_DENY, &allow_only, &known(), TODAY);
    assert_eq!(
        report.with_code(LintCode::UnsafeModel).count(),
        1,
        "{report}"
    );
    assert!(!report.is_ok());
}

#[test]
fn unreadable_models_and_files_are_errors_with_lines() {
    let report = check(DEMO, "not a model", &known(), TODAY);
    assert_eq!(
        report.with_code(LintCode::UnusableModel).count(),
        1,
        "{report}"
    );

    let report = check("[[agreement]\n", MODEL, &known(), TODAY);
    let [lint] = report.lints.as_slice() else {
        panic!("{report}");
    };
    assert_eq!((lint.code, lint.line), (LintCode::Syntax, Some(1)));

    let report = check(
        &demo_with("version = 3", "version = 0"),
        MODEL,
        &known(),
        TODAY,
    );
    assert_eq!(
        codes(&report.lints),
        [(
            Severity::Error,
            LintCode::Invalid,
            ISA.to_owned(),
            "version must be 1 or more".to_owned()
        )]
    );
    assert_eq!(report.lints[0].line, Some(7));
    assert_eq!(
        report.lints[0].to_string(),
        "error[invalid]: agreement `met-hackney-children` (line 7): version must be 1 or more"
    );
}

#[test]
fn unknown_names_are_errors() {
    let policy = demo_with(
        r#"recipients = ["hackney-childrens"]"#,
        r#"recipients = ["hackney-children"]"#,
    );
    assert_eq!(
        one(&lints(&policy, TODAY)),
        (
            Severity::Error,
            LintCode::UnknownAgency,
            ISA.to_owned(),
            "recipient `hackney-children` is not one this deployment knows".to_owned()
        )
    );

    let policy = demo_with(
        r#"dataset = "police.records""#,
        r#"dataset = "police.record""#,
    );
    assert_eq!(
        one(&lints(&policy, TODAY)).3,
        "dataset `police.record` is not one this deployment knows"
    );

    let policy = demo_with(r#"role = "social-worker""#, r#"role = "social-wroker""#);
    assert_eq!(
        one(&lints(&policy, TODAY)),
        (
            Severity::Error,
            LintCode::UnknownRole,
            ISA.to_owned(),
            "dataset `police.records`: role `social-wroker` is not one this deployment knows"
                .to_owned()
        )
    );

    let policy = demo_with(r#""missing-person"]"#, r#""missing-persons"]"#);
    assert_eq!(one(&lints(&policy, TODAY)).1, LintCode::UnknownPurpose);

    let policy = demo_with(r#"provider = "met-police""#, r#"provider = "the-met""#);
    assert_eq!(
        one(&lints(&policy, TODAY)).3,
        "provider `the-met` is not one this deployment knows"
    );
}

#[test]
fn field_paths_must_be_ones_the_gateway_releases() {
    // A leaf, an ancestor (`person.addresses`), a message with `.*`: all fine in the demo.
    assert_eq!(lints(DEMO, TODAY), []);
    let policy = demo_with("\"person.date_of_birth\"", "\"person.birthday\"");
    assert_eq!(
        one(&lints(&policy, TODAY)),
        (
            Severity::Error,
            LintCode::UnknownField,
            ISA.to_owned(),
            "dataset `police.records`: role `social-worker`: field `person.birthday` is not a \
             field the gateway releases, so it grants nothing"
                .to_owned()
        )
    );
    // Beneath a leaf is not a field either.
    let policy = demo_with("\"incident.summary\"", "\"incident.summary.text\"");
    assert_eq!(one(&lints(&policy, TODAY)).1, LintCode::UnknownField);
}

fn with_rules(rules: &str) -> String {
    format!("{DEMO}\n{rules}")
}

fn rule(id: &str, agency: &str, role: &str, dataset: &str, purpose: &str, action: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\neffect = \"deny\"\nagency = \"{agency}\"\nrole = \"{role}\"\n\
         dataset = \"{dataset}\"\npurpose = \"{purpose}\"\naction = \"{action}\"\n\
         description = \"test\"\n"
    )
}

#[test]
fn unknown_names_in_rules_are_errors() {
    let policy = with_rules(&rule("r", "hackney", "*", "police.records", "*", "*"));
    let found = lints(&policy, TODAY);
    assert_eq!(
        codes(&found)[0],
        (
            Severity::Error,
            LintCode::UnknownAgency,
            "rule `r`".to_owned(),
            "agency `hackney` is not one this deployment knows".to_owned()
        )
    );
    // The same typo makes the rule dead.
    assert_eq!(codes(&found)[1].1, LintCode::DeadRule);
}

#[test]
fn a_rule_that_can_never_match_is_dead() {
    let cases = [
        (
            rule("a", "*", "*", "health.records", "*", "*"),
            "no agreement covers dataset `health.records`",
        ),
        (
            rule("b", "islington-childrens", "*", "*", "*", "*"),
            "no agreement names agency `islington-childrens` as a recipient",
        ),
        (
            rule("c", "*", "*", "*", "crime-prevention", "*"),
            "no agreement permits purpose `crime-prevention`",
        ),
        (
            rule("d", "*", "*", "police.records", "*", "subscribe"),
            "no agreement permits action `subscribe`",
        ),
    ];
    for (rule, why) in cases {
        let (severity, code, _, message) = one(&lints(&with_rules(&rule), TODAY));
        assert_eq!((severity, code), (Severity::Warning, LintCode::DeadRule));
        assert_eq!(
            message,
            format!("matches no share any agreement grants, so it denies nothing: {why}")
        );
    }
}

#[test]
fn a_rule_another_covers_is_redundant() {
    let policy = with_rules(&format!(
        "{}{}{}",
        rule(
            "narrow",
            "hackney-childrens",
            "*",
            "police.records",
            "missing-person",
            "read"
        ),
        rule("wide", "*", "*", "police.records", "missing-person", "*"),
        rule(
            "wide-again",
            "*",
            "*",
            "police.records",
            "missing-person",
            "*"
        ),
    ));
    let redundant: Vec<_> = codes(&lints(&policy, TODAY))
        .into_iter()
        .filter(|l| l.1 == LintCode::RedundantRule)
        .map(|l| (l.2, l.3))
        .collect();
    assert_eq!(
        redundant,
        [
            (
                "rule `narrow`".to_owned(),
                "rule `wide` already denies every share this rule denies; keep one of them"
                    .to_owned()
            ),
            (
                "rule `wide-again`".to_owned(),
                "rule `wide` already denies every share this rule denies; keep one of them"
                    .to_owned()
            ),
        ]
    );
}

#[test]
fn a_role_every_share_of_which_is_denied_is_shadowed() {
    // Two rules between them deny every purpose to team managers.
    let policy = with_rules(&format!(
        "{}{}",
        rule(
            "tm-safeguarding",
            "*",
            "team-manager",
            "police.records",
            "safeguarding-children",
            "*"
        ),
        rule("no-missing", "*", "*", "*", "missing-person", "*"),
    ));
    let shadowed: Vec<_> = codes(&lints(&policy, TODAY))
        .into_iter()
        .filter(|l| l.1 == LintCode::ShadowedGrant)
        .collect();
    assert_eq!(
        shadowed,
        [(
            Severity::Warning,
            LintCode::ShadowedGrant,
            ISA.to_owned(),
            "dataset `police.records`: role `team-manager` is granted fields, but operator rules \
             `no-missing`, `tm-safeguarding` deny every share it could make under this agreement"
                .to_owned()
        )]
    );
    // The demo's own pause covers one purpose of two, so shadows nothing.
    assert_eq!(lints(DEMO_DENY, TODAY), []);
}

#[test]
fn dates_that_have_passed_are_reported() {
    // Past the review date, still in force.
    assert_eq!(
        one(&lints(DEMO, date!(2026 - 12 - 02))),
        (
            Severity::Warning,
            LintCode::ReviewOverdue,
            ISA.to_owned(),
            "its review was due on 2026-12-01; the DPOs should review it and record a new version"
                .to_owned()
        )
    );
    // Past the end, still marked active; the pause now only reaches an ended agreement.
    let found = codes(&lints(DEMO_DENY, date!(2028 - 01 - 01)));
    assert_eq!(
        found,
        [
            (
                Severity::Warning,
                LintCode::ActivePastEnd,
                ISA.to_owned(),
                "is marked active but ended on 2027-12-31, so every share under it is refused; \
                 mark it expired, or record an extension as a new version"
                    .to_owned()
            ),
            (
                Severity::Warning,
                LintCode::RuleForEndedAgreements,
                "rule `pause-missing-person-police-records`".to_owned(),
                "matches only shares under agreements that have ended (`met-hackney-children`), \
                 which are refused anyway; it can be removed"
                    .to_owned()
            ),
        ]
    );
    // Marked expired: nothing to say about the agreement itself.
    let expired = demo_with(r#"status = "active""#, r#"status = "expired""#);
    assert_eq!(codes(&lints(&expired, date!(2028 - 01 - 01))), []);
}

#[test]
fn warnings_do_not_fail_a_check_errors_do() {
    let report: CheckReport = check(DEMO, MODEL, &known(), date!(2026 - 12 - 02));
    assert!(report.is_ok());
    assert_eq!((report.errors(), report.warnings()), (0, 1));
    assert!(
        report.to_string().starts_with(
            "warning[review-overdue]: agreement `met-hackney-children`: its review was due on \
             2026-12-01"
        ),
        "{report}"
    );

    let report = check(
        &demo_with("\"person.date_of_birth\"", "\"person.dob\""),
        MODEL,
        &known(),
        TODAY,
    );
    assert!(!report.is_ok());
    assert!(
        report.version.is_some(),
        "a policy with unknown names still compiles"
    );
    assert!(
        report.to_string().ends_with("; 1 error, 0 warnings"),
        "{report}"
    );
}

#[test]
fn break_glass_fields_are_checked_like_any_grant() {
    let policy = demo_with(
        r#"fields = ["incident.location", "warning_marker.description"]"#,
        r#"fields = ["incident.location", "incident.whereabouts"]"#,
    );
    assert_eq!(
        one(&lints(&policy, TODAY)),
        (
            Severity::Error,
            LintCode::UnknownField,
            ISA.to_owned(),
            "dataset `police.records`: break_glass field `incident.whereabouts` is not a field \
             the gateway releases, so it grants nothing"
                .to_owned()
        )
    );
}

#[test]
fn break_glass_that_adds_nothing_is_reported() {
    let policy = demo_with(
        r#"fields = ["incident.location", "warning_marker.description"]"#,
        r#"fields = ["incident.summary", "relationship.related_name"]"#,
    );
    assert_eq!(
        one(&lints(&policy, TODAY)),
        (
            Severity::Warning,
            LintCode::BreakGlassAddsNothing,
            ISA.to_owned(),
            "dataset `police.records`: break-glass for role `team-manager` releases nothing \
             beyond its normal fields"
                .to_owned()
        )
    );
    assert_eq!(
        LintCode::BreakGlassAddsNothing.as_str(),
        "break-glass-adds-nothing"
    );
}

#[test]
fn break_glass_for_a_role_without_normal_terms_is_refused_when_loading() {
    let policy = demo_with(
        r#"roles = ["team-manager"]"#,
        r#"roles = ["duty-inspector"]"#,
    );
    let e = PolicySet::from_toml(&policy).unwrap_err().to_string();
    assert!(
        e.contains(
            "break_glass role `duty-inspector` has no normal terms here; break-glass only widens \
             a role's own field set"
        ),
        "{e}"
    );
}

fn marker_rule(id: &str, dataset: &str, marker: &str) -> String {
    format!(
        "{}marker = \"{marker}\"\n",
        rule(id, "*", "*", dataset, "*", "*")
    )
}

#[test]
fn a_marker_no_mapping_produces_is_reported() {
    let bounded = known()
        .with_markers(
            "police.records",
            ["witness-protection", "child-sexual-exploitation"],
        )
        .with_markers("health.records", ["witness-protection"]);
    let check = |rules: &str| {
        let set = PolicySet::from_toml(&with_rules(rules)).unwrap();
        lint_on(&set, &bounded, TODAY)
    };
    assert_eq!(
        check(&marker_rule("wp", "police.records", "witness-protection")),
        []
    );
    assert_eq!(
        one(&check(&marker_rule(
            "typo",
            "police.records",
            "witness-protectoin"
        ))),
        (
            Severity::Warning,
            LintCode::UnproducedMarker,
            "rule `typo`".to_owned(),
            "names marker `witness-protectoin`, which no mapping of dataset `police.records` \
             produces, so it withholds nothing"
                .to_owned()
        )
    );
    // On every dataset: reported only when none of them produces it.
    assert_eq!(
        check(&marker_rule("cse", "*", "child-sexual-exploitation")),
        []
    );
    assert_eq!(
        one(&check(&marker_rule("nowhere", "*", "adoption"))).3,
        "names marker `adoption`, which no mapping of any dataset produces, so it withholds \
         nothing"
    );
    // A dataset whose markers nothing bounds may carry any marker.
    let open = known().with_markers("police.records", ["witness-protection"]);
    let set = PolicySet::from_toml(&with_rules(&marker_rule("any", "*", "adoption"))).unwrap();
    assert_eq!(lint_on(&set, &open, TODAY), []);
    let set =
        PolicySet::from_toml(&with_rules(&marker_rule("h", "health.records", "adoption"))).unwrap();
    assert!(
        lint_on(&set, &open, TODAY)
            .iter()
            .all(|l| l.code != LintCode::UnproducedMarker)
    );
    // Without mappings to go by, nothing is said.
    let set =
        PolicySet::from_toml(&with_rules(&marker_rule("p", "police.records", "adoption"))).unwrap();
    assert_eq!(lint_on(&set, &known(), TODAY), []);
}
