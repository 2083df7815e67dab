//! Three gateways on loopback, one PostgreSQL ledger, concurrent shares on
//! all three; the sealer is killed with SIGKILL mid-load, a standby takes
//! over, and afterwards the ledger verifies under signed heads and holds
//! every acknowledged share exactly once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_types,
    reason = "the child's log is filled by plain threads reading its pipes, never held across an await"
)]

mod common;

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use liaison_ledger::{KeyRing, Ledger, SigningKey, test_util::fresh_postgres_db};
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use tokio::sync::watch;
use tonic::transport::Channel;

/// A `liaison serve` child whose log lines are collected.
struct Replica {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    fn spawn(config: &std::path::Path, addr: String) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_liaison"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line);
                }
            });
        }
        Replica { child, addr, log }
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    async fn wait_for_log(&self, needle: &str) {
        let started = Instant::now();
        while !self.logged(needle) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "`{needle}` not logged by {}: {:?}",
                self.addr,
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// What the clients saw.
#[derive(Default)]
struct Outcome {
    /// Entry ids of acknowledged shares.
    acked: Vec<String>,
    /// Shares that failed or timed out: they may or may not be recorded.
    uncertain: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_ledger_and_survive_the_sealer_being_killed() {
    let (url, _db) = fresh_postgres_db().await;
    let keys = tempfile::tempdir().unwrap();
    let key = SigningKey::from_seed(&[42; 32]).unwrap();
    let key_path = keys.path().join("ledger.pem");
    std::fs::write(&key_path, key.to_pkcs8_pem().unwrap()).unwrap();
    // The in-process replica has no key, so it never seals; the two
    // children hold it, and the first to start leads.
    let world = World::start(Some(url.clone())).await;
    let base = std::fs::read_to_string(world.config_path()).unwrap();
    let mut replicas = Vec::new();
    for n in 0..2 {
        let addr = free_addr();
        let text = base
            .replace("[server]\n", &format!("[server]\nlisten = \"{addr}\"\n"))
            .replace(
                "[policy]",
                &format!(
                    "signing_key_file = \"{}\"\nseal_interval_ms = 200\n[policy]",
                    key_path.display()
                ),
            );
        let path = world.dir.path().join(format!("replica-{n}.toml"));
        std::fs::write(&path, text).unwrap();
        let replica = Replica::spawn(&path, addr);
        replica.wait_for_log("gateway serving").await;
        if n == 0 {
            replica.wait_for_log("ledger sealer is now active").await;
        }
        replicas.push(replica);
    }
    let mut channels = vec![world.channel.clone()];
    for replica in &replicas {
        channels.push(
            Channel::from_shared(format!("http://{}", replica.addr))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let token = world.hackney.token(SOCIAL_WORKER).await.unwrap();

    // Sixteen clients, each going round the three replicas.
    let (stop_tx, stop) = watch::channel(false);
    let mut clients = Vec::new();
    for c in 0..16usize {
        let channels = channels.clone();
        let token = token.clone();
        let mut stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            let mut n = c;
            while !*stop.borrow_and_update() {
                let mut client = SharingServiceClient::new(channels[n % channels.len()].clone());
                n += 1;
                let mut request = authed(
                    &token,
                    pb::SearchPersonsRequest {
                        context: Some(context("safeguarding-children")),
                        query: Some(leah()),
                        ..Default::default()
                    },
                );
                request.set_timeout(Duration::from_secs(3));
                match client.search_persons(request).await {
                    Ok(found) => outcome
                        .acked
                        .push(found.into_inner().receipt.unwrap().entry_id),
                    Err(_) => outcome.uncertain += 1,
                }
            }
            outcome
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Kill the sealer outright; the standby must take over.
    let mut sealer = replicas.remove(0);
    sealer.child.kill().unwrap();
    sealer.child.wait().unwrap();
    replicas[0]
        .wait_for_log("ledger sealer is now active")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true).unwrap();
    let mut acked = Vec::new();
    let mut uncertain = 0;
    for client in clients {
        let outcome = client.await.unwrap();
        acked.extend(outcome.acked);
        uncertain += outcome.uncertain;
    }
    drop(sealer);

    // The standby seals everything, and the ledger verifies under the key.
    let ledger = Ledger::connect(&url).await.unwrap();
    let size = ledger.size().await.unwrap();
    let started = Instant::now();
    loop {
        let signed = ledger
            .latest_signed_head()
            .await
            .unwrap()
            .map_or(0, |h| h.size);
        if signed == size {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "signed {signed} of {size}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = ledger
        .verify_signed(&KeyRing::from(key.verifying_key()), &[])
        .await
        .unwrap();
    assert_eq!(report.entries, size);

    // Exactly the acknowledged shares, each once; failed ones may appear.
    let recorded: Vec<String> =
        sqlx::query_scalar("SELECT entry_id FROM audit_entries ORDER BY seq")
            .fetch_all(&sqlx::PgPool::connect(&url).await.unwrap())
            .await
            .unwrap();
    let recorded_set: BTreeSet<&String> = recorded.iter().collect();
    assert_eq!(recorded_set.len(), recorded.len(), "duplicated entries");
    let acked_set: BTreeSet<&String> = acked.iter().collect();
    assert_eq!(acked_set.len(), acked.len(), "one receipt given twice");
    let lost: Vec<_> = acked_set.difference(&recorded_set).collect();
    assert!(lost.is_empty(), "acknowledged but not recorded: {lost:?}");
    let unexpected = recorded.len() - acked.len();
    assert!(
        unexpected <= uncertain,
        "{unexpected} entries beyond the {uncertain} shares that failed"
    );
    println!(
        "{} acknowledged, {uncertain} failed around the kill, {} recorded, tree of {size} verified",
        acked.len(),
        recorded.len()
    );
    assert!(
        acked.len() > 100,
        "too little load to mean anything: {}",
        acked.len()
    );
}
