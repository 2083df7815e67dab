//! Break-glass end to end: the shipped demo agreement lets a Hackney team
//! manager invoke emergency access to a few more police fields, and no one
//! else. An allowed invocation widens the fields, is marked in the ledger and
//! raises one webhook alert; a refused or malformed one is audited too; and a
//! webhook that is down never fails the share, only counts the lost alert.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use axum::{Json, Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use common::*;
use liaison_gateway::alerts::BreakGlassAlert;
use liaison_proto::v1::{
    self as pb, oversight_service_client::OversightServiceClient,
    sharing_service_client::SharingServiceClient,
};
use pb::record::Body;
use tokio::sync::Mutex;
use tonic::Code;

const REASON: &str = "Child missing overnight, officers believe she is with a high-risk adult";
const WEBHOOK_TOKEN: &str = "test-fixture-webhook-token";

/// One POST as received: its `Authorization` header and its body.
type Received = (Option<String>, BreakGlassAlert);

/// A DPO's alert endpoint: records what it receives, and answers 503 while
/// `up` is false.
#[derive(Clone, Default)]
struct Receiver {
    up: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Received>>>,
    refused: Arc<AtomicUsize>,
}

async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    Json(alert): Json<BreakGlassAlert>,
) -> StatusCode {
    if !r.up.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    r.received.lock().await.push((auth, alert));
    StatusCode::NO_CONTENT
}

/// The value of the sample line `series` (name and labels exactly), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn incidents(records: &[pb::Record]) -> Vec<&pb::Incident> {
    records
        .iter()
        .filter_map(|r| match r.body.as_ref() {
            Some(Body::Incident(i)) => Some(i),
            _ => None,
        })
        .collect()
}

