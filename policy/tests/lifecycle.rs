//! An agreement shares only while active and in force; suspending it stops sharing at once.

mod support;

use liaison_policy::{AgreementStatus, DenyReason};
use support::{DEMO, ask, demo_with, engine};
use time::macros::{date, datetime};

#[test]
fn suspended_draft_and_expired_agreements_share_nothing() {
    for (status, parsed) in [
        ("suspended", AgreementStatus::Suspended),
        ("draft", AgreementStatus::Draft),
        ("expired", AgreementStatus::Expired),
    ] {
        let engine = engine(&demo_with(
            r#"status = "active""#,
            &format!(r#"status = "{status}""#),
        ));
        let decision = ask().decide(&engine);
        assert_eq!(
            decision.deny,
            Some(DenyReason::AgreementNotActive {
                isa: "met-hackney-children".into(),
                status: parsed,
            }),
            "{status}"
        );
        assert_eq!(decision.reason(), Some("ISA_NOT_ACTIVE"));
        assert_eq!(decision.isa_version, Some(3));
        assert!(decision.mask.is_empty());
    }
}

#[test]
fn the_same_share_is_allowed_while_active() {
    assert!(ask().decide(&engine(DEMO)).is_allowed());
}

#[test]
fn status_is_checked_before_everything_but_existence() {
    let engine = engine(&demo_with(
        r#"status = "active""#,
        r#"status = "suspended""#,
    ));
    let decision = ask()
        .agency("someone-else")
        .purpose("crime-prevention")
        .decide(&engine);
    assert_eq!(decision.reason(), Some("ISA_NOT_ACTIVE"));
}

#[test]
fn not_yet_in_force_the_day_before_valid_from() {
    let engine = engine(DEMO);
    let decision = ask().at(datetime!(2025-12-31 23:59 UTC)).decide(&engine);
    assert_eq!(
        decision.deny,
        Some(DenyReason::AgreementNotYetValid {
            isa: "met-hackney-children".into(),
            valid_from: date!(2026 - 01 - 01),
        })
    );
    assert_eq!(decision.reason(), Some("ISA_EXPIRED"));
    assert_eq!(
        decision.deny.unwrap().to_string(),
        "isa `met-hackney-children` is not in force until 2026-01-01"
    );
}

#[test]
fn in_force_from_the_first_moment_of_valid_from() {
    let decision = ask()
        .at(datetime!(2026-01-01 00:00 UTC))
        .decide(&engine(DEMO));
    assert!(decision.is_allowed());
}

#[test]
fn in_force_until_the_last_moment_of_valid_until() {
    let decision = ask()
        .at(datetime!(2027-12-31 23:59:59 UTC))
        .decide(&engine(DEMO));
    assert!(decision.is_allowed());
}

#[test]
fn expired_the_day_after_valid_until() {
    let decision = ask()
        .at(datetime!(2028-01-01 00:00 UTC))
        .decide(&engine(DEMO));
    assert_eq!(
        decision.deny,
        Some(DenyReason::AgreementExpired {
            isa: "met-hackney-children".into(),
            valid_until: date!(2027 - 12 - 31),
        })
    );
    assert_eq!(decision.reason(), Some("ISA_EXPIRED"));
}

#[test]
fn the_date_is_read_in_the_offset_given() {
    // 23:30 on 31 December in UTC is already 1 January at UTC+1.
    let engine = engine(DEMO);
    let late = ask().at(datetime!(2025-12-31 23:30 UTC)).decide(&engine);
    assert_eq!(late.reason(), Some("ISA_EXPIRED"));
    let same_instant = ask()
        .at(datetime!(2025-12-31 23:30 UTC).to_offset(time::macros::offset!(+1)))
        .decide(&engine);
    assert!(same_instant.is_allowed());
}

#[test]
fn an_open_ended_agreement_never_expires() {
    let engine = engine(&demo_with("valid_until = 2027-12-31\n", ""));
    let decision = ask().at(datetime!(2090-01-01 12:00 UTC)).decide(&engine);
    assert!(decision.is_allowed());
}

#[test]
fn the_review_date_is_reported_never_enforced() {
    let decision = ask()
        .at(datetime!(2027-06-01 12:00 UTC))
        .decide(&engine(DEMO));
    assert!(decision.is_allowed());
}
