//! The `liaison` binary: parses the command line and runs it.

use clap::Parser;

/// mimalloc rather than the system allocator: every share allocates and
/// frees many small objects on both runtime threads, and glibc malloc spent
/// about a quarter of the gateway's CPU on that under load (BENCHMARKS.md).
/// Its defaults keep freed pages for a second; the shipped deployments set
/// `MIMALLOC_PURGE_DELAY=0` and `MIMALLOC_ARENA_EAGER_COMMIT=0`, which
/// return them at once and keep resident memory near glibc's
/// (docs/operations.md, "Memory").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    liaison_gateway::telemetry::init();
    let code = liaison_gateway::cli::run(liaison_gateway::cli::Cli::parse()).await;
    std::process::exit(code);
}
