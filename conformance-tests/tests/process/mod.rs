//! Helpers shared by the suites that run `liaison` as a process.

#![allow(dead_code)]

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
pub fn free_port_pair() -> u16 {
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
pub async fn start_demo(dir: &Path) -> Child {
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
