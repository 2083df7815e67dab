//! Two agencies' real identity providers (a police force and a council)
//! behind one running gateway: each agency's people reach only what their
//! agreements allow; hostile tokens are refused over gRPC with the right
//! status and reason, and every refusal is in the ledger with the issuer,
//! the reason and the client's address but never the token; one provider
//! rotates its signing key mid-test without a gateway restart; and when one
//! provider stops, its cached keys serve until their lifetime ends, then
//! its tokens fail `UNAVAILABLE` while the other agency carries on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod identity_kit;

use std::time::{Duration, Instant};

use common::*;
use identity_kit::{SigningKey, claims, unsigned};
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use prost::Message;
use serde_json::json;
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};

async fn list(channel: &Channel, authorization: &str) -> Result<usize, tonic::Status> {
    let mut req = Request::new(pb::ListDatasetsRequest::default());
    let value: MetadataValue<_> = authorization.parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    SharingServiceClient::new(channel.clone())
        .list_datasets(req)
        .await
        .map(|r| r.into_inner().grants.len())
}

async fn list_as(channel: &Channel, token: &str) -> Result<usize, tonic::Status> {
    list(channel, &format!("Bearer {token}")).await
}

fn search(token: &str) -> Request<pb::SearchPersonsRequest> {
    authed(
        token,
        pb::SearchPersonsRequest {
            context: Some(context("safeguarding-children")),
            query: Some(leah()),
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agencies_federate_rotate_keys_and_fail_independently() {
    // The council's keys may be used for 10 s without reaching its provider.
    let mut world = World::start_with(None, |text| {
        text.replace(
            "algorithms = [\"ES256\"]",
            "algorithms = [\"ES256\"]\njwks_cache_seconds = 10",
        )
    })
    .await;
    let channel = world.channel.clone();
    let mut sharing = SharingServiceClient::new(channel.clone());
    let social_worker = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let officer = world.met.token(OFFICER).await.unwrap();

    // Each agency's people reach only what its agreements allow: the
    // council receives the force's records; the force is not a recipient.
    assert_eq!(list_as(&channel, &social_worker).await.unwrap(), 1);
    assert_eq!(list_as(&channel, &officer).await.unwrap(), 0);
    let found = sharing
        .search_persons(search(&social_worker))
        .await
        .unwrap()
        .into_inner();
    assert!(!found.matches.is_empty());
    let err = sharing.search_persons(search(&officer)).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).0.as_str()),
        (Code::PermissionDenied, "AGENCY_NOT_RECIPIENT")
    );
    // RFC 7235: the scheme is case-insensitive.
    assert_eq!(
        list(&channel, &format!("bearer {social_worker}"))
            .await
            .unwrap(),
        1
    );

    // Hostile tokens over gRPC, each refused and each audited.
    let met_key = SigningKey::active(&world.met).await;
    let hackney_key = SigningKey::active(&world.hackney).await;
    let met_claims = claims(&world.met.issuer, "met-police");
    let now = identity_kit::now();
    let mut expired = met_claims.clone();
    expired["exp"] = json!(now - 600);
    let mut wrong_aud = claims(&world.hackney.issuer, "hackney-childrens");
    wrong_aud["aud"] = json!("another-service");
    let rogue = SigningKey::ec("rogue-1");
    let hostile: Vec<(&str, String, Code, &str, String)> = vec![
        (
            "alg_none",
            unsigned(&json!({"alg": "none"}), &met_claims, "c2ln"),
            Code::Unauthenticated,
            "TOKEN_INVALID",
            world.met.issuer.clone(),
        ),
        (
            "expired_signed_by_the_force",
            met_key.sign(&expired),
            Code::Unauthenticated,
            "TOKEN_EXPIRED",
            world.met.issuer.clone(),
        ),
        (
            "wrong_audience_signed_by_the_council",
            hackney_key.sign(&wrong_aud),
            Code::Unauthenticated,
            "TOKEN_INVALID",
            world.hackney.issuer.clone(),
        ),
        (
            "council_key_asserting_the_force",
            hackney_key.sign(&claims(&world.hackney.issuer, "met-police")),
            Code::Unauthenticated,
            "TOKEN_INVALID",
            world.hackney.issuer.clone(),
        ),
        (
            "untrusted_issuer",
            rogue.sign(&claims("https://idp.rogue.example", "met-police")),
            Code::Unauthenticated,
            "ISSUER_UNTRUSTED",
            "untrusted".into(),
        ),
        (
            "garbage",
            "not.a.token".into(),
            Code::Unauthenticated,
            "TOKEN_INVALID",
            "untrusted".into(),
        ),
    ];
    let before = world.gateway.ledger.size().await.unwrap();
    for (name, token, code, expected, _) in &hostile {
        let err = list_as(&channel, token).await.unwrap_err();
        assert_eq!(
            (err.code(), reason(&err).0.as_str()),
            (*code, *expected),
            "{name}: {err:?}"
        );
    }
    // Every refusal is an entry naming the reason, the issuer (only if
    // trusted) and the client, and holding no part of the token.
    for (i, (name, token, _, expected, issuer)) in hostile.iter().enumerate() {
        let stored = world
            .gateway
            .ledger
            .get_by_seq(before + 1 + i as u64)
            .await
            .unwrap()
            .unwrap();
        let entry = pb::AuditEntry::decode(stored.body.as_slice()).unwrap();
        assert_eq!(entry.action, pb::AuditAction::Authenticate as i32, "{name}");
        assert_eq!(entry.outcome, pb::AuditOutcome::Denied as i32, "{name}");
        assert_eq!(entry.error_reason, *expected, "{name}");
        assert_eq!(entry.method, "/liaison.v1.SharingService/ListDatasets");
        assert_eq!(entry.principal.as_ref().unwrap().issuer, *issuer, "{name}");
        assert!(
            entry.client_address.starts_with("127.0.0.1:"),
            "{name}: {}",
            entry.client_address
        );
        let body = String::from_utf8_lossy(&stored.body);
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!body.contains(part), "{name}: the ledger holds the token");
        }
        assert!(
            !body.contains("eyJ"),
            "{name}: the ledger holds base64 JSON"
        );
    }

    // The council rotates its signing key and retires the old one at once.
    // Its new tokens are accepted without a restart, the old ones stop
    // working once the keys are re-read, and the force is untouched.
    world.hackney.rotate().await.unwrap();
    world.hackney.retire().await.unwrap();
    let rotated = Instant::now();
    let fresh_token = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    assert_ne!(
        fresh_token.split('.').next(),
        social_worker.split('.').next(),
        "the new token names the new key"
    );
    let picked_up = loop {
        match list_as(&channel, &fresh_token).await {
            Ok(n) => {
                assert_eq!(n, 1);
                break Instant::now();
            }
            Err(e) => assert_eq!(reason(&e).0, "TOKEN_INVALID", "{e:?}"),
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(60),
            "rotation not picked up"
        );
        assert_eq!(list_as(&channel, &officer).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let err = list_as(&channel, &social_worker).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).0.as_str()),
        (Code::Unauthenticated, "TOKEN_INVALID"),
        "a retired key must stop verifying once the keys are re-read"
    );
    sharing.search_persons(search(&fresh_token)).await.unwrap();

    // The council's provider stops. Its cached keys serve until the cache
    // lifetime ends (10 s after the last fetch), then its tokens fail
    // UNAVAILABLE; the force carries on throughout.
    world.hackney.stop().await;
    let mut served_until = picked_up;
    let unavailable_at = loop {
        match list_as(&channel, &fresh_token).await {
            Ok(_) => served_until = Instant::now(),
            Err(e) => {
                assert_eq!(
                    (e.code(), reason(&e).0.as_str()),
                    (Code::Unavailable, "ISSUER_UNAVAILABLE"),
                    "{e:?}"
                );
                break Instant::now();
            }
        }
        assert_eq!(list_as(&channel, &officer).await.unwrap(), 0);
        assert!(picked_up.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let served = served_until - picked_up;
    let failed = unavailable_at - picked_up;
    println!(
        "rotation picked up after {:?}; council keys served {served:?} into the outage, \
         unavailable after {failed:?}",
        picked_up - rotated
    );
    assert!(served >= Duration::from_secs(8), "{served:?}");
    assert!(failed <= Duration::from_secs(13), "{failed:?}");
    assert_eq!(list_as(&channel, &officer).await.unwrap(), 0);
    let err = sharing.search_persons(search(&officer)).await.unwrap_err();
    assert_eq!(reason(&err).0, "AGENCY_NOT_RECIPIENT");
    // The outage itself is audited against the council's issuer.
    let last = world.gateway.ledger.size().await.unwrap();
    let mut found = false;
    for seq in (before + 1..=last).rev() {
        let stored = world.gateway.ledger.get_by_seq(seq).await.unwrap().unwrap();
        let entry = pb::AuditEntry::decode(stored.body.as_slice()).unwrap();
        if entry.error_reason == "ISSUER_UNAVAILABLE" {
            assert_eq!(entry.principal.unwrap().issuer, world.hackney.issuer);
            found = true;
            break;
        }
    }
    assert!(found, "the outage refusal is in the ledger");
    world.gateway.shutdown().await.unwrap();
}
