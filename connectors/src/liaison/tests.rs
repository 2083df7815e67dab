#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use liaison_proto::v1 as pb;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::answer::Rekey;
use super::*;
use crate::Fault;
use crate::request::{ShareRequest, with_share_request};

fn config_text(dir: &std::path::Path, endpoint: &str, token_url: &str) -> String {
    std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
    format!(
        r#"
kind = "liaison"
id = "met-police.federated"
agency = "met-police"
title = "Met Police records, through the Met's gateway"
system = "Liaison (Met Police)"
endpoint = "{endpoint}"
remote_dataset = "met-police.records"
isa_map = {{ "hackney-met" = "met-hackney-children" }}

[token]
url = "{token_url}"
client_id = "hackney-federation"
client_secret_file = "{}"
"#,
        dir.join("secret").display()
    )
}

fn parse(text: &str) -> LiaisonConfig {
    match toml::from_str::<crate::ConnectorConfig>(text).unwrap() {
        crate::ConnectorConfig::Liaison(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_complete_configuration_has_no_problems() {
    let dir = tempfile::tempdir().unwrap();
    let config = parse(&config_text(
        dir.path(),
        "http://127.0.0.1:50052",
        "http://localhost:9000/token",
    ));
    assert_eq!(config.problems(), Vec::<String>::new());
}

#[test]
fn clear_text_off_loopback_missing_files_and_an_empty_isa_map_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = parse(&config_text(
        dir.path(),
        "http://gateway.met.example:50051",
        "ftp://idp.example/token",
    ));
    config.isa_map.clear();
    config.token.client_secret_file = dir.path().join("absent");
    config.client_cert_file = Some(dir.path().join("secret"));
    assert_eq!(
        config.problems(),
        vec![
            "endpoint: `http://gateway.met.example:50051` must use https (plain http only for a loopback address)".to_owned(),
            "isa_map: must map at least one local agreement to the peer's agreement".into(),
            "client_cert_file: `client_cert_file` and `client_key_file` go together".into(),
            format!(
                "token.client_secret_file: `{}` is not a readable file",
                dir.path().join("absent").display()
            ),
            "token.url: `ftp://idp.example/token` has scheme `ftp`; use https".into(),
        ]
    );
    config.endpoint = "https://gateway.met.example:50051".into();
    assert!(
        config
            .problems()
            .contains(&"ca_file: required for an https endpoint".to_owned())
    );
}

fn rekey() -> Rekey {
    Rekey {
        local: "met.fed".into(),
        remote: "met.records".into(),
        agency: "met-police".into(),
        system: "Liaison (Met)".into(),
    }
}

fn person(id: &str) -> pb::Person {
    pb::Person {
        person_id: id.into(),
        names: vec![pb::PersonName {
            family_name: "Marsh".into(),
            ..Default::default()
        }],
        identifiers: vec![
            pb::Identifier {
                scheme: pb::IdentifierScheme::NhsNumber as i32,
                value: "943 476 5919".into(),
                ..Default::default()
            },
            pb::Identifier {
                scheme: pb::IdentifierScheme::NhsNumber as i32,
                value: "943 476 5918".into(),
                ..Default::default()
            },
        ],
        addresses: vec![pb::Address {
            postcode: "e81dy".into(),
            ..Default::default()
        }],
        provenance: Some(pb::Provenance {
            agency_id: "someone-else".into(),
            dataset_id: "elsewhere".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_peers_people_are_rekeyed_checked_and_pinned_to_its_agency() {
    let mut skipped = Vec::new();
    let p = rekey()
        .person(person("met.records:42"), &mut skipped)
        .unwrap();
    assert_eq!(p.person_id, "met.fed:42");
    let prov = p.provenance.unwrap();
    assert_eq!(
        (
            prov.agency_id.as_str(),
            prov.dataset_id.as_str(),
            prov.source_id.as_str()
        ),
        ("met-police", "met.fed", "42")
    );
    assert_eq!(p.identifiers.len(), 1);
    assert_eq!(p.identifiers[0].value, "9434765919");
    assert_eq!(p.addresses[0].postcode, "E8 1DY");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].source_id, "42");
    assert!(!skipped[0].problem.contains("943"), "{skipped:?}");

    // Ids of another dataset, and people without a name, are not passed on.
    let mut skipped = Vec::new();
    assert!(rekey().person(person("other:42"), &mut skipped).is_none());
    assert!(
        rekey()
            .person(person("met.records:"), &mut skipped)
            .is_none()
    );
    let mut nameless = person("met.records:43");
    nameless.names.clear();
    assert!(rekey().person(nameless, &mut skipped).is_none());
    assert_eq!(skipped.len(), 3 + 1, "{skipped:?}");
}

#[test]
fn a_peers_records_must_be_about_the_person_and_of_their_kind() {
    let record = |id: &str, person: &str, kind: pb::RecordKind| pb::Record {
        record_id: id.into(),
        person_id: person.into(),
        kind: kind as i32,
        body: Some(pb::record::Body::Relationship(pb::Relationship {
            related_person_id: "met.records:7".into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let r = rekey();
    let mut skipped = Vec::new();
    let ok = r
        .record(
            record(
                "met.records:r1",
                "met.records:42",
                pb::RecordKind::Relationship,
            ),
            "met.records:42",
            "met.fed:42",
            &mut skipped,
        )
        .unwrap();
    assert_eq!(ok.record_id, "met.fed:r1");
    assert_eq!(ok.person_id, "met.fed:42");
    let Some(pb::record::Body::Relationship(rel)) = &ok.body else {
        panic!()
    };
    assert_eq!(rel.related_person_id, "met.fed:7");
    for bad in [
        record(
            "met.records:r2",
            "met.records:99",
            pb::RecordKind::Relationship,
        ),
        record("met.records:r3", "met.records:42", pb::RecordKind::Incident),
        record("x:r4", "met.records:42", pb::RecordKind::Relationship),
    ] {
        assert!(
            r.record(bad, "met.records:42", "met.fed:42", &mut skipped)
                .is_none()
        );
    }
    assert_eq!(skipped.len(), 3, "{skipped:?}");
}

/// A token endpoint that counts its calls and issues `tok-N`.
async fn token_server(expires_in: u64, status: u16) -> (String, Arc<AtomicUsize>) {
    use axum::{Router, routing::post};
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/token",
        post(move |form: axum::Form<HashMap<String, String>>| {
            let counter = counter.clone();
            async move {
                assert_eq!(form.get("grant_type").map(String::as_str), Some("client_credentials"));
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let body = if status == 200 {
                    serde_json::json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": expires_in})
                } else {
                    serde_json::json!({"error": "invalid_client"})
                };
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    axum::Json(body),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/token"), calls)
}

fn source(url: &str) -> token::TokenSource {
    token::TokenSource::new(
        "met.fed",
        reqwest::Client::new(),
        url.parse().unwrap(),
        "hackney-federation".into(),
        "s3cret".into(),
        None,
    )
}

#[tokio::test]
async fn tokens_are_fetched_once_for_concurrent_callers_and_cached() {
    let (url, calls) = token_server(300, 200).await;
    let tokens = Arc::new(source(&url));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let tokens = tokens.clone();
        tasks.spawn(async move { tokens.token().await.unwrap() });
    }
    while let Some(t) = tasks.join_next().await {
        assert_eq!(t.unwrap(), "tok-1");
    }
    assert_eq!(tokens.token().await.unwrap(), "tok-1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokens.forget().await;
    assert_eq!(tokens.token().await.unwrap(), "tok-2");
}

#[tokio::test]
async fn a_token_near_its_expiry_is_replaced() {
    // A token shorter-lived than the refresh margin is kept for half its
    // life, never to its end.
    let (url, calls) = token_server(1, 200).await;
    let tokens = source(&url);
    assert_eq!(tokens.token().await.unwrap(), "tok-1");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(tokens.token().await.unwrap(), "tok-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_client_is_a_configuration_fault() {
    let (url, _) = token_server(300, 401).await;
    let err = source(&url).token().await.unwrap_err();
    assert_eq!(err.fault(), Fault::Configuration);
    assert_eq!(
        err.to_string(),
        "dataset `met.fed`: no access token for the peer gateway: the identity provider answered 401 invalid_client"
    );
}

async fn connector(dir: &std::path::Path) -> LiaisonConnector {
    LiaisonConnector::new(&parse(&config_text(
        dir,
        "http://127.0.0.1:9",
        "http://127.0.0.1:9/token",
    )))
    .await
    .unwrap()
}

#[tokio::test]
async fn refusals_map_to_declines_and_failures_to_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path()).await;
    let denied = Status::with_error_details(
        Code::PermissionDenied,
        "isa `met-hackney-children` does not permit purpose `missing-person`",
        ErrorDetails::with_error_info("PURPOSE_NOT_PERMITTED", "liaison.v1", HashMap::new()),
    );
    let err = c.refusal(&denied, "search").await;
    assert_eq!(err.fault(), Fault::Caller);
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "declined by met-police: PURPOSE_NOT_PERMITTED: isa `met-hackney-children` does not permit purpose `missing-person`"
    );

    let down = Status::new(Code::Unavailable, "connection refused");
    let err = c.refusal(&down, "fetch").await;
    assert_eq!((err.fault(), err.is_transient()), (Fault::Source, true));

    for late in [
        Status::new(Code::DeadlineExceeded, "late"),
        Status::cancelled("Timeout expired"),
    ] {
        let err = c.refusal(&late, "fetch").await;
        assert!(
            matches!(
                err,
                crate::ConnectorError::DeadlineExceeded {
                    operation: "fetch",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!((err.fault(), err.is_transient()), (Fault::Source, false));
    }

    let unauthenticated = Status::with_error_details(
        Code::Unauthenticated,
        "issuer untrusted",
        ErrorDetails::with_error_info("ISSUER_UNTRUSTED", "liaison.v1", HashMap::new()),
    );
    let err = c.refusal(&unauthenticated, "search").await;
    assert_eq!(err.fault(), Fault::Configuration);
    assert!(
        err.to_string()
            .contains("UNAUTHENTICATED (ISSUER_UNTRUSTED)"),
        "{err}"
    );
}

#[tokio::test]
async fn the_peer_is_asked_only_within_a_share_under_a_mapped_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path()).await;
    let query = PersonQuery {
        family_name: Some("Marsh".into()),
        ..PersonQuery::default()
    };
    let err = c.search(&query, 5).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Caller);
    assert!(
        err.to_string().contains("only asked as part of a share"),
        "{err}"
    );

    let share = ShareRequest {
        purpose: "safeguarding-children".into(),
        justification: "Section 47 enquiry".into(),
        isa_id: "unmapped".into(),
        correlation_id: "c-1".into(),
        ..ShareRequest::default()
    };
    let err = with_share_request(Some(share.clone()), c.search(&query, 5))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("agreement `unmapped` is not mapped to one of the peer's"),
        "{err}"
    );

    let mapped = ShareRequest {
        isa_id: "hackney-met".into(),
        ..share
    };
    let context = with_share_request(Some(mapped), async { c.context() })
        .await
        .unwrap();
    assert_eq!(context.isa_id, "met-hackney-children");
    assert_eq!(context.correlation_id, "c-1");
    assert_eq!(context.purpose, "safeguarding-children");
}

/// The headers a peer saw, and the share context.
type Asked = (HashMap<String, String>, pb::ShareContext);

/// A peer gateway that answers with whatever it is given, and remembers
/// what it was asked and with which headers.
#[derive(Clone, Default)]
struct FakePeer {
    matches: Vec<pb::PersonMatch>,
    read: pb::GetRecordsResponse,
    seen: Arc<parking_lot::Mutex<Vec<Asked>>>,
}

impl FakePeer {
    fn remember<T>(&self, request: &tonic::Request<T>, context: Option<&pb::ShareContext>) {
        let headers = ["authorization", "traceparent", "grpc-timeout"]
            .iter()
            .filter_map(|h| {
                let v = request.metadata().get(*h)?.to_str().ok()?;
                Some(((*h).to_owned(), v.to_owned()))
            })
            .collect();
        self.seen
            .lock()
            .push((headers, context.cloned().unwrap_or_default()));
    }
}

#[tonic::async_trait]
impl pb::sharing_service_server::SharingService for FakePeer {
    async fn list_datasets(
        &self,
        _request: tonic::Request<pb::ListDatasetsRequest>,
    ) -> Result<tonic::Response<pb::ListDatasetsResponse>, Status> {
        Err(Status::unimplemented("not here"))
    }

    async fn search_persons(
        &self,
        request: tonic::Request<pb::SearchPersonsRequest>,
    ) -> Result<tonic::Response<pb::SearchPersonsResponse>, Status> {
        self.remember(&request, request.get_ref().context.as_ref());
        Ok(tonic::Response::new(pb::SearchPersonsResponse {
            matches: self.matches.clone(),
            ..Default::default()
        }))
    }

    async fn get_records(
        &self,
        request: tonic::Request<pb::GetRecordsRequest>,
    ) -> Result<tonic::Response<pb::GetRecordsResponse>, Status> {
        self.remember(&request, request.get_ref().context.as_ref());
        Ok(tonic::Response::new(self.read.clone()))
    }

    type SubscribeStream =
        tonic::codegen::tokio_stream::Empty<Result<pb::SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        _request: tonic::Request<pb::SubscribeRequest>,
    ) -> Result<tonic::Response<Self::SubscribeStream>, Status> {
        Err(Status::unimplemented("not here"))
    }
}

/// Serves `peer` on a loopback port and builds a connector to it whose
/// answers are decoded up to `max_bytes`.
async fn against(peer: FakePeer, max_bytes: usize) -> (LiaisonConnector, tempfile::TempDir) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::sharing_service_server::SharingServiceServer::new(peer))
            .serve(addr),
    );
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (token_url, _) = token_server(300, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = parse(&config_text(
        dir.path(),
        &format!("http://{addr}"),
        &token_url,
    ));
    config.max_message_bytes = Some(max_bytes);
    (LiaisonConnector::new(&config).await.unwrap(), dir)
}

fn share() -> ShareRequest {
    ShareRequest {
        purpose: "safeguarding-children".into(),
        justification: "Section 47 enquiry".into(),
        isa_id: "hackney-met".into(),
        case_reference: "HCK-1".into(),
        correlation_id: "corr-7".into(),
        on_behalf_of: pb::OnBehalfOf {
            agency_id: "hackney-childrens".into(),
            subject: "sw-1".into(),
            display_name: "Sam Okoro".into(),
        },
    }
}

#[tokio::test]
async fn the_peer_is_asked_with_the_share_token_and_trace_and_its_strays_are_dropped() {
    let peer = FakePeer {
        matches: vec![
            pb::PersonMatch {
                person: Some(person("met-police.records:100003")),
                ..Default::default()
            },
            pb::PersonMatch {
                person: Some(person("elsewhere:9")),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let seen = peer.seen.clone();
    let (c, _dir) = against(peer, 1 << 20).await;
    let query = PersonQuery {
        family_name: Some("Doyle".into()),
        ..PersonQuery::default()
    };
    let parent =
        crate::trace::TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let found = crate::trace::with_trace_parent(
        parent,
        with_share_request(Some(share()), c.search(&query, 10)),
    )
    .await
    .unwrap();
    let ids: Vec<&str> = found.persons.iter().map(|p| p.person_id.as_str()).collect();
    assert_eq!(ids, vec!["met-police.federated:100003"]);
    assert!(
        found
            .skipped
            .iter()
            .any(|p| p.problem.contains("not of its dataset")),
        "{:?}",
        found.skipped
    );
    let seen = seen.lock();
    let (headers, context) = &seen[0];
    assert_eq!(headers["authorization"], "Bearer tok-1");
    assert_eq!(
        headers["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert!(headers.contains_key("grpc-timeout"), "{headers:?}");
    assert_eq!(context.isa_id, "met-hackney-children");
    assert_eq!(context.correlation_id, "corr-7");
    assert_eq!(context.case_reference, "HCK-1");
    assert_eq!(context.on_behalf_of.as_ref().unwrap().subject, "sw-1");
}

#[tokio::test]
async fn an_oversized_answer_is_refused_and_the_connector_stays_usable() {
    let mut big = person("met-police.records:100003");
    big.names[0].given_names = "x".repeat(300 * 1024);
    let peer = FakePeer {
        matches: vec![pb::PersonMatch {
            person: Some(big),
            ..Default::default()
        }],
        read: pb::GetRecordsResponse {
            person: Some(person("met-police.records:100003")),
            records: vec![pb::Record {
                record_id: "met-police.records:r1".into(),
                person_id: "met-police.records:100001".into(),
                kind: pb::RecordKind::Incident as i32,
                body: Some(pb::record::Body::Incident(pb::Incident::default())),
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let (c, _dir) = against(peer, 64 * 1024).await;
    let query = PersonQuery {
        family_name: Some("Doyle".into()),
        ..PersonQuery::default()
    };
    let err = with_share_request(Some(share()), c.search(&query, 10))
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Source, "{err}");
    assert!(err.to_string().contains("OUT_OF_RANGE"), "{err}");

    // A record about another person is not passed on with this one.
    let fetched = with_share_request(Some(share()), c.fetch("100003", &[]))
        .await
        .unwrap();
    assert_eq!(
        fetched.person.unwrap().person_id,
        "met-police.federated:100003"
    );
    assert!(fetched.records.is_empty());
    assert!(
        fetched
            .skipped
            .iter()
            .any(|p| p.problem.contains("about another person")),
        "{:?}",
        fetched.skipped
    );
}

/// A certificate authority made for one test.
struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self { params, key, cert }
    }
}

/// Accepted TLS connections, handed to tonic as in-memory pipes (tonic
/// serves rustls streams only with a feature the workspace leaves off).
struct Piped(tokio::sync::mpsc::Receiver<tokio::io::DuplexStream>);

impl tonic::codegen::tokio_stream::Stream for Piped {
    type Item = Result<tokio::io::DuplexStream, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|s| s.map(Ok))
    }
}

/// Serves `peer` over TLS 1.3 on loopback, demanding a client certificate
/// from `ca`; returns the port.
async fn serve_mutual_tls(peer: FakePeer, ca: &TestCa) -> u16 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (mut near, far) = tokio::io::duplex(64 * 1024);
                if tx.send(far).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut near).await;
                }
            });
        }
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::sharing_service_server::SharingServiceServer::new(peer))
            .serve_with_incoming(Piped(rx)),
    );
    port
}

#[tokio::test]
async fn over_https_the_peer_is_reached_with_the_client_certificate_only() {
    let ca = TestCa::new();
    let peer = FakePeer {
        matches: vec![pb::PersonMatch {
            person: Some(person("met-police.records:100003")),
            ..Default::default()
        }],
        ..Default::default()
    };
    let port = serve_mutual_tls(peer, &ca).await;

    let dir = tempfile::tempdir().unwrap();
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_cert = rcgen::CertificateParams::new(vec!["hackney-gateway".to_owned()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.path().join("client.pem"), client_cert.pem()).unwrap();
    std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).unwrap();
    let (token_url, _) = token_server(300, 200).await;
    let mut config = parse(&config_text(
        dir.path(),
        &format!("https://localhost:{port}"),
        &token_url,
    ));
    config.ca_file = Some(dir.path().join("ca.pem"));
    config.resilience.deadline_ms = 2_000;
    let query = PersonQuery {
        family_name: Some("Doyle".into()),
        ..PersonQuery::default()
    };

    // Without a client certificate the peer's handshake refuses us.
    let anonymous = LiaisonConnector::new(&config).await.unwrap();
    let err = with_share_request(Some(share()), anonymous.search(&query, 5))
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Source, "{err}");

    config.client_cert_file = Some(dir.path().join("client.pem"));
    config.client_key_file = Some(dir.path().join("client.key"));
    let mutual = LiaisonConnector::new(&config).await.unwrap();
    let found = with_share_request(Some(share()), mutual.search(&query, 5))
        .await
        .unwrap();
    assert_eq!(found.persons.len(), 1);
    assert_eq!(found.persons[0].person_id, "met-police.federated:100003");
}

