//! Decision tables change no decision: an engine reading casbin's answers from its tables, one
//! asking casbin live on every call, and one whose table bound leaves some enforcers live, decide
//! every generated request exactly alike (effect, reason, matched lines, mask, withheld markers).
//!
//! Requests are the generators' (values from the policy, values absent from it, several roles,
//! break-glass both ways) with odd values mixed in: a literal `*`, which the model treats as a
//! wildcard only on the policy side, empty strings, and names no policy holds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod generate;

use std::cell::Cell;

use generate::{OwnedRequest, request_seed, scenario};
use liaison_policy::{
    Action, Agreement, AgreementStatus, BreakGlassScope, BreakGlassTerms, CompileOptions,
    DatasetTerms, Effect, OperatorRule, PolicyEngine, PolicySet, RoleFields,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use time::macros::{date, datetime};

/// Enough combinations for the generators' smaller enforcers, too few for their larger ones.
const SMALL_BOUND: usize = 24;

fn compile(set: &PolicySet, max_table_cells: usize) -> PolicyEngine {
    PolicyEngine::compile_with(
        set,
        CompileOptions {
            max_table_cells,
            ..CompileOptions::default()
        },
    )
    .unwrap()
    .with_decision_cache(0)
}

/// Changes one attribute of a request to a value the policy's constants do not expect.
fn oddity() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => Just(0u8),
        1 => 1u8..=8,
    ]
}

fn apply(oddity: u8, request: &mut OwnedRequest) {
    match oddity {
        1 => request.roles.push("*".to_owned()),
        2 => request.roles = vec!["*".to_owned()],
        3 => request.purpose = "*".to_owned(),
        4 => request.purpose = "pu-nowhere".to_owned(),
        5 => request.roles.push(String::new()),
        6 => request.roles.clear(),
        7 => request.purpose = String::new(),
        8 => request.roles.insert(0, "~".to_owned()),
        _ => {}
    }
}

