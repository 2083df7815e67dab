//! Metrics: after a share, a denial and requests over the agency's rate
//! limit, `GET /metrics` on the admin listener counts each, and the ledger's
//! appends were timed; `/healthz` and `/readyz` answer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use tonic::Code;

/// The value of the sample line `series` (name and labels exactly), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_shares_denials_and_ledger_appends() {
    let admin = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let world = World::start_with(None, |text| {
        let text = text.replace(
            "[ledger]",
            "[server.limits]\nagency_requests_per_second = 1\nagency_burst = 2\n[ledger]",
        );
        format!("{text}\n[telemetry]\nadmin_listen = \"{admin}\"\n")
    })
    .await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let mut sharing = SharingServiceClient::new(world.channel.clone());
    for purpose in ["safeguarding-children", "crime-prevention"] {
        let result = sharing
            .search_persons(authed(
                &sw,
                pb::SearchPersonsRequest {
                    context: Some(context(purpose)),
                    query: Some(leah()),
                    ..Default::default()
                },
            ))
            .await;
        if purpose == "crime-prevention" {
            assert_eq!(result.unwrap_err().code(), Code::PermissionDenied);
        } else {
            assert!(!result.unwrap().into_inner().matches.is_empty());
        }
    }

    // The two shares spent the agency's burst: of five more calls at once,
    // few more are admitted, and every refusal is counted.
    let mut refused = 0.0;
    for _ in 0..5 {
        match sharing
            .list_datasets(authed(&sw, pb::ListDatasetsRequest::default()))
            .await
        {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                refused += 1.0;
            }
        }
    }
    assert!(refused >= 3.0, "{refused} of 5 refused");

    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("http://{admin}{path}")).send();
    let metrics = get("/metrics").await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert_eq!(
        sample(
            &text,
            r#"liaison_shares_total{method="SearchPersons",outcome="disclosed"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"liaison_shares_total{method="SearchPersons",outcome="denied"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"liaison_denials_total{reason="PURPOSE_NOT_PERMITTED"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"liaison_ledger_append_duration_count{ok="true"}"#),
        Some(2.0),
        "{text}"
    );
    let took = sample(&text, r#"liaison_ledger_append_duration_sum{ok="true"}"#).unwrap();
    assert!(took > 0.0 && took < 10.0, "{took}");
    assert_eq!(
        sample(
            &text,
            &format!(r#"liaison_connector_duration_count{{dataset="{DATASET}"}}"#)
        ),
        Some(1.0),
        "only the allowed share reached the connector: {text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"liaison_admission_refusals_total{agency="hackney-childrens",limit="rate"}"#
        ),
        Some(refused),
        "{text}"
    );
    assert!(sample(&text, "liaison_ledger_entries_total").unwrap() >= 2.0);
    assert!(text.contains("# TYPE liaison_ledger_append_duration histogram"));
    assert_eq!(
        sample(
            &text,
            &format!(r#"liaison_connector_circuit{{dataset="{DATASET}",state="closed"}}"#)
        ),
        Some(1.0),
        "{text}"
    );

    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    world.gateway.shutdown().await.unwrap();
}
