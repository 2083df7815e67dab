//! The `liaison` binary: parses the command line and runs it.

use clap::Parser;

#[tokio::main]
async fn main() {
    liaison_gateway::telemetry::init();
    let code = liaison_gateway::cli::run(liaison_gateway::cli::Cli::parse()).await;
    std::process::exit(code);
}
