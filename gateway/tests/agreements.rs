//! The agreement register through `AdminService`: only the providing
//! agency's information-governance role may change an agreement; each change
//! is a new version recorded in the ledger before it takes effect; a
//! suspension stops shares at once on the replica that made it and within
//! two seconds on another replica on the same PostgreSQL; the policy file is
//! imported as versions and a rewritten version refuses start-up.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use liaison_gateway::{config::Config, server};
use liaison_ledger::test_util::fresh_postgres_db;
use liaison_proto::v1::{
    self as pb, admin_service_client::AdminServiceClient,
    sharing_service_client::SharingServiceClient,
};
use tokio::net::TcpListener;
use tonic::{Code, transport::Channel};

fn suspend(base_version: u32, justification: &str) -> pb::SetAgreementStatusRequest {
    pb::SetAgreementStatusRequest {
        isa_id: ISA.into(),
        base_version,
        status: pb::AgreementStatus::Suspended as i32,
        justification: justification.into(),
    }
}

async fn search(channel: &Channel, token: &str, purpose: &str) -> Result<(), tonic::Status> {
    SharingServiceClient::new(channel.clone())
        .search_persons(authed(
            token,
            pb::SearchPersonsRequest {
                context: Some(context(purpose)),
                query: Some(leah()),
                ..Default::default()
            },
        ))
        .await
        .map(|_| ())
}

/// The demo agreement's text with its purposes narrowed to missing-person.
fn narrowed_demo_agreement() -> String {
    let text = std::fs::read_to_string(repo().join("deploy/demo/policy.toml")).unwrap();
    // A proposal is one agreement: the operator rules after it stay in the file.
    let text = match text.find("\n[[rule]]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let narrowed = text.replace(
        r#"purposes = ["safeguarding-children", "missing-person"]"#,
        r#"purposes = ["missing-person"]"#,
    );
    assert_ne!(narrowed, text, "the demo agreement's purposes line moved");
    narrowed
}

