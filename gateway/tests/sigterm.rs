//! SIGTERM under load: the gateway stops accepting, finishes the shares it
//! admitted (each with its audit entry), and exits cleanly; every share a
//! client was answered for is in the ledger.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use liaison_ledger::Ledger;
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use tokio::sync::watch;
use tonic::transport::Channel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_admitted_shares_with_their_audit_entries() {
    let world = World::start(None).await;
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    // A separate process on its own ledger file, so SIGTERM reaches only it.
    let text = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("[server]\n", &format!("[server]\nlisten = \"{addr}\"\n"))
        .replace("sqlite://ledger.db", "sqlite://drained.db");
    let config = world.dir.path().join("drain.toml");
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_liaison"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = {
        let started = Instant::now();
        loop {
            match Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
            {
                Ok(c) => break c,
                Err(_) if started.elapsed() < Duration::from_secs(20) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the gateway did not start: {e}"),
            }
        }
    };
    let token = world.hackney.token(SOCIAL_WORKER).await.unwrap();

    let (stop_tx, stop) = watch::channel(false);
    let mut clients = Vec::new();
    for _ in 0..16 {
        let channel = channel.clone();
        let token = token.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), 0u32);
            while !*stop.borrow() {
                let answer = SharingServiceClient::new(channel.clone())
                    .search_persons(authed(
                        &token,
                        pb::SearchPersonsRequest {
                            context: Some(context("safeguarding-children")),
                            query: Some(leah()),
                            ..Default::default()
                        },
                    ))
                    .await;
                match answer {
                    Ok(found) => {
                        let found = found.into_inner();
                        assert!(!found.matches.is_empty());
                        acked.push(found.receipt.unwrap().entry_id);
                    }
                    Err(_) => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (acked, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let drained_in = signalled.elapsed();
    stop_tx.send(true).unwrap();
    assert!(exit.success(), "the gateway exited with {exit}");

    let mut acked = Vec::new();
    let mut failed = 0;
    for client in clients {
        let (a, f) = client.await.unwrap();
        acked.extend(a);
        failed += f;
    }
    let ledger = Ledger::connect(&format!(
        "sqlite://{}",
        world.dir.path().join("drained.db").display()
    ))
    .await
    .unwrap();
    ledger.verify().await.unwrap();
    let mut recorded = BTreeSet::new();
    for id in &acked {
        assert!(
            ledger.get(id).await.unwrap().is_some(),
            "share {id} was answered but is not in the ledger"
        );
        recorded.insert(id.clone());
    }
    assert_eq!(recorded.len(), acked.len(), "a receipt was given twice");
    assert!(acked.len() > 50, "too little load: {}", acked.len());
    println!(
        "{} shares answered before and during shutdown, {failed} refused after it began; drained and exited in {drained_in:?}",
        acked.len()
    );
}
