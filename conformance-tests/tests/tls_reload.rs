//! Certificate rotation without a restart, as an operator does it: `liaison
//! serve` runs as a process with a TLS listener whose files are checked only
//! once an hour, the certificate and key are replaced on disk, and SIGHUP
//! puts the new pair in service at once — new handshakes present it, the
//! process never stops. A broken replacement is refused on SIGHUP and the
//! pair in service stays.
//!
//! Certificates are generated here, for this test only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod process;

use std::{path::Path, sync::Arc, time::Duration};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};

/// The CA, and a leaf for `localhost` it issued whose common name is `cn`.
struct Pki {
    ca: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "Liaison reload test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Self {
            ca,
            ca_key: KeyPair::generate().unwrap(),
        }
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca
            .clone()
            .self_signed(&self.ca_key)
            .unwrap()
            .der()
            .clone()
    }

    /// Writes a fresh leaf and key to `dir`, replacing each file in one
    /// rename as a deployment tool would; returns the leaf's DER.
    fn issue(&self, dir: &Path, cn: &str) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, cn);
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        leaf.not_before = now - time::Duration::days(1);
        leaf.not_after = now + time::Duration::days(90);
        let leaf = leaf
            .signed_by(&key, &Issuer::from_params(&self.ca, &self.ca_key))
            .unwrap();
        replace(&dir.join("server.key"), key.serialize_pem().as_bytes());
        replace(&dir.join("server.crt"), leaf.pem().as_bytes());
        leaf.der().to_vec()
    }
}

fn replace(path: &Path, bytes: &[u8]) {
    let next = path.with_extension("next");
    std::fs::write(&next, bytes).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// The certificate the listener presents to a new handshake.
async fn presented(port: u16, ca: &CertificateDer<'static>) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the listener's certificate verifies against the test CA");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn hangup(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_puts_a_replaced_certificate_in_service_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let ca = pki.ca_der();
    let first = pki.issue(dir.path(), "first");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/policy.toml"),
        dir.path().join("policy.toml"),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("liaison.toml"),
        format!(
            r#"
version = 1
[server]
listen = "127.0.0.1:{port}"
[server.tls]
certificate = "server.crt"
private_key = "server.key"
# Only SIGHUP reloads within this test's life.
reload_interval_ms = 3600000
[ledger]
url = "sqlite://ledger.db"
[policy]
file = "policy.toml"
[[agency]]
id = "met-police"
display_name = "Met"
kind = "police"
[[agency]]
id = "hackney-childrens"
display_name = "Hackney"
kind = "local-authority"
"#
        ),
    )
    .unwrap();
    let mut gateway = process::serve(&dir.path().join("liaison.toml"), &[]);
    let pid = gateway.id().unwrap();
    process::wait_listening(port, &mut gateway).await;
    assert_eq!(presented(port, &ca).await, first);

    // Replaced on disk: not noticed before the interval, which is an hour.
    let second = pki.issue(dir.path(), "second");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        presented(port, &ca).await,
        first,
        "nothing reloads before the interval or a signal"
    );

    // SIGHUP: the new pair serves new handshakes, the same process on.
    hangup(pid);
    let mut now = Vec::new();
    for _ in 0..50 {
        now = presented(port, &ca).await;
        if now == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        now, second,
        "SIGHUP put the replaced certificate in service"
    );
    assert!(
        gateway.try_wait().unwrap().is_none(),
        "the gateway is still running"
    );

    // A broken replacement — a key that is not the certificate's — is
    // refused on SIGHUP and the pair in service stays.
    let key = KeyPair::generate().unwrap();
    replace(
        &dir.path().join("server.key"),
        key.serialize_pem().as_bytes(),
    );
    hangup(pid);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(presented(port, &ca).await, second);
    assert!(
        gateway.try_wait().unwrap().is_none(),
        "the gateway is still running"
    );
    gateway.kill().await.unwrap();
}
