//! Gateway throughput and latency beside a bare tonic echo server, in one run
//! on one machine.
//!
//! Each round starts, measures and stops an echo server and the gateway in
//! each configuration, as child processes, so a figure is always compared
//! with the echo ceiling measured minutes apart under the same load on the
//! machine; the report gives medians over the rounds and every figure as a
//! ratio to echo. See BENCHMARKS.md, "Gateway throughput and latency".

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;

pub mod echo;
pub mod fixture;
pub mod issuer;
pub mod load;
pub mod process;
pub mod report;
pub mod run;

/// Measures the gateway against a bare tonic echo server.
#[derive(Debug, Parser)]
#[command(name = "liaison-bench", version, about)]
pub struct Cli {
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
    /// Run as the echo server on this address (used by the bench itself).
    #[arg(long, hide = true)]
    pub echo_server: Option<SocketAddr>,
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
    match run::bench(&cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("liaison-bench: {e}");
            1
        }
    }
}
