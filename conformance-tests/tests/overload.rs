//! Overload, black-box: a `liaison serve` process limited to `RATE` requests a
//! second per agency is sent shares open loop at twice that, after a baseline
//! at a quarter of it. The excess must be refused `RESOURCE_EXHAUSTED`
//! (`RATE_LIMITED`, with a retry delay) and nothing else; the process's
//! resident memory must stay bounded (no queue building up behind the
//! limit); and the admitted shares' latency, from each request's intended
//! send time, must stay near the baseline's (a run failing only that is
//! measured once more, and the second verdict kept).
//!
//! The identity providers, agreement, legacy data and signing key are the
//! demo's; the gateway under test is a second process with the demo's
//! configuration, its own SQLite ledger and the limit. Figures are printed
//! (`--nocapture`) and recorded in `BENCHMARKS.md`; the benchmarks, not
//! this test, hold latency targets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod process;

use std::time::Duration;

use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};
use tonic_types::StatusExt as _;

/// `agency_requests_per_second` of the gateway under test.
const RATE: u32 = 200;
/// `agency_burst`.
const BURST: u32 = 20;
/// Seconds of the baseline (at a quarter of the rate) and of the overload
/// (at twice it).
const BASELINE_SECONDS: u32 = 4;
const OVERLOAD_SECONDS: u32 = 10;
/// Resident memory the process may not exceed at its peak.
const PEAK_LIMIT_KIB: u64 = 256 * 1024;
/// How much resident memory may grow from the overload's first seconds to
/// its end: refused requests must not accumulate.
const GROWTH_LIMIT_KIB: u64 = 24 * 1024;
/// Latency ratios are taken of percentiles raised to these floors: on two
/// shared cores a p99 of a few hundred calls moves by several milliseconds
/// between quiet runs, which says nothing about admission.
const P50_FLOOR: Duration = Duration::from_millis(2);
const P99_FLOOR: Duration = Duration::from_millis(20);
const MAX_RATIO: f64 = 2.0;
/// A run failing only the latency bound is measured once more and the
/// second verdict kept (both printed): a build or another suite taking both
/// cores for a second moves a p99 of a few hundred calls by itself.
const ATTEMPTS: u32 = 2;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// What one open-loop run saw.
#[derive(Debug, Default)]
struct Run {
    /// Latency of each admitted share, from its intended send time.
    admitted: Vec<Duration>,
    /// Refusals with `RESOURCE_EXHAUSTED`, `RATE_LIMITED` and a retry delay.
    refused: u32,
    /// Anything else, described.
    other: Vec<String>,
    /// `(seconds into the run, VmRSS KiB)`, sampled every 100 ms.
    rss: Vec<(f64, u64)>,
}

