//! The conformance binary passes against a real gateway: `liaison demo`
//! started as a process on free ports in a temporary directory, driven only
//! through its published API and its `demo.json`.
//!
//! The `liaison` binary is taken from `LIAISON_BIN`, else from this target
//! directory, and built there with cargo when missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod process;

use process::start_demo;
use tokio::process::Command;

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

/// The Rust client example (`examples/rust_client.rs`) runs against the demo
/// and verifies its receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_example_verifies_its_receipt() {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/rust_client");
    if !example.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "-p",
                "liaison-conformance",
                "--example",
                "rust_client",
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let dir = tempfile::tempdir().unwrap();
    let mut demo = start_demo(dir.path()).await;
    let out = Command::new(example)
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    demo.kill().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("receipt verified"), "{stdout}");
}
