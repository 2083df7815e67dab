//! Helpers shared by the suites that run `liaison` as a process.

#![allow(dead_code, clippy::indexing_slicing)]

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

/// `liaison serve --config <config>`, its output discarded, `env` added to
/// its environment.
pub fn serve(config: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(liaison_bin())
        .arg("serve")
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until 127.0.0.1:`port` accepts connections (the gateway binds its
/// listener once everything else has started); fails if `child` exits or
/// 30 s pass.
pub async fn wait_listening(port: u16, child: &mut Child) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the gateway exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway did not listen on port {port} within 30 s");
}

/// A token for the demo client `name`, as `demo.json` (`state`) lists it,
/// from its identity provider.
pub async fn demo_token(state: &serde_json::Value, name: &str) -> String {
    let profile = &state["clients"][name];
    #[derive(serde::Deserialize)]
    struct Token {
        access_token: String,
    }
    reqwest::Client::new()
        .post(profile["token_url"].as_str().unwrap())
        .basic_auth(
            profile["client_id"].as_str().unwrap(),
            profile["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json::<Token>()
        .await
        .unwrap()
        .access_token
}

/// `(VmRSS, VmHWM)` of `pid`, in KiB.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}
