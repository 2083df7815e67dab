//! Sensitivity markers end to end: the demo policy's marker rule withholds
//! every record the synthetic police system marks `witness-protection` from
//! a partner, in reads and in subscription notifications alike; the audit
//! entry counts what was withheld and names the rule; and where no rule
//! applies the same record is released.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use prost::Message;
use sqlx::Connection;

const RULE: &str = "no-witness-protection";
const MARKER: &str = "witness-protection";

/// A person with a protectively marked occurrence link in the synthetic
/// data: their person id and the marked record's id.
async fn marked_person(rms: &mut sqlx::SqliteConnection) -> (i64, String, String) {
    let (nom_id, occ_no): (i64, String) = sqlx::query_as(
        "SELECT NOM_ID, OCC_NO FROM OCC_NOM_LINK WHERE PROT_MKR = 'WP' ORDER BY NOM_ID LIMIT 1",
    )
    .fetch_one(rms)
    .await
    .expect("the synthetic data marks some witnesses");
    (
        nom_id,
        format!("{DATASET}:{nom_id}"),
        format!("{DATASET}:{occ_no}/{nom_id}"),
    )
}

async fn read(
    world: &World,
    token: &str,
    person_id: &str,
    purpose: &str,
) -> pb::GetRecordsResponse {
    SharingServiceClient::new(world.channel.clone())
        .get_records(authed(
            token,
            pb::GetRecordsRequest {
                context: Some(context(purpose)),
                person_id: person_id.to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn entry(world: &World, receipt: &pb::Receipt) -> pb::AuditEntry {
    let stored = world
        .gateway
        .ledger
        .get(&receipt.entry_id)
        .await
        .unwrap()
        .unwrap();
    pb::AuditEntry::decode(stored.body.as_slice()).unwrap()
}

fn ids(records: &[pb::Record]) -> Vec<String> {
    records.iter().map(|r| r.record_id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_protection_records_are_withheld_from_partners_audited_and_released_where_no_rule_applies()
 {
    let world = World::start_with(None, |text| {
        format!("{text}\n[subscriptions]\npoll_interval_ms = 50\nheartbeat_seconds = 1\n")
    })
    .await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let rms_path = world.dir.path().join("police-rms.db");
    let mut rms = sqlx::SqliteConnection::connect(&format!("sqlite://{}", rms_path.display()))
        .await
        .unwrap();
    let (nom_id, person_id, marked) = marked_person(&mut rms).await;

    // The mapping carries the marking through as a marker, and the demo's
    // rule withholds the record from the partner; the person still comes.
    let answer = read(&world, &sw, &person_id, "safeguarding-children").await;
    assert!(answer.person.is_some(), "{answer:?}");
    assert!(
        !ids(&answer.records).contains(&marked),
        "a witness-protection record reached a partner: {:?}",
        answer.records
    );
    let audited = entry(&world, answer.receipt.as_ref().unwrap()).await;
    assert!(audited.allowed);
    assert_eq!(
        audited.withheld,
        vec![pb::WithheldRecords {
            dataset_id: DATASET.into(),
            marker: MARKER.into(),
            rule_id: RULE.into(),
            records: 1,
        }]
    );
    for disclosure in &audited.disclosures {
        assert!(!disclosure.record_ids.contains(&marked));
    }

    // A subscription never delivers it either: a change to the person sends
    // their releasable records, and the batch's entry counts the withheld one.
    let mut stream = SharingServiceClient::new(world.channel.clone())
        .subscribe(authed(
            &sw,
            pb::SubscribeRequest {
                context: Some(context("safeguarding-children")),
                person_ids: vec![person_id.clone()],
                resume_cursor: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let risk_id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(RISK_ID), 0) + 1 FROM DASH_RISK")
        .fetch_one(&mut rms)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO DASH_RISK (RISK_ID, NOM_ID, RISK_LVL, ASSESS_DT, NOTES) \
         VALUES (?, ?, 'H', '05/12/2026 10:30', 'notes')",
    )
    .bind(risk_id)
    .bind(nom_id)
    .execute(&mut rms)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO CHANGE_LOG (CHANGE_SEQ, NOM_ID, CHANGED_AT) \
         SELECT COALESCE(MAX(CHANGE_SEQ), 0) + 1, ?, '20261205103000' FROM CHANGE_LOG",
    )
    .bind(nom_id)
    .execute(&mut rms)
    .await
    .unwrap();
    let assessment = format!("{DATASET}:DASH_RISK/{risk_id}");
    let started = Instant::now();
    let mut delivered = Vec::new();
    let mut receipt = None;
    while !delivered.contains(&assessment) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no notification within 20 s"
        );
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .expect("the stream is open");
        if let Some(record) = message.record {
            assert_ne!(record.record_id, marked, "a marked record was notified");
            delivered.push(record.record_id);
            receipt = message.receipt;
        }
    }
    let batch = entry(&world, receipt.as_ref().unwrap()).await;
    assert_eq!(batch.action, pb::AuditAction::Subscribe as i32);
    assert_eq!(batch.withheld.len(), 1, "{batch:?}");
    assert_eq!(batch.withheld[0].rule_id, RULE);
    assert_eq!(batch.withheld[0].records, 1);
    drop(stream);

    // Narrow the rule to missing-person enquiries: the record is released for
    // safeguarding, where no rule applies, and still withheld for the other.
    let policy = world.dir.path().join("policy.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let narrowed = text.replacen(
        "purpose = \"*\"\naction = \"*\"\nmarker",
        "purpose = \"missing-person\"\naction = \"*\"\nmarker",
        1,
    );
    assert_ne!(narrowed, text, "the demo policy's marker rule moved");
    std::fs::write(&policy, narrowed).unwrap();
    let started = Instant::now();
    let released = loop {
        let answer = read(&world, &sw, &person_id, "safeguarding-children").await;
        if ids(&answer.records).contains(&marked) {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the narrowed rule never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let record = released
        .records
        .iter()
        .find(|r| r.record_id == marked)
        .unwrap();
    assert!(record.sensitivity_markers.contains(&MARKER.to_owned()));
    let audited = entry(&world, released.receipt.as_ref().unwrap()).await;
    assert!(audited.withheld.is_empty(), "{audited:?}");
    let elsewhere = read(&world, &sw, &person_id, "missing-person").await;
    assert!(!ids(&elsewhere.records).contains(&marked));
    assert_eq!(
        entry(&world, elsewhere.receipt.as_ref().unwrap())
            .await
            .withheld[0]
            .rule_id,
        RULE
    );
    world.gateway.shutdown().await.unwrap();
}
