//! The trust registry through `AdminService`: an agency's identity
//! administrators onboard, replace, suspend and remove its own issuers at
//! run time, never another agency's; each change is a version recorded in
//! the ledger before it takes effect; authentication sees it on this
//! replica when the call returns and on another replica on the same
//! PostgreSQL within two seconds; the configuration file's issuers are the
//! baseline and a restart does not undo changes made since.

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
use serde_json::json;
use tokio::net::TcpListener;
use tonic::{Code, transport::Channel};

/// A system at a second Hackney provider (its schools' identity service),
/// which the gateway's configuration does not list.
const SCHOOLS_WORKER: (&str, &str) = ("hackney-schools-system", "test-fixture-secret-schools");

const WHY: &str = "Hackney schools' safeguarding leads join the MASH";

async fn schools_provider() -> Idp {
    Idp::start(
        "hackney-childrens",
        "ES256",
        json!([client(
            SCHOOLS_WORKER.0,
            SCHOOLS_WORKER.1,
            "Kim Baker",
            &["social-worker"]
        )]),
    )
    .await
    .unwrap()
}

fn issuer_toml(url: &str, agency: &str) -> String {
    format!(
        r#"[[issuer]]
url = "{url}"
agency = "{agency}"
audiences = ["liaison"]
algorithms = ["ES256"]
allow_insecure_http = true
"#
    )
}

fn propose(toml: String, base_version: u32) -> pb::ProposeIssuerRequest {
    pb::ProposeIssuerRequest {
        issuer_toml: toml,
        base_version,
        justification: WHY.into(),
    }
}

fn set_status(
    url: &str,
    base_version: u32,
    status: pb::IssuerStatus,
) -> pb::SetIssuerStatusRequest {
    pb::SetIssuerStatusRequest {
        issuer_url: url.into(),
        base_version,
        status: status as i32,
        justification: "Signing key reported compromised by the provider".into(),
    }
}

/// Any authenticated call: it passes exactly when the token is accepted.
async fn list_datasets(channel: &Channel, token: &str) -> Result<(), tonic::Status> {
    SharingServiceClient::new(channel.clone())
        .list_datasets(authed(token, pb::ListDatasetsRequest::default()))
        .await
        .map(|_| ())
}

async fn search(channel: &Channel, token: &str) -> Result<(), tonic::Status> {
    SharingServiceClient::new(channel.clone())
        .search_persons(authed(
            token,
            pb::SearchPersonsRequest {
                context: Some(context("safeguarding-children")),
                query: Some(leah()),
                ..Default::default()
            },
        ))
        .await
        .map(|_| ())
}

