//! Gateway throughput and latency beside a bare tonic echo server, in one run
//! on one machine.
//!
//! Each round starts, measures and stops an echo server and the gateway in
//! each configuration, as child processes, so a figure is always compared
//! with the echo ceiling measured minutes apart under the same load on the
//! machine; the report gives medians over the rounds and every figure as a
//! ratio to echo. See BENCHMARKS.md, "Gateway throughput and latency".

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, ValueEnum};

pub mod balancer;
pub mod echo;
pub mod fairness;
pub mod fixture;
pub mod issuer;
pub mod load;
pub mod process;
pub mod report;
pub mod run;
pub mod scale;
pub mod telemetry;

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Measure {
    /// One gateway in each configuration beside echo (BENCHMARKS.md,
    /// "Gateway throughput and latency").
    Throughput,
    /// 1, 2 and 3 replicas on one PostgreSQL ledger behind a TCP balancer,
    /// then one killed mid-load ("Scale-out behind one port").
    ScaleOut,
    /// One agency flooding beyond its rate limit beside another at a steady
    /// rate ("Per-agency fairness").
    Fairness,
    /// The same gateway with telemetry off, with nothing logged at all,
    /// with Prometheus metrics and with OTLP export ("Telemetry cost").
    Telemetry,
}

/// Measures the gateway against a bare tonic echo server.
#[derive(Debug, Parser)]
#[command(name = "liaison-bench", version, about)]
pub struct Cli {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Measure::Throughput)]
    pub scenario: Measure,
    /// Short rounds (about a minute and a half in all) for a smoke test.
    #[arg(long)]
    pub quick: bool,
    /// Rounds of echo and gateway runs; the report gives their medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of each h2load run (default 10, or 1 with `--quick`).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// People in the large legacy database.
    #[arg(long, default_value_t = 100_000)]
    pub people: usize,
    /// Leave out the PostgreSQL ledger.
    #[arg(long)]
    pub no_postgres: bool,
    /// Run the gateways without a ledger signing key, so without the sealer
    /// that a deployed gateway runs (as every run before 2026-12-07 did).
    #[arg(long)]
    pub no_seal: bool,
    /// The `liaison` binary (default: beside this one).
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// The file the results are appended to, under "## Gateway throughput
    /// and latency".
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../BENCHMARKS.md"))]
    pub output: PathBuf,
    /// Print the results only; do not write them to `--output`.
    #[arg(long)]
    pub no_write: bool,
    /// Where the generated legacy databases are kept between runs (default:
    /// `bench-data` beside this binary).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `scale-out`: the most replicas behind the balancer (each round runs
    /// 1 up to this many; the failover run starts with this many).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// `fairness`: `agency_requests_per_second` for every agency; the
    /// measured agency sends a quarter of it.
    #[arg(long, default_value_t = 400)]
    pub agency_rate: u32,
    /// `fairness`: the flooding agency's rate as a multiple of its quota.
    #[arg(long, default_value_t = 10.0)]
    pub flood_factor: f64,
    /// Run as the echo server on this address (used by the bench itself).
    #[arg(long, hide = true)]
    pub echo_server: Option<SocketAddr>,
    /// Run as the TCP balancer on this address (used by the bench itself).
    #[arg(long, hide = true)]
    pub balance: Option<SocketAddr>,
    /// A backend of the balancer; repeated.
    #[arg(long = "backend", hide = true)]
    pub backends: Vec<SocketAddr>,
}

/// Runs the command; the returned code is the process exit code.
pub async fn run(cli: Cli) -> i32 {
    if let Some(addr) = cli.echo_server {
        return match echo::serve(addr).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("echo server: {e}");
                1
            }
        };
    }
    if let Some(addr) = cli.balance {
        return match balancer::serve(addr, cli.backends.clone()).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("balancer: {e}");
                1
            }
        };
    }
    let result = match cli.scenario {
        Measure::Throughput => run::bench(&cli).await,
        Measure::ScaleOut => scale::bench(&cli).await,
        Measure::Fairness => fairness::bench(&cli).await,
        Measure::Telemetry => telemetry::bench(&cli).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("liaison-bench: {e}");
            1
        }
    }
}
