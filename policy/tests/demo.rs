//! The demo policy decides as its agreement reads: each allowed share beside the denial it
//! turns into when one thing changes.

mod support;

use liaison_policy::{Action, AgreementStatus, DenyReason, Effect, Obligation};
use support::{DEMO, DEMO_DENY, ask, engine, paths};

const SOCIAL_WORKER_FIELDS: [&str; 10] = [
    "incident.category",
    "incident.occurred_at",
    "incident.summary",
    "person.addresses",
    "person.date_of_birth",
    "person.names",
    "risk_assessment.assessed_at",
    "risk_assessment.level",
    "safeguarding_concern",
    "warning_marker.marker",
];

#[test]
fn the_demo_parses_as_written() {
    let set = liaison_policy::PolicySet::from_toml(DEMO).unwrap();
    let [agreement] = set.agreements() else {
        panic!("expected one agreement");
    };
    assert_eq!(agreement.id, "met-hackney-children");
    assert_eq!(agreement.version, 3);
    assert_eq!(agreement.provider, "met-police");
    assert_eq!(agreement.recipients, ["hackney-childrens"]);
    assert_eq!(
        agreement.purposes,
        ["safeguarding-children", "missing-person"]
    );
    assert_eq!(
        agreement.legal_basis,
        "Children Act 1989 s.47; Children Act 2004 s.11; DPA 2018 Sch.1 para 18"
    );
    assert_eq!(agreement.status, AgreementStatus::Active);
    assert_eq!(agreement.valid_from, time::macros::date!(2026 - 01 - 01));
    assert_eq!(
        agreement.valid_until,
        Some(time::macros::date!(2027 - 12 - 31))
    );
    assert_eq!(
        agreement.review_date,
        Some(time::macros::date!(2026 - 12 - 01))
    );
    let terms = agreement.dataset("police.records").unwrap();
    assert_eq!(terms.actions, [Action::Search, Action::Read]);
    assert_eq!(terms.roles.len(), 2);
    assert!(set.rules().is_empty());
}

#[test]
fn a_social_worker_reads_for_safeguarding() {
    let engine = engine(DEMO);
    let decision = ask().decide(&engine);

    assert_eq!(decision.effect, Effect::Allow);
    assert_eq!(decision.deny, None);
    assert_eq!(paths(&decision), SOCIAL_WORKER_FIELDS);
    assert_eq!(
        decision.matched,
        [
            "isa:met-hackney-children@3:police.records:hackney-childrens:social-worker:read:safeguarding-children"
        ]
    );
    assert_eq!(
        decision.obligations,
        [Obligation::HandlingCaveat(
            "OFFICIAL-SENSITIVE: do not disclose further without the Met's agreement".into()
        )]
    );
    assert_eq!(decision.isa_version, Some(3));
    assert_eq!(
        decision.legal_basis.as_deref(),
        Some("Children Act 1989 s.47; Children Act 2004 s.11; DPA 2018 Sch.1 para 18")
    );
    assert_eq!(decision.policy_version, engine.version());
}

#[test]
fn a_social_worker_may_not_subscribe() {
    let decision = ask().action(Action::Subscribe).decide(&engine(DEMO));
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(
        decision.deny,
        Some(DenyReason::ActionNotPermitted {
            isa: "met-hackney-children".into(),
            dataset: "police.records".into(),
            action: Action::Subscribe,
        })
    );
    assert_eq!(decision.reason(), Some("ACTION_NOT_PERMITTED"));
    assert_eq!(
        decision.deny.unwrap().to_string(),
        "isa `met-hackney-children` does not permit `subscribe` on dataset `police.records`"
    );
    assert!(decision.mask.is_empty());
    assert!(decision.obligations.is_empty());
    assert!(decision.matched.is_empty());
    assert_eq!(decision.legal_basis, None);
    assert_eq!(decision.isa_version, Some(3));
}

#[test]
fn a_social_worker_searches_for_a_missing_child() {
    let decision = ask()
        .action(Action::Search)
        .purpose("missing-person")
        .decide(&engine(DEMO));
    assert!(decision.is_allowed());
    assert_eq!(paths(&decision), SOCIAL_WORKER_FIELDS);
}

#[test]
fn crime_prevention_is_not_a_permitted_purpose() {
    let decision = ask().purpose("crime-prevention").decide(&engine(DEMO));
    assert_eq!(
        decision.deny,
        Some(DenyReason::PurposeNotPermitted {
            isa: "met-hackney-children".into(),
            purpose: "crime-prevention".into(),
        })
    );
    assert_eq!(decision.reason(), Some("PURPOSE_NOT_PERMITTED"));
    assert_eq!(
        decision.deny.unwrap().to_string(),
        "isa `met-hackney-children` does not permit purpose `crime-prevention`"
    );
}

#[test]
fn another_agency_is_not_a_recipient() {
    let decision = ask().agency("hackney-adults").decide(&engine(DEMO));
    assert_eq!(
        decision.deny,
        Some(DenyReason::NotARecipient {
            isa: "met-hackney-children".into(),
            agency: "hackney-adults".into(),
        })
    );
    assert_eq!(decision.reason(), Some("AGENCY_NOT_RECIPIENT"));
}

#[test]
fn the_provider_is_not_a_recipient_of_its_own_agreement() {
    let decision = ask().agency("met-police").decide(&engine(DEMO));
    assert_eq!(decision.reason(), Some("AGENCY_NOT_RECIPIENT"));
}

