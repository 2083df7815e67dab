//! `policy explain`: one decision in plain English, consistent with the decision itself.

mod support;

use liaison_policy::{Action, FieldMask, explain};
use support::{DEMO, DEMO_DENY, ask, engine};
use time::macros::datetime;

fn explained(policy: &str, ask: &support::Ask) -> liaison_policy::Explanation {
    let engine = engine(policy);
    explain(
        &engine,
        &liaison_policy::DecisionRequest {
            agency: &ask.agency,
            roles: &ask.roles,
            action: ask.action,
            dataset: &ask.dataset,
            purpose: &ask.purpose,
            isa_id: &ask.isa,
            at: ask.at,
            break_glass: ask.break_glass,
        },
    )
}

#[test]
fn an_allowed_share_names_the_agreement_the_checks_and_the_fields() {
    let explanation = explained(DEMO, &ask().roles(&["social-worker", "team-manager"]));
    assert!(explanation.decision.is_allowed());
    assert!(explanation.checks.iter().all(|c| c.passed));
    assert_eq!(explanation.checks.len(), 8);
    let roles: Vec<&str> = explanation
        .releases
        .iter()
        .map(|(r, _)| r.as_str())
        .collect();
    assert_eq!(roles, ["social-worker", "team-manager"]);
    let mut union = FieldMask::empty();
    for (_, fields) in &explanation.releases {
        union.union_with(fields);
    }
    assert_eq!(union, explanation.decision.mask);

    let text = explanation.to_string();
    let expected = [
        "ALLOWED: `hackney-childrens` may read `police.records` for `safeguarding-children` under \
         agreement `met-hackney-children`.",
        "",
        "The request",
        "  Someone at `hackney-childrens` holding the roles `social-worker`, `team-manager` asked \
         to read \
         `police.records` for `safeguarding-children`, under agreement `met-hackney-children`, on \
         2026-06-01.",
        "",
        "The agreement",
        "  \"Metropolitan Police and London Borough of Hackney: safeguarding children\" \
         (`met-hackney-children`, version 3), provided by `met-police`.",
        "  Legal basis: Children Act 1989 s.47; Children Act 2004 s.11; DPA 2018 Sch.1 para 18",
        "  DPO contacts: dpo@met.police.example, dpo@hackney.gov.example",
        "",
        "What was checked",
        "  yes  The agreement is active.",
        "  yes  It is in force on 2026-06-01 (from 2026-01-01 to 2027-12-31).",
        "  yes  `hackney-childrens` is one of its recipients.",
        "  yes  It permits sharing for `safeguarding-children`.",
        "  yes  It covers the dataset `police.records`.",
        "  yes  It permits `read` on `police.records`.",
        "  yes  It releases fields of `police.records` to `social-worker`, `team-manager`, which \
         the caller holds.",
        "  yes  No operator rule stops this share.",
        "",
        "What is released",
        "  To `social-worker`: incident.category, incident.occurred_at, incident.summary, \
         person.addresses, person.date_of_birth, person.names, risk_assessment.assessed_at, \
         risk_assessment.level, safeguarding_concern, warning_marker.marker.",
        "  To `team-manager`: incident.category, incident.occurred_at, incident.summary, \
         person.addresses, person.date_of_birth, person.names, relationship, \
         risk_assessment.assessed_at, risk_assessment.level, safeguarding_concern, \
         warning_marker.marker.",
        "  The caller holds several roles, so receives all of these: incident.category, \
         incident.occurred_at, incident.summary, person.addresses, person.date_of_birth, \
         person.names, relationship, risk_assessment.assessed_at, risk_assessment.level, \
         safeguarding_concern, warning_marker.marker.",
        "  Every other field is removed from the records before they leave.",
        "  The disclosure is recorded under: Children Act 1989 s.47; Children Act 2004 s.11; DPA \
         2018 Sch.1 para 18",
        "",
        "Conditions on the recipient",
        "  Handling caveat on every record: OFFICIAL-SENSITIVE: do not disclose further without \
         the Met's agreement",
        "",
        "For the audit trail",
    ];
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..expected.len()], expected, "{text}");
    assert!(
        lines[expected.len()].starts_with("  Policy version: sha256:"),
        "{text}"
    );
    assert!(
        lines[expected.len() + 1].starts_with(
            "  Policy lines matched: isa:met-hackney-children@3:police.records:hackney-childrens:"
        ),
        "{text}"
    );
}

