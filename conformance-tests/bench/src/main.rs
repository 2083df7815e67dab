//! The `liaison-bench` binary: parses the command line and runs it.

use clap::Parser;

#[tokio::main]
async fn main() {
    let code = liaison_bench::run(liaison_bench::Cli::parse()).await;
    std::process::exit(code);
}
