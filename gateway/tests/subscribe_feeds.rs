//! `Subscribe` over sources without a change log of their own: a council's
//! CSV folder, whose feed compares exports, and a health JSON API polled
//! through its change endpoint. Changed people arrive, unchanged ones do
//! not, a resumed subscriber misses nothing (a restarted gateway re-sends
//! rather than loses), a refused export changes nothing, and a source that
//! is down leaves the stream open until it is back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use liaison_connectors::synthetic::{council, health::HealthServer};
use liaison_proto::v1 as pb;
use tonic::{Status, Streaming};

const EXPORTS: &str = "met-police.exports";
const HEALTH: &str = "met-police.health";

/// The demo agreement, also covering the two datasets these tests follow.
fn policy(text: String) -> String {
    let mut text = text;
    for dataset in [EXPORTS, HEALTH] {
        text.push_str(&format!(
            r#"
[[agreement.datasets]]
dataset = "{dataset}"
actions = ["search", "read", "subscribe"]

[[agreement.datasets.roles]]
role = "social-worker"
fields = ["person.names", "safeguarding_concern", "warning_marker.marker"]
"#
        ));
    }
    text
}

fn example(name: &str) -> String {
    repo()
        .join("connectors/examples")
        .join(name)
        .display()
        .to_string()
}

fn csv_connector(folder: &Path) -> String {
    format!(
        r#"
[[connector]]
kind = "csv-folder"
id = "{EXPORTS}"
agency = "met-police"
title = "Met Police exports (synthetic)"
system = "Synthetic CMS"
folder = "{}"
settle_ms = 50
poll_interval_ms = 100
mapping_file = "{}"
"#,
        folder.display(),
        example("council-csv.toml")
    )
}

fn health_connector(server: &HealthServer) -> String {
    format!(
        r#"
[[connector]]
kind = "json-http"
id = "{HEALTH}"
agency = "met-police"
title = "Met Police health liaison (synthetic)"
system = "Synthetic PAS"
base_url = "{}"
mapping_file = "{}"
resilience = {{ deadline_ms = 1000, failure_threshold = 3, cool_down_ms = 200, max_attempts = 1 }}
"#,
        server.base_url(),
        example("health-api.toml")
    )
}

async fn start(connectors: String, key_file: &Path) -> World {
    World::start_with_policy(None, policy, move |text| {
        format!(
            "{text}\n{connectors}\n[subscriptions]\npoll_interval_ms = 50\nheartbeat_seconds = 1\ncursor_key_file = \"{}\"\n",
            key_file.display()
        )
    })
    .await
}

struct Subscriber {
    stream: Streaming<pb::SubscribeResponse>,
}

impl Subscriber {
    async fn open(world: &World, persons: &[String], cursor: &str) -> Result<Self, Status> {
        let token = world.hackney.token(SOCIAL_WORKER).await.unwrap();
        let stream = pb::sharing_service_client::SharingServiceClient::new(world.channel.clone())
            .subscribe(authed(
                &token,
                pb::SubscribeRequest {
                    context: Some(context("safeguarding-children")),
                    person_ids: persons.to_vec(),
                    resume_cursor: cursor.into(),
                },
            ))
            .await?
            .into_inner();
        let mut subscriber = Self { stream };
        let opened = subscriber.next().await.unwrap();
        assert!(opened.record.is_none() && !opened.cursor.is_empty());
        Ok(subscriber)
    }

    /// The next message, waiting at most 10 s.
    async fn next(&mut self) -> Result<pb::SubscribeResponse, Status> {
        tokio::time::timeout(Duration::from_secs(10), self.stream.message())
            .await
            .expect("a message within 10 s")
            .map(|m| m.expect("the stream is still open"))
    }