async fn administer_entries(world: &World) -> Vec<pb::AuditEntry> {
    use prost::Message as _;
    let ledger = &world.gateway.ledger;
    let size = ledger.size().await.unwrap();
    let mut out = Vec::new();
    for seq in 1..=size {
        let stored = ledger.get_by_seq(seq).await.unwrap().unwrap();
        let entry = pb::AuditEntry::decode(stored.body.as_slice()).unwrap();
        // The trust registry's changes are `ADMINISTER` entries too.
        if entry.action == pb::AuditAction::Administer as i32
            && entry.target.starts_with("agreement:")
        {
            out.push(entry);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_providers_governance_role_changes_an_agreement_and_every_change_is_a_recorded_version()
 {
    let world = World::start(None).await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let officer = world.met.token(OFFICER).await.unwrap();
    let met_ig = world.met.token(MET_GOVERNANCE).await.unwrap();
    let hackney_ig = world.hackney.token(HACKNEY_GOVERNANCE).await.unwrap();
    let mut admin = AdminServiceClient::new(world.channel.clone());
    search(&world.channel, &sw, "safeguarding-children")
        .await
        .unwrap();

    // The file's agreement is version 1 in the register, imported and audited.
    let versions = admin
        .list_agreement_versions(authed(
            &sw,
            pb::ListAgreementVersionsRequest { isa_id: ISA.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].changed_by, "policy-file");
    assert!(versions[0].content_hash.starts_with("sha256:"));

    // Refusals: wrong role, wrong agency, stale base, no justification.
    let why = "Serious case review found the agreement is being misused";
    let refused = admin
        .set_agreement_status(authed(&officer, suspend(1, why)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(reason(&refused).0, "FUNCTION_NOT_PERMITTED");
    assert!(
        refused.message().contains("information-governance"),
        "{refused:?}"
    );
    let refused = admin
        .set_agreement_status(authed(&hackney_ig, suspend(1, why)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("met-police"), "{refused:?}");
    let refused = admin
        .set_agreement_status(authed(&met_ig, suspend(7, why)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert_eq!(reason(&refused).0, "VERSION_CONFLICT");
    let refused = admin
        .set_agreement_status(authed(&met_ig, suspend(1, "because")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(reason(&refused).1, vec!["justification".to_owned()]);
    search(&world.channel, &sw, "safeguarding-children")
        .await
        .expect("refused changes change nothing");

    // Suspension takes effect on this replica before the call returns.
    let suspended = admin
        .set_agreement_status(authed(&met_ig, suspend(1, why)))
        .await
        .unwrap()
        .into_inner();
    let agreement = suspended.agreement.unwrap();
    assert_eq!(agreement.version, 2);
    assert_eq!(agreement.status, pb::AgreementStatus::Suspended as i32);
    let receipt = suspended.receipt.unwrap();
    let denied = search(&world.channel, &sw, "safeguarding-children")
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert_eq!(reason(&denied).0, "ISA_NOT_ACTIVE");

    // An expired agreement is final; a suspended one may be reactivated.
    let reactivated = admin
        .set_agreement_status(authed(
            &met_ig,
            pb::SetAgreementStatusRequest {
                status: pb::AgreementStatus::Active as i32,
                ..suspend(2, "Review completed and safeguards agreed with Hackney")
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reactivated.agreement.unwrap().version, 3);
    search(&world.channel, &sw, "safeguarding-children")
        .await
        .unwrap();

    // New terms: a narrower purpose list, proposed as text.
    let bad = admin
        .propose_agreement(authed(
            &met_ig,
            pb::ProposeAgreementRequest {
                agreement_toml: "[[agreement]]\nid = \"x\"\nversion = \n".into(),
                base_version: 0,
                justification: why.into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("line"), "{bad:?}");
    let proposed = admin
        .propose_agreement(authed(
            &met_ig,
            pb::ProposeAgreementRequest {
                agreement_toml: narrowed_demo_agreement(),
                base_version: 3,
                justification: "Narrowed to missing-person enquiries after the annual review"
                    .into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proposed.agreement.unwrap().version, 4);
    let denied = search(&world.channel, &sw, "safeguarding-children")
        .await
        .unwrap_err();
    assert_eq!(reason(&denied).0, "PURPOSE_NOT_PERMITTED", "{denied:?}");
    search(&world.channel, &sw, "missing-person").await.unwrap();
    // The other agency's officer cannot take the agreement over by naming
    // itself the provider.
    let hijack = narrowed_demo_agreement().replace(
        r#"provider = "met-police""#,
        r#"provider = "hackney-childrens""#,
    );
    let refused = admin
        .propose_agreement(authed(
            &hackney_ig,
            pb::ProposeAgreementRequest {
                agreement_toml: hijack,
                base_version: 4,
                justification: why.into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // The history: four versions, each tied to the ledger entry that
    // recorded it; refusals are in the ledger too.
    let versions = admin
        .list_agreement_versions(authed(
            &sw,
            pb::ListAgreementVersionsRequest { isa_id: ISA.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(
        versions
            .iter()
            .map(|v| v.agreement.as_ref().unwrap().version)
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(versions[1].audit_entry_id, receipt.entry_id);
    assert_eq!(versions[1].justification, why);
    let entries = administer_entries(&world).await;
    let recorded: Vec<_> = entries
        .iter()
        .filter(|e| e.outcome == pb::AuditOutcome::Recorded as i32)
        .map(|e| e.target.clone())
        .collect();
    assert_eq!(
        recorded,
        (1..=4)
            .map(|v| format!("agreement:{ISA}@{v}"))
            .collect::<Vec<_>>()
    );
    for v in &versions {
        assert!(
            entries.iter().any(|e| e.entry_id == v.audit_entry_id),
            "version {v:?} names no ledger entry"
        );
    }
    let refusals: Vec<_> = entries
        .iter()
        .filter(|e| e.outcome != pb::AuditOutcome::Recorded as i32)
        .map(|e| {
            (
                e.principal.clone().unwrap().agency_id,
                e.error_reason.clone(),
            )
        })
        .collect();
    assert_eq!(
        refusals,
        vec![
            ("met-police".into(), "FUNCTION_NOT_PERMITTED".into()),
            ("hackney-childrens".into(), "FUNCTION_NOT_PERMITTED".into()),
            ("met-police".into(), "VERSION_CONFLICT".into()),
            ("met-police".into(), "INVALID_FIELD".into()),
            ("met-police".into(), "INVALID_FIELD".into()),
            ("hackney-childrens".into(), "FUNCTION_NOT_PERMITTED".into()),
        ]
    );

    // A restart keeps the register: the file's older version does not
    // undo version 4.
    let path = world.config_path();
    let World {
        dir,
        met,
        hackney,
        gateway,
        ..
    } = world;
    gateway.shutdown().await.unwrap();
    let config = Config::load(&path).unwrap();
    let gateway = server::start(
        config.clone(),
        Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        std::future::pending(),
    )
    .await
    .unwrap();
    let channel = Channel::from_shared(format!("http://{}", gateway.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let denied = search(&channel, &sw, "safeguarding-children")
        .await
        .unwrap_err();
    assert_eq!(reason(&denied).0, "PURPOSE_NOT_PERMITTED", "{denied:?}");

    // GitOps: a new version in the file takes effect without a restart.
    let policy = dir.path().join("policy.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(&policy, text.replace("version = 1", "version = 5")).unwrap();
    let started = Instant::now();
    while search(&channel, &sw, "safeguarding-children")
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the policy file's version 5 was not imported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway.shutdown().await.unwrap();

    // A file that rewrites a recorded version refuses start-up, naming it.
    std::fs::write(
        &policy,
        text.replace("version = 1", "version = 5").replace(
            "missing-person\"]",
            "missing-person\", \"domestic-abuse-marac\"]",
        ),
    )
    .unwrap();
    let Err(err) = server::start(
        config,
        Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        std::future::pending(),
    )
    .await
    else {
        panic!("a rewritten version must refuse start-up");
    };
    let message = err.to_string();
    assert!(
        message.contains(ISA) && message.contains("version 5") && message.contains("new version"),
        "{message}"
    );
    drop((met, hackney));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_through_one_replica_stops_shares_through_another_within_two_seconds() {
    let (url, _db) = fresh_postgres_db().await;
    let world = World::start(Some(url)).await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let met_ig = world.met.token(MET_GOVERNANCE).await.unwrap();

    // A second replica on the same database, polling only every 10 s, so
    // only the announcement can make it in time.
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    let second = world.dir.path().join("second.toml");
    std::fs::write(
        &second,
        text.replace(
            "file = \"policy.toml\"",
            "file = \"policy.toml\"\nreload_interval_ms = 10000",
        ),
    )
    .unwrap();
    let other = server::start(
        Config::load(&second).unwrap(),
        Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
        std::future::pending(),
    )
    .await
    .unwrap();
    let other_channel = Channel::from_shared(format!("http://{}", other.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    search(&other_channel, &sw, "safeguarding-children")
        .await
        .unwrap();

    let started = Instant::now();
    AdminServiceClient::new(world.channel.clone())
        .set_agreement_status(authed(
            &met_ig,
            suspend(1, "Suspended pending a data breach investigation"),
        ))
        .await
        .unwrap();
    let took = loop {
        match search(&other_channel, &sw, "safeguarding-children").await {
            Err(status) => {
                assert_eq!(reason(&status).0, "ISA_NOT_ACTIVE", "{status:?}");
                break started.elapsed();
            }
            Ok(()) => {
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "the other replica still shares under a suspended agreement"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    println!("suspension reached the other replica in {took:?}");
    other.shutdown().await.unwrap();
}
