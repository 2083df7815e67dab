//! Operator deny rules override agreements, narrowly, and can never widen access.

mod support;

use liaison_policy::{Action, DenyReason, Effect, PolicyError, PolicySet, Withholding};
use support::{DEMO, ask, engine};

fn with_rule(rule: &str) -> String {
    format!("{DEMO}\n[[rule]]\n{rule}\ndescription = \"test rule\"\n")
}

fn deny_rule(
    id: &str,
    agency: &str,
    role: &str,
    dataset: &str,
    purpose: &str,
    action: &str,
) -> String {
    format!(
        "id = \"{id}\"\neffect = \"deny\"\nagency = \"{agency}\"\nrole = \"{role}\"\n\
         dataset = \"{dataset}\"\npurpose = \"{purpose}\"\naction = \"{action}\""
    )
}

#[test]
fn a_wildcard_agency_deny_overrides_the_agreement() {
    let engine = engine(&with_rule(&deny_rule(
        "no-safeguarding-police-records",
        "*",
        "*",
        "police.records",
        "safeguarding-children",
        "*",
    )));
    let decision = ask().decide(&engine);
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(
        decision.deny,
        Some(DenyReason::ExplicitDeny {
            rule_id: "no-safeguarding-police-records".into()
        })
    );
    assert_eq!(decision.reason(), Some("POLICY_DENIED"));
    assert_eq!(
        decision.deny.as_ref().unwrap().to_string(),
        "operator rule `no-safeguarding-police-records` denies this share"
    );
    assert!(
        decision
            .matched
            .contains(&"rule:no-safeguarding-police-records".to_owned())
    );
    assert!(decision.mask.is_empty());
    assert!(decision.obligations.is_empty());
    assert_eq!(decision.legal_basis, None);
}

#[test]
fn the_same_share_without_the_rule_is_allowed() {
    assert!(ask().decide(&engine(DEMO)).is_allowed());
}

#[test]
fn a_deny_for_one_action_leaves_the_others() {
    let engine = engine(&with_rule(&deny_rule(
        "no-search",
        "*",
        "*",
        "*",
        "*",
        "search",
    )));
    assert_eq!(
        ask().action(Action::Search).decide(&engine).deny,
        Some(DenyReason::ExplicitDeny {
            rule_id: "no-search".into()
        })
    );
    assert!(ask().action(Action::Read).decide(&engine).is_allowed());
}

#[test]
fn a_deny_for_another_dataset_or_agency_does_not_apply() {
    let other_agency = engine(&with_rule(&deny_rule(
        "other",
        "islington-childrens",
        "*",
        "*",
        "*",
        "*",
    )));
    assert!(ask().decide(&other_agency).is_allowed());
    let other_dataset = engine(&with_rule(&deny_rule(
        "other",
        "*",
        "*",
        "health.records",
        "*",
        "*",
    )));
    assert!(ask().decide(&other_dataset).is_allowed());
}

#[test]
fn a_deny_on_any_held_role_denies_the_whole_share() {
    // Deny overrides allow: holding a denied role is not cured by also holding an allowed one.
    let engine = engine(&with_rule(&deny_rule(
        "no-managers",
        "*",
        "team-manager",
        "*",
        "*",
        "*",
    )));
    let both = ask()
        .roles(&["social-worker", "team-manager"])
        .decide(&engine);
    assert_eq!(
        both.deny,
        Some(DenyReason::ExplicitDeny {
            rule_id: "no-managers".into()
        })
    );
    assert!(ask().roles(&["social-worker"]).decide(&engine).is_allowed());
}

#[test]
fn a_deny_on_a_role_the_agreement_does_not_name_still_applies() {
    let engine = engine(&with_rule(&deny_rule(
        "no-agency-staff",
        "*",
        "agency-staff",
        "*",
        "*",
        "*",
    )));
    let decision = ask()
        .roles(&["social-worker", "agency-staff"])
        .decide(&engine);
    assert_eq!(
        decision.deny,
        Some(DenyReason::ExplicitDeny {
            rule_id: "no-agency-staff".into()
        })
    );
}

#[test]
fn a_grant_failure_is_reported_before_an_operator_deny() {
    let engine = engine(&with_rule(&deny_rule(
        "everything",
        "*",
        "*",
        "*",
        "*",
        "*",
    )));
    let decision = ask().purpose("crime-prevention").decide(&engine);
    assert_eq!(decision.reason(), Some("PURPOSE_NOT_PERMITTED"));
    // explain still shows that the rule matched.
    assert_eq!(decision.matched, ["rule:everything"]);
}