/// Sends `rate` shares a second for `seconds`, each at its scheduled time
/// whatever became of the ones before, sampling the server's memory.
async fn open_loop(channel: &Channel, token: &str, pid: u32, rate: u32, seconds: u32) -> Run {
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    let interval = Duration::from_secs(1) / rate;
    let start = tokio::time::Instant::now();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let end = start + Duration::from_secs(u64::from(seconds));
        while tokio::time::Instant::now() < end {
            tick.tick().await;
            samples.push((start.elapsed().as_secs_f64(), process::memory(pid).0));
        }
        samples
    });
    let mut calls = Vec::new();
    for n in 0..rate * seconds {
        let at = start + interval * n;
        let mut client = SharingServiceClient::new(channel.clone());
        let bearer = bearer.clone();
        calls.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let mut request = Request::new(pb::SearchPersonsRequest {
                context: Some(pb::ShareContext {
                    purpose: "safeguarding-children".into(),
                    justification: "Section 47 enquiry following a school referral".into(),
                    isa_id: "met-hackney-children".into(),
                    ..Default::default()
                }),
                query: Some(pb::PersonQuery {
                    family_name: "Marsh".into(),
                    date_of_birth: Some(pb::Date {
                        year: 2013,
                        month: 5,
                        day: 14,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            request.metadata_mut().insert("authorization", bearer);
            request.set_timeout(Duration::from_secs(10));
            let answer = client.search_persons(request).await;
            (answer.map(|_| ()), at.elapsed())
        }));
    }
    let mut run = Run::default();
    for call in calls {
        match call.await.unwrap() {
            (Ok(()), took) => run.admitted.push(took),
            (Err(status), _) if status.code() == Code::ResourceExhausted => {
                let details = status.get_error_details();
                let reason = details.error_info().map(|i| i.reason.clone());
                let delay = details.retry_info().and_then(|r| r.retry_delay);
                match (reason.as_deref(), delay) {
                    (Some("RATE_LIMITED"), Some(delay))
                        if delay > Duration::ZERO && delay <= Duration::from_secs(1) =>
                    {
                        run.refused += 1;
                    }
                    _ => run.other.push(format!("{status:?}")),
                }
            }
            (Err(status), _) => {
                run.other
                    .push(format!("{:?}: {}", status.code(), status.message()))
            }
        }
    }
    run.rss = sampler.await.unwrap();
    run.admitted.sort();
    run
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twice_the_rate_limit_is_refused_with_memory_bounded_and_admitted_latency_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = process::start_demo(dir.path()).await;
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("demo.json")).unwrap())
            .unwrap();
    let token = process::demo_token(&state, "hackney-social-worker").await;

    let port = free_port();
    let config = std::fs::read_to_string(dir.path().join("liaison.toml"))
        .unwrap()
        .lines()
        .map(|line| {
            if line.starts_with("listen = ") {
                format!(
                    "listen = \"127.0.0.1:{port}\"\n\n[server.limits]\nagency_requests_per_second = {RATE}\nagency_burst = {BURST}"
                )
            } else if line.starts_with("url = \"sqlite://ledger.db\"") {
                "url = \"sqlite://overload-ledger.db\"".to_owned()
            } else if line.starts_with("witness_file = ") {
                "witness_file = \"overload-witness.jsonl\"".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.path().join("overload.toml");
    std::fs::write(&path, config).unwrap();
    let mut gateway = process::serve(
        &path,
        &[
            ("MIMALLOC_PURGE_DELAY", "0"),
            ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
        ],
    );
    let pid = gateway.id().unwrap();
    process::wait_listening(port, &mut gateway).await;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    let channel = channel.expect("the gateway accepts gRPC once listening");

    // Warm up (token cache, connections, the ledger), then let the bucket
    // refill.
    let warm = open_loop(&channel, &token, pid, RATE / 4, 1).await;
    assert!(warm.other.is_empty(), "{:?}", warm.other);
    tokio::time::sleep(Duration::from_secs(1)).await;

    for attempt in 1..=ATTEMPTS {
        let base = open_loop(&channel, &token, pid, RATE / 4, BASELINE_SECONDS).await;
        assert!(base.other.is_empty(), "baseline: {:?}", base.other);
        assert_eq!(base.refused, 0, "a quarter of the rate is never refused");
        tokio::time::sleep(Duration::from_secs(1)).await;

        let over = open_loop(&channel, &token, pid, 2 * RATE, OVERLOAD_SECONDS).await;
        let (_, peak) = process::memory(pid);
        let sent = 2 * RATE * OVERLOAD_SECONDS;
        let admitted = over.admitted.len() as u32;

        // Memory: the peak, and the growth from the overload's second second
        // to its last (a queue behind the limit would grow all along).
        let early = over
            .rss
            .iter()
            .filter(|(t, _)| (1.0..2.0).contains(t))
            .map(|(_, kib)| *kib)
            .max()
            .unwrap();
        let late = over
            .rss
            .iter()
            .filter(|(t, _)| *t >= f64::from(OVERLOAD_SECONDS) - 1.0)
            .map(|(_, kib)| *kib)
            .max()
            .unwrap();
        let ratio = |a: Duration, b: Duration, floor: Duration| {
            a.max(floor).as_secs_f64() / b.max(floor).as_secs_f64()
        };
        let (b50, b99) = (
            percentile(&base.admitted, 50),
            percentile(&base.admitted, 99),
        );
        let (o50, o99) = (
            percentile(&over.admitted, 50),
            percentile(&over.admitted, 99),
        );
        println!(
            "OVERLOAD | attempt {attempt} | limit {RATE}/s (burst {BURST}) | baseline {}/s: {} shares, p50 {b50:.2?}, p99 {b99:.2?} | \
             overload {}/s for {OVERLOAD_SECONDS} s: {sent} sent, {admitted} admitted ({:.0}/s), {} refused RESOURCE_EXHAUSTED, {} other | \
             admitted p50 {o50:.2?} (×{:.2}), p99 {o99:.2?} (×{:.2}) | RSS {} MiB at 1–2 s, {} MiB in the last second, peak {} MiB",
            RATE / 4,
            base.admitted.len(),
            2 * RATE,
            f64::from(admitted) / f64::from(OVERLOAD_SECONDS),
            over.refused,
            over.other.len(),
            ratio(o50, b50, P50_FLOOR),
            ratio(o99, b99, P99_FLOOR),
            early / 1024,
            late / 1024,
            peak / 1024,
        );

        assert!(over.other.is_empty(), "only refusals: {:?}", over.other);
        assert_eq!(admitted + over.refused, sent);
        // The limit admits its rate plus the burst; a little either way for
        // the bucket's state at the start and requests crossing the end.
        let allowed = f64::from(RATE * OVERLOAD_SECONDS + BURST);
        assert!(
            (allowed * 0.9..=allowed * 1.1).contains(&f64::from(admitted)),
            "admitted {admitted} of {sent}; the limit allows about {allowed}"
        );
        assert!(
            peak < PEAK_LIMIT_KIB,
            "peak RSS {} MiB is over {} MiB",
            peak / 1024,
            PEAK_LIMIT_KIB / 1024
        );
        assert!(
            late <= early + GROWTH_LIMIT_KIB,
            "RSS grew from {} MiB to {} MiB during the overload",
            early / 1024,
            late / 1024
        );
        let kept =
            ratio(o50, b50, P50_FLOOR) <= MAX_RATIO && ratio(o99, b99, P99_FLOOR) <= MAX_RATIO;
        if kept {
            break;
        }
        assert!(
            attempt < ATTEMPTS,
            "admitted shares slowed: p50 {b50:?} → {o50:?}, p99 {b99:?} → {o99:?}"
        );
        println!("OVERLOAD | the admitted shares' latency bound failed; measured once more");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    gateway.kill().await.unwrap();
    demo.kill().await.unwrap();
}
