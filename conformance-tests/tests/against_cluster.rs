//! The conformance binary passes against a three-node deployment: three
//! `liaison serve` processes sharing one PostgreSQL ledger, trusting the
//! demo's identity providers, each checked on its own address. Afterwards
//! the shared ledger verifies under the deployment's signing key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod process;

use process as demo;

use std::{process::Stdio, time::Duration};

use liaison_ledger::test_util::fresh_postgres_db;
use tokio::process::Command;

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_on_each_node_of_a_postgres_cluster() {
    let (url, _db) = fresh_postgres_db().await;
    let dir = tempfile::tempdir().unwrap();
    // The demo provides the identity providers, the agreement, the legacy
    // data and the signing key; its own gateway is not checked here.
    let mut demo = demo::start_demo(dir.path()).await;
    let base = std::fs::read_to_string(dir.path().join("liaison.toml")).unwrap();
    let mut nodes = Vec::new();
    for n in 0..3 {
        let addr = free_addr();
        let text = base
            .lines()
            .map(|line| {
                if line.starts_with("listen = ") {
                    format!("listen = \"{addr}\"")
                } else if line.starts_with("url = \"sqlite://ledger.db\"") {
                    format!("url = \"{url}\"")
                } else if line.starts_with("witness_file = ") {
                    format!("witness_file = \"witness-{n}.jsonl\"")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = dir.path().join(format!("node-{n}.toml"));
        std::fs::write(&config, text).unwrap();
        let child = Command::new(demo::liaison_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        nodes.push((addr, child));
    }
    for (addr, _) in &nodes {
        let mut up = false;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr.as_str()).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "node {addr} did not start");
    }
    for (addr, _) in &nodes {
        let out = Command::new(env!("CARGO_BIN_EXE_liaison-conformance"))
            .arg("--demo-dir")
            .arg(dir.path())
            .args(["--target", &format!("http://{addr}"), "--allow-writes"])
            .output()
            .await
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "node {addr}:\n{table}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(table.contains("receipts.records"), "{table}");
        // Streaming resumption is checked on every node, never skipped.
        assert!(
            table
                .lines()
                .any(|l| l.contains("stream.resume") && l.starts_with("PASS")),
            "{table}"
        );
    }
    for (_, mut child) in nodes {
        child.kill().await.unwrap();
    }
    demo.kill().await.unwrap();

    // One ledger for all three, signed by whichever node sealed.
    let out = Command::new(demo::liaison_bin())
        .args(["audit", "verify", "--ledger", &url, "--public-key"])
        .arg(dir.path().join("ledger-signing.pem.pub"))
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("ledger verifies"), "{report}");
}
