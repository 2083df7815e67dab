//! `Subscribe` end to end: a change written to the synthetic police records
//! system reaches a Hackney social worker minimised to the agreement and
//! audited before it is sent; a subscriber that reconnects with its cursor
//! misses nothing; suspending the agreement, a failing ledger and a forged
//! cursor each end or refuse the stream with their published reason.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use liaison_proto::v1 as pb;
use prost::{
    Message,
    bytes::{Buf, BufMut},
};
use sqlx::Connection;
use tonic::{
    Code, Status, Streaming,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

const LEAH: &str = "met-police.records:100001";
const KERRY_NOM_ID: i64 = 100_002;
const LEAH_NOM_ID: i64 = 100_001;
/// Narrative notes no social worker may see (`risk_assessment.summary`).
const SECRET: &str = "NARRATIVE-OUTSIDE-THE-AGREEMENT";

/// Reads the stream as the bytes that crossed the wire, so a test can check
/// a withheld value is absent from them, not only from a decoded message.
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[derive(Debug)]
struct RawEncoder;

#[derive(Debug)]
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = pb::SubscribeRequest;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = pb::SubscribeRequest;
    type Error = Status;
    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.encode_to_vec());
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

struct Subscriber {
    stream: Streaming<Vec<u8>>,
}

impl Subscriber {
    async fn open(world: &World, token: &str, resume_cursor: &str) -> Result<Self, Status> {
        let mut grpc = tonic::client::Grpc::new(world.channel.clone());
        grpc.ready().await.unwrap();
        let request = authed(
            token,
            pb::SubscribeRequest {
                context: Some(context("safeguarding-children")),
                person_ids: vec![LEAH.into()],
                resume_cursor: resume_cursor.into(),
            },
        );
        let path = http::uri::PathAndQuery::from_static("/liaison.v1.SharingService/Subscribe");
        let stream = grpc
            .server_streaming(request, path, RawCodec)
            .await?
            .into_inner();
        Ok(Self { stream })
    }

    /// The next message as raw bytes and decoded, waiting at most 10 s.
    async fn next(&mut self) -> Result<(Vec<u8>, pb::SubscribeResponse), Status> {
        let raw = tokio::time::timeout(Duration::from_secs(10), self.stream.message())
            .await
            .expect("a message within 10 s")?
            .expect("the stream is still open");
        let decoded = pb::SubscribeResponse::decode(raw.as_slice()).unwrap();
        Ok((raw, decoded))
    }

    /// Reads records until `record_id` arrives, skipping heartbeats.
    async fn batch_until(&mut self, record_id: &str) -> Vec<(Vec<u8>, pb::SubscribeResponse)> {
        let mut out = Vec::new();
        loop {
            let (raw, message) = self.next_record().await;
            let done = message.record.as_ref().unwrap().record_id == record_id;
            out.push((raw, message));
            if done {
                return out;
            }
        }
    }

    /// Reads until a record arrives, skipping heartbeats, for at most 15 s.
    async fn next_record(&mut self) -> (Vec<u8>, pb::SubscribeResponse) {
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "no record within 15 s"
            );
            let (raw, message) = self.next().await.unwrap();
            assert!(!message.cursor.is_empty(), "every message carries a cursor");
            if message.record.is_some() {
                return (raw, message);
            }
            assert!(message.receipt.is_none(), "a heartbeat discloses nothing");
        }
    }
}

/// The synthetic RMS, written as the legacy system would: a new risk
/// assessment and a row in its change log.
struct Rms(sqlx::SqliteConnection);

impl Rms {
    async fn open(world: &World) -> Self {
        let path = world.dir.path().join("police-rms.db");
        Self(
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap(),
        )
    }

