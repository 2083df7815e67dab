//! casbin's decisions agree, request for request, with a plain reading of the rules.
//!
//! The reference below is written from the documented semantics alone, without casbin and
//! without the engine's code, and every request over a small universe is put to both.

use liaison_policy::{
    Action, AgreementStatus, DecisionRequest, DenyReason, Effect, FieldMask, OperatorRule,
    PolicyEngine, PolicySet,
};
use time::OffsetDateTime;
use time::macros::datetime;

const POLICY: &str = r#"
[[agreement]]
id = "a"
version = 1
title = "two recipients, two datasets"
provider = "p"
recipients = ["r1", "r2"]
purposes = ["p1", "p2"]
legal_basis = "test"
valid_from = 2026-01-01
status = "active"

[[agreement.datasets]]
dataset = "d1"
actions = ["search", "read"]
notify_provider = true
[[agreement.datasets.roles]]
role = "x"
fields = ["person.names", "incident"]
[[agreement.datasets.roles]]
role = "y"
fields = ["person.date_of_birth", "incident.summary"]
[[agreement.datasets.break_glass]]
roles = ["x"]
fields = ["relationship", "person.addresses"]
[[agreement.datasets.break_glass]]
roles = ["x", "y"]
fields = ["warning_marker.marker"]

[[agreement.datasets]]
dataset = "d2"
actions = ["subscribe"]
[[agreement.datasets.roles]]
role = "y"
fields = ["relationship"]

[[agreement]]
id = "b"
version = 7
title = "suspended"
provider = "p"
recipients = ["r1"]
purposes = ["p1"]
legal_basis = "test"
valid_from = 2026-01-01
status = "suspended"
[[agreement.datasets]]
dataset = "d1"
actions = ["read"]
[[agreement.datasets.roles]]
role = "x"
fields = ["person"]

[[agreement]]
id = "c"
version = 2
title = "a short window"
provider = "p2"
recipients = ["r3", "r1"]
purposes = ["p3", "p1"]
legal_basis = "test"
valid_from = 2026-03-01
valid_until = 2026-03-31
status = "active"
[[agreement.datasets]]
dataset = "d1"
actions = ["read", "subscribe"]
[[agreement.datasets.roles]]
role = "z"
fields = ["risk_assessment.level"]
[[agreement.datasets.roles]]
role = "x"
fields = ["person.names"]
[[agreement.datasets.break_glass]]
roles = ["z"]
fields = ["person"]

[[rule]]
id = "no-y-reads-of-d1"
effect = "deny"
agency = "*"
role = "y"
dataset = "d1"
purpose = "*"
action = "read"
description = "test"

[[rule]]
id = "no-p2-for-r2"
effect = "deny"
agency = "r2"
role = "*"
dataset = "*"
purpose = "p2"
action = "*"
description = "test"

[[rule]]
id = "no-z-subscriptions"
effect = "deny"
agency = "*"
role = "z"
dataset = "*"
purpose = "*"
action = "subscribe"
description = "test"
"#;

struct Expected {
    effect: Effect,
    deny: Option<DenyReason>,
    mask: FieldMask,
    break_glass: bool,
}

