//! TLS on the gRPC listener: TLS 1.3 by default with the post-quantum hybrid
//! key exchange preferred, and mutual TLS where each agency's systems hold
//! certificates from that agency's own CA, revocation by each agency's
//! CRLs, and certificates, CAs and CRLs replaced without a restart.
//! Certificates and CRLs are generated here, for these tests only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{path::Path, sync::Arc, time::Duration};

use liaison_conformance::oidc::{TestProvider, client};
use liaison_gateway::{config::Config, server};
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rustls::{
    AlertDescription, ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tonic::{Code, Request, metadata::MetadataValue, transport::Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        Ca { params, key, der }
    }

    fn issue(&self, names: &[&str]) -> (CertificateDer<'static>, KeyPair) {
        self.issue_with(names, |_| {})
    }

    fn issue_with(
        &self,
        names: &[&str],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> (CertificateDer<'static>, KeyPair) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.der().clone(), key)
    }

    fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }

    /// A CRL revoking the certificates with these serial numbers, current
    /// for a day.
    fn crl(&self, number: u64, revoked: &[u64]) -> Vec<u8> {
        let now = time::OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::from_params(&self.params, &self.key))
        .unwrap()
        .der()
        .to_vec()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

struct Pki {
    server_ca: Ca,
    met: Ca,
    hackney: Ca,
    rogue: Ca,
}

fn write_pki(dir: &Path) -> Pki {
    let pki = Pki {
        server_ca: Ca::new("Liaison test server CA"),
        met: Ca::new("Met Police client CA"),
        hackney: Ca::new("Hackney client CA"),
        rogue: Ca::new("Rogue CA"),
    };
    let (server, key) = pki.server_ca.issue(&["localhost", "127.0.0.1"]);
    std::fs::write(dir.join("server.crt"), pem("CERTIFICATE", &server)).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("met-ca.pem"), pki.met.pem()).unwrap();
    std::fs::write(dir.join("hackney-ca.pem"), pki.hackney.pem()).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/policy.toml"),
        dir.join("policy.toml"),
    )
    .unwrap();
    pki
}

async fn start(dir: &Path, issuer: &str, client_auth: &str, allow_tls12: bool) -> server::Running {
    start_with(dir, issuer, client_auth, allow_tls12, |text| text).await
}