    /// Adds a DASH assessment for `nom_id` and logs the change; returns the
    /// record id the gateway gives it.
    async fn assess(&mut self, nom_id: i64, level: &str, notes: &str) -> String {
        let risk_id: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(RISK_ID), 0) + 1 FROM DASH_RISK")
                .fetch_one(&mut self.0)
                .await
                .unwrap();
        sqlx::query(
            "INSERT INTO DASH_RISK (RISK_ID, NOM_ID, RISK_LVL, ASSESS_DT, NOTES) \
             VALUES (?, ?, ?, '05/12/2026 10:30', ?)",
        )
        .bind(risk_id)
        .bind(nom_id)
        .bind(level)
        .bind(notes)
        .execute(&mut self.0)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO CHANGE_LOG (CHANGE_SEQ, NOM_ID, CHANGED_AT) \
             SELECT COALESCE(MAX(CHANGE_SEQ), 0) + 1, ?, '20261205103000' FROM CHANGE_LOG",
        )
        .bind(nom_id)
        .execute(&mut self.0)
        .await
        .unwrap();
        format!("met-police.records:DASH_RISK/{risk_id}")
    }
}

async fn start(tweak: &str) -> World {
    let tweak = tweak.to_owned();
    World::start_with(None, move |text| {
        format!("{text}\n[subscriptions]\npoll_interval_ms = 50\nheartbeat_seconds = 1\n{tweak}\n")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_arrives_minimised_and_audited_and_a_resumed_subscriber_misses_nothing() {
    let world = start("").await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let mut rms = Rms::open(&world).await;

    let mut subscriber = Subscriber::open(&world, &sw, "").await.unwrap();
    let (_, opened) = subscriber.next().await.unwrap();
    assert!(opened.record.is_none() && !opened.cursor.is_empty());

    // A change to someone not followed is never sent; a change to Leah is.
    // The first notification about her on a stream carries every record of
    // hers the agreement releases, as one audited batch.
    rms.assess(KERRY_NOM_ID, "H", "Kerry's assessment").await;
    let first = rms.assess(LEAH_NOM_ID, "H", SECRET).await;
    let batch = subscriber.batch_until(&first).await;
    assert!(batch.len() > 1, "{batch:?}");
    let receipt = batch[0].1.receipt.clone().unwrap();
    for (raw, message) in &batch {
        assert_eq!(
            message.receipt.as_ref(),
            Some(&receipt),
            "one batch, one entry"
        );
        let record = message.record.as_ref().unwrap();
        assert_eq!(record.person_id, LEAH);
        assert!(
            !raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the withheld narrative crossed the wire"
        );
    }
    let (_, message) = batch.last().unwrap();
    let Some(pb::record::Body::RiskAssessment(assessment)) = &message.record.as_ref().unwrap().body
    else {
        panic!("{message:?}");
    };
    assert_eq!(assessment.level, pb::RiskLevel::High as i32);
    assert!(assessment.summary.is_empty(), "summary is not released");

    // The batch was recorded, as a subscription disclosure, before it was
    // sent.
    let stored = world
        .gateway
        .ledger
        .get(&receipt.entry_id)
        .await
        .unwrap()
        .unwrap();
    let entry = pb::AuditEntry::decode(stored.body.as_slice()).unwrap();
    assert_eq!(entry.action, pb::AuditAction::Subscribe as i32);
    assert_eq!(entry.outcome, pb::AuditOutcome::Disclosed as i32);
    assert_eq!(entry.isa_id, ISA);
    assert_eq!(entry.disclosures.len(), 1);
    let sent: Vec<String> = batch
        .iter()
        .map(|(_, m)| m.record.as_ref().unwrap().record_id.clone())
        .collect();
    assert_eq!(entry.disclosures[0].record_ids, sent);
    assert!(
        !entry.disclosures[0]
            .fields
            .contains(&"risk_assessment.summary".to_owned())
    );

    // Later on the same stream only what is new or changed is sent.
    let again = rms.assess(LEAH_NOM_ID, "S", "a second assessment").await;
    let (_, message) = subscriber.next_record().await;
    assert_eq!(message.record.unwrap().record_id, again);
    let (_, next) = subscriber.next().await.unwrap();
    assert!(next.record.is_none(), "only the new record: {next:?}");

    // Disconnect, miss a change, come back with the last cursor.
    let cursor = message.cursor.clone();
    drop(subscriber);
    let second = rms.assess(LEAH_NOM_ID, "M", "a later assessment").await;
    let mut resumed = Subscriber::open(&world, &sw, &cursor).await.unwrap();
    let batch = resumed.batch_until(&second).await;
    let ids: Vec<String> = batch
        .iter()
        .map(|(_, m)| m.record.as_ref().unwrap().record_id.clone())
        .collect();
    assert!(ids.contains(&second), "the missed change arrives: {ids:?}");
    resumed.next().await.unwrap();

    // A cursor that was edited, or never issued, is refused and audited.
    let mut forged = cursor.clone();
    forged.replace_range(0..1, if cursor.starts_with('e') { "f" } else { "e" });
    for bad in [forged, "not-a-cursor".to_owned()] {
        let err = Subscriber::open(&world, &sw, &bad).await.err().unwrap();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(
            reason(&err),
            ("INVALID_FIELD".to_owned(), vec!["resume_cursor".to_owned()])
        );
    }
    world.gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_the_agreement_ends_open_subscriptions_within_two_seconds() {
    let world = start("").await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let mut subscriber = Subscriber::open(&world, &sw, "").await.unwrap();
    subscriber.next().await.unwrap();

    // The providing agency's governance officer suspends it through the
    // register, as in production.
    let governance = world.met.token(MET_GOVERNANCE).await.unwrap();
    let started = Instant::now();
    liaison_proto::v1::admin_service_client::AdminServiceClient::new(world.channel.clone())
        .set_agreement_status(authed(
            &governance,
            pb::SetAgreementStatusRequest {
                isa_id: ISA.into(),
                base_version: 1,
                status: pb::AgreementStatus::Suspended as i32,
                justification: "Suspended pending a data breach investigation".into(),
            },
        ))
        .await
        .unwrap();
    let err = loop {
        match subscriber.next().await {
            Ok((_, m)) => assert!(m.record.is_none(), "nothing is disclosed"),
            Err(e) => break e,
        }
    };
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "ended after {elapsed:?}");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(reason(&err).0, "ISA_NOT_ACTIVE");
    // The end is audited, and the status names the entry.
    use tonic_types::StatusExt;
    let entry_id = err.get_error_details().error_info().unwrap().metadata["audit_entry_id"].clone();
    let stored = world.gateway.ledger.get(&entry_id).await.unwrap().unwrap();
    let entry = pb::AuditEntry::decode(stored.body.as_slice()).unwrap();
    assert_eq!(entry.outcome, pb::AuditOutcome::Denied as i32);
    assert_eq!(entry.action, pb::AuditAction::Subscribe as i32);

    // A new subscription under the suspended agreement is refused at once.
    let err = Subscriber::open(&world, &sw, "").await.err().unwrap();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err).0, "ISA_NOT_ACTIVE");
    world.gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_that_cannot_record_ends_the_stream_unavailable_before_anything_is_sent() {
    let world = start("max_per_agency = 2").await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let mut rms = Rms::open(&world).await;
    let mut subscriber = Subscriber::open(&world, &sw, "").await.unwrap();
    subscriber.next().await.unwrap();

    // The agency's limit on open subscriptions.
    let mut second = Subscriber::open(&world, &sw, "").await.unwrap();
    second.next().await.unwrap();
    let err = Subscriber::open(&world, &sw, "").await.err().unwrap();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(reason(&err).0, "RATE_LIMITED");
    drop(second);

    let url = format!("sqlite://{}", world.dir.path().join("ledger.db").display());
    let mut blocker = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .unwrap();
    rms.assess(LEAH_NOM_ID, "S", SECRET).await;
    let err = loop {
        match subscriber.next().await {
            Ok((_, m)) => assert!(m.record.is_none(), "sent without an audit entry: {m:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(reason(&err).0, "AUDIT_UNAVAILABLE");
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();

    // Both places are free again once the streams have gone.
    let mut admitted = None;
    for _ in 0..50 {
        match Subscriber::open(&world, &sw, "").await {
            Ok(s) => {
                admitted = Some(s);
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    admitted.expect("a place frees when a stream ends");
    world.gateway.shutdown().await.unwrap();
}
