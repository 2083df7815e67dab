//! The conformance binary passes against a real gateway: `liaison demo`
//! started as a process on free ports in a temporary directory, driven only
//! through its published API and its `demo.json`.
//!
//! The `liaison` binary is taken from `LIAISON_BIN`, else from this target
//! directory, and built there with cargo when missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

/// The `liaison` binary, built if this target directory lacks it.
pub fn liaison_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LIAISON_BIN") {
        return p.into();
    }
    // target/debug/deps/<this test> → target/debug/liaison
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("liaison");
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "liaison-gateway", "--bin", "liaison"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .unwrap();
        assert!(status.success(), "cannot build the liaison binary");
    }
    bin
}

/// A port p with p and p + 1 free (the demo's two identity providers).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free ports");
}

/// Starts `liaison demo` in `dir` and waits for its `demo.json`.
async fn start_demo(dir: &Path) -> Child {
    let child = Command::new(liaison_bin())
        .arg("demo")
        .arg("--dir")
        .arg(dir)
        .args(["--gateway-port", "0", "--people", "60"])
        .arg("--idp-port")
        .arg(free_port_pair().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let state = dir.join("demo.json");
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(&state)
            && serde_json::from_str::<serde_json::Value>(&text).is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`liaison demo` wrote no demo.json within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_against_the_demo_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = start_demo(dir.path()).await;
    let junit = dir.path().join("junit.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_liaison-conformance"))
        .arg("--demo-dir")
        .arg(dir.path())
        .arg("--allow-writes")
        .arg("--junit")
        .arg(&junit)
        .output()
        .await
        .unwrap();
    demo.kill().await.unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only wrong_audience may skip: the demo has no second audience.
    let skipped: Vec<_> = table.lines().filter(|l| l.starts_with("SKIP")).collect();
    assert!(
        skipped.iter().all(|l| l.contains("authn.wrong_audience")),
        "{table}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("name=\"receipts.records\""), "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allow_writes_nothing_is_disclosed() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = start_demo(dir.path()).await;
    let out = Command::new(env!("CARGO_BIN_EXE_liaison-conformance"))
        .arg("--demo-dir")
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    demo.kill().await.unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    for id in [
        "minimise.records",
        "receipts.search",
        "contract.sharing.get_records",
    ] {
        assert!(table.contains(&format!("SKIP   {id}")), "{id}:\n{table}");
    }
}
