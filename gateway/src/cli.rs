//! The `liaison` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{audit_cli, config::Config, demo, policy_cli, query, server};

/// Liaison: a gateway for lawful, minimal and accountable sharing of
/// safeguarding information between agencies.
#[derive(Debug, Parser)]
#[command(name = "liaison", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once at start-up")]
pub enum Command {
    /// Run the gateway from a configuration file.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "liaison.toml", env = "LIAISON_CONFIG")]
        config: PathBuf,
    },
    /// Run a complete local demo: two identity providers, synthetic data, an
    /// agreement, a SQLite ledger and the gateway.
    Demo {
        /// Where the demo keeps its ledger, data and generated config.
        #[arg(long, default_value = ".liaison/demo")]
        dir: PathBuf,
        /// The gateway's port.
        #[arg(long, default_value_t = 50051)]
        gateway_port: u16,
        /// The first demo identity provider's port (the second uses the next).
        #[arg(long, default_value_t = 8101)]
        idp_port: u16,
        /// Number of synthetic people in the police records system.
        #[arg(long, default_value_t = 400)]
        people: usize,
    },
    /// Call a gateway as a client: get a token, share, and show the answer
    /// with its audit receipt.
    Query(query::QueryArgs),
    /// Work with the audit ledger.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Check, test and explain policy offline.
    Policy {
        /// What to do.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Work with configuration.
    Config {
        /// What to do.
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `liaison audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the ledger (or an export of it): recompute every entry's
    /// hash, the chain and the Merkle tree, check every signed head with the
    /// public keys and against a witness; name the first broken entry or the
    /// heads that disagree.
    Verify(audit_cli::VerifyArgs),
    /// Export the ledger as JSON lines, verifiable offline; continues an
    /// earlier export in the same file.
    Export(audit_cli::ExportArgs),
    /// Make a new Ed25519 signing key for tree heads.
    Keygen(audit_cli::KeygenArgs),
    /// Print the public key of the signing key, for verifiers.
    PublicKey(audit_cli::PublicKeyArgs),
    /// Remove entries past the retention period, after archiving them, up
    /// to a signed head that keeps the rest verifiable.
    Prune(audit_cli::PruneArgs),
    /// Record a DPO's review of a break-glass share or a flagged entry,
    /// with a note, as a REVIEW entry in the ledger.
    Review(Box<audit_cli::ReviewArgs>),
    /// List what awaits a DPO's review: break-glass shares and flags.
    Queue(audit_cli::QueueArgs),
    /// Withhold one share from subject access reports until a date (DPA
    /// 2018 s.45(4)), recorded as a REVIEW entry in the ledger.
    Restrict(Box<audit_cli::RestrictArgs>),
    /// Lift every s.45 restriction of one share, recorded in the ledger.
    Lift(Box<audit_cli::LiftArgs>),
}

/// `liaison policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Lint a policy file: unknown agencies, datasets and fields, dead or
    /// shadowed rules, agreements past their end or review date, and an
    /// unsafe casbin model. Exit code 1 on any error.
    Check {
        /// A gateway configuration file; its policy, agencies, datasets
        /// and the published field paths are checked together.
        #[arg(long, short, conflicts_with = "policy")]
        config: Option<PathBuf>,
        /// A policy file on its own.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Run a file of expected decisions (YAML or TOML) against a policy,
    /// for an agency's policy CI. Exit code 1 if any case fails.
    Test {
        /// The cases file.
        cases: PathBuf,
        /// The policy file, instead of the one the cases file names.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Explain, in words a DPO understands, how policy decides one request
    /// (a YAML or TOML file with agency, roles, action, dataset, purpose,
    /// isa and at, and `break_glass: true` for an emergency invocation).
    Explain {
        /// The request file.
        request: PathBuf,
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
    },
}

/// `liaison config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and the policy it names; list every
    /// problem with its line.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "liaison.toml", env = "LIAISON_CONFIG")]
        config: PathBuf,
    },
}

/// Which ledger to open.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// A gateway configuration file naming the ledger.
    #[arg(long, short, conflicts_with = "ledger")]
    pub config: Option<PathBuf>,
    /// A ledger URL (`sqlite://…` or `postgres://…`).
    #[arg(long, env = "LIAISON_LEDGER_URL")]
    pub ledger: Option<String>,
}

/// Runs the command; the returned code is the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Serve { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            let stop = async {
                shutdown_signal().await;
            };
            match server::start(config, None, stop).await {
                Ok(running) => match running.wait().await {
                    Ok(()) => 0,
                    Err(e) => fail(&e),
                },
                Err(e) => fail(&e),
            }
        }
        Command::Demo {
            dir,
            gateway_port,
            idp_port,
            people,
        } => match demo::run(demo::DemoOptions {
            dir,
            gateway_port,
            idp_port,
            people,
        })
        .await
        {
            Ok(()) => 0,
            Err(e) => fail(&e),
        },
        Command::Query(args) => query::run(args).await,
        Command::Audit { command } => match command {
            AuditCommand::Verify(args) => audit_cli::verify(args).await,
            AuditCommand::Export(args) => audit_cli::export(args).await,
            AuditCommand::Keygen(args) => audit_cli::keygen(&args),
            AuditCommand::PublicKey(args) => audit_cli::public_key(&args),
            AuditCommand::Prune(args) => audit_cli::prune(args).await,
            AuditCommand::Review(args) => audit_cli::review(*args).await,
            AuditCommand::Queue(args) => audit_cli::queue(args).await,
            AuditCommand::Restrict(args) => audit_cli::restrict(*args).await,
            AuditCommand::Lift(args) => audit_cli::lift(*args).await,
        },
        Command::Policy { command } => policy_cli::run(command),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            match server::load_policy(&config).await {
                Ok(engine) => {
                    println!(
                        "configuration is valid: {} agencies, {} issuers, {} connectors, {} agreements (policy {})",
                        config.agencies.len(),
                        config.issuers.len(),
                        config.connectors.len(),
                        engine.agreements().count(),
                        engine.version()
                    );
                    0
                }
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(e: &dyn std::fmt::Display) -> i32 {
    eprintln!("error: {e}");
    1
}

/// Resolves on SIGTERM or Ctrl-C, whichever comes first.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
