//! Admission under load: one agency sending at twice its rate limit has the
//! excess refused with `RESOURCE_EXHAUSTED` and a retry delay, while another
//! agency is not refused at all. Latency figures are printed for the
//! record; the benchmarks, not this test, hold latency targets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use tonic::Code;
use tonic_types::StatusExt as _;

const RATE: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_at_twice_its_rate_has_the_excess_refused_and_others_are_untouched() {
    let world = World::start_with(None, |text| {
        text.replace(
            "[ledger]",
            &format!(
                "[server.limits]\nagency_requests_per_second = {RATE}\nagency_burst = 5\n[ledger]"
            ),
        )
    })
    .await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let officer = world.met.token(OFFICER).await.unwrap();

    // Open loop: requests leave on schedule whatever the answers do.
    let seconds = 3;
    let total = 2 * RATE * seconds;
    let interval = Duration::from_secs(1) / (2 * RATE);
    let start = tokio::time::Instant::now();
    let mut hackney = Vec::new();
    for n in 0..total {
        let channel = world.channel.clone();
        let sw = sw.clone();
        hackney.push(tokio::spawn(async move {
            tokio::time::sleep_until(start + interval * n).await;
            let sent = Instant::now();
            let answer = SharingServiceClient::new(channel)
                .search_persons(authed(
                    &sw,
                    pb::SearchPersonsRequest {
                        context: Some(context("safeguarding-children")),
                        query: Some(leah()),
                        ..Default::default()
                    },
                ))
                .await;
            (answer.map(|_| ()), sent.elapsed())
        }));
    }
    // Meanwhile another agency, well within its own limit.
    let mut met = Vec::new();
    for n in 0..(RATE / 4 * seconds) {
        let channel = world.channel.clone();
        let officer = officer.clone();
        met.push(tokio::spawn(async move {
            tokio::time::sleep_until(start + Duration::from_millis(u64::from(n) * 100)).await;
            SharingServiceClient::new(channel)
                .list_datasets(authed(&officer, pb::ListDatasetsRequest::default()))
                .await
                .map(|_| ())
        }));
    }

    let (mut admitted, mut refused) = (Vec::new(), 0u32);
    for task in hackney {
        let (answer, took) = task.await.unwrap();
        match answer {
            Ok(()) => admitted.push(took),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                let details = status.get_error_details();
                assert_eq!(details.error_info().unwrap().reason, "RATE_LIMITED");
                let delay = details.retry_info().unwrap().retry_delay.unwrap();
                assert!(
                    delay > Duration::ZERO && delay <= Duration::from_secs(1),
                    "{delay:?}"
                );
                refused += 1;
            }
        }
    }
    for task in met {
        task.await.unwrap().unwrap();
    }
    // About half is over the limit: the rate plus the burst gets through.
    let allowed = f64::from(RATE * seconds + 5);
    let got = admitted.len() as f64;
    assert!(
        (allowed * 0.8..=allowed * 1.5).contains(&got),
        "admitted {got} of {total}; the limit allows about {allowed}"
    );
    assert_eq!(admitted.len() as u32 + refused, total);
    admitted.sort();
    println!(
        "{total} sent at {}/s against a limit of {RATE}/s: {} admitted (p50 {:?}, p99 {:?}), {refused} refused",
        2 * RATE,
        admitted.len(),
        admitted[admitted.len() / 2],
        admitted[admitted.len() * 99 / 100],
    );
}
