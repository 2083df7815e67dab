use std::sync::Arc;

use liaison_ledger::test_util::fresh_sqlite_db;
use liaison_policy::Action;
use liaison_proto::v1 as pb;
use tower::{ServiceExt, service_fn};

use super::*;
use crate::{
    identity::Principal,
    share::{Operation, Payload, ShareContext},
};

fn call(context: Option<pb::ShareContext>) -> ShareCall {
    ShareCall {
        principal: Arc::new(Principal {
            agency: "hackney-childrens".into(),
            subject: "u1".into(),
            display_name: Some("Sam Okoro".into()),
            roles: vec!["social-worker".into()],
            team: None,
            vetting: None,
            client_id: Some("hackney-mash-system".into()),
            issuer: "https://idp".into(),
            is_system: true,
        }),
        method: "/liaison.v1.SharingService/GetRecords",
        action: Action::Read,
        context,
        operation: Operation::Read {
            person_id: "ds:1".into(),
            kinds: vec![],
        },
        client_address: "127.0.0.1:5000".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        deadline: None,
    }
}

fn disclosed() -> Facts {
    Facts {
        context: Some(ShareContext {
            purpose: "safeguarding-children".into(),
            justification: "Section 47 enquiry".into(),
            isa_id: "isa-1".into(),
            case_reference: "C1".into(),
            on_behalf_of: None,
            correlation_id: "corr".into(),
            break_glass: None,
        }),
        policy_version: "sha256:abc".into(),
        isa_version: 3,
        legal_basis: "Children Act 1989 s.47".into(),
        provider: "hackney".into(),
        allowed: true,
        matched_rules: vec!["isa-1".into()],
        disclosures: vec![pb::AuditDisclosure {
            dataset_id: "ds".into(),
            person_id: "ds:1".into(),
            record_ids: vec!["ds:r1".into()],
            fields: vec!["incident.category".into()],
            digest: "00".repeat(32),
        }],
        withheld: vec![pb::WithheldRecords {
            dataset_id: "ds".into(),
            marker: "witness-protection".into(),
            rule_id: "no-witness-protection".into(),
            records: 1,
        }],
        sources: vec!["ds".into()],
        gaps: vec![],
        break_glass_datasets: vec![],
    }
}

