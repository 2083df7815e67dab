//! `liaison policy check | test | explain`: the policy crate's offline
//! tools, with what the gateway knows (agencies, datasets, the published
//! field paths) supplied when a configuration file is given.

use std::path::Path;

use liaison_policy::{KnownNames, MODEL, PolicyEngine, PolicySet, RequestSpec};

use crate::{cli::PolicyCommand, config::Config, share::minimise};

/// Runs a policy command; returns the exit code.
pub fn run(command: PolicyCommand) -> i32 {
    match command {
        PolicyCommand::Check { config, policy } => check(config.as_deref(), policy.as_deref()),
        PolicyCommand::Test { cases, policy } => {
            match liaison_policy::run_case_file(&cases, policy.as_deref()) {
                Ok(report) => {
                    println!("{report}");
                    i32::from(!report.is_ok())
                }
                Err(e) => fail(&e),
            }
        }
        PolicyCommand::Explain { request, policy } => {
            let engine = match std::fs::read_to_string(&policy)
                .map_err(|e| format!("cannot read `{}`: {e}", policy.display()))
                .and_then(|t| PolicySet::from_toml(&t).map_err(|e| e.to_string()))
                .and_then(|s| PolicyEngine::compile(&s).map_err(|e| e.to_string()))
            {
                Ok(e) => e,
                Err(e) => return fail(&e),
            };
            match RequestSpec::load(&request) {
                Ok(spec) => {
                    println!("{}", liaison_policy::explain(&engine, &spec.as_request()));
                    0
                }
                Err(e) => fail(&e),
            }
        }
    }
}

/// The field paths a policy may name: every releasable path and each of
/// its ancestors.
pub fn known_fields() -> Vec<String> {
    let mut out: Vec<String> = minimise::PATHS.iter().map(|p| (*p).to_owned()).collect();
    out.sort();
    out
}

fn check(config: Option<&Path>, policy: Option<&Path>) -> i32 {
    let (path, known) = match (config, policy) {
        (Some(c), _) => match Config::load(c) {
            Ok(config) => {
                let known = KnownNames::default()
                    .with_agencies(config.agencies.iter().map(|a| a.id.get_ref().clone()))
                    .with_datasets(config.connectors.iter().map(|c| c.id().to_owned()))
                    .with_fields(known_fields());
                (config.policy_path(), known)
            }
            Err(e) => return fail(&e),
        },
        (None, Some(p)) => (
            p.to_path_buf(),
            KnownNames::default().with_fields(known_fields()),
        ),
        (None, None) => return fail(&"give --config FILE or --policy FILE"),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return fail(&format!("cannot read `{}`: {e}", path.display())),
    };
    let today = time::OffsetDateTime::now_utc().date();
    let report = liaison_policy::check(&text, MODEL, &known, today);
    println!("{report}");
    i32::from(!report.is_ok())
}

fn fail(e: &dyn std::fmt::Display) -> i32 {
    eprintln!("error: {e}");
    1
}
