//! Properties that hold for every policy: generated agreements, rules and requests (see
//! `tests/generate/`), each property stated as the issue states it.

mod generate;

use generate::{FIELDS, LEAVES, OwnedRequest, RequestSeed, policy_set, request_seed, rule};
use liaison_policy::{AgreementStatus, FieldMask, PolicyEngine, PolicySet};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use time::Duration;

#[expect(
    clippy::unwrap_used,
    reason = "a test helper: generated sets always compile"
)]
fn compile(set: &PolicySet) -> PolicyEngine {
    PolicyEngine::compile(set).unwrap()
}

fn requests(set: &PolicySet, seeds: &[RequestSeed]) -> Vec<OwnedRequest> {
    seeds.iter().map(|seed| seed.resolve(set)).collect()
}

/// The union of the fields the named agreement releases, for `dataset`, to any of `roles`, and,
/// when the request invokes break-glass, the break-glass fields of those roles.
fn ceiling(set: &PolicySet, request: &OwnedRequest) -> FieldMask {
    let mut mask = FieldMask::empty();
    let terms = set
        .agreements()
        .iter()
        .filter(|a| a.id == request.isa_id)
        .flat_map(|a| a.dataset(&request.dataset));
    for terms in terms {
        for role in &request.roles {
            if let Some(fields) = terms.fields_for(role) {
                mask.extend(fields);
            }
            if request.break_glass
                && let Some(fields) = terms.break_glass_fields_for(role)
            {
                mask.extend(fields);
            }
        }
    }
    mask
}