#[test]
fn a_disclosure_records_every_s62_field() {
    let e = entry_for(&call(None), &disclosed(), None);
    assert_eq!(e.outcome, pb::AuditOutcome::Disclosed as i32);
    assert!(e.allowed);
    assert_eq!(e.purpose, "safeguarding-children");
    assert_eq!(e.isa_id, "isa-1");
    assert_eq!(e.isa_version, 3);
    assert_eq!(e.legal_basis, "Children Act 1989 s.47");
    assert_eq!(
        e.provider_agency_id, "hackney",
        "the provider's DPO oversees it too"
    );
    assert_eq!(e.policy_version, "sha256:abc");
    assert_eq!(e.recipient_agency_id, "hackney-childrens");
    assert_eq!(e.principal.as_ref().unwrap().display_name, "Sam Okoro");
    assert_eq!(e.action, pb::AuditAction::Read as i32);
    assert_eq!(e.disclosures.len(), 1);
    assert_eq!(e.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(e.correlation_id, "corr");
    assert_eq!(e.format_version, FORMAT_VERSION);
}

#[test]
fn an_invalid_share_records_what_was_sent() {
    let sent = pb::ShareContext {
        purpose: String::new(),
        justification: "x".repeat(5_000),
        isa_id: "isa-1".into(),
        ..Default::default()
    };
    let err = GatewayError::ContextMissing {
        field: "context.purpose",
        reason: "PURPOSE_MISSING",
    };
    let e = entry_for(&call(Some(sent)), &Facts::default(), Some(&err));
    assert_eq!(e.outcome, pb::AuditOutcome::Invalid as i32);
    assert_eq!(e.error_reason, "PURPOSE_MISSING");
    assert_eq!(e.isa_id, "isa-1");
    assert_eq!(e.justification.chars().count(), 2_000, "bounded");
    assert!(!e.allowed);
}

#[test]
fn every_break_glass_invocation_is_marked_allowed_refused_or_malformed() {
    let reason = "Child missing overnight with a high-risk adult";
    let mut facts = disclosed();
    if let Some(c) = facts.context.as_mut() {
        c.break_glass = Some(reason.into());
    }
    facts.break_glass_datasets = vec!["ds".into()];
    let allowed = entry_for(&call(None), &facts, None);
    assert_eq!(
        allowed.break_glass,
        Some(pb::BreakGlass {
            reason: reason.into()
        })
    );
    let denied = entry_for(
        &call(None),
        &facts,
        Some(&GatewayError::Denied {
            reason: "BREAK_GLASS_NOT_PERMITTED",
            message: "no".into(),
        }),
    );
    assert_eq!(denied.outcome, pb::AuditOutcome::Denied as i32);
    assert_eq!(denied.break_glass, allowed.break_glass);
    // Malformed: what was sent, bounded like the other free text.
    let sent = pb::ShareContext {
        break_glass: Some(pb::BreakGlass {
            reason: "y".repeat(5_000),
        }),
        ..Default::default()
    };
    let invalid = entry_for(
        &call(Some(sent)),
        &Facts::default(),
        Some(&GatewayError::ContextMissing {
            field: "context.break_glass.reason",
            reason: "BREAK_GLASS_REASON_MISSING",
        }),
    );
    assert_eq!(
        invalid.break_glass.map(|b| b.reason.chars().count()),
        Some(2_000)
    );
    // A normal share carries no mark.
    assert_eq!(entry_for(&call(None), &disclosed(), None).break_glass, None);
}

#[test]
fn a_failed_share_discloses_nothing_even_if_facts_say_otherwise() {
    let e = entry_for(
        &call(None),
        &disclosed(),
        Some(&GatewayError::DeadlineExceeded),
    );
    assert_eq!(e.outcome, pb::AuditOutcome::Failed as i32);
    assert!(e.disclosures.is_empty());
    assert!(!e.allowed);
}

fn inner_with_payload()
-> impl tower::Service<ShareCall, Response = Answer, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_c: ShareCall| async move {
        Ok::<_, Infallible>(Answer {
            facts: disclosed(),
            result: Ok(Payload::Read {
                person: None,
                records: vec![],
                gaps: vec![],
            }),
        })
    })
}

#[tokio::test]
async fn a_share_returns_only_after_its_entry_is_durable() {
    let (url, _dir) = fresh_sqlite_db();
    let ledger = Arc::new(Ledger::connect(&url).await.unwrap());
    let shared = AuditLayer::new(ledger.clone())
        .layer(inner_with_payload())
        .oneshot(call(None))
        .await
        .unwrap();
    let stored = ledger.get(&shared.receipt.entry_id).await.unwrap().unwrap();
    assert_eq!(stored.seq, shared.receipt.sequence);
    assert_eq!(hex::encode(stored.leaf_hash), shared.receipt.leaf_hash);
    let decoded = pb::AuditEntry::decode(stored.body.as_slice()).unwrap();
    assert_eq!(decoded.outcome, pb::AuditOutcome::Disclosed as i32);
    assert_eq!(stored.index.subjects, vec!["ds:1".to_owned()]);
}

#[tokio::test]
async fn a_refusal_is_recorded_and_carries_its_receipt() {
    let (url, _dir) = fresh_sqlite_db();
    let ledger = Arc::new(Ledger::connect(&url).await.unwrap());
    let inner = service_fn(|_c: ShareCall| async move {
        Ok::<_, Infallible>(Answer::refused(GatewayError::QueryTooBroad))
    });
    let refused = AuditLayer::new(ledger.clone())
        .layer(inner)
        .oneshot(call(None))
        .await
        .unwrap_err();
    assert_eq!(refused.error, GatewayError::QueryTooBroad);
    let receipt = refused.receipt.unwrap();
    assert!(ledger.get(&receipt.entry_id).await.unwrap().is_some());
}

#[tokio::test]
async fn when_the_ledger_cannot_append_nothing_is_disclosed() {
    let (url, _dir) = fresh_sqlite_db();
    let ledger = Arc::new(Ledger::connect(&url).await.unwrap());
    ledger.close().await;
    let refused = AuditLayer::new(ledger)
        .layer(inner_with_payload())
        .oneshot(call(None))
        .await
        .unwrap_err();
    assert_eq!(refused.error, GatewayError::AuditUnavailable);
    assert!(refused.receipt.is_none());
}