/// The documented semantics, checked in the documented order.
fn reference(set: &PolicySet, req: &DecisionRequest<'_>) -> Expected {
    let deny = |reason| Expected {
        effect: Effect::Deny,
        deny: Some(reason),
        mask: FieldMask::empty(),
        break_glass: false,
    };
    let isa = req.isa_id.to_owned();
    let Some(a) = set.agreements().iter().find(|a| a.id == req.isa_id) else {
        return deny(DenyReason::AgreementUnknown { isa });
    };
    if a.status != AgreementStatus::Active {
        return deny(DenyReason::AgreementNotActive {
            isa,
            status: a.status,
        });
    }
    let today = req.at.date();
    if today < a.valid_from {
        return deny(DenyReason::AgreementNotYetValid {
            isa,
            valid_from: a.valid_from,
        });
    }
    if let Some(until) = a.valid_until.filter(|until| *until < today) {
        return deny(DenyReason::AgreementExpired {
            isa,
            valid_until: until,
        });
    }
    if !a.recipients.iter().any(|r| r == req.agency) {
        return deny(DenyReason::NotARecipient {
            isa,
            agency: req.agency.into(),
        });
    }
    if !a.purposes.iter().any(|p| p == req.purpose) {
        return deny(DenyReason::PurposeNotPermitted {
            isa,
            purpose: req.purpose.into(),
        });
    }
    let Some(terms) = a.datasets.iter().find(|d| d.dataset == req.dataset) else {
        return deny(DenyReason::DatasetNotCovered {
            isa,
            dataset: req.dataset.into(),
        });
    };
    if !terms.actions.contains(&req.action) {
        return deny(DenyReason::ActionNotPermitted {
            isa,
            dataset: req.dataset.into(),
            action: req.action,
        });
    }
    let mut mask = FieldMask::empty();
    let mut granted = false;
    for grant in terms.roles.iter().filter(|g| req.roles.contains(&g.role)) {
        granted = true;
        mask.extend(&grant.fields);
    }
    if !granted {
        return deny(DenyReason::NoRoleGranted {
            isa,
            dataset: req.dataset.into(),
        });
    }
    let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
    let denies = |rule: &OperatorRule| {
        matches(&rule.agency, req.agency)
            && matches(&rule.dataset, req.dataset)
            && matches(&rule.purpose, req.purpose)
            && matches(&rule.action, req.action.as_str())
            && req.roles.iter().any(|role| matches(&rule.role, role))
    };
    if let Some(rule) = set.rules().iter().find(|r| denies(r)) {
        return deny(DenyReason::ExplicitDeny {
            rule_id: rule.id.clone(),
        });
    }
    if req.break_glass {
        let invoking: Vec<_> = terms
            .break_glass
            .iter()
            .filter(|bg| bg.roles.iter().any(|role| req.roles.contains(role)))
            .collect();
        if invoking.is_empty() {
            return deny(DenyReason::BreakGlassNotPermitted {
                isa,
                dataset: req.dataset.into(),
            });
        }
        for bg in invoking {
            mask.extend(&bg.fields);
        }
    }
    Expected {
        effect: Effect::Allow,
        deny: None,
        mask,
        break_glass: req.break_glass,
    }
}

#[test]
fn casbin_agrees_with_the_reference_on_every_request() {
    let set = PolicySet::from_toml(POLICY).unwrap();
    let engine = PolicyEngine::compile(&set).unwrap();

    let role_sets: Vec<Vec<String>> = [
        &[][..],
        &["x"],
        &["y"],
        &["z"],
        &["x", "y"],
        &["y", "x"],
        &["w"],
        &["w", "y"],
        &["z", "x", "w"],
    ]
    .iter()
    .map(|roles| roles.iter().map(|r| (*r).to_owned()).collect())
    .collect();
    let moments: [OffsetDateTime; 3] = [
        datetime!(2025-12-31 12:00 UTC),
        datetime!(2026-03-15 12:00 UTC),
        datetime!(2026-06-01 12:00 UTC),
    ];

    let (mut allowed, mut total) = (0, 0);
    let mut reasons = std::collections::HashSet::new();
    for isa_id in ["a", "b", "c", "unknown"] {
        for agency in ["r1", "r2", "r3", "p"] {
            for roles in &role_sets {
                for action in Action::ALL {
                    for dataset in ["d1", "d2", "d3"] {
                        for purpose in ["p1", "p2", "p3"] {
                            for (at, break_glass) in
                                moments.into_iter().flat_map(|at| [(at, false), (at, true)])
                            {
                                let req = DecisionRequest {
                                    agency,
                                    roles,
                                    action,
                                    dataset,
                                    purpose,
                                    isa_id,
                                    at,
                                    break_glass,
                                };
                                let expected = reference(&set, &req);
                                let decision = engine.decide(&req);
                                assert_eq!(decision.effect, expected.effect, "{req:?}");
                                assert_eq!(decision.deny, expected.deny, "{req:?}");
                                assert_eq!(decision.mask, expected.mask, "{req:?}");
                                assert_eq!(decision.break_glass, expected.break_glass, "{req:?}");
                                if decision.is_allowed() {
                                    assert!(!decision.matched.is_empty(), "{req:?}");
                                }
                                total += 1;
                                if decision.is_allowed() {
                                    allowed += 1;
                                } else if let Some(reason) = &decision.deny {
                                    reasons.insert(std::mem::discriminant(reason));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // The universe reaches every kind of outcome, so agreement is not vacuous.
    assert!(allowed > 50, "only {allowed} of {total} allowed");
    assert_eq!(
        reasons.len(),
        11,
        "every deny reason but EvaluationFailed is reached"
    );
}