/// The federation example in the guide parses, so it cannot drift from the
/// format; only its files are missing here.
#[test]
fn the_documented_federation_connector_parses() {
    let doc = include_str!("../../../docs/connectors.md");
    let block = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("kind = \"liaison\""))
        .expect("docs/connectors.md shows a liaison connector");
    #[derive(serde::Deserialize)]
    struct File {
        connector: Vec<crate::ConnectorConfig>,
    }
    let file: File = toml::from_str(block).unwrap();
    let [crate::ConnectorConfig::Liaison(config)] = file.connector.as_slice() else {
        panic!("one liaison connector expected")
    };
    assert_eq!(
        config
            .isa_map
            .get("hackney-met-federated")
            .map(String::as_str),
        Some("met-hackney-children")
    );
    let problems = config.problems();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.ends_with("is not a readable file")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn a_peers_own_gaps_are_passed_on_named_with_the_peer() {
    let peer = FakePeer {
        read: pb::GetRecordsResponse {
            person: Some(person("met-police.records:100003")),
            gaps: vec![
                pb::SourceGap {
                    dataset_id: "met-police.custody".into(),
                    reason: "DEADLINE_EXCEEDED".into(),
                    message: "no answer within 2000 ms".into(),
                },
                pb::SourceGap {
                    dataset_id: "met-police.intel".into(),
                    reason: "SOMETHING_INVENTED".into(),
                    message: "x".repeat(5_000),
                },
            ],
            ..Default::default()
        },
        ..Default::default()
    };
    let (c, _dir) = against(peer, 1 << 20).await;
    let fetched = with_share_request(Some(share()), c.fetch("100003", &[]))
        .await
        .unwrap();
    assert!(fetched.person.is_some());
    let gaps: Vec<(&str, &str)> = fetched
        .gaps
        .iter()
        .map(|g| (g.source.as_str(), g.reason.as_str()))
        .collect();
    assert_eq!(
        gaps,
        [
            ("met-police/met-police.custody", "DEADLINE_EXCEEDED"),
            // A reason outside the published set is read as unavailable.
            ("met-police/met-police.intel", "UNAVAILABLE"),
        ]
    );
    assert_eq!(fetched.gaps[0].message, "no answer within 2000 ms");
    assert!(fetched.gaps[1].message.chars().count() <= 201, "bounded");
}
