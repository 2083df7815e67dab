//! The engine refuses a casbin model under which a deny rule could grant access.

mod support;

use liaison_policy::{MODEL, PolicyEngine, PolicyError, PolicySet, validate_model};
use support::{DEMO_DENY, ask};

/// The casbin trap: the same model without `eft`. casbin would then read the operator's deny
/// line as one more allow line.
fn without_eft() -> String {
    MODEL.replace(
        "p = eft, id, isa, agency, role, dataset, purpose, action, marker, break_glass",
        "p = id, isa, agency, role, dataset, purpose, action, marker, break_glass",
    )
}

#[test]
fn the_shipped_model_validates() {
    assert_eq!(validate_model(MODEL), Ok(()));
}

#[test]
fn a_model_without_eft_is_refused() {
    let err = validate_model(&without_eft()).unwrap_err();
    assert_eq!(
        err,
        PolicyError::UnsafeModel {
            reason:
                "`policy_definition` has no `eft` column, so casbin would read every deny rule \
                     as an allow"
                    .into()
        }
    );
}

#[test]
fn compile_refuses_it_before_building_anything() {
    let set = PolicySet::from_toml(DEMO_DENY).unwrap();
    let err = PolicyEngine::compile_with_model(&set, &without_eft()).unwrap_err();
    assert!(matches!(err, PolicyError::UnsafeModel { .. }), "{err}");
}

#[test]
fn an_allow_overrides_deny_effect_is_refused() {
    let model = MODEL.replace(
        "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))",
        "e = some(where (p.eft == allow))",
    );
    let err = PolicyEngine::compile_with_model(&PolicySet::from_toml(DEMO_DENY).unwrap(), &model)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "casbin model is unsafe: `policy_effect` is `some(where (p.eft == allow))`, but only \
         `some(where (p.eft == allow)) && !some(where (p.eft == deny))` makes a deny override \
         every allow"
    );
}

#[test]
fn the_shipped_model_honours_the_deny_twin() {
    let set = PolicySet::from_toml(DEMO_DENY).unwrap();
    let engine = PolicyEngine::compile_with_model(&set, MODEL).unwrap();
    assert_eq!(
        ask().purpose("missing-person").decide(&engine).reason(),
        Some("POLICY_DENIED")
    );
}

#[test]
fn text_that_is_not_a_model_is_refused() {
    let err = validate_model("this is not a model").unwrap_err();
    assert!(matches!(err, PolicyError::Model { .. }), "{err}");
}