fn invoking(purpose: &str, reason: &str) -> pb::ShareContext {
    pb::ShareContext {
        break_glass: Some(pb::BreakGlass {
            reason: reason.into(),
        }),
        ..context(purpose)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_widens_only_where_allowed_is_audited_and_alerts_a_dpo() {
    let receiver = Receiver::default();
    receiver.up.store(true, Ordering::SeqCst);
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook_listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(hook_listener, app).await.unwrap() });

    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("webhook.token");
    std::fs::write(&token_file, format!("{WEBHOOK_TOKEN}\n")).unwrap();
    let admin = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let world = World::start_with(None, |text| {
        format!(
            "{text}\n[alerts]\nwebhook_url = \"http://{hook_addr}/hook\"\ntoken_file = {:?}\n\
             [telemetry]\nadmin_listen = \"{admin}\"\n",
            token_file.display().to_string()
        )
    })
    .await;
    let tm = world.hackney.token(TEAM_MANAGER).await.unwrap();
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let dpo = world.hackney.token(COUNCIL_DPO).await.unwrap();
    let mut sharing = SharingServiceClient::new(world.channel.clone());
    let mut oversight = OversightServiceClient::new(world.channel.clone());
    let http = reqwest::Client::new();
    let metrics = || async {
        http.get(format!("http://{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    let found = sharing
        .search_persons(authed(
            &tm,
            pb::SearchPersonsRequest {
                context: Some(context("safeguarding-children")),
                query: Some(leah()),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let person_id = found.matches[0].person.as_ref().unwrap().person_id.clone();
    let read = |ctx: pb::ShareContext, token: String| {
        let mut sharing = sharing.clone();
        let person_id = person_id.clone();
        async move {
            sharing
                .get_records(authed(
                    &token,
                    pb::GetRecordsRequest {
                        context: Some(ctx),
                        person_id,
                        kinds: vec![],
                    },
                ))
                .await
        }
    };

    // Not invoked: the team manager's normal fields, no police reference or
    // location, no alert.
    let normal = read(context("safeguarding-children"), tm.clone())
        .await
        .unwrap()
        .into_inner();
    let normal_incidents = incidents(&normal.records);
    assert!(!normal_incidents.is_empty(), "{:?}", normal.records);
    for i in &normal_incidents {
        assert!(i.reference.is_empty() && i.location.is_empty(), "{i:?}");
    }

    // Invoked by the team manager: the wider fields, the ledger marks it,
    // and the DPO's webhook hears of it once.
    let wide = read(invoking("safeguarding-children", REASON), tm.clone())
        .await
        .unwrap()
        .into_inner();
    let receipt = wide.receipt.clone().unwrap();
    let wide_incidents = incidents(&wide.records);
    assert_eq!(wide_incidents.len(), normal_incidents.len());
    assert!(
        wide_incidents.iter().all(|i| !i.reference.is_empty()),
        "{wide_incidents:?}"
    );
    for (w, n) in wide_incidents.iter().zip(&normal_incidents) {
        // Everything else is as before: break-glass only adds.
        assert_eq!(w.category, n.category);
        assert_eq!(w.summary, n.summary);
    }
    let entry = oversight
        .get_audit_entry(authed(
            &dpo,
            pb::GetAuditEntryRequest {
                entry_id: receipt.entry_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap()
        .entry
        .unwrap();
    assert_eq!(
        entry.break_glass,
        Some(pb::BreakGlass {
            reason: REASON.into()
        })
    );
    assert!(entry.allowed);
    assert_eq!(entry.outcome, pb::AuditOutcome::Disclosed as i32);
    assert!(
        entry
            .matched_rules
            .iter()
            .any(|r| r.starts_with("break-glass:met-hackney-children@")),
        "{:?}",
        entry.matched_rules
    );
    assert!(
        entry.disclosures[0]
            .fields
            .contains(&"incident.reference".to_owned()),
        "{:?}",
        entry.disclosures[0].fields
    );

    let alert = {
        let mut waited = 0;
        loop {
            if let Some(first) = receiver.received.lock().await.first().cloned() {
                break first;
            }
            waited += 1;
            assert!(waited < 200, "no alert reached the webhook");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    assert_eq!(
        alert.0.as_deref(),
        Some(&*format!("Bearer {WEBHOOK_TOKEN}"))
    );
    let alert = alert.1;
    assert_eq!(alert.kind, "break_glass");
    assert_eq!(alert.entry_id, receipt.entry_id);
    assert_eq!(alert.sequence, receipt.sequence);
    assert_eq!(alert.agency, "hackney-childrens");
    assert_eq!(alert.isa_id, ISA);
    assert_eq!(alert.dataset_ids, vec![DATASET.to_owned()]);
    assert_eq!(
        alert.console_path,
        format!("/console/entries/{}", receipt.entry_id)
    );
    assert!(!alert.subject.is_empty());
    assert!(alert.recorded_at.starts_with("20"), "{}", alert.recorded_at);
    let text = metrics().await;
    assert_eq!(
        sample(
            &text,
            r#"liaison_break_glass_total{agency="hackney-childrens"}"#
        ),
        Some(1.0),
        "{text}"
    );

    // Invoked by a social worker, whom the agreement does not allow:
    // refused with its own reason, and the attempt is audited.
    let err = read(invoking("safeguarding-children", REASON), sw.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err).0, "BREAK_GLASS_NOT_PERMITTED");
    assert!(err.message().contains("break-glass"), "{}", err.message());

    // Invoked without a real reason: refused before policy, naming the field.
    let err = read(
        invoking("safeguarding-children", "   it is urgent!!    "),
        tm.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        reason(&err),
        (
            "BREAK_GLASS_REASON_MISSING".into(),
            vec!["context.break_glass.reason".into()]
        )
    );

    // Invoked for a purpose the agreement does not permit: break-glass does
    // not lift that denial.
    let err = read(invoking("crime-prevention", REASON), tm.clone())
        .await
        .unwrap_err();
    assert_eq!(reason(&err).0, "PURPOSE_NOT_PERMITTED");

    let entries: Vec<pb::AuditEntry> = oversight
        .list_audit_entries(authed(&dpo, pb::ListAuditEntriesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.entry.unwrap())
        .collect();
    let attempts: Vec<(i32, &str, &str)> = entries
        .iter()
        .filter_map(|e| {
            let bg = e.break_glass.as_ref()?;
            Some((e.outcome, e.error_reason.as_str(), bg.reason.as_str()))
        })
        .collect();
    for expected in [
        (pb::AuditOutcome::Disclosed as i32, "", REASON),
        (
            pb::AuditOutcome::Denied as i32,
            "BREAK_GLASS_NOT_PERMITTED",
            REASON,
        ),
        (
            pb::AuditOutcome::Invalid as i32,
            "BREAK_GLASS_REASON_MISSING",
            "   it is urgent!!    ",
        ),
        (
            pb::AuditOutcome::Denied as i32,
            "PURPOSE_NOT_PERMITTED",
            REASON,
        ),
    ] {
        assert!(attempts.contains(&expected), "{expected:?} in {attempts:?}");
    }
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    // Normal shares carry no break-glass mark.
    assert!(entries.iter().any(|e| e.break_glass.is_none() && e.allowed));
    // Only the allowed invocation alerted.
    assert_eq!(receiver.received.lock().await.len(), 1);

    // The webhook goes down: the share still succeeds, and once the
    // retries are spent the lost alert is counted.
    receiver.up.store(false, Ordering::SeqCst);
    let during = read(invoking("safeguarding-children", REASON), tm.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!incidents(&during.records).is_empty());
    let dropped = r#"liaison_alerts_dropped_total{reason="undeliverable"}"#;
    let mut waited = 0;
    let text = loop {
        let text = metrics().await;
        if sample(&text, dropped).is_some() {
            break text;
        }
        waited += 1;
        assert!(waited < 120, "the lost alert was never counted: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(sample(&text, dropped), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"liaison_break_glass_total{agency="hackney-childrens"}"#
        ),
        Some(2.0),
        "{text}"
    );
    let attempts = receiver.refused.load(Ordering::SeqCst);
    assert_eq!(
        attempts,
        liaison_gateway::alerts::MAX_ATTEMPTS,
        "every attempt was made, and no more"
    );
    assert_eq!(receiver.received.lock().await.len(), 1);
    world.gateway.shutdown().await.unwrap();
}
