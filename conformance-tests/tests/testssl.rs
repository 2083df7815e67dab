//! The API listener as an outside TLS scanner sees it: `liaison serve` runs
//! as a process with `[server.tls]` as the example configuration recommends
//! (TLS 1.3 only, client certificates required), and testssl.sh (Debian's
//! `testssl.sh` package, which `scripts/test-all` installs) scans it. Any
//! finding of severity MEDIUM or worse fails the test, unless it is on the
//! allow-list below with the reason it cannot be fixed in configuration.
//!
//! Certificates are generated here, for this test only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod process;

use std::{path::Path, process::Stdio, time::Duration};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use tokio::process::Command;

/// Findings that are MEDIUM or worse and inherent to the listener, by
/// testssl.sh id, each with why no configuration removes it.
const ALLOWED: &[(&str, &str)] = &[];

/// The scanner's run is bounded; its own checks are bounded tighter.
const SCAN_LIMIT: Duration = Duration::from_secs(180);

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    (params, key)
}

/// Writes the gateway's configuration and files; returns the path of the
/// CA that issued its certificate, for the scanner to trust.
fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    // A server certificate as a CA would issue one: valid for 90 days, for
    // server authentication, naming where its CRL is published.
    let (server_ca, server_ca_key) = ca("Liaison scan CA");
    let server_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(90);
    leaf.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
        uris: vec!["http://crl.liaison.test/scan-ca.crl".to_owned()],
    }];
    leaf.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_params(&server_ca, &server_ca_key);
    let leaf = leaf.signed_by(&server_key, &issuer).unwrap();
    std::fs::write(dir.join("server.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    let ca_path = dir.join("scan-ca.pem");
    std::fs::write(
        &ca_path,
        server_ca.clone().self_signed(&server_ca_key).unwrap().pem(),
    )
    .unwrap();
    let (met, met_key) = ca("Met Police client CA");
    std::fs::write(
        dir.join("met-ca.pem"),
        met.self_signed(&met_key).unwrap().pem(),
    )
    .unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/policy.toml"),
        dir.join("policy.toml"),
    )
    .unwrap();
    let text = format!(
        r#"
version = 1
[server]
listen = "127.0.0.1:{port}"
[server.tls]
certificate = "server.crt"
private_key = "server.key"
client_auth = "required"
[ledger]
url = "sqlite://ledger.db"
[policy]
file = "policy.toml"
[[agency]]
id = "met-police"
display_name = "Met"
kind = "police"
client_ca = "met-ca.pem"
[[agency]]
id = "hackney-childrens"
display_name = "Hackney"
kind = "local-authority"
"#
    );
    std::fs::write(dir.join("liaison.toml"), text).unwrap();
    ca_path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_of_medium_severity_or_worse_on_the_api_listener() {
    let testssl = ["testssl", "testssl.sh"]
        .into_iter()
        .find(|bin| {
            std::process::Command::new(bin)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("testssl.sh is not installed: apt-get install testssl.sh");

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ca = write_config(dir.path(), port);
    let mut gateway = process::serve(&dir.path().join("liaison.toml"), &[]);
    process::wait_listening(port, &mut gateway).await;

    let json = dir.path().join("testssl.json");
    let scan = Command::new(testssl)
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--severity",
            "MEDIUM",
            "--fast",
            "--connect-timeout",
            "5",
            "--openssl-timeout",
            "5",
            "--ip",
            "127.0.0.1",
            "--add-ca",
        ])
        .arg(&ca)
        .arg("--jsonfile")
        .arg(&json)
        .arg(format!("https://localhost:{port}"))
        .stdin(Stdio::null())
        .output();
    let scan = tokio::time::timeout(SCAN_LIMIT, scan)
        .await
        .expect("testssl.sh ran for more than 3 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&scan.stdout);
    println!("{stdout}");
    gateway.kill().await.unwrap();

    // The scan reached the listener: it saw TLS 1.3 and nothing older.
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` line in the scan"))
            .to_owned()
    };
    assert!(line("TLS 1.3").contains("offered"), "{}", line("TLS 1.3"));
    for old in ["SSLv2", "SSLv3", "TLS 1 ", "TLS 1.1", "TLS 1.2"] {
        assert!(line(old).contains("not offered"), "{}", line(old));
    }

    let findings: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut failing = Vec::new();
    for finding in &findings {
        let severity = finding["severity"].as_str().unwrap_or_default();
        let id = finding["id"].as_str().unwrap_or_default();
        if !matches!(severity, "MEDIUM" | "HIGH" | "CRITICAL") {
            continue;
        }
        match ALLOWED.iter().find(|(allowed, _)| *allowed == id) {
            Some((_, why)) => println!("allowed {id} ({severity}): {why}"),
            None => failing.push(format!(
                "{id} ({severity}): {}",
                finding["finding"].as_str().unwrap_or_default()
            )),
        }
    }
    assert!(
        failing.is_empty(),
        "testssl.sh findings of MEDIUM or worse:\n{}",
        failing.join("\n")
    );
}
