//! Traces: a share's spans reach an OTLP collector over TLS as one tree
//! under the RPC's server span, in the caller's trace when it sent
//! `traceparent`, and the audit entry names that trace. A collector whose
//! certificate the gateway does not trust is sent nothing, and the gateway
//! serves on regardless.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use common::*;
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::Span,
};
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::Mutex;
use tokio_stream::wrappers::ReceiverStream;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// An OTLP collector stand-in that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().await;
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
        .map(|v| match v {
            Value::StringValue(s) => s,
            other => format!("{other:?}"),
        })
}

async fn search(
    world: &World,
    token: &str,
    traceparent: Option<&str>,
) -> pb::SearchPersonsResponse {
    let mut req = authed(
        token,
        pb::SearchPersonsRequest {
            context: Some(context("safeguarding-children")),
            query: Some(leah()),
            ..Default::default()
        },
    );
    if let Some(tp) = traceparent {
        req.metadata_mut()
            .insert("traceparent", tp.parse().unwrap());
    }
    SharingServiceClient::new(world.channel.clone())
        .search_persons(req)
        .await
        .unwrap()
        .into_inner()
}

/// A CA's certificate (PEM) and a server configuration presenting a
/// `localhost` certificate it issued.
fn collector_tls(ca_name: &str) -> (String, Arc<rustls::ServerConfig>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    (ca_pem, Arc::new(config))
}

/// Serves `collector` over TLS with whichever configuration `presents`
/// holds at each handshake; counts the handshakes that failed.
async fn serve_over_tls(
    collector: Collector,
    presents: Arc<parking_lot::RwLock<Arc<rustls::ServerConfig>>>,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let counter = refused.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(presents.read().clone());
            let (tx, counter) = (tx.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    counter.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                // tonic serves what it is handed; the TLS stream is piped
                // through an in-memory stream it knows.
                let (mut near, far) = tokio::io::duplex(64 * 1024);
                let _ = tx.send(Ok::<_, std::io::Error>(far)).await;
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut near).await;
            });
        }
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector))
            .serve_with_incoming(ReceiverStream::new(rx)),
    );
    (addr, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_is_one_trace_of_its_stages_joined_to_the_callers_and_named_in_the_audit_entry() {
    let (trusted_ca, trusted) = collector_tls("Collector CA");
    let (_, untrusted) = collector_tls("Another CA");
    let collector = Collector::default();
    // The collector first presents a certificate from a CA the gateway was
    // not told to trust.
    let presents = Arc::new(parking_lot::RwLock::new(untrusted));
    let (addr, refused) = serve_over_tls(collector.clone(), presents.clone()).await;
    let endpoint = format!("https://localhost:{}", addr.port());
    let pki = tempfile::tempdir().unwrap();
    let ca_path = pki.path().join("collector-ca.pem");
    std::fs::write(&ca_path, trusted_ca).unwrap();
    let world = World::start_with(None, |text| {
        format!(
            "{text}\n[telemetry]\notlp_endpoint = \"{endpoint}\"\notlp_ca = \"{}\"\nservice_name = \"liaison-test\"\nlog_format = \"json\"\n",
            ca_path.display()
        )
    })
    .await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();

    // Nothing reaches a collector the gateway cannot authenticate, and
    // shares go on.
    let unexported = search(&world, &sw, None).await;
    world.gateway.flush_telemetry().await;
    // The collector sees the handshake fail a moment after the gateway.
    for _ in 0..100 {
        if refused.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "the gateway tried to export"
    );
    assert!(collector.0.lock().await.is_empty());

    // With a certificate from the CA in `otlp_ca`, spans arrive.
    *presents.write() = trusted;
    let fresh = search(&world, &sw, None).await;
    let joined = search(&world, &sw, Some(CALLER_PARENT)).await;
    let ledger = world.gateway.ledger.clone();
    // Shutting down flushes the batched spans.
    let World { gateway, .. } = world;
    gateway.shutdown().await.unwrap();

    let spans = collector.0.lock().await.clone();
    assert!(!spans.is_empty(), "spans arrive over TLS");
    let trace_of = |entry_id: &str| {
        let ledger = ledger.clone();
        let entry_id = entry_id.to_owned();
        async move {
            let stored = ledger.get(&entry_id).await.unwrap().unwrap();
            pb::AuditEntry::decode(stored.body.as_slice())
                .unwrap()
                .trace_id
        }
    };
    for (response, caller) in [(&fresh, None), (&joined, Some(CALLER_TRACE))] {
        let receipt = response.receipt.clone().unwrap();
        let audited = trace_of(&receipt.entry_id).await;
        assert_eq!(audited.len(), 32, "the audit entry names the trace");
        if let Some(caller) = caller {
            assert_eq!(audited, caller, "the caller's trace is continued");
        }
        let in_trace: Vec<&Span> = spans
            .iter()
            .filter(|s| hex::encode(&s.trace_id) == audited)
            .collect();
        let server: Vec<&&Span> = in_trace
            .iter()
            .filter(|s| s.name == "liaison.v1.SharingService/SearchPersons")
            .collect();
        assert_eq!(server.len(), 1, "one server span: {in_trace:#?}");
        let server = server[0];
        assert_eq!(attribute(server, "rpc.system").as_deref(), Some("grpc"));
        match caller {
            Some(_) => assert_eq!(hex::encode(&server.parent_span_id), "00f067aa0ba902b7"),
            None => assert!(server.parent_span_id.is_empty()),
        }
        for stage in [
            "authenticate",
            "admit",
            "validate",
            "authorise",
            "fetch",
            "minimise",
            "audit-append",
        ] {
            let span = in_trace
                .iter()
                .find(|s| s.name == stage)
                .unwrap_or_else(|| panic!("no `{stage}` span in {in_trace:#?}"));
            assert_eq!(
                span.parent_span_id, server.span_id,
                "`{stage}` is a child of the server span"
            );
        }
        let fetch = in_trace.iter().find(|s| s.name == "fetch").unwrap();
        assert_eq!(attribute(fetch, "dataset").as_deref(), Some(DATASET));
    }
    let lost = trace_of(&unexported.receipt.unwrap().entry_id).await;
    assert!(
        spans.iter().all(|s| hex::encode(&s.trace_id) != lost),
        "spans refused by the untrusted collector are not sent later"
    );
}