fn assert_untrusted(result: Result<(), tonic::Status>) {
    let status = result.expect_err("the token must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status).0, "ISSUER_UNTRUSTED", "{status:?}");
}

async fn issuer_entries(ledger: &liaison_ledger::Ledger) -> Vec<pb::AuditEntry> {
    use prost::Message as _;
    let size = ledger.size().await.unwrap();
    let mut out = Vec::new();
    for seq in 1..=size {
        let stored = ledger.get_by_seq(seq).await.unwrap().unwrap();
        let entry = pb::AuditEntry::decode(stored.body.as_slice()).unwrap();
        if entry.action == pb::AuditAction::Administer as i32 && entry.target.starts_with("issuer:")
        {
            out.push(entry);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agencys_identity_admin_onboards_and_suspends_its_own_issuer_at_run_time() {
    let world = World::start(None).await;
    let schools = schools_provider().await;
    let url = schools.issuer.clone();
    let schools_token = schools.token(SCHOOLS_WORKER).await.unwrap();
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let officer = world.met.token(OFFICER).await.unwrap();
    let hackney_ig = world.hackney.token(HACKNEY_GOVERNANCE).await.unwrap();
    let hackney_idam = world.hackney.token(HACKNEY_IDENTITY_ADMIN).await.unwrap();
    let met_idam = world.met.token(MET_IDENTITY_ADMIN).await.unwrap();
    let mut admin = AdminServiceClient::new(world.channel.clone());

    assert_untrusted(list_datasets(&world.channel, &schools_token).await);

    // The file's issuers are version 1 in the registry, imported and audited.
    let issuers = admin
        .list_issuers(authed(&sw, pb::ListIssuersRequest {}))
        .await
        .unwrap()
        .into_inner()
        .issuers;
    assert_eq!(issuers.len(), 2);
    for issuer in &issuers {
        assert_eq!(issuer.version, 1, "{issuer:?}");
        assert_eq!(issuer.status, pb::IssuerStatus::Active as i32);
    }
    let met_versions = admin
        .list_issuer_versions(authed(
            &sw,
            pb::ListIssuerVersionsRequest {
                issuer_url: world.met.issuer.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(met_versions.len(), 1);
    assert_eq!(met_versions[0].changed_by, "config-file");
    assert!(met_versions[0].content_hash.starts_with("sha256:"));
    assert!(met_versions[0].issuer_toml.contains("leeway_seconds = 30"));

    // Refusals: no role, another role, another agency, a stale base, and
    // terms the configuration file could not hold either.
    let refused = admin
        .propose_issuer(authed(
            &sw,
            propose(issuer_toml(&url, "hackney-childrens"), 0),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(reason(&refused).0, "FUNCTION_NOT_PERMITTED");
    assert!(refused.message().contains("identity-admin"), "{refused:?}");
    let refused = admin
        .propose_issuer(authed(
            &hackney_ig,
            propose(issuer_toml(&url, "hackney-childrens"), 0),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = admin
        .propose_issuer(authed(
            &met_idam,
            propose(issuer_toml(&url, "hackney-childrens"), 0),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("hackney-childrens"),
        "{refused:?}"
    );
    let refused = admin
        .propose_issuer(authed(
            &hackney_idam,
            propose(issuer_toml(&url, "hackney-childrens"), 1),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert_eq!(reason(&refused).0, "VERSION_CONFLICT");
    let invalid = issuer_toml(&url, "hackney-childrens").replace(r#"["ES256"]"#, r#"["HS256"]"#)
        + "leeway_seconds = 300\n";
    let refused = admin
        .propose_issuer(authed(&hackney_idam, propose(invalid, 0)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(
        reason(&refused),
        ("INVALID_FIELD".into(), vec!["issuer_toml".into()])
    );
    assert!(
        refused.message().contains("`HS256` is HMAC")
            && refused.message().contains("leeway of 300s"),
        "{refused:?}"
    );
    let insecure = issuer_toml("http://idp.schools.example", "hackney-childrens");
    let refused = admin
        .propose_issuer(authed(&hackney_idam, propose(insecure, 0)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("must use https"), "{refused:?}");
    assert_untrusted(list_datasets(&world.channel, &schools_token).await);

    // Onboarding: the new issuer's tokens are accepted when the call
    // returns, with no restart, and its people share under the agreements
    // their agency is party to.
    let onboarded = admin
        .propose_issuer(authed(
            &hackney_idam,
            propose(issuer_toml(&url, "hackney-childrens"), 0),
        ))
        .await
        .unwrap()
        .into_inner();
    let issuer = onboarded.issuer.unwrap();
    assert_eq!(
        (issuer.version, issuer.status),
        (1, pb::IssuerStatus::Active as i32)
    );
    search(&world.channel, &schools_token).await.unwrap();

    // Nobody can move the issuer to another agency, nor touch another
    // agency's issuer.
    for (token, who) in [(&hackney_idam, "hackney"), (&met_idam, "met")] {
        let refused = admin
            .propose_issuer(authed(token, propose(issuer_toml(&url, "met-police"), 1)))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{who}: {refused:?}");
    }
    let refused = admin
        .set_issuer_status(authed(
            &met_idam,
            set_status(&url, 1, pb::IssuerStatus::Suspended),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    search(&world.channel, &schools_token).await.unwrap();

    // Suspension: refused at once, other issuers unaffected.
    let suspended = admin
        .set_issuer_status(authed(
            &hackney_idam,
            set_status(&url, 1, pb::IssuerStatus::Suspended),
        ))
        .await
        .unwrap()
        .into_inner();
    let receipt = suspended.receipt.unwrap();
    assert_eq!(suspended.issuer.unwrap().version, 2);
    assert_untrusted(list_datasets(&world.channel, &schools_token).await);
    list_datasets(&world.channel, &sw).await.unwrap();
    list_datasets(&world.channel, &officer).await.unwrap();
    let refused = admin
        .set_issuer_status(authed(
            &hackney_idam,
            set_status(&url, 1, pb::IssuerStatus::Active),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");

    // The history, tied to the ledger; refusals are in the ledger too.
    let versions = admin
        .list_issuer_versions(authed(
            &sw,
            pb::ListIssuerVersionsRequest {
                issuer_url: url.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .versions;
    let statuses: Vec<_> = versions
        .iter()
        .map(|v| {
            let i = v.issuer.as_ref().unwrap();
            (i.version, i.status)
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (1, pb::IssuerStatus::Active as i32),
            (2, pb::IssuerStatus::Suspended as i32)
        ]
    );
    assert_eq!(versions[1].audit_entry_id, receipt.entry_id);
    assert_eq!(versions[0].content_hash, versions[1].content_hash);
    assert_eq!(versions[1].changed_by_agency_id, "hackney-childrens");
    let entries = issuer_entries(&world.gateway.ledger).await;
    let recorded: Vec<_> = entries
        .iter()
        .filter(|e| e.outcome == pb::AuditOutcome::Recorded as i32)
        .map(|e| e.target.clone())
        .collect();
    let mut expected = vec![
        format!("issuer:{}@1", world.met.issuer),
        format!("issuer:{}@1", world.hackney.issuer),
    ];
    expected.sort();
    expected.extend([format!("issuer:{url}@1"), format!("issuer:{url}@2")]);
    let mut imported = recorded[..2].to_vec();
    imported.sort();
    imported.extend(recorded[2..].iter().cloned());
    assert_eq!(imported, expected);
    assert!(entries.iter().any(|e| e.entry_id == receipt.entry_id));
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
    let denied = |agency: &str| (agency.to_owned(), "FUNCTION_NOT_PERMITTED".to_owned());
    let invalid = ("hackney-childrens".to_owned(), "INVALID_FIELD".to_owned());
    let conflict = (
        "hackney-childrens".to_owned(),
        "VERSION_CONFLICT".to_owned(),
    );
    assert_eq!(
        refusals,
        vec![
            denied("hackney-childrens"),
            denied("hackney-childrens"),
            denied("met-police"),
            conflict.clone(),
            invalid.clone(),
            invalid,
            denied("hackney-childrens"),
            denied("met-police"),
            denied("met-police"),
            conflict,
        ]
    );
    assert!(
        entries
            .iter()
            .filter(|e| e.outcome == pb::AuditOutcome::Denied as i32)
            .all(|e| e.target == format!("issuer:{url}")),
        "{entries:?}"
    );

    // A restart keeps the registry: the file's issuers are not imported
    // again, and the suspension holds.
    let path = world.config_path();
    let World {
        met,
        hackney,
        gateway,
        dir,
        ..
    } = world;
    gateway.shutdown().await.unwrap();
    let gateway = server::start(
        Config::load(&path).unwrap(),
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
    assert_untrusted(list_datasets(&channel, &schools_token).await);
    list_datasets(&channel, &sw).await.unwrap();
    let issuers = AdminServiceClient::new(channel.clone())
        .list_issuers(authed(&sw, pb::ListIssuersRequest {}))
        .await
        .unwrap()
        .into_inner()
        .issuers;
    let mut seen: Vec<_> = issuers
        .iter()
        .map(|i| (i.issuer_url.clone(), i.version, i.status))
        .collect();
    seen.sort();
    let mut expected = vec![
        (met.issuer.clone(), 1, pb::IssuerStatus::Active as i32),
        (hackney.issuer.clone(), 1, pb::IssuerStatus::Active as i32),
        (url.clone(), 2, pb::IssuerStatus::Suspended as i32),
    ];
    expected.sort();
    assert_eq!(seen, expected);

    // The identity admin can suspend the issuer its own token came from:
    // deliberate, audited, and in force for that very token at once.
    let own = AdminServiceClient::new(channel.clone())
        .set_issuer_status(authed(
            &hackney_idam,
            set_status(&hackney.issuer, 1, pb::IssuerStatus::Suspended),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.issuer.unwrap().version, 2);
    assert_untrusted(list_datasets(&channel, &hackney_idam).await);
    list_datasets(&channel, &officer).await.unwrap();
    gateway.shutdown().await.unwrap();
    drop((met, hackney, dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_change_through_one_replica_reaches_another_within_two_seconds() {
    let (db_url, _db) = fresh_postgres_db().await;
    let world = World::start(Some(db_url)).await;
    let schools = schools_provider().await;
    let url = schools.issuer.clone();
    let schools_token = schools.token(SCHOOLS_WORKER).await.unwrap();
    let hackney_idam = world.hackney.token(HACKNEY_IDENTITY_ADMIN).await.unwrap();

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
    assert_untrusted(list_datasets(&other_channel, &schools_token).await);

    let mut admin = AdminServiceClient::new(world.channel.clone());
    let started = Instant::now();
    admin
        .propose_issuer(authed(
            &hackney_idam,
            propose(issuer_toml(&url, "hackney-childrens"), 0),
        ))
        .await
        .unwrap();
    let onboarded = loop {
        match list_datasets(&other_channel, &schools_token).await {
            Ok(()) => break started.elapsed(),
            Err(status) => {
                assert_eq!(reason(&status).0, "ISSUER_UNTRUSTED", "{status:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "the other replica does not yet trust the onboarded issuer"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    let started = Instant::now();
    admin
        .set_issuer_status(authed(
            &hackney_idam,
            set_status(&url, 1, pb::IssuerStatus::Removed),
        ))
        .await
        .unwrap();
    let removed = loop {
        match list_datasets(&other_channel, &schools_token).await {
            Err(status) => {
                assert_eq!(reason(&status).0, "ISSUER_UNTRUSTED", "{status:?}");
                break started.elapsed();
            }
            Ok(()) => {
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "the other replica still trusts a removed issuer"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    println!("onboarding reached the other replica in {onboarded:?}, removal in {removed:?}");
    other.shutdown().await.unwrap();
}