    /// Records until the stream has been quiet (heartbeats only) for
    /// `quiet`, or `limit` has passed; the last cursor seen.
    async fn records_until_quiet(
        &mut self,
        quiet: Duration,
        limit: Duration,
    ) -> (Vec<pb::Record>, String) {
        let started = Instant::now();
        let mut last_record = Instant::now();
        let mut records = Vec::new();
        loop {
            assert!(started.elapsed() < limit, "the stream never went quiet");
            let message = self.next().await.unwrap();
            assert!(!message.cursor.is_empty(), "every message carries a cursor");
            let cursor = message.cursor;
            match message.record {
                Some(record) => {
                    assert!(message.receipt.is_some(), "a record comes with its receipt");
                    records.push(record);
                    last_record = Instant::now();
                }
                None if !records.is_empty() && last_record.elapsed() >= quiet => {
                    return (records, cursor);
                }
                None if records.is_empty() && started.elapsed() >= quiet => {
                    return (records, cursor);
                }
                None => {}
            }
        }
    }

    /// Reads until a record arrives; the records of its batch and the last
    /// cursor.
    async fn batch(&mut self) -> (Vec<pb::Record>, String) {
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "no record within 15 s"
            );
            let message = self.next().await.unwrap();
            let Some(record) = message.record else {
                continue;
            };
            let mut records = vec![record];
            let mut cursor = message.cursor;
            // The rest of the batch follows at once.
            while let Ok(Ok(Some(more))) =
                tokio::time::timeout(Duration::from_millis(300), self.stream.message()).await
            {
                cursor = more.cursor;
                match more.record {
                    Some(r) => records.push(r),
                    None => break,
                }
            }
            return (records, cursor);
        }
    }
}

fn people(records: &[pb::Record]) -> Vec<&str> {
    let mut people: Vec<&str> = records.iter().map(|r| r.person_id.as_str()).collect();
    people.sort_unstable();
    people.dedup();
    people
}

/// Replaces a file of the export as an exporter should.
fn replace(folder: &Path, name: &str, text: &[u8]) {
    let temporary = folder.join(format!(".{name}.partial"));
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, folder.join(name)).unwrap();
}