#[test]
fn tables_decide_every_request_as_casbin_does() {
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let requests = Cell::new(0u64);
    let (tables, live, bounded_live, bounded_tables) =
        (Cell::new(0), Cell::new(0), Cell::new(0), Cell::new(0));
    let strategy = (scenario(4, 8, 64), vec(oddity(), 64));
    let result = runner.run(&strategy, |((set, seeds), oddities)| {
        let tabled = compile(&set, CompileOptions::DEFAULT_TABLE_CELLS);
        let live_engine = compile(&set, 0);
        let bounded = compile(&set, SMALL_BOUND);
        let coverage = tabled.table_coverage();
        tables.set(tables.get() + coverage.tables);
        live.set(live.get() + coverage.live + live_engine.table_coverage().tables);
        bounded_live.set(bounded_live.get() + bounded.table_coverage().live);
        bounded_tables.set(bounded_tables.get() + bounded.table_coverage().tables);
        for (seed, oddity) in seeds.iter().zip(&oddities) {
            let mut request = seed.resolve(&set);
            apply(*oddity, &mut request);
            let req = request.as_request();
            let expected = live_engine.decide(&req);
            let got = tabled.decide(&req);
            if got != expected {
                return Err(TestCaseError::fail(format!(
                    "table and casbin differ on {request:?}\ntable: {got:?}\ncasbin: \
                     {expected:?}\npolicy set: {set:#?}"
                )));
            }
            let got = bounded.decide(&req);
            if got != expected {
                return Err(TestCaseError::fail(format!(
                    "bounded tables and casbin differ on {request:?}\nbounded: {got:?}\n\
                     casbin: {expected:?}\npolicy set: {set:#?}"
                )));
            }
            requests.set(requests.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{} requests; {} enforcers with tables and {} live under the default bound; {} with \
         tables and {} live under a bound of {SMALL_BOUND}",
        requests.get(),
        tables.get(),
        live.get(),
        bounded_tables.get(),
        bounded_live.get()
    );
    // The default bound covers every generated enforcer, the live engine none, and the small
    // bound some but not all.
    assert!(tables.get() > 1_000, "{}", tables.get());
    assert_eq!(live.get(), 0);
    assert!(bounded_live.get() > 100, "{}", bounded_live.get());
    assert!(bounded_tables.get() > 100, "{}", bounded_tables.get());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// A repeated question answered from the decision cache is the table's answer.
    #[test]
    fn the_decision_cache_over_tables_changes_nothing(
        (set, seeds) in scenario(3, 4, 32),
        more in vec(request_seed(), 8),
    ) {
        let cached = PolicyEngine::compile(&set).unwrap();
        let live = compile(&set, 0);
        for seed in seeds.iter().chain(&more).chain(&seeds) {
            let request = seed.resolve(&set);
            let req = request.as_request();
            prop_assert_eq!(cached.decide(&req), live.decide(&req), "{:?}", request);
        }
    }
}

/// An agreement with `n` roles and `n` purposes and every action on one dataset, and two rules
/// that add a marker and break-glass classes.
fn wide(n: usize) -> PolicySet {
    let roles: Vec<String> = (0..n).map(|i| format!("role-{i}")).collect();
    let agreement = Agreement {
        id: "wide".into(),
        version: 1,
        title: "wide".into(),
        provider: "provider".into(),
        recipients: vec!["agency".into()],
        purposes: (0..n).map(|i| format!("purpose-{i}")).collect(),
        legal_basis: "basis".into(),
        datasets: vec![DatasetTerms {
            dataset: "records".into(),
            actions: Action::ALL.to_vec(),
            roles: roles
                .iter()
                .map(|role| RoleFields {
                    role: role.clone(),
                    fields: vec!["person.names".into()],
                })
                .collect(),
            handling_caveat: None,
            notify_provider: false,
            break_glass: vec![BreakGlassTerms {
                roles: vec!["role-0".into()],
                fields: vec!["incident.summary".into()],
            }],
        }],
        valid_from: date!(2026 - 01 - 01),
        valid_until: None,
        review_date: None,
        status: AgreementStatus::Active,
        dpo_contacts: Vec::new(),
        controllership: None,
        special_category: false,
        law_enforcement: false,
        rights_handling: None,
        retention: None,
        security_requirements: None,
        sign_off: Vec::new(),
    };
    let rule = |id: &str, role: &str, marker: Option<&str>, break_glass| OperatorRule {
        id: id.into(),
        effect: Effect::Deny,
        agency: "*".into(),
        role: role.into(),
        dataset: "records".into(),
        purpose: "purpose-1".into(),
        action: "*".into(),
        description: "test".into(),
        marker: marker.map(Into::into),
        break_glass,
    };
    PolicySet::new(
        vec![agreement],
        vec![
            rule("no-wp", "*", Some("wp"), BreakGlassScope::Exempt),
            rule("no-glass", "role-0", None, BreakGlassScope::Deny),
        ],
    )
    .unwrap()
}

#[test]
fn an_enforcer_over_the_bound_is_asked_live_and_decides_alike() {
    // 21 role classes × 21 purpose classes × 4 action classes × 2 marker × 3 break-glass.
    let set = wide(20);
    let engine = PolicyEngine::compile(&set).unwrap().with_decision_cache(0);
    assert_eq!(engine.table_coverage().tables, 0);
    assert_eq!(engine.table_coverage().live, 1);
    let live = compile(&set, 0);
    // Just under the bound with fewer roles and purposes, so a table is built.
    let smaller = wide(10);
    let tabled = PolicyEngine::compile(&smaller)
        .unwrap()
        .with_decision_cache(0);
    assert_eq!(tabled.table_coverage().tables, 1);
    assert_eq!(tabled.table_coverage().cells, 11 * 11 * 4 * 2 * 3);
    let smaller_live = compile(&smaller, 0);

    for (roles, purpose, glass) in [
        (vec!["role-0"], "purpose-1", false),
        (vec!["role-0"], "purpose-1", true),
        (vec!["role-3", "role-0"], "purpose-2", true),
        (vec!["*"], "purpose-1", false),
        (vec!["role-9", "nobody"], "*", false),
        (vec!["role-1"], "purpose-1", false),
    ] {
        let roles: Vec<String> = roles.into_iter().map(str::to_owned).collect();
        for action in Action::ALL {
            let req = liaison_policy::DecisionRequest {
                agency: "agency",
                roles: &roles,
                action,
                dataset: "records",
                purpose,
                isa_id: "wide",
                at: datetime!(2026-06-01 10:00 UTC),
                break_glass: glass,
            };
            assert_eq!(engine.decide(&req), live.decide(&req), "{req:?}");
            assert_eq!(tabled.decide(&req), smaller_live.decide(&req), "{req:?}");
        }
    }
    // The rules did their part in the answers compared above.
    let roles = vec!["role-0".to_owned()];
    let req = liaison_policy::DecisionRequest {
        agency: "agency",
        roles: &roles,
        action: Action::Read,
        dataset: "records",
        purpose: "purpose-1",
        isa_id: "wide",
        at: datetime!(2026-06-01 10:00 UTC),
        break_glass: true,
    };
    assert_eq!(
        tabled.decide(&req).reason(),
        Some("BREAK_GLASS_NOT_PERMITTED")
    );
    let normal = tabled.decide(&liaison_policy::DecisionRequest {
        break_glass: false,
        ..req
    });
    assert!(normal.is_allowed());
    assert_eq!(normal.withheld.len(), 1);
}

#[test]
fn a_model_with_another_matcher_decides_live() {
    let set = wide(2);
    // The same matcher written in another order: casbin decides it alike, but it is not the
    // text decision tables are proven for.
    let model = liaison_policy::MODEL.replace(
        "m = (p.isa == \"*\" || p.isa == r.isa)",
        "m = (p.isa == r.isa || p.isa == \"*\")",
    );
    assert_ne!(model, liaison_policy::MODEL);
    let engine = PolicyEngine::compile_with_model(&set, &model).unwrap();
    assert_eq!(engine.table_coverage().tables, 0);
    assert_eq!(engine.table_coverage().live, 1);
    let roles = vec!["role-1".to_owned()];
    let decision = engine.decide(&liaison_policy::DecisionRequest {
        agency: "agency",
        roles: &roles,
        action: Action::Read,
        dataset: "records",
        purpose: "purpose-0",
        isa_id: "wide",
        at: datetime!(2026-06-01 10:00 UTC),
        break_glass: false,
    });
    assert!(decision.is_allowed());
}
