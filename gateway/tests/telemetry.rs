//! Traces: a share's spans reach an OTLP collector as one tree under the
//! RPC's server span, in the caller's trace when it sent `traceparent`, and
//! the audit entry names that trace.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

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
use tokio::sync::Mutex;
use tokio_stream::wrappers::TcpListenerStream;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_is_one_trace_of_its_stages_joined_to_the_callers_and_named_in_the_audit_entry() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let world = World::start_with(None, |text| {
        format!(
            "{text}\n[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"liaison-test\"\nlog_format = \"json\"\n"
        )
    })
    .await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();

    let fresh = search(&world, &sw, None).await;
    let joined = search(&world, &sw, Some(CALLER_PARENT)).await;
    let ledger = world.gateway.ledger.clone();
    // Shutting down flushes the batched spans.
    let World { gateway, .. } = world;
    gateway.shutdown().await.unwrap();

    let spans = collector.0.lock().await.clone();
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
}