#[test]
fn allow_rules_are_refused() {
    let text = format!(
        "{DEMO}\n[[rule]]\nid = \"open-up\"\neffect = \"allow\"\nagency = \"*\"\nrole = \"*\"\n\
         dataset = \"*\"\npurpose = \"*\"\naction = \"*\"\ndescription = \"would widen access\"\n"
    );
    let err = PolicySet::from_toml(&text).unwrap_err();
    let [problem] = err.problems() else {
        panic!("{err}");
    };
    assert_eq!(problem.subject, "rule `open-up`");
    assert_eq!(
        problem.message,
        "effect `allow` is not supported; sharing is granted only by agreements, so operator \
         rules may only deny"
    );
}

/// Every request over a small universe of attribute values, with every mix of roles.
fn universe() -> Vec<support::Ask> {
    let roles: [&[&str]; 5] = [
        &[],
        &["social-worker"],
        &["team-manager"],
        &["social-worker", "team-manager"],
        &["receptionist", "team-manager"],
    ];
    let mut asks = Vec::new();
    for agency in ["hackney-childrens", "hackney-adults"] {
        for role_set in roles {
            for action in Action::ALL {
                for dataset in ["police.records", "police.intelligence"] {
                    for purpose in [
                        "safeguarding-children",
                        "missing-person",
                        "crime-prevention",
                    ] {
                        asks.push(
                            ask()
                                .agency(agency)
                                .roles(role_set)
                                .action(action)
                                .dataset(dataset)
                                .purpose(purpose),
                        );
                    }
                }
            }
        }
    }
    asks
}

#[test]
fn adding_a_deny_rule_never_widens_access() {
    let base = engine(DEMO);
    let patterns = |values: &[&'static str]| {
        let mut v = vec!["*"];
        v.extend_from_slice(values);
        v
    };
    let mut rules = Vec::new();
    for agency in patterns(&["hackney-childrens"]) {
        for role in patterns(&["social-worker", "team-manager"]) {
            for dataset in patterns(&["police.records"]) {
                for purpose in patterns(&["missing-person"]) {
                    for action in patterns(&["read"]) {
                        rules.push(deny_rule("r", agency, role, dataset, purpose, action));
                    }
                }
            }
        }
    }
    let universe = universe();
    let before: Vec<_> = universe.iter().map(|a| a.decide(&base)).collect();
    for rule in &rules {
        let narrowed = engine(&with_rule(rule));
        for (ask, before) in universe.iter().zip(&before) {
            let after = ask.decide(&narrowed);
            if after.is_allowed() {
                assert!(
                    before.is_allowed(),
                    "{rule}\n{ask:?} was denied, now allowed"
                );
                assert_eq!(after.mask, before.mask, "{rule}\n{ask:?}");
            }
            if !before.is_allowed() {
                assert_eq!(after.deny, before.deny, "{rule}\n{ask:?}");
            }
        }
    }
}

#[test]
fn a_rule_with_an_unknown_action_is_refused() {
    let text = with_rule(&deny_rule("x", "*", "*", "*", "*", "delete"));
    let header = text.lines().position(|l| l == "[[rule]]").unwrap() + 1;
    let err = PolicySet::from_toml(&text).unwrap_err();
    assert_eq!(
        err,
        PolicyError::Invalid {
            problems: vec![liaison_policy::Problem {
                subject: "rule `x`".into(),
                line: Some(header),
                message: "unknown action `delete`, expected `search`, `read` or `subscribe`".into(),
            }]
        }
    );
}

fn marker_rule(id: &str, role: &str, marker: &str, break_glass: Option<&str>) -> String {
    let mut rule = format!(
        "{}\nmarker = \"{marker}\"",
        deny_rule(id, "*", role, "*", "*", "*")
    );
    if let Some(scope) = break_glass {
        rule.push_str(&format!("\nbreak_glass = \"{scope}\""));
    }
    rule
}

#[test]
fn a_marker_rule_withholds_marked_records_but_allows_the_share() {
    let engine = engine(&with_rule(&marker_rule(
        "no-witness-protection",
        "*",
        "witness-protection",
        None,
    )));
    let decision = ask().decide(&engine);
    assert!(decision.is_allowed(), "{decision:?}");
    let unmarked = ask().decide(&support::engine(DEMO));
    // The share itself, its mask and what matched are exactly those without the rule.
    assert_eq!(decision.mask, unmarked.mask);
    assert_eq!(decision.matched, unmarked.matched);
    assert_eq!(
        decision.withheld,
        vec![Withholding {
            marker: "witness-protection".into(),
            rule_id: "no-witness-protection".into(),
        }]
    );
    let wp = ["witness-protection".to_owned()];
    assert_eq!(
        decision.withholding(&wp).map(|w| w.rule_id.as_str()),
        Some("no-witness-protection")
    );
    // Other markers, and none, change nothing.
    assert!(
        decision
            .withholding(&["child-sexual-exploitation"])
            .is_none()
    );
    assert!(decision.withholding::<String>(&[]).is_none());
    // Withheld under break-glass too, unless the rule says otherwise.
    let invoked = ask().roles(&["team-manager"]).break_glass().decide(&engine);
    assert!(invoked.is_allowed(), "{invoked:?}");
    assert!(invoked.withholding(&wp).is_some());
}

