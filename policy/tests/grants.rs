//! `grants_for` lists what a principal may do, and never promises what a share would refuse.

mod support;

use liaison_policy::{Action, FieldMask};
use support::{DEMO, DEMO_DENY, IN_FORCE, demo_with, engine};
use time::macros::datetime;

fn roles(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn a_social_worker_sees_the_demo_grant() {
    let engine = engine(DEMO);
    let grants = engine.grants_for("hackney-childrens", &roles(&["social-worker"]), IN_FORCE);
    let [grant] = grants.as_slice() else {
        panic!("{grants:?}");
    };
    assert_eq!(grant.isa_id, "met-hackney-children");
    assert_eq!(grant.isa_version, 3);
    assert_eq!(grant.dataset, "police.records");
    assert_eq!(grant.provider, "met-police");
    assert_eq!(grant.purposes, ["missing-person", "safeguarding-children"]);
    assert_eq!(grant.actions, [Action::Search, Action::Read]);
    assert!(grant.fields.allows("person.names"));
    assert!(!grant.fields.allows("relationship"));
    assert_eq!(
        grant.legal_basis,
        "Children Act 1989 s.47; Children Act 2004 s.11; DPA 2018 Sch.1 para 18"
    );
}

#[test]
fn a_team_manager_grant_includes_relationships() {
    let engine = engine(DEMO);
    let grants = engine.grants_for("hackney-childrens", &roles(&["team-manager"]), IN_FORCE);
    assert_eq!(grants.len(), 1);
    assert!(grants[0].fields.allows("relationship.kind"));
}

#[test]
fn others_see_nothing() {
    let engine = engine(DEMO);
    assert!(
        engine
            .grants_for("hackney-adults", &roles(&["social-worker"]), IN_FORCE)
            .is_empty()
    );
    assert!(
        engine
            .grants_for("hackney-childrens", &roles(&["receptionist"]), IN_FORCE)
            .is_empty()
    );
    assert!(
        engine
            .grants_for("hackney-childrens", &[], IN_FORCE)
            .is_empty()
    );
}

#[test]
fn nothing_is_listed_outside_the_agreement_dates_or_when_suspended() {
    let engine = engine(DEMO);
    let before = datetime!(2025-06-01 12:00 UTC);
    assert!(
        engine
            .grants_for("hackney-childrens", &roles(&["social-worker"]), before)
            .is_empty()
    );
    let suspended = support::engine(&demo_with(
        r#"status = "active""#,
        r#"status = "suspended""#,
    ));
    assert!(
        suspended
            .grants_for("hackney-childrens", &roles(&["social-worker"]), IN_FORCE)
            .is_empty()
    );
}

#[test]
fn a_paused_purpose_is_not_listed() {
    let engine = engine(DEMO_DENY);
    let grants = engine.grants_for("hackney-childrens", &roles(&["social-worker"]), IN_FORCE);
    let [grant] = grants.as_slice() else {
        panic!("{grants:?}");
    };
    assert_eq!(grant.purposes, ["safeguarding-children"]);
    assert_ne!(grant.fields, FieldMask::empty());
}

#[test]
fn agreements_are_reachable_by_id() {
    let engine = engine(DEMO);
    assert_eq!(
        engine.agreement("met-hackney-children").map(|a| a.version),
        Some(3)
    );
    assert!(engine.agreement("unknown").is_none());
    assert_eq!(engine.agreements().count(), 1);
}