#[test]
fn an_operator_denial_quotes_the_rule_and_releases_nothing() {
    let explanation = explained(DEMO_DENY, &ask().purpose("missing-person"));
    assert!(!explanation.decision.is_allowed());
    assert_eq!(
        explanation.denied_by.as_ref().map(|r| r.id.as_str()),
        Some("pause-missing-person-police-records")
    );
    let text = explanation.to_string();
    assert!(
        text.starts_with(
            "DENIED (POLICY_DENIED): operator rule `pause-missing-person-police-records` denies \
             this share.\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "  yes  It releases fields of `police.records` to `social-worker`, which the caller \
             holds.\n  NO   Operator rule `pause-missing-person-police-records` stops \
             it: \"Missing-person data from police records is paused while a feed fault is fixed \
             (INC-2026-0412)\".\n\nWhat is released\n  Nothing.\n"
        ),
        "{text}"
    );
}

#[test]
fn a_denial_stops_at_the_first_unmet_condition() {
    let explanation = explained(DEMO, &ask().action(Action::Subscribe));
    let marks: Vec<bool> = explanation.checks.iter().map(|c| c.passed).collect();
    assert_eq!(marks, [true, true, true, true, true, false]);
    let text = explanation.to_string();
    assert!(
        text.contains(
            "  NO   It does not permit `subscribe` on `police.records`; it permits `search`, \
             `read`.\n  The remaining checks were not needed.\n"
        ),
        "{text}"
    );

    let text = explained(DEMO, &ask().roles(&["business-support"])).to_string();
    assert!(
        text.contains(
            "  NO   It releases fields of `police.records` only to `social-worker`, \
             `team-manager`, and the caller holds `business-support`.\n"
        ),
        "{text}"
    );

    let text = explained(DEMO, &ask().at(datetime!(2028-01-01 09:00 UTC))).to_string();
    assert!(
        text.starts_with("DENIED (ISA_EXPIRED): isa `met-hackney-children` ended on 2027-12-31.\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  NO   It is not in force on 2028-01-01 (it runs from 2026-01-01 to 2027-12-31).\n"
        ),
        "{text}"
    );

    let text = explained(DEMO, &ask().agency("islington-childrens")).to_string();
    assert!(
        text.contains(
            "  NO   `islington-childrens` is not one of its recipients (`hackney-childrens`).\n"
        ),
        "{text}"
    );
}