/// Rewrites one referral's outcome in `REFERRALS.csv` (bytes: one row's
/// notes are not UTF-8).
fn set_outcome(folder: &Path, referral: &str, outcome: &str) {
    let text = std::fs::read(folder.join("REFERRALS.csv")).unwrap();
    let mut out = Vec::new();
    for line in text.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(format!("{referral},").as_bytes()) {
            let fields: Vec<&[u8]> = line.splitn(6, |b| *b == b',').collect();
            out.extend_from_slice(&fields[..4].join(&b','));
            out.extend_from_slice(format!(",{outcome},").as_bytes());
            out.extend_from_slice(fields[5]);
        } else {
            out.extend_from_slice(line);
        }
    }
    replace(folder, "REFERRALS.csv", &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_folder_is_followed_export_by_export_and_a_restart_resends_rather_than_loses() {
    let exports = tempfile::tempdir().unwrap();
    let folder = exports.path();
    council::write_council_export(folder, 20, 3, false).unwrap();
    let key = exports.path().join("cursor.key");
    std::fs::write(&key, [b'c'; 32]).unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let world = start(csv_connector(folder), &key).await;
    let leah = format!("{EXPORTS}:{}", council::LEAH_MARSH);
    let tyler = format!("{EXPORTS}:{}", council::TYLER_MARSH);
    let followed = [leah.clone(), tyler.clone()];
    let mut subscriber = Subscriber::open(&world, &followed, "").await.unwrap();

    // Tonight's export changes Leah's referral only: her records arrive,
    // Tyler's (unchanged) do not.
    set_outcome(folder, "R-1", "CP");
    let (records, _) = subscriber
        .records_until_quiet(Duration::from_millis(1500), Duration::from_secs(15))
        .await;
    assert_eq!(people(&records), [leah.as_str()], "{records:?}");
    let referral = records
        .iter()
        .find(|r| r.record_id == format!("{EXPORTS}:REFERRAL/R-1"))
        .expect("the changed referral");
    let Some(pb::record::Body::SafeguardingConcern(concern)) = &referral.body else {
        panic!("{referral:?}")
    };
    assert_eq!(concern.status, "child-protection");

    // A replacement that does not fit the mapping is refused: nothing is
    // sent, however different it is.
    let children = std::fs::read(folder.join("CHILDREN.csv")).unwrap();
    replace(folder, "CHILDREN.csv", b"PERSON_ID,SURNAME\n5001,Renamed\n");
    let (records, cursor) = subscriber
        .records_until_quiet(Duration::from_millis(1500), Duration::from_secs(10))
        .await;
    assert!(records.is_empty(), "{records:?}");
    replace(folder, "CHILDREN.csv", &children);

    // Disconnect; Tyler's referral changes; reconnect with the cursor: his
    // change arrives, Leah's records are not sent again.
    drop(subscriber);
    set_outcome(folder, "R-2", "CIN");
    let mut resumed = Subscriber::open(&world, &followed, &cursor).await.unwrap();
    let (records, cursor) = resumed
        .records_until_quiet(Duration::from_millis(1500), Duration::from_secs(15))
        .await;
    assert_eq!(people(&records), [tyler.as_str()], "{records:?}");
    drop(resumed);
    world.gateway.shutdown().await.unwrap();

    // While the gateway is down, Leah's referral changes again. A new
    // gateway process (same cursor key) no longer knows what changed
    // since the cursor, so everyone followed is sent again: at least once.
    set_outcome(folder, "R-1", "CIN");
    tokio::time::sleep(Duration::from_millis(80)).await;
    let world = start(csv_connector(folder), &key).await;
    let mut after_restart = Subscriber::open(&world, &followed, &cursor).await.unwrap();
    let (records, _) = after_restart
        .records_until_quiet(Duration::from_millis(1500), Duration::from_secs(15))
        .await;
    assert_eq!(
        people(&records),
        [leah.as_str(), tyler.as_str()],
        "{records:?}"
    );
    let referral = records
        .iter()
        .find(|r| r.record_id == format!("{EXPORTS}:REFERRAL/R-1"))
        .unwrap();
    let Some(pb::record::Body::SafeguardingConcern(concern)) = &referral.body else {
        panic!("{referral:?}")
    };
    assert_eq!(
        concern.status, "child-in-need",
        "the change made while down"
    );
    world.gateway.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_api_is_followed_by_polling_and_an_outage_does_not_end_the_stream() {
    let server = HealthServer::start(20, 7).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cursor.key");
    std::fs::write(&key, [b'k'; 32]).unwrap();
    let world = start(health_connector(&server), &key).await;
    let leah = format!("{HEALTH}:H1001");
    let mut subscriber = Subscriber::open(&world, std::slice::from_ref(&leah), "")
        .await
        .unwrap();

    // A change to Kerry, who is not followed, sends nothing; a change to
    // Leah sends her releasable records, the new alert among them.
    server.add_alert("H1002", "DV", "Disclosed domestic abuse");
    let alert = server.add_alert("H1001", "VUL", "Vulnerable at home");
    let (records, _) = subscriber.batch().await;
    assert_eq!(people(&records), [leah.as_str()], "{records:?}");
    assert!(
        records
            .iter()
            .any(|r| r.record_id == format!("{HEALTH}:ALERT/{alert}")),
        "{records:?}"
    );

    // The API goes down: the stream stays open (heartbeats) and the change
    // made meanwhile arrives once it is back.
    server.fail_next(40);
    let during = server.add_alert("H1001", "SH", "Self-harm disclosed");
    let started = Instant::now();
    let (records, _) = subscriber.batch().await;
    assert!(
        records
            .iter()
            .any(|r| r.record_id == format!("{HEALTH}:ALERT/{during}")),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .all(|r| r.record_id != format!("{HEALTH}:ALERT/{alert}")),
        "only what changed on this stream is sent again"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    world.gateway.shutdown().await.unwrap();
}