#[test]
fn an_uncovered_dataset_is_refused() {
    let decision = ask().dataset("police.intelligence").decide(&engine(DEMO));
    assert_eq!(
        decision.deny,
        Some(DenyReason::DatasetNotCovered {
            isa: "met-hackney-children".into(),
            dataset: "police.intelligence".into(),
        })
    );
    assert_eq!(decision.reason(), Some("DATASET_NOT_COVERED"));
}

#[test]
fn a_role_the_agreement_does_not_name_sees_nothing() {
    let engine = engine(DEMO);
    for roles in [&["receptionist"][..], &[]] {
        let decision = ask().roles(roles).decide(&engine);
        assert_eq!(
            decision.deny,
            Some(DenyReason::NoRoleGranted {
                isa: "met-hackney-children".into(),
                dataset: "police.records".into(),
            }),
            "{roles:?}"
        );
        assert_eq!(decision.reason(), Some("ROLE_NOT_PERMITTED"));
    }
}

#[test]
fn a_team_manager_also_sees_relationships() {
    let engine = engine(DEMO);
    let manager = ask().roles(&["team-manager"]).decide(&engine);
    assert!(manager.is_allowed());
    assert!(manager.mask.allows("relationship.kind"));
    assert!(manager.mask.allows("relationship.other_person.names"));

    let worker = ask().decide(&engine);
    assert!(!worker.mask.allows("relationship.kind"));
    assert!(!worker.mask.allows("relationship"));
}

#[test]
fn holding_both_roles_releases_the_union() {
    let engine = engine(DEMO);
    let decision = ask()
        .roles(&[
            "receptionist",
            "social-worker",
            "team-manager",
            "social-worker",
        ])
        .decide(&engine);
    assert!(decision.is_allowed());
    let mut expected: Vec<&str> = SOCIAL_WORKER_FIELDS.to_vec();
    expected.push("relationship");
    expected.sort_unstable();
    assert_eq!(paths(&decision), expected);
    assert_eq!(decision.matched.len(), 2, "{:?}", decision.matched);
}

#[test]
fn fields_outside_the_mask_stay_hidden() {
    let decision = ask().decide(&engine(DEMO));
    for hidden in [
        "person.identifiers.pnc_id",
        "person",
        "incident.officer_notes",
        "warning_marker.details",
        "risk_assessment.answers",
        "object",
        "location",
    ] {
        assert!(!decision.mask.allows(hidden), "{hidden}");
    }
    for shown in [
        "person.names.family",
        "safeguarding_concern.referral_reason",
        "warning_marker.marker",
    ] {
        assert!(decision.mask.allows(shown), "{shown}");
    }
}

#[test]
fn an_unknown_agreement_is_refused() {
    let decision = ask().isa("met-hackney-adults").decide(&engine(DEMO));
    assert_eq!(
        decision.deny,
        Some(DenyReason::AgreementUnknown {
            isa: "met-hackney-adults".into()
        })
    );
    assert_eq!(decision.reason(), Some("ISA_UNKNOWN"));
    assert_eq!(decision.isa_version, None);
    assert_eq!(
        decision.deny.unwrap().to_string(),
        "isa `met-hackney-adults` is not known"
    );
}

#[test]
fn a_literal_wildcard_in_a_request_matches_nothing() {
    let engine = engine(DEMO);
    assert_eq!(
        ask().agency("*").decide(&engine).reason(),
        Some("AGENCY_NOT_RECIPIENT")
    );
    assert_eq!(
        ask().purpose("*").decide(&engine).reason(),
        Some("PURPOSE_NOT_PERMITTED")
    );
    assert_eq!(
        ask().dataset("*").decide(&engine).reason(),
        Some("DATASET_NOT_COVERED")
    );
    assert_eq!(
        ask().roles(&["*"]).decide(&engine).reason(),
        Some("ROLE_NOT_PERMITTED")
    );
    assert_eq!(ask().isa("*").decide(&engine).reason(), Some("ISA_UNKNOWN"));
}

#[test]
fn the_deny_twin_pauses_missing_person_sharing() {
    let engine = engine(DEMO_DENY);
    let decision = ask().purpose("missing-person").decide(&engine);
    assert_eq!(
        decision.deny,
        Some(DenyReason::ExplicitDeny {
            rule_id: "pause-missing-person-police-records".into()
        })
    );
    assert_eq!(decision.reason(), Some("POLICY_DENIED"));
    assert_eq!(
        decision.matched,
        [
            "isa:met-hackney-children@3:police.records:hackney-childrens:social-worker:read:missing-person",
            "rule:pause-missing-person-police-records",
        ]
    );
    assert!(decision.mask.is_empty());
    assert_eq!(decision.isa_version, Some(3));
}

#[test]
fn the_deny_twin_still_allows_safeguarding() {
    let engine = engine(DEMO_DENY);
    let decision = ask().decide(&engine);
    assert!(decision.is_allowed());
    assert_eq!(paths(&decision), SOCIAL_WORKER_FIELDS);
}

#[test]
fn the_twins_have_different_versions() {
    let allow = engine(DEMO);
    let deny = engine(DEMO_DENY);
    assert_ne!(allow.version(), deny.version());
    for version in [allow.version(), deny.version()] {
        let hex = version.strip_prefix("sha256:").unwrap();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
