//! The first audited share, end to end: real `oidc-provider` tokens for two
//! agencies, the synthetic legacy police system, the shipped demo agreement,
//! a SQLite ledger, and every refusal recorded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use liaison_ledger::Ledger;
use liaison_proto::v1::{
    self as pb, oversight_service_client::OversightServiceClient,
    sharing_service_client::SharingServiceClient,
};
use pb::record::Body;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_social_worker_gets_minimised_records_with_receipts_and_every_refusal_is_audited() {
    let world = World::start(None).await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let mut sharing = SharingServiceClient::new(world.channel.clone());

    // What may I query?
    let grants = sharing
        .list_datasets(authed(&sw, pb::ListDatasetsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].dataset_id, DATASET);
    assert_eq!(grants[0].isa_id, ISA);

    // Search for the seeded child.
    let found = sharing
        .search_persons(authed(
            &sw,
            pb::SearchPersonsRequest {
                context: Some(context("safeguarding-children")),
                query: Some(leah()),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let search_receipt = found.receipt.clone().expect("a search carries its receipt");
    assert!(found.gaps.is_empty(), "{:?}", found.gaps);
    let leah = found.matches[0].person.clone().unwrap();
    assert_eq!(leah.names[0].family_name, "Marsh");
    assert_eq!(
        leah.date_of_birth,
        Some(pb::Date {
            year: 2013,
            month: 5,
            day: 14
        })
    );
    assert!(leah.person_id.starts_with("met-police.records:"));
    // Outside the social worker's field set: identifiers and gender.
    assert!(
        leah.identifiers.is_empty(),
        "identifiers leaked: {:?}",
        leah.identifiers
    );
    assert!(leah.gender.is_empty(), "gender leaked");

    // Read her records.
    let records = sharing
        .get_records(authed(
            &sw,
            pb::GetRecordsRequest {
                context: Some(context("safeguarding-children")),
                person_id: leah.person_id.clone(),
                kinds: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let read_receipt = records.receipt.clone().expect("a read carries its receipt");
    assert!(!records.records.is_empty());
    let mut kinds = std::collections::BTreeSet::new();
    for r in &records.records {
        kinds.insert(r.kind);
        match r.body.as_ref().unwrap() {
            Body::Incident(i) => {
                assert!(!i.category.is_empty());
                assert!(
                    i.location.is_empty(),
                    "incident.location is not in the agreement"
                );
                assert!(
                    i.reference.is_empty(),
                    "incident.reference is not in the agreement"
                );
            }
            Body::WarningMarker(w) => assert!(w.description.is_empty()),
            Body::RiskAssessment(a) => {
                assert_ne!(a.level, 0);
                assert!(
                    a.summary.is_empty(),
                    "risk_assessment.summary is not in the agreement"
                );
            }
            Body::Relationship(_) => panic!("relationships are for team managers only"),
            Body::SafeguardingConcern(c) => assert!(!c.summary.is_empty()),
        }
    }
    assert!(
        kinds.contains(&(pb::RecordKind::Incident as i32)),
        "{kinds:?}"
    );

    // No purpose: INVALID_ARGUMENT naming the field.
    let mut no_purpose = context("");
    no_purpose.purpose.clear();
    let err = sharing
        .search_persons(authed(
            &sw,
            pb::SearchPersonsRequest {
                context: Some(no_purpose),
                query: Some(common::leah()),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        reason(&err),
        ("PURPOSE_MISSING".into(), vec!["context.purpose".into()])
    );

    // A purpose outside the agreement: PERMISSION_DENIED with the reason.
    let err = sharing
        .search_persons(authed(
            &sw,
            pb::SearchPersonsRequest {
                context: Some(context("crime-prevention")),
                query: Some(common::leah()),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err).0, "PURPOSE_NOT_PERMITTED");
    assert!(
        err.message().contains("crime-prevention"),
        "{}",
        err.message()
    );

    // The provider's own officer is not a recipient under this agreement.
    let officer = world.met.token(OFFICER).await.unwrap();
    let err = sharing
        .search_persons(authed(
            &officer,
            pb::SearchPersonsRequest {
                context: Some(context("safeguarding-children")),
                query: Some(common::leah()),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err).0, "AGENCY_NOT_RECIPIENT");

    // No token, a garbage token.
    let err = sharing
        .list_datasets(pb::ListDatasetsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(reason(&err).0, "TOKEN_MISSING");
    let err = sharing
        .list_datasets(authed("not.a.token", pb::ListDatasetsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(reason(&err).0, "TOKEN_INVALID");

    // Oversight is for DPOs.
    let err = OversightServiceClient::new(world.channel.clone())
        .list_audit_entries(authed(&sw, pb::ListAuditEntriesRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err).0, "FUNCTION_NOT_PERMITTED");

    // The council's DPO sees every outcome of the council's shares.
    let dpo = world.hackney.token(COUNCIL_DPO).await.unwrap();
    let mut oversight = OversightServiceClient::new(world.channel.clone());
    let entries = oversight
        .list_audit_entries(authed(&dpo, pb::ListAuditEntriesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let outcomes: Vec<(i32, String, String)> = entries
        .iter()
        .map(|e| {
            let e = e.entry.as_ref().unwrap();
            (e.outcome, e.error_reason.clone(), e.purpose.clone())
        })
        .collect();
    assert!(
        outcomes.contains(&(
            pb::AuditOutcome::Invalid as i32,
            "PURPOSE_MISSING".into(),
            String::new()
        )),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&(
            pb::AuditOutcome::Denied as i32,
            "PURPOSE_NOT_PERMITTED".into(),
            "crime-prevention".into()
        )),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.0 == pb::AuditOutcome::Disclosed as i32)
            .count(),
        2,
        "{outcomes:?}"
    );
    // The read's entry records what left: the person, the records and the
    // fields, and a digest, never the data itself.
    let read = entries
        .iter()
        .find(|e| e.entry.as_ref().unwrap().entry_id == read_receipt.entry_id)
        .unwrap();
    let entry = read.entry.as_ref().unwrap();
    assert_eq!(entry.isa_id, ISA);
    assert_eq!(
        entry.justification,
        "Section 47 enquiry following a school referral"
    );
    assert!(
        entry.policy_version.starts_with("sha256:"),
        "{}",
        entry.policy_version
    );
    assert!(!entry.legal_basis.is_empty());
    assert_eq!(entry.disclosures.len(), 1);
    assert_eq!(entry.disclosures[0].person_id, leah.person_id);
    assert_eq!(entry.disclosures[0].record_ids.len(), records.records.len());
    assert!(
        entry.disclosures[0]
            .fields
            .contains(&"incident.category".to_owned())
    );
    assert_eq!(entry.disclosures[0].digest.len(), 64);
    let canonical = String::from_utf8_lossy(&read.canonical);
    assert!(
        !canonical.contains("Marsh"),
        "the ledger must not hold the shared data"
    );

    // The search's receipt resolves, and its inclusion proof verifies.
    let proof = oversight
        .get_inclusion_proof(authed(
            &dpo,
            pb::GetInclusionProofRequest {
                entry_id: search_receipt.entry_id.clone(),
                tree_size: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let stored = oversight
        .get_audit_entry(authed(
            &dpo,
            pb::GetAuditEntryRequest {
                entry_id: search_receipt.entry_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(stored.leaf_hash, search_receipt.leaf_hash);
    assert!(liaison_gateway::query::verify_proof(
        &stored.canonical,
        &proof
    ));
    let mut bad = proof.clone();
    bad.leaf_index += 1;
    assert!(!liaison_gateway::query::verify_proof(
        &stored.canonical,
        &bad
    ));

    // The whole ledger verifies, then fails naming the entry after one byte
    // of it is changed.
    let url = format!("sqlite://{}", world.dir.path().join("ledger.db").display());
    world.gateway.shutdown().await.unwrap();
    let ledger = Ledger::connect(&url).await.unwrap();
    let report = ledger.verify().await.unwrap();
    assert!(report.entries >= 7, "{report:?}");
    ledger.close().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_liaison"))
        .args(["audit", "verify", "--ledger", &url])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let seq = i64::try_from(read_receipt.sequence).unwrap();
    let (mut body,): (Vec<u8>,) = sqlx::query_as("SELECT body FROM audit_entries WHERE seq = ?")
        .bind(seq)
        .fetch_one(&pool)
        .await
        .unwrap();
    body[10] ^= 0x01;
    // The append-only trigger is a guard, not the evidence: someone with
    // full rights over the file can drop it, which is what the hashes are for.
    sqlx::query("DROP TRIGGER audit_entries_no_update")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_entries SET body = ? WHERE seq = ?")
        .bind(body)
        .bind(seq)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_liaison"))
        .args(["audit", "verify", "--ledger", &url])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&read_receipt.entry_id), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_sqlite_ledger_fails_shares_closed_until_it_is_writable_again() {
    use sqlx::Connection;

    let world = World::start(None).await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let mut sharing = SharingServiceClient::new(world.channel.clone());
    let request = || {
        authed(
            &sw,
            pb::SearchPersonsRequest {
                context: Some(context("safeguarding-children")),
                query: Some(common::leah()),
                ..Default::default()
            },
        )
    };
    let first = sharing
        .search_persons(request())
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();

    // Another process holds the database exclusively: the ledger cannot
    // write. (File permissions do not stop root, which CI runs as.)
    let url = format!("sqlite://{}", world.dir.path().join("ledger.db").display());
    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let err = sharing.search_persons(request()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(reason(&err).0, "AUDIT_UNAVAILABLE");

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();
    let resumed = sharing
        .search_persons(request())
        .await
        .unwrap()
        .into_inner();
    assert!(!resumed.matches.is_empty());
    assert_eq!(
        resumed.receipt.unwrap().sequence,
        first.sequence + 1,
        "the refused share left no entry and no gap"
    );
    world.gateway.shutdown().await.unwrap();
}
