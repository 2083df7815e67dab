use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use liaison_policy::{Action, PolicyEngine, PolicySet};
use liaison_proto::v1 as pb;
use tower::{ServiceExt, service_fn};

use super::*;
use crate::{
    identity::Principal,
    share::{Operation, Payload, ShareCall, validate::validate},
};

fn engine() -> Arc<PolicyEngine> {
    let text = include_str!("../../../../deploy/demo/policy.toml");
    Arc::new(PolicyEngine::compile(&PolicySet::from_toml(text).unwrap()).unwrap())
}

fn call(agency: &str, purpose: &str, isa: &str) -> Validated {
    validate(ShareCall {
        principal: Arc::new(Principal {
            agency: agency.into(),
            subject: "u1".into(),
            display_name: None,
            roles: vec!["social-worker".into()],
            team: None,
            vetting: None,
            client_id: None,
            issuer: "https://idp".into(),
            is_system: false,
        }),
        method: "/liaison.v1.SharingService/SearchPersons",
        action: Action::Search,
        context: Some(pb::ShareContext {
            purpose: purpose.into(),
            justification: "Section 47 enquiry after a school referral".into(),
            isa_id: isa.into(),
            ..Default::default()
        }),
        operation: Operation::Search {
            query: Some(pb::PersonQuery {
                family_name: "Marsh".into(),
                postcode: "E8 1DY".into(),
                ..Default::default()
            }),
            dataset_ids: vec![],
            page_size: 0,
        },
        client_address: String::new(),
        trace_id: String::new(),
        deadline: None,
    })
    .unwrap()
}

async fn run(v: Validated) -> (Answer, usize, Vec<String>) {
    let (_tx, rx) = tokio::sync::watch::channel(engine());
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let (c, s) = (calls.clone(), seen.clone());
    let inner = service_fn(move |a: Authorized| {
        let (c, s) = (c.clone(), s.clone());
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            s.lock().await.extend(a.plan.iter().map(|(d, _)| d.clone()));
            Ok::<_, Infallible>(Answer {
                facts: Facts::default(),
                result: Ok(Payload::Search {
                    matches: vec![],
                    gaps: vec![],
                }),
            })
        }
    });
    let answer = AuthorizeLayer::new(rx)
        .layer(inner)
        .oneshot(v)
        .await
        .unwrap();
    let seen = seen.lock().await.clone();
    (answer, calls.load(Ordering::SeqCst), seen)
}

#[tokio::test]
async fn an_allowed_share_reaches_the_inner_stage_with_its_plan_and_facts() {
    let (answer, calls, plan) = run(call(
        "hackney-childrens",
        "safeguarding-children",
        "met-hackney-children",
    ))
    .await;
    assert!(answer.result.is_ok());
    assert_eq!(calls, 1);
    assert_eq!(plan, vec!["met-police.records".to_owned()]);
    assert!(answer.facts.allowed);
    assert!(answer.facts.policy_version.starts_with("sha256:"));
    assert_eq!(answer.facts.isa_version, 1);
    assert!(answer.facts.legal_basis.contains("Children Act 1989"));
}

async fn denied(v: Validated) -> &'static str {
    let (answer, calls, _) = run(v).await;
    assert_eq!(calls, 0, "a denied share must never reach a connector");
    assert!(!answer.facts.allowed);
    assert!(!answer.facts.policy_version.is_empty());
    match answer.result {
        Err(GatewayError::Denied { reason, .. }) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn each_denial_carries_policy_reason() {
    assert_eq!(
        denied(call(
            "hackney-childrens",
            "crime-prevention",
            "met-hackney-children"
        ))
        .await,
        "PURPOSE_NOT_PERMITTED"
    );
    assert_eq!(
        denied(call(
            "hackney-childrens",
            "safeguarding-children",
            "no-such-isa"
        ))
        .await,
        "ISA_UNKNOWN"
    );
    assert_eq!(
        denied(call(
            "met-police",
            "safeguarding-children",
            "met-hackney-children"
        ))
        .await,
        "AGENCY_NOT_RECIPIENT"
    );
}

#[tokio::test]
async fn a_dataset_outside_the_agreement_is_denied() {
    let mut v = call(
        "hackney-childrens",
        "safeguarding-children",
        "met-hackney-children",
    );
    if let ValidOperation::Search { dataset_ids, .. } = &mut v.operation {
        dataset_ids.push("health.records".into());
    }
    assert_eq!(denied(v).await, "DATASET_NOT_COVERED");
}

#[test]
fn every_policy_reason_is_listed() {
    // Keeps POLICY_REASONS (checked against errors.proto) in step with the
    // policy crate's reasons.
    use liaison_policy::{AgreementStatus, DenyReason as D};
    let isa = || "x".to_owned();
    let day = time::macros::date!(2026 - 01 - 01);
    let all = [
        D::AgreementUnknown { isa: isa() },
        D::AgreementNotActive {
            isa: isa(),
            status: AgreementStatus::Suspended,
        },
        D::AgreementNotYetValid {
            isa: isa(),
            valid_from: day,
        },
        D::AgreementExpired {
            isa: isa(),
            valid_until: day,
        },
        D::NotARecipient {
            isa: isa(),
            agency: isa(),
        },
        D::PurposeNotPermitted {
            isa: isa(),
            purpose: isa(),
        },
        D::DatasetNotCovered {
            isa: isa(),
            dataset: isa(),
        },
        D::ActionNotPermitted {
            isa: isa(),
            dataset: isa(),
            action: Action::Read,
        },
        D::NoRoleGranted {
            isa: isa(),
            dataset: isa(),
        },
        D::ExplicitDeny { rule_id: isa() },
        D::EvaluationFailed,
        D::BreakGlassNotPermitted {
            isa: isa(),
            dataset: isa(),
        },
    ];
    for r in all {
        assert!(POLICY_REASONS.contains(&r.reason()), "{r:?}");
    }
}

fn invoking(mut v: Validated, roles: &[&str]) -> Validated {
    let mut principal = (*v.call.principal).clone();
    principal.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    v.call.principal = Arc::new(principal);
    v.context.break_glass = Some("Child missing overnight with a high-risk adult".into());
    v
}

#[tokio::test]
async fn break_glass_is_passed_to_policy_and_noted_for_the_audit() {
    let allowed = invoking(
        call(
            "hackney-childrens",
            "safeguarding-children",
            "met-hackney-children",
        ),
        &["team-manager"],
    );
    let (answer, calls, plan) = run(allowed).await;
    assert!(answer.result.is_ok());
    assert_eq!(calls, 1);
    assert_eq!(plan, vec!["met-police.records".to_owned()]);
    assert_eq!(
        answer.facts.break_glass_datasets,
        vec!["met-police.records".to_owned()]
    );
    assert!(
        answer
            .facts
            .matched_rules
            .iter()
            .any(|r| r.starts_with("break-glass:"))
    );

    let refused = invoking(
        call(
            "hackney-childrens",
            "safeguarding-children",
            "met-hackney-children",
        ),
        &["social-worker"],
    );
    assert_eq!(denied(refused).await, "BREAK_GLASS_NOT_PERMITTED");

    // Not invoked: a normal share, even for a role that could invoke it.
    let mut normal = invoking(
        call(
            "hackney-childrens",
            "safeguarding-children",
            "met-hackney-children",
        ),
        &["team-manager"],
    );
    normal.context.break_glass = None;
    let (answer, _, _) = run(normal).await;
    assert!(answer.result.is_ok());
    assert!(answer.facts.break_glass_datasets.is_empty());
}