#[test]
fn an_unknown_agreement_is_explained_without_one() {
    let explanation = explained(DEMO, &ask().isa("met-islington-children"));
    assert_eq!(explanation.agreement, None);
    let text = explanation.to_string();
    assert!(
        text.starts_with("DENIED (ISA_UNKNOWN): isa `met-islington-children` is not known.\n"),
        "{text}"
    );
    assert!(!text.contains("The agreement\n"), "{text}");
    assert!(
        text.contains(
            "  NO   This policy holds no agreement `met-islington-children`, and nothing is shared \
             without one.\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("  Policy lines matched: none"), "{text}");
}

#[test]
fn a_suspended_agreement_is_explained_as_such() {
    let policy = support::demo_with(r#"status = "active""#, r#"status = "suspended""#);
    let text = explained(&policy, &ask()).to_string();
    assert!(
        text.contains(
            "What was checked\n  NO   The agreement is suspended, not active, so nothing is shared \
             under it.\n  The remaining checks were not needed.\n"
        ),
        "{text}"
    );
}

#[test]
fn an_allowed_break_glass_share_says_what_it_adds_and_that_a_dpo_reviews_it() {
    let explanation = explained(DEMO, &ask().roles(&["team-manager"]).break_glass());
    assert!(explanation.decision.is_allowed());
    assert!(explanation.decision.break_glass);
    assert_eq!(explanation.checks.len(), 9);
    assert!(explanation.checks.iter().all(|c| c.passed));
    assert_eq!(
        explanation.break_glass_releases,
        vec![(
            "team-manager".to_owned(),
            FieldMask::new(["incident.location", "warning_marker.description"])
        )]
    );
    let text = explanation.to_string();
    for line in [
        "  They invoked break-glass: emergency access beyond their normal fields, for an \
         immediate risk to life or of serious harm.",
        "  yes  The caller invoked break-glass (emergency access), and the agreement lets \
         `team-manager` do so on `police.records`.",
        "  Under break-glass, `team-manager` also receives: incident.location, \
         warning_marker.description.",
        "  This is an emergency disclosure: the ledger marks it as break-glass and a DPO must \
         review it.",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("break-glass:met-hackney-children@3:police.records:team-manager"));
}

#[test]
fn a_refused_break_glass_share_names_who_may_invoke_it() {
    let explanation = explained(DEMO, &ask().break_glass());
    assert_eq!(
        explanation.decision.reason(),
        Some("BREAK_GLASS_NOT_PERMITTED")
    );
    assert_eq!(explanation.checks.len(), 9);
    let last = explanation.checks.last().unwrap();
    assert!(!last.passed);
    assert_eq!(
        last.finding,
        "The caller invoked break-glass (emergency access), but the agreement lets only \
         `team-manager` do so on `police.records`."
    );
    let text = explanation.to_string();
    assert!(
        text.contains("DENIED (BREAK_GLASS_NOT_PERMITTED)"),
        "{text}"
    );
    assert!(text.contains("  Nothing."), "{text}");
    // A denial before break-glass is weighed is told as before, without the extra check.
    let earlier = explained(
        DEMO,
        &ask()
            .roles(&["team-manager"])
            .purpose("crime-prevention")
            .break_glass(),
    );
    assert_eq!(earlier.decision.reason(), Some("PURPOSE_NOT_PERMITTED"));
    assert!(
        earlier
            .to_string()
            .contains("The remaining checks were not needed.")
    );
}

#[test]
fn withheld_markers_are_named_with_their_rule() {
    let policy = format!(
        "{DEMO}\n[[rule]]\nid = \"no-witness-protection\"\neffect = \"deny\"\nagency = \"*\"\n\
         role = \"*\"\ndataset = \"police.records\"\npurpose = \"*\"\naction = \"*\"\n\
         marker = \"witness-protection\"\ndescription = \"Never shared with partners\"\n\
         [[rule]]\nid = \"no-emergency\"\neffect = \"deny\"\nagency = \"*\"\nrole = \"*\"\n\
         dataset = \"*\"\npurpose = \"*\"\naction = \"*\"\nbreak_glass = \"deny\"\n\
         description = \"Emergency access is closed during the audit\"\n"
    );
    let explanation = explained(&policy, &ask());
    assert!(explanation.decision.is_allowed());
    assert_eq!(explanation.withheld.len(), 1);
    let text = explanation.to_string();
    assert!(
        text.contains(
            "  Records marked `witness-protection` are withheld by rule \
             `no-witness-protection`: Never shared with partners\n"
        ),
        "{text}"
    );

    let refused = explained(&policy, &ask().roles(&["team-manager"]).break_glass());
    assert_eq!(refused.decision.reason(), Some("BREAK_GLASS_NOT_PERMITTED"));
    let last = refused.checks.last().unwrap();
    assert!(!last.passed);
    assert!(
        last.finding
            .contains("operator rule `no-emergency` closes emergency access here"),
        "{}",
        last.finding
    );
    assert!(refused.withheld.is_empty());
}
