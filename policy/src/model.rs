//! The casbin model, its safety checks, and building enforcers without a runtime.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi, Model};

use crate::error::PolicyError;

/// The model every engine uses unless given another; see the file for what each part means.
pub const MODEL: &str = include_str!("../model.conf");

/// The request columns the compiler sends, in order.
pub(crate) const REQUEST: [&str; 8] = [
    "isa",
    "agency",
    "role",
    "dataset",
    "purpose",
    "action",
    "marker",
    "break_glass",
];
/// The policy columns the compiler writes, in order.
pub(crate) const POLICY: [&str; 10] = [
    "eft",
    "id",
    "isa",
    "agency",
    "role",
    "dataset",
    "purpose",
    "action",
    "marker",
    "break_glass",
];
/// Deny-overrides-allow exactly as casbin stores it after reading the model. casbin's default
/// effector recognises effects by exact text and panics on any other, so nothing looser is
/// accepted.
const DENY_OVERRIDES: &str = "some(where (p_eft == allow)) && !some(where (p_eft == deny))";

/// Checks that `text` is a casbin model this crate can compile to and that it makes an explicit
/// deny override every allow.
///
/// Two casbin traps make a plausible-looking model grant what it should refuse: a
/// `policy_definition` without `eft` turns every matching line into an allow (so deny rules
/// grant access), and an allow-only effect ignores deny lines altogether. Both are refused by
/// reading the model, and then a canary policy (one allow line, one wildcard deny line) is
/// enforced to prove the model denies in practice, not just on paper.
pub fn validate_model(text: &str) -> Result<(), PolicyError> {
    let model = parse_model(text)?;
    let assertion = |sec: &str| model.get_model().get(sec).and_then(|map| map.get(sec));
    let tokens = |sec: &str| -> Vec<String> {
        assertion(sec)
            .map(|a| {
                a.tokens
                    .iter()
                    .map(|t| t.strip_prefix(&format!("{sec}_")).unwrap_or(t).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    let policy = tokens("p");
    if policy.is_empty() {
        return Err(model_error("it has no `policy_definition`"));
    }
    if !policy.iter().any(|t| t == "eft") {
        return Err(PolicyError::UnsafeModel {
            reason: "`policy_definition` has no `eft` column, so casbin would read every deny \
                     rule as an allow"
                .into(),
        });
    }
    let effect = assertion("e").map(|a| a.value.as_str()).unwrap_or_default();
    if effect != DENY_OVERRIDES {
        return Err(PolicyError::UnsafeModel {
            reason: format!(
                "`policy_effect` is `{}`, but only `some(where (p.eft == allow)) && \
                 !some(where (p.eft == deny))` makes a deny override every allow",
                effect.replace("p_eft", "p.eft")
            ),
        });
    }
    if policy != POLICY {
        return Err(model_error(format!(
            "`policy_definition` must be `p = {}`, found `p = {}`",
            POLICY.join(", "),
            policy.join(", ")
        )));
    }
    let request = tokens("r");
    if request != REQUEST {
        return Err(model_error(format!(
            "`request_definition` must be `r = {}`, found `r = {}`",
            REQUEST.join(", "),
            request.join(", ")
        )));
    }
    if assertion("m").is_none() {
        return Err(model_error("it has no `matchers`"));
    }
    canary(&model)
}

/// Reads a model; the text is validated separately by [`validate_model`].
pub(crate) fn parse_model(text: &str) -> Result<DefaultModel, PolicyError> {
    ready(DefaultModel::from_str(text))?.map_err(|e| model_error(e.to_string()))
}

/// Whether `model` matches lines exactly as the shipped [`MODEL`] does: each request attribute
/// equal to the line's value or the line's value `*`. Decision tables rely on it.
pub(crate) fn has_shipped_matcher(model: &DefaultModel) -> bool {
    let matcher = |model: &DefaultModel| {
        model
            .get_model()
            .get("m")
            .and_then(|map| map.get("m"))
            .map(|assertion| assertion.value.clone())
    };
    let Ok(shipped) = parse_model(MODEL) else {
        return false;
    };
    matches!((matcher(model), matcher(&shipped)), (Some(a), Some(b)) if a == b)
}

/// An enforcer over `lines`, built synchronously.
///
/// casbin's constructors are async only because adapters may do I/O. Ours is an in-memory
/// adapter, so every future is ready the first time it is polled; polling once with a no-op
/// waker keeps `compile` synchronous and usable both inside and outside a tokio runtime (where a
/// nested `block_on` would panic), and a future that is unexpectedly pending is an error, never a
/// hang.
pub(crate) fn build_enforcer(
    model: &DefaultModel,
    lines: Vec<Vec<String>>,
) -> Result<Enforcer, PolicyError> {
    let mut enforcer =
        ready(Enforcer::new(model.clone(), MemoryAdapter::default()))?.map_err(casbin_error)?;
    // casbin's default logger (needed for `explain`) owns a logging thread per enforcer;
    // replacing it joins that thread, so a compiled policy holds no threads.
    enforcer.set_logger(Box::new(Quiet));
    // Lines live in the model only; the adapter is never read again.
    enforcer.enable_auto_save(false);
    let count = lines.len();
    let added = ready(enforcer.add_policies(lines))?.map_err(casbin_error)?;
    if !added {
        return Err(PolicyError::Casbin {
            message: format!("casbin refused {count} compiled lines as duplicates"),
        });
    }
    Ok(enforcer)
}

/// Proves, by enforcing, that a wildcard deny line overrides a matching allow line.
fn canary(model: &DefaultModel) -> Result<(), PolicyError> {
    let allow = || -> Vec<String> {
        [
            "allow",
            "canary:allow",
            "i",
            "a",
            "r",
            "d",
            "p",
            "read",
            "*",
            "*",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let deny: Vec<String> = [
        "deny",
        "canary:deny",
        "*",
        "*",
        "*",
        "*",
        "*",
        "*",
        "*",
        "*",
    ]
    .map(str::to_owned)
    .to_vec();
    let request = ("i", "a", "r", "d", "p", "read", "", "no");
    let unsafe_model = |reason: &str| PolicyError::UnsafeModel {
        reason: reason.to_owned(),
    };

    let allowing = build_enforcer(model, vec![allow()])?;
    match allowing.enforce_ex(request) {
        Ok((true, _)) => {}
        Ok((false, _)) => {
            return Err(model_error(
                "its matcher does not match a line with the request's own values",
            ));
        }
        Err(e) => return Err(model_error(format!("its matcher fails: {e}"))),
    }
    let denying = build_enforcer(model, vec![allow(), deny])?;
    match denying.enforce_ex(request) {
        Ok((false, _)) => Ok(()),
        Ok((true, _)) => Err(unsafe_model(
            "a matching `*` deny line did not override an allow line",
        )),
        Err(e) => Err(model_error(format!("its matcher fails: {e}"))),
    }
}

/// Polls `future` once, expecting it to be ready.
fn ready<F: Future>(future: F) -> Result<F::Output, PolicyError> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(PolicyError::Casbin {
            message: "casbin waited on i/o while loading an in-memory policy".into(),
        }),
    }
}

fn model_error(reason: impl Into<String>) -> PolicyError {
    PolicyError::Model {
        reason: reason.into(),
    }
}

fn casbin_error(e: casbin::Error) -> PolicyError {
    PolicyError::Casbin {
        message: e.to_string(),
    }
}

/// Discards casbin's own logging: decisions are traced by the engine, with context casbin lacks.
struct Quiet;

impl casbin::Logger for Quiet {
    fn enable_log(&mut self, _enabled: bool) {}

    fn is_enabled(&self) -> bool {
        false
    }

    fn print_enforce_log(&self, _rvals: Vec<String>, _authorized: bool, _cached: bool) {}

    fn print_mgmt_log(&self, _event: &casbin::EventData) {}

    fn print_explain_log(&self, _rules: Vec<String>) {}

    fn print_status_log(&self, _enabled: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_effect(effect: &str) -> String {
        MODEL
            .lines()
            .map(|line| {
                if line.starts_with("e = ") {
                    format!("e = {effect}")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_shipped_model_is_safe() {
        validate_model(MODEL).unwrap();
    }

    #[test]
    fn a_model_without_eft_is_unsafe() {
        let model = MODEL.replace(
            "p = eft, id, isa, agency, role, dataset, purpose, action, marker, break_glass",
            "p = id, isa, agency, role, dataset, purpose, action, marker, break_glass",
        );
        let err = validate_model(&model).unwrap_err();
        assert!(matches!(err, PolicyError::UnsafeModel { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "casbin model is unsafe: `policy_definition` has no `eft` column, so casbin would \
             read every deny rule as an allow"
        );
    }

    #[test]
    fn an_allow_only_effect_is_unsafe() {
        let err = validate_model(&with_effect("some(where (p.eft == allow))")).unwrap_err();
        assert!(matches!(err, PolicyError::UnsafeModel { .. }), "{err}");
        assert!(
            err.to_string().contains("`some(where (p.eft == allow))`"),
            "{err}"
        );
    }

    #[test]
    fn priority_and_deny_only_effects_are_unsafe() {
        for effect in ["priority(p.eft) || deny", "!some(where (p.eft == deny))"] {
            let err = validate_model(&with_effect(effect)).unwrap_err();
            assert!(
                matches!(err, PolicyError::UnsafeModel { .. }),
                "{effect}: {err}"
            );
        }
    }

    #[test]
    fn an_effect_casbin_cannot_run_is_refused_not_panicked_on() {
        // Extra spaces: casbin's effector matches text exactly and would panic at enforce time.
        let err = validate_model(&with_effect(
            "some(where (p.eft == allow))  && !some(where (p.eft == deny))",
        ))
        .unwrap_err();
        assert!(matches!(err, PolicyError::UnsafeModel { .. }), "{err}");
    }

    #[test]
    fn a_matcher_that_ignores_wildcards_fails_the_canary() {
        let model = MODEL
            .lines()
            .take_while(|line| !line.starts_with("m = "))
            .collect::<Vec<_>>()
            .join("\n")
            + "\nm = p.isa == r.isa && p.agency == r.agency && p.role == r.role \
               && p.dataset == r.dataset && p.purpose == r.purpose && p.action == r.action \
               && (p.marker == \"*\" || p.marker == r.marker) \
               && (p.break_glass == \"*\" || p.break_glass == r.break_glass)\n";
        let err = validate_model(&model).unwrap_err();
        assert_eq!(
            err,
            PolicyError::UnsafeModel {
                reason: "a matching `*` deny line did not override an allow line".into()
            }
        );
    }

    #[test]
    fn columns_the_compiler_does_not_write_are_refused() {
        let model = MODEL.replace(
            "p = eft, id, isa, agency, role, dataset, purpose, action, marker, break_glass",
            "p = eft, isa, agency, role, dataset, purpose, action, marker, break_glass",
        );
        let err = validate_model(&model).unwrap_err();
        assert!(matches!(err, PolicyError::Model { .. }), "{err}");
    }

    #[test]
    fn enforcers_build_inside_a_runtime_too() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async { validate_model(MODEL).unwrap() });
    }
}
