//! The policy version is a content hash: the same policy gives the same version wherever it is
//! loaded, and any change to what is enforced changes it.

mod support;

use support::{DEMO, demo_with, engine};

#[test]
fn the_same_policy_has_the_same_version() {
    assert_eq!(engine(DEMO).version(), engine(DEMO).version());
}

#[test]
fn formatting_and_order_do_not_change_the_version() {
    let reordered = demo_with(
        r#"purposes = ["safeguarding-children", "missing-person"]"#,
        "# comments are not policy\npurposes = [ \"missing-person\", \"safeguarding-children\" ]",
    );
    let reordered = reordered.replacen(
        r#"actions = ["search", "read"]"#,
        r#"actions = ["read", "search"]"#,
        1,
    );
    assert_eq!(engine(DEMO).version(), engine(&reordered).version());
}

#[test]
fn a_redundant_field_path_does_not_change_the_version() {
    // `safeguarding_concern.*` already releases `safeguarding_concern.category`.
    let redundant = demo_with(
        r#""safeguarding_concern.*","#,
        r#""safeguarding_concern.*", "safeguarding_concern.category","#,
    );
    assert_eq!(engine(DEMO).version(), engine(&redundant).version());
}

#[test]
fn every_change_that_matters_changes_the_version() {
    let base = engine(DEMO);
    let changes = [
        ("version = 3", "version = 4"),
        (r#"status = "active""#, r#"status = "suspended""#),
        ("valid_until = 2027-12-31", "valid_until = 2027-12-30"),
        ("review_date = 2026-12-01", "review_date = 2026-12-02"),
        (r#""incident.summary","#, ""),
        (
            r#"role = "social-worker""#,
            r#"role = "senior-practitioner""#,
        ),
        (
            r#"roles = ["team-manager"]"#,
            r#"roles = ["social-worker"]"#,
        ),
        (
            r#"fields = ["incident.location", "warning_marker.description"]"#,
            r#"fields = ["incident.location"]"#,
        ),
        ("Children Act 1989 s.47;", "Children Act 1989 s.17;"),
        (
            r#"recipients = ["hackney-childrens"]"#,
            r#"recipients = ["hackney-childrens", "hackney-eh"]"#,
        ),
        ("OFFICIAL-SENSITIVE", "OFFICIAL"),
        (
            r#"dpo_contacts = ["dpo@met.police.example", "#,
            r#"dpo_contacts = ["#,
        ),
    ];
    for (from, to) in changes {
        let changed = engine(&demo_with(from, to));
        assert_ne!(base.version(), changed.version(), "{from} -> {to}");
    }
}

#[test]
fn adding_a_rule_changes_the_version() {
    let with_rule = format!(
        "{DEMO}\n[[rule]]\nid = \"r\"\neffect = \"deny\"\nagency = \"*\"\nrole = \"*\"\n\
         dataset = \"*\"\npurpose = \"*\"\naction = \"*\"\ndescription = \"d\"\n"
    );
    assert_ne!(engine(DEMO).version(), engine(&with_rule).version());
}

#[test]
fn decisions_carry_the_version() {
    let engine = engine(DEMO);
    let allowed = support::ask().decide(&engine);
    let denied = support::ask().isa("unknown").decide(&engine);
    assert_eq!(allowed.policy_version, engine.version());
    assert_eq!(denied.policy_version, engine.version());
}