/// `set` with every break-glass term removed.
#[expect(
    clippy::unwrap_used,
    reason = "a test helper: removing break-glass terms keeps a set valid"
)]
fn without_break_glass(set: &PolicySet) -> PolicySet {
    let mut agreements = set.agreements().to_vec();
    for terms in agreements.iter_mut().flat_map(|a| a.datasets.iter_mut()) {
        terms.break_glass.clear();
    }
    PolicySet::new(agreements, set.rules().to_vec()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// With no agreement, nothing is shared, whatever the operator rules say.
    #[test]
    fn without_an_agreement_nothing_is_shared(
        set in policy_set(0, 4),
        seeds in vec(request_seed(), 32),
    ) {
        let engine = compile(&set);
        for request in requests(&set, &seeds) {
            let decision = engine.decide(&request.as_request());
            prop_assert!(!decision.is_allowed(), "{request:?}");
            prop_assert_eq!(decision.reason(), Some("ISA_UNKNOWN"));
            prop_assert!(decision.mask.is_empty());
            prop_assert!(decision.obligations.is_empty());
            prop_assert_eq!(decision.legal_basis, None);
        }
    }

    /// A request naming an agreement the policy does not hold is refused, even when another
    /// agreement would cover it.
    #[test]
    fn only_the_named_agreement_can_allow(
        set in policy_set(3, 2),
        seeds in vec(request_seed(), 32),
    ) {
        let engine = compile(&set);
        for request in requests(&set, &seeds) {
            let decision = engine.decide(&request.as_request());
            let held = set.agreements().iter().any(|a| a.id == request.isa_id);
            if !held {
                prop_assert_eq!(decision.reason(), Some("ISA_UNKNOWN"));
            }
            if decision.is_allowed() {
                let a = set.agreements().iter().find(|a| a.id == request.isa_id).unwrap();
                prop_assert_eq!(a.status, AgreementStatus::Active);
                prop_assert!(a.in_force_on(request.at.date()));
                prop_assert!(a.recipients.contains(&request.agency));
                prop_assert!(a.purposes.contains(&request.purpose));
                let terms = a.dataset(&request.dataset).unwrap();
                prop_assert!(terms.actions.contains(&request.action));
            }
        }
    }

    /// No field outside the mask: an allowed mask lies within the union of the fields the
    /// agreement releases to the caller's roles (here it is that union exactly), and a denial
    /// releases nothing.
    #[test]
    fn the_mask_never_exceeds_the_roles_fields(
        set in policy_set(3, 3),
        seeds in vec(request_seed(), 64),
    ) {
        let engine = compile(&set);
        for request in requests(&set, &seeds) {
            let decision = engine.decide(&request.as_request());
            if !decision.is_allowed() {
                prop_assert!(decision.mask.is_empty(), "{request:?}: {decision:?}");
                prop_assert!(decision.obligations.is_empty());
                continue;
            }
            let ceiling = ceiling(&set, &request);
            prop_assert!(!decision.mask.is_empty());
            for path in decision.mask.paths() {
                prop_assert!(ceiling.allows(path), "{path} released to {request:?}");
            }
            // Field by field too, for every leaf and every path an agreement can name.
            for path in LEAVES.iter().chain(FIELDS.iter()) {
                prop_assert!(!decision.mask.allows(path) || ceiling.allows(path), "{path}");
            }
            prop_assert_eq!(&decision.mask, &ceiling);
        }
    }

    /// Without invoking break-glass, break-glass terms change nothing: the same decisions, masks,
    /// obligations and matched lines as the same policy without them.
    #[test]
    fn break_glass_terms_change_nothing_unless_invoked(
        set in policy_set(3, 3),
        seeds in vec(request_seed(), 64),
    ) {
        let (with, without) = (compile(&set), compile(&without_break_glass(&set)));
        for mut request in requests(&set, &seeds) {
            request.break_glass = false;
            let req = request.as_request();
            let (a, b) = (with.decide(&req), without.decide(&req));
            prop_assert_eq!(a.effect, b.effect, "{:?}", request);
            prop_assert_eq!(&a.deny, &b.deny);
            prop_assert_eq!(&a.mask, &b.mask);
            prop_assert_eq!(&a.obligations, &b.obligations);
            prop_assert_eq!(&a.matched, &b.matched);
            prop_assert!(!a.break_glass);
        }
    }

    /// Invoking break-glass never lifts a denial (agreement state, recipient, purpose, dataset,
    /// action, role or operator rule): it is refused for the same reason. When it is allowed, it
    /// releases the normal fields and at most the break-glass fields of the caller's roles.
    #[test]
    fn break_glass_only_widens_an_allowed_share_by_its_terms(
        set in policy_set(3, 4),
        seeds in vec(request_seed(), 64),
    ) {
        let engine = compile(&set);
        for request in requests(&set, &seeds) {
            let mut normal = request.clone();
            normal.break_glass = false;
            let mut invoked = request;
            invoked.break_glass = true;
            let (was, now) = (
                engine.decide(&normal.as_request()),
                engine.decide(&invoked.as_request()),
            );
            if !was.is_allowed() {
                prop_assert_eq!(now.effect, was.effect, "{:?}", invoked);
                prop_assert_eq!(&now.deny, &was.deny);
                prop_assert!(now.mask.is_empty());
                continue;
            }
            if !now.is_allowed() {
                prop_assert_eq!(now.reason(), Some("BREAK_GLASS_NOT_PERMITTED"));
                prop_assert!(now.mask.is_empty());
                continue;
            }
            prop_assert!(now.break_glass);
            let ceiling = ceiling(&set, &invoked);
            for path in LEAVES.iter().chain(FIELDS.iter()) {
                prop_assert!(!now.mask.allows(path) || ceiling.allows(path), "{path}");
                prop_assert!(!was.mask.allows(path) || now.mask.allows(path), "{path}");
            }
        }
    }

    /// A deny rule denies a share whether or not break-glass is invoked.
    #[test]
    fn a_deny_rule_still_denies_under_break_glass(
        set in policy_set(3, 2),
        extra in rule("extra".to_owned()),
        seeds in vec(request_seed(), 64),
    ) {
        let mut rules = set.rules().to_vec();
        rules.push(extra);
        let ruled = compile(&PolicySet::new(set.agreements().to_vec(), rules).unwrap());
        for mut request in requests(&set, &seeds) {
            request.break_glass = false;
            let normal = ruled.decide(&request.as_request());
            request.break_glass = true;
            let invoked = ruled.decide(&request.as_request());
            if normal.reason() == Some("POLICY_DENIED") {
                prop_assert_eq!(invoked.reason(), Some("POLICY_DENIED"), "{:?}", request);
                prop_assert_eq!(&invoked.deny, &normal.deny);
            }
        }
    }

    /// Adding a deny rule never widens access: every share allowed after the rule is added was
    /// allowed before, with the same fields.
    #[test]
    fn adding_a_deny_rule_never_widens_access(
        set in policy_set(3, 3),
        extra in rule("extra".to_owned()),
        seeds in vec(request_seed(), 64),
    ) {
        let mut rules = set.rules().to_vec();
        rules.push(extra);
        let wider = PolicySet::new(set.agreements().to_vec(), rules).unwrap();
        let (before, after) = (compile(&set), compile(&wider));
        for request in requests(&set, &seeds) {
            let req = request.as_request();
            let (was, now) = (before.decide(&req), after.decide(&req));
            if now.is_allowed() {
                prop_assert!(was.is_allowed(), "{request:?}: {now:?} after, {was:?} before");
                prop_assert_eq!(&now.mask, &was.mask);
            }
            if !was.is_allowed() {
                // Break-glass is weighed after operator rules, so a refused invocation may now be
                // refused by the new rule instead; every other reason stays.
                if was.reason() == Some("BREAK_GLASS_NOT_PERMITTED") {
                    prop_assert!(
                        matches!(now.reason(), Some("BREAK_GLASS_NOT_PERMITTED" | "POLICY_DENIED")),
                        "{:?}: {:?}", request, now
                    );
                } else {
                    prop_assert_eq!(now.reason(), was.reason(), "{:?}", request);
                }
            }
        }
    }

    /// Markers only narrow. Adding any rule never releases a marked record that was not released
    /// before; a record carrying markers is released only where the same record with fewer
    /// markers (or none) would be; and a marker no rule names changes nothing.
    #[test]
    fn markers_and_marker_rules_never_widen_access(
        set in policy_set(3, 3),
        extra in rule("extra".to_owned()),
        seeds in vec(request_seed(), 64),
    ) {
        let mut rules = set.rules().to_vec();
        rules.push(extra);
        let wider = PolicySet::new(set.agreements().to_vec(), rules).unwrap();
        let (before, after) = (compile(&set), compile(&wider));
        let released = |engine: &PolicyEngine, request: &OwnedRequest, markers: &[String]| {
            let decision = engine.decide(&request.as_request());
            decision.is_allowed() && decision.withholding(markers).is_none()
        };
        for request in requests(&set, &seeds) {
            let markers = &request.markers;
            if released(&after, &request, markers) {
                prop_assert!(released(&before, &request, markers), "{:?}", request);
            }
            for engine in [&before, &after] {
                if released(engine, &request, markers) {
                    prop_assert!(released(engine, &request, &[]), "{:?}", request);
                    for one in markers {
                        prop_assert!(
                            released(engine, &request, std::slice::from_ref(one)),
                            "{:?}", request
                        );
                    }
                }
                let unknown = ["mk9".to_owned()];
                prop_assert_eq!(
                    released(engine, &request, &unknown),
                    released(engine, &request, &[]),
                    "{:?}", request
                );
                // Withholding never changes the decision itself.
                let decision = engine.decide(&request.as_request());
                if !decision.is_allowed() {
                    prop_assert!(decision.withheld.is_empty());
                }
            }
        }
    }

    /// Suspending, expiring or ending an agreement refuses every share under it on the next
    /// decision, whatever else the request says.
    #[test]
    fn a_suspended_or_expired_agreement_denies_at_once(
        set in policy_set(3, 2),
        which in any::<Index>(),
        how in 0u8..3,
        seeds in vec(request_seed(), 64),
    ) {
        prop_assume!(!set.agreements().is_empty());
        let mut agreements = set.agreements().to_vec();
        let index = which.index(agreements.len());
        let target = agreements[index].id.clone();
        match how {
            0 => agreements[index].status = AgreementStatus::Suspended,
            1 => agreements[index].status = AgreementStatus::Expired,
            // Active, but ended before any request's date.
            _ => {
                agreements[index].status = AgreementStatus::Active;
                agreements[index].valid_from = generate::EPOCH - Duration::days(30);
                agreements[index].valid_until = Some(generate::EPOCH - Duration::days(20));
                agreements[index].review_date = None;
            }
        }
        let changed = PolicySet::new(agreements, set.rules().to_vec()).unwrap();
        let before = compile(&set);
        let after = compile(&changed);
        // Any change to what is enforced is a new version (one already suspended is unchanged).
        prop_assert_eq!(
            before.version() == after.version(),
            set.agreements()[index] == changed.agreements()[index]
        );
        for mut request in requests(&set, &seeds) {
            request.isa_id.clone_from(&target);
            let decision = after.decide(&request.as_request());
            prop_assert!(!decision.is_allowed(), "{request:?}");
            let expected = if how == 2 { "ISA_EXPIRED" } else { "ISA_NOT_ACTIVE" };
            prop_assert_eq!(decision.reason(), Some(expected));
            prop_assert!(decision.mask.is_empty());
        }
    }

    /// The order of the caller's roles, and repeating one, changes nothing.
    #[test]
    fn role_order_does_not_matter(
        set in policy_set(3, 3),
        seeds in vec(request_seed(), 32),
    ) {
        let engine = compile(&set);
        for request in requests(&set, &seeds) {
            let decision = engine.decide(&request.as_request());
            let mut shuffled = request.clone();
            shuffled.roles.reverse();
            if let Some(first) = shuffled.roles.first().cloned() {
                shuffled.roles.push(first);
            }
            let again = engine.decide(&shuffled.as_request());
            prop_assert_eq!(decision.effect, again.effect);
            prop_assert_eq!(decision.deny, again.deny);
            prop_assert_eq!(decision.mask, again.mask);
        }
    }

    /// The decision cache is invisible: a repeated question gets the answer evaluating gives.
    #[test]
    fn the_decision_cache_changes_nothing(
        set in policy_set(3, 3),
        seeds in vec(request_seed(), 32),
    ) {
        let cached = compile(&set);
        let uncached = compile(&set).with_decision_cache(0);
        let requests = requests(&set, &seeds);
        for _ in 0..2 {
            for request in &requests {
                let req = request.as_request();
                prop_assert_eq!(cached.decide(&req), uncached.decide(&req), "{:?}", request);
            }
        }
    }
}
