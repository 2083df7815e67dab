//! `liaison-conformance`: runs the conformance checks against a running
//! Liaison deployment and reports them as a table and, optionally, JUnit XML.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use liaison_conformance::checks::{
    self, Gaps, Target,
    report::{junit, table},
    target::{self, TlsFiles},
};

/// Check a running Liaison gateway against the published contract.
///
/// Exit status: 0 when no check failed, 1 when one did (or a listed known
/// gap passed), 2 when the run could not start.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The gateway, `http://host:port` or `https://host:port`; defaults to
    /// the principals file's `target` or the demo's gateway.
    #[arg(long)]
    target: Option<String>,
    /// PEM CA certificates to trust for an https target.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// PEM client certificate chain, for mutual TLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// TOML file naming the principals (`sharer`, `overseer`, optionally
    /// `outsider`, `expired`, `wrong_audience`) and what to share about.
    #[arg(long, conflicts_with = "demo_dir")]
    principals: Option<PathBuf>,
    /// A running `liaison demo`'s state directory, instead of `--principals`.
    #[arg(long)]
    demo_dir: Option<PathBuf>,
    /// Run checks that disclose data; each such share is recorded in the
    /// deployment's audit ledger.
    #[arg(long)]
    allow_writes: bool,
    /// Only these checks; a group name (`deny`) selects the group. Repeatable.
    #[arg(long = "case", value_name = "ID")]
    cases: Vec<String>,
    /// Known gaps: a TOML file of `[[gap]]` entries, each a `case` and the
    /// `reason` the deployment does not pass it yet.
    #[arg(long, value_name = "FILE")]
    expectations: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// List the checks and exit.
    #[arg(long)]
    list: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for c in checks::all() {
            let w = if c.writes { " (writes)" } else { "" };
            println!("{:48} {}{w}", c.id, c.description);
        }
        return ExitCode::SUCCESS;
    }
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("liaison-conformance: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let file = match (&args.principals, &args.demo_dir) {
        (Some(p), _) => target::from_file(p)?,
        (None, Some(d)) => target::from_demo_dir(d)?,
        (None, None) => return Err("give --principals FILE or --demo-dir DIR".into()),
    };
    let url = args
        .target
        .clone()
        .or_else(|| file.target.clone())
        .ok_or("give --target URL")?;
    let selected = checks::select(&args.cases);
    if selected.is_empty() {
        return Err(format!("no check matches {:?}; see --list", args.cases));
    }
    let tls = TlsFiles {
        ca: args.ca,
        cert: args.cert,
        key: args.key,
    };
    let target = Target::new(&url, &tls, file, args.allow_writes)?;
    println!("liaison-conformance against {url}\n");
    let gaps = match &args.expectations {
        Some(p) => Gaps::load(p)?,
        None => Gaps::default(),
    };
    let outcomes = checks::run_all(selected, target, &gaps).await;
    print!("{}", table(&outcomes));
    if let Some(path) = &args.junit {
        let xml = junit(&url, &outcomes)?;
        std::fs::write(path, xml).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    }
    Ok(!outcomes.iter().any(checks::report::Outcome::failed))
}