/// Starts a gateway with the configuration `adjust` makes of the usual one.
async fn start_with(
    dir: &Path,
    issuer: &str,
    client_auth: &str,
    allow_tls12: bool,
    adjust: impl FnOnce(String) -> String,
) -> server::Running {
    let text = format!(
        r#"
version = 1
[server.tls]
certificate = "server.crt"
private_key = "server.key"
client_auth = "{client_auth}"
allow_tls12 = {allow_tls12}
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
client_ca = "hackney-ca.pem"
[[issuer]]
url = "{issuer}"
agency = "met-police"
audiences = ["liaison"]
algorithms = ["ES256"]
allow_insecure_http = true
"#
    );
    std::fs::write(dir.join("liaison.toml"), adjust(text)).unwrap();
    let config = Config::load(&dir.join("liaison.toml")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    server::start(config, Some(listener), std::future::pending())
        .await
        .unwrap()
}

fn client_config(
    pki: &Pki,
    identity: Option<(CertificateDer<'static>, KeyPair)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.server_ca.der.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![cert],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// A channel whose connector speaks TLS with `config`.
async fn channel(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://localhost:{}", addr.port()))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_uri| {
            let config = config.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

async fn health(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> Result<(), String> {
    let channel = channel(addr, config)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_certificates_from_an_agency_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    let met_idp = TestProvider::start(
        "met-police",
        "ES256",
        serde_json::json!([client(
            "met-mash-system",
            "test-fixture-secret",
            "PC Reid",
            &["officer"]
        )]),
    )
    .await
    .unwrap();
    let gateway = start(dir.path(), &met_idp.issuer, "required", false).await;
    let addr = gateway.addr;
    let tls13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

    // No certificate, a certificate from a CA no agency uses, a
    // self-signed certificate: all refused at the handshake.
    assert!(
        health(addr, client_config(&pki, None, tls13))
            .await
            .is_err()
    );
    assert!(
        health(
            addr,
            client_config(&pki, Some(pki.rogue.issue(&["rogue"])), tls13)
        )
        .await
        .is_err()
    );
    let self_signed = {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["met-system".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.der().clone(), key)
    };
    assert!(
        health(addr, client_config(&pki, Some(self_signed), tls13))
            .await
            .is_err()
    );

    // A certificate from the Met's CA is admitted.
    let met_cert = pki.met.issue(&["met-mash-system"]);
    let met_tls = client_config(
        &pki,
        Some((
            met_cert.0.clone(),
            KeyPair::from_pem(&met_cert.1.serialize_pem()).unwrap(),
        )),
        tls13,
    );
    health(addr, met_tls.clone()).await.unwrap();

    // TLS 1.2 is refused unless configured.
    let tls12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let met_tls12 = client_config(
        &pki,
        Some((
            met_cert.0.clone(),
            KeyPair::from_pem(&met_cert.1.serialize_pem()).unwrap(),
        )),
        tls12,
    );
    assert!(health(addr, met_tls12).await.is_err());

    // The token's agency must match the certificate's.
    let token = met_idp
        .token(("met-mash-system", "test-fixture-secret"))
        .await
        .unwrap();
    let authed = |token: &str| {
        let mut req = Request::new(pb::ListDatasetsRequest::default());
        let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        req.metadata_mut().insert("authorization", value);
        req
    };
    let mut sharing = SharingServiceClient::new(channel(addr, met_tls).await.unwrap());
    sharing.list_datasets(authed(&token)).await.unwrap();
    let hackney_cert = pki.hackney.issue(&["hackney-mash-system"]);
    let hackney_tls = client_config(&pki, Some(hackney_cert), tls13);
    let mut wrong = SharingServiceClient::new(channel(addr, hackney_tls).await.unwrap());
    let err = wrong.list_datasets(authed(&token)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("another agency"),
        "{}",
        err.message()
    );

    // A certificate-bound token (RFC 8705) works only on a connection that
    // presents the certificate it is bound to.
    let bound = bound_token(&met_idp, &met_cert.0).await;
    sharing.list_datasets(authed(&bound)).await.unwrap();
    let other_met = pki.met.issue(&["met-other-system"]);
    let mut other = SharingServiceClient::new(
        channel(addr, client_config(&pki, Some(other_met), tls13))
            .await
            .unwrap(),
    );
    let err = other.list_datasets(authed(&bound)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    gateway.shutdown().await.unwrap();
}

/// The kinds of bad client certificate not covered above, each refused at
/// the handshake where mutual TLS is required, while a good one from the
/// same CA is admitted (so each refusal is for the named defect alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_future_and_wrong_purpose_client_certificates_are_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    let gateway = start(dir.path(), "http://127.0.0.1:1", "required", false).await;
    let tls13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let day = time::Duration::days(1);
    let now = time::OffsetDateTime::now_utc();
    let cases: Vec<(&str, (CertificateDer<'static>, KeyPair))> = vec![
        (
            "expired",
            pki.met.issue_with(&["met-system"], |p| {
                p.not_before = now - 30 * day;
                p.not_after = now - day;
            }),
        ),
        (
            "not yet valid",
            pki.met.issue_with(&["met-system"], |p| {
                p.not_before = now + day;
                p.not_after = now + 30 * day;
            }),
        ),
        (
            "server-only extended key usage",
            pki.met.issue_with(&["met-system"], |p| {
                p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            }),
        ),
    ];
    for (kind, identity) in cases {
        let refused = health(gateway.addr, client_config(&pki, Some(identity), tls13)).await;
        assert!(refused.is_err(), "{kind}: admitted");
    }
    let good = pki.met.issue_with(&["met-system"], |p| {
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    });
    health(gateway.addr, client_config(&pki, Some(good), tls13))
        .await
        .unwrap();
    gateway.shutdown().await.unwrap();
}

/// A token signed with the provider's real key and bound to `cert`.
async fn bound_token(idp: &TestProvider, cert: &CertificateDer<'static>) -> String {
    use base64::Engine;
    use sha2::Digest;
    let key = idp.private_keys_pem().await.unwrap().remove(0);
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(cert.as_ref()));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "iss": idp.issuer, "sub": "met-mash-system", "aud": "liaison", "client_id": "met-mash-system",
        "iat": now, "nbf": now, "exp": now + 300, "roles": ["officer"],
        "cnf": { "x5t#S256": thumbprint },
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(key.kid);
    let signing = jsonwebtoken::EncodingKey::from_ec_pem(key.private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &signing).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_post_quantum_hybrid_group_is_negotiated_when_both_sides_offer_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    let gateway = start(dir.path(), "http://127.0.0.1:1", "none", false).await;
    let tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let config = client_config(&pki, None, &[&rustls::version::TLS13]);
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(
        session.negotiated_key_exchange_group().map(|g| g.name()),
        Some(rustls::NamedGroup::X25519MLKEM768)
    );
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    // An open connection that never speaks HTTP/2 would hold up a graceful
    // shutdown until its idle timeout.
    drop(tls);
    gateway.shutdown().await.unwrap();
}

/// Replaces a file the way a deployment tool does: write beside, rename
/// over, so the reader never sees half a file.
fn replace(path: &Path, bytes: impl AsRef<[u8]>) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The leaf certificate the gateway serves to a new connection.
async fn served(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    drop(tls);
    leaf
}

/// A channel that counts the connections it opens and keeps the leaf
/// certificate each was served.
async fn recording_channel(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
) -> (
    tonic::transport::Channel,
    Arc<parking_lot::Mutex<Vec<CertificateDer<'static>>>>,
) {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = seen.clone();
    let channel = Endpoint::from_shared(format!("http://localhost:{}", addr.port()))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_uri| {
            let config = config.clone();
            let record = record.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await?;
                record
                    .lock()
                    .push(tls.get_ref().1.peer_certificates().unwrap()[0].clone());
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .unwrap();
    (channel, seen)
}

/// Polls `done` every 50 ms for up to 10 s.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_without_a_restart_and_bad_replacements_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    let gateway = start_with(dir.path(), "http://127.0.0.1:1", "none", false, |text| {
        text.replace(
            "allow_tls12 = false\n",
            "allow_tls12 = false\nreload_interval_ms = 100\n",
        )
    })
    .await;
    let addr = gateway.addr;
    let tls = client_config(&pki, None, &[&rustls::version::TLS13]);
    let cert_a = served(addr, tls.clone()).await;

    // A connection made before the swap.
    let (old, old_seen) = recording_channel(addr, tls.clone()).await;
    let mut old_health = HealthClient::new(old);
    old_health
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(*old_seen.lock(), vec![cert_a.clone()]);

    // Certificate B, from the same CA: new handshakes get it.
    let (cert_b, key_b) = pki.server_ca.issue(&["localhost", "127.0.0.1"]);
    replace(&dir.path().join("server.key"), key_b.serialize_pem());
    replace(&dir.path().join("server.crt"), pem("CERTIFICATE", &cert_b));
    eventually("certificate B is served", || {
        let tls = tls.clone();
        let cert_b = cert_b.clone();
        async move { served(addr, tls).await == cert_b }
    })
    .await;
    let status = gateway.tls_status().unwrap();
    assert!(status.reloads >= 1, "{status:?}");
    assert_eq!(status.last_error, None);
    health(addr, tls.clone()).await.unwrap();

    // The connection made before is untouched: it still answers, on the
    // same connection and the certificate it was accepted with.
    old_health
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(*old_seen.lock(), vec![cert_a.clone()]);

    // Each bad replacement is refused, named, and counted; B stays.
    let day = time::Duration::days(1);
    let now = time::OffsetDateTime::now_utc();
    let expired = {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.not_before = now - 30 * day;
        params.not_after = now - day;
        let issuer = Issuer::from_params(&pki.server_ca.params, &pki.server_ca.key);
        params.signed_by(&key_b, &issuer).unwrap().der().clone()
    };
    let other_key = KeyPair::generate().unwrap().serialize_pem();
    let bad: [(&str, &str, Vec<u8>, &str); 3] = [
        (
            "an expired certificate",
            "server.crt",
            pem("CERTIFICATE", &expired).into_bytes(),
            "expired",
        ),
        (
            "a key that is not the certificate's",
            "server.key",
            other_key.into_bytes(),
            "not the key of",
        ),
        (
            "garbage",
            "server.crt",
            b"not a certificate".to_vec(),
            "server.crt",
        ),
    ];
    for (what, file, bytes, says) in bad {
        // Start each case from B and its key.
        replace(&dir.path().join("server.crt"), pem("CERTIFICATE", &cert_b));
        replace(&dir.path().join("server.key"), key_b.serialize_pem());
        eventually("B and its key are back in service", || async {
            gateway.tls_status().unwrap().last_error.is_none()
        })
        .await;
        let before = gateway.tls_status().unwrap().failures;
        replace(&dir.path().join(file), bytes);
        eventually(what, || async {
            gateway.tls_status().unwrap().failures > before
        })
        .await;
        let status = gateway.tls_status().unwrap();
        let error = status.last_error.unwrap();
        assert!(error.contains(file), "{what}: {error}");
        assert!(error.contains(says), "{what}: {error}");
        assert_eq!(served(addr, tls.clone()).await, cert_b, "{what}");
        health(addr, tls.clone()).await.unwrap();
    }
    gateway.shutdown().await.unwrap();
}

/// The alert a client gets when the gateway refuses its certificate; the
/// refusal of a TLS 1.3 client certificate comes after the client's
/// Finished, so it is read from the first answer. `None` when admitted.
async fn refusal(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
) -> Option<AlertDescription> {
    let alert = |e: std::io::Error| match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        other => panic!("not refused by an alert: {other:?}"),
    };
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = match tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
    {
        Ok(tls) => tls,
        Err(e) => return alert(e),
    };
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut answer = [0u8; 64];
    match tls.read(&mut answer).await {
        Ok(n) => {
            assert!(n > 0, "closed without an alert");
            None
        }
        Err(e) => alert(e),
    }
}

fn identity(
    pair: &(CertificateDer<'static>, KeyPair),
) -> Option<(CertificateDer<'static>, KeyPair)> {
    Some((
        pair.0.clone(),
        KeyPair::from_pem(&pair.1.serialize_pem()).unwrap(),
    ))
}

/// The eighth kind of bad client certificate: one its agency's CA has
/// revoked. Refused at the handshake with `certificate_revoked`, while a
/// certificate of the same CA that is not revoked, and one of an agency
/// that publishes no CRL, are admitted; a new CRL applies to new
/// handshakes without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_revoked_by_its_agencys_crl_is_refused_and_crl_updates_need_no_restart()
 {
    let dir = tempfile::tempdir().unwrap();
    let pki = write_pki(dir.path());
    let serial =
        |n: u64| move |p: &mut CertificateParams| p.serial_number = Some(SerialNumber::from(n));
    let revoked = pki.met.issue_with(&["met-lost-laptop"], serial(1001));
    let good = pki.met.issue_with(&["met-mash-system"], serial(1002));
    let hackney = pki
        .hackney
        .issue_with(&["hackney-mash-system"], serial(1001));
    let crl_path = dir.path().join("met-crl.pem");
    std::fs::write(&crl_path, pem("X509 CRL", &pki.met.crl(1, &[1001]))).unwrap();
    let gateway = start_with(
        dir.path(),
        "http://127.0.0.1:1",
        "required",
        false,
        |text| {
            text.replace(
                "client_ca = \"met-ca.pem\"\n",
                "client_ca = \"met-ca.pem\"\nclient_crls = [\"met-crl.pem\"]\n",
            )
            .replace(
                "allow_tls12 = false\n",
                "allow_tls12 = false\nreload_interval_ms = 100\n",
            )
        },
    )
    .await;
    let addr = gateway.addr;
    let tls13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let config =
        |pair: &(CertificateDer<'static>, KeyPair)| client_config(&pki, identity(pair), tls13);

    assert_eq!(
        refusal(addr, config(&revoked)).await,
        Some(AlertDescription::CertificateRevoked)
    );
    assert!(health(addr, config(&revoked)).await.is_err());
    assert_eq!(refusal(addr, config(&good)).await, None);
    health(addr, config(&good)).await.unwrap();
    // Hackney publishes no CRL; the same serial number means nothing there.
    assert_eq!(refusal(addr, config(&hackney)).await, None);

    // The Met revokes a second certificate; the new CRL, written as DER
    // this time, applies to the next handshake.
    replace(&crl_path, pki.met.crl(2, &[1001, 1002]));
    eventually("the second certificate is refused", || {
        let config = config(&good);
        async move { refusal(addr, config).await == Some(AlertDescription::CertificateRevoked) }
    })
    .await;
    assert_eq!(
        refusal(addr, config(&revoked)).await,
        Some(AlertDescription::CertificateRevoked)
    );
    assert_eq!(refusal(addr, config(&hackney)).await, None);
    assert_eq!(gateway.tls_status().unwrap().last_error, None);

    // A CRL past its next update is refused as a reload, the current one
    // staying in service, and refused by `config check` at start.
    let stale = {
        let now = time::OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - time::Duration::days(2),
            next_update: now - time::Duration::days(1),
            crl_number: SerialNumber::from(3u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::from_params(&pki.met.params, &pki.met.key))
        .unwrap()
        .der()
        .to_vec()
    };
    replace(&crl_path, &stale);
    eventually("the stale CRL is refused", || async {
        gateway.tls_status().unwrap().failures > 0
    })
    .await;
    let error = gateway.tls_status().unwrap().last_error.unwrap();
    assert!(
        error.contains("met-crl.pem") && error.contains("stale"),
        "{error}"
    );
    assert_eq!(
        refusal(addr, config(&good)).await,
        Some(AlertDescription::CertificateRevoked)
    );
    gateway.shutdown().await.unwrap();
    let err = Config::load(&dir.path().join("liaison.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("met-crl.pem") && err.contains("stale"),
        "{err}"
    );
}