#[test]
fn a_marker_rule_applies_only_where_it_matches() {
    let engine = engine(&with_rule(&marker_rule(
        "no-wp-for-social-workers",
        "social-worker",
        "witness-protection",
        None,
    )));
    let wp = ["witness-protection".to_owned()];
    let sw = ask().decide(&engine);
    assert!(sw.withholding(&wp).is_some());
    // A principal holding the role among others is matched, as for any deny rule.
    let both = ask()
        .roles(&["social-worker", "team-manager"])
        .decide(&engine);
    assert!(both.withholding(&wp).is_some());
    let manager = ask().roles(&["team-manager"]).decide(&engine);
    assert!(manager.is_allowed());
    assert!(manager.withheld.is_empty(), "{manager:?}");
}

#[test]
fn an_exempt_marker_rule_yields_to_break_glass() {
    let engine = engine(&with_rule(&marker_rule(
        "wp-unless-emergency",
        "*",
        "witness-protection",
        Some("exempt"),
    )));
    let wp = ["witness-protection".to_owned()];
    let normal = ask().roles(&["team-manager"]).decide(&engine);
    assert!(normal.withholding(&wp).is_some());
    let invoked = ask().roles(&["team-manager"]).break_glass().decide(&engine);
    assert!(invoked.is_allowed() && invoked.break_glass, "{invoked:?}");
    assert!(invoked.withholding(&wp).is_none());
}

#[test]
fn a_break_glass_deny_rule_refuses_invocations_only() {
    let rule = format!(
        "{}\nbreak_glass = \"deny\"",
        deny_rule(
            "no-emergency-reads",
            "*",
            "*",
            "police.records",
            "*",
            "read"
        )
    );
    let engine = engine(&with_rule(&rule));
    let normal = ask().roles(&["team-manager"]).decide(&engine);
    assert!(normal.is_allowed(), "{normal:?}");
    let invoked = ask().roles(&["team-manager"]).break_glass().decide(&engine);
    assert_eq!(
        invoked.deny,
        Some(DenyReason::BreakGlassDenied {
            rule_id: "no-emergency-reads".into()
        })
    );
    assert_eq!(invoked.reason(), Some("BREAK_GLASS_NOT_PERMITTED"));
    assert!(invoked.mask.is_empty());
    // The agreement's own refusal comes first: a social worker may not invoke it at all.
    let sw = ask().break_glass().decide(&engine);
    assert!(
        matches!(sw.deny, Some(DenyReason::BreakGlassNotPermitted { .. })),
        "{sw:?}"
    );
}

/// A break-glass refusal written before an ordinary denial of the same share must not hide it:
/// casbin reports only the lines up to the first deny that matches, so the engine lists
/// ordinary denials first, and invoking break-glass is refused for the share's own reason.
#[test]
fn a_break_glass_refusal_listed_first_does_not_hide_an_ordinary_denial() {
    let glass = format!(
        "{}\nbreak_glass = \"deny\"",
        deny_rule("no-emergency-access", "*", "*", "*", "*", "*")
    );
    let text = format!(
        "{}\n[[rule]]\n{}\ndescription = \"test rule\"\n",
        with_rule(&glass),
        deny_rule("pause-everything", "*", "*", "*", "*", "*")
    );
    let engine = engine(&text);
    for roles in [&["social-worker"][..], &["team-manager"][..]] {
        let normal = ask().roles(roles).decide(&engine);
        let invoked = ask().roles(roles).break_glass().decide(&engine);
        assert_eq!(
            normal.deny,
            Some(DenyReason::ExplicitDeny {
                rule_id: "pause-everything".into()
            }),
            "{normal:?}"
        );
        assert_eq!(invoked.deny, normal.deny, "{invoked:?}");
    }
}

#[test]
fn exempting_a_rule_without_a_marker_is_refused() {
    let rule = format!(
        "{}\nbreak_glass = \"exempt\"",
        deny_rule("x", "*", "*", "*", "*", "*")
    );
    let err = PolicySet::from_toml(&with_rule(&rule)).unwrap_err();
    assert!(
        err.to_string()
            .contains("break_glass `exempt` needs a marker"),
        "{err}"
    );
    let err = PolicySet::from_toml(&with_rule(&marker_rule("y", "*", "*", None))).unwrap_err();
    assert!(err.to_string().contains("marker may not be `*`"), "{err}");
}
