//! What telemetry costs: one gateway configuration (in-memory connector,
//! SQLite ledger, the 1,000-rule policy) started fresh in four ways in every
//! round, in a rotating order, each measured at peak with h2load:
//!
//! - **silent**: `RUST_LOG=off`, nothing logged or traced: the reference;
//! - **off**: the default, no `[telemetry]` table, logs at `info`;
//! - **metrics**: `[telemetry] admin_listen`, every instrument recorded
//!   and served as Prometheus text;
//! - **traces**: `[telemetry] otlp_endpoint`, every share's span tree
//!   exported over OTLP/gRPC to a collector stand-in in this process.
//!
//! "Off costs nothing measurable" is the claim that off and silent differ
//! by less than silent differs from itself between rounds.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};

use crate::{
    Cli, fixture, process, report,
    run::{self, Env},
};

/// How the gateway is told to report on itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `RUST_LOG=off`.
    Silent,
    /// No `[telemetry]`: the default.
    Off,
    /// Prometheus metrics on the admin listener.
    Metrics,
    /// OTLP traces (and metrics) to a collector.
    Traces,
}

impl Variant {
    /// Every variant, in the first round's order.
    pub const ALL: [Variant; 4] = [
        Variant::Silent,
        Variant::Off,
        Variant::Metrics,
        Variant::Traces,
    ];

    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Silent => "silent (`RUST_LOG=off`)",
            Variant::Off => "telemetry off (the default)",
            Variant::Metrics => "Prometheus metrics (`admin_listen`)",
            Variant::Traces => "OTLP traces and metrics (`otlp_endpoint`)",
        }
    }
}

/// One variant's figures in one round.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// `GetRecords` answered per second under h2load.
    pub rps: f64,
    /// Gateway CPU time per answered request, µs.
    pub cpu_us: f64,
    /// Peak resident memory, KiB.
    pub peak_rss_kib: u64,
}

/// Everything measured: `rounds[r][v]` is variant `Variant::ALL[v]` in round
/// `r`; `orders[r]` the order the round ran them in.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Per round, per variant.
    pub rounds: Vec<[Figures; 4]>,
    /// Per round, the order run.
    pub orders: Vec<Vec<Variant>>,
    /// Spans the collector stand-in received.
    pub spans: u64,
}

/// Counts the spans exported to it and keeps nothing.
#[derive(Debug, Default, Clone)]
struct Collector(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Runs the scenario and writes its report.
pub async fn bench(cli: &Cli) -> Result<(), String> {
    let started = Instant::now();
    let env = run::env(cli).await?;
    let folder = run::legacy_export(&env, 1_000)?;

    let collector = Collector::default();
    let sink = process::free_addr()?;
    let serving = collector.clone();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(serving))
            .serve(sink)
            .await;
    });

    let load_before = run::load_average();
    let mut results = Results::default();
    for round in 0..cli.rounds.max(1) {
        let mut order = Variant::ALL.to_vec();
        order.rotate_left(round % Variant::ALL.len());
        let mut figures = [Figures::default(); 4];
        for variant in &order {
            eprintln!("round {}: {}", round + 1, variant.label());
            let f = measure(&env, &folder, *variant, sink).await?;
            if let Some(i) = Variant::ALL.iter().position(|v| v == variant)
                && let Some(slot) = figures.get_mut(i)
            {
                *slot = f;
            }
        }
        results.rounds.push(figures);
        results.orders.push(order);
    }
    let load_after = run::load_average();
    results.spans = collector.0.load(Ordering::Relaxed);
    if results.spans == 0 {
        return Err("the collector stand-in received no spans from the traced gateway".into());
    }

    let block = report::telemetry::render(
        &results,
        &report::telemetry::RunInfo {
            quick: cli.quick,
            seconds: env.durations.h2load,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            load: (load_before, load_after),
            elapsed: started.elapsed(),
        },
    );
    report::publish(
        cli,
        report::telemetry::SECTION,
        report::telemetry::INTRO,
        &block,
    )
}

/// Starts the gateway as `variant` says, checks its answers and measures
/// `GetRecords` at peak.
async fn measure(
    env: &Env,
    folder: &std::path::Path,
    variant: Variant,
    sink: std::net::SocketAddr,
) -> Result<Figures, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let demo = std::fs::read_to_string(env.repo.join("deploy/demo/policy.toml"))
        .map_err(|e| format!("deploy/demo/policy.toml: {e}"))?;
    std::fs::write(dir.path().join("policy.toml"), fixture::policy(&demo))
        .map_err(|e| e.to_string())?;
    let addr = process::free_addr()?;
    let mut text = fixture::config(
        &addr.to_string(),
        &format!("sqlite://{}", dir.path().join("ledger.db").display()),
        &env.issuer_url,
        &fixture::Source::Memory {
            folder,
            mapping: &env.repo.join("connectors/examples/council-csv.toml"),
        },
    );
    match variant {
        Variant::Silent | Variant::Off => {}
        Variant::Metrics => {
            let admin = process::free_addr()?;
            text.push_str(&format!("\n[telemetry]\nadmin_listen = \"{admin}\"\n"));
        }
        Variant::Traces => {
            text.push_str(&format!(
                "\n[telemetry]\notlp_endpoint = \"http://{sink}\"\n"
            ));
        }
    }
    let log_env: &[(&str, &str)] = match variant {
        Variant::Silent => &[("RUST_LOG", "off")],
        _ => &[("RUST_LOG", "info")],
    };
    let server = run::serve_config(
        env,
        &dir.path().join("liaison.toml"),
        &text,
        log_env,
        addr,
        &dir.path().join("gateway.log"),
    )
    .await?;
    let checked = run::first_answers(addr, &env.auth).await?;
    let body = dir.path().join("records.bin");
    std::fs::write(&body, fixture::grpc_frame(&checked.get)).map_err(|e| e.to_string())?;
    let peak = run::peak_at(
        addr,
        &[&server],
        "/liaison.v1.SharingService/GetRecords",
        &body,
        env,
        checked.records_bytes,
    )
    .await?;
    let figures = Figures {
        rps: peak.h2load.rps,
        cpu_us: peak.cpu_us,
        peak_rss_kib: server.peak_rss_kib(),
    };
    server.stop().await;
    Ok(figures)
}
