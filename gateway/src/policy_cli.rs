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
                let known = match with_markers(known, &config) {
                    Ok(known) => known,
                    Err(e) => return fail(&e),
                };
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

/// Adds the sensitivity markers each dataset's mapping can produce, for datasets whose mapping
/// bounds them, so rules naming a marker no record can carry are reported.
pub fn with_markers(
    mut known: KnownNames,
    config: &Config,
) -> Result<KnownNames, liaison_connectors::ConnectorError> {
    for connector in &config.connectors {
        // Paths as the server resolves them: relative to the configuration file.
        let mut resolved = connector.clone();
        resolved.resolve_paths(&config.base_dir);
        if let Some(markers) = resolved.sensitivity_markers()? {
            known = known.with_markers(connector.id(), markers);
        }
    }
    Ok(known)
}

fn fail(e: &dyn std::fmt::Display) -> i32 {
    eprintln!("error: {e}");
    1
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use liaison_policy::{LintCode, lint_on};

    use super::*;

    /// A gateway whose one dataset is read through the example police mapping, which marks
    /// records `witness-protection` and `child-sexual-exploitation` through code lists.
    fn config() -> Config {
        let text = r#"
version = 1

[ledger]
url = "sqlite://ledger.db"

[policy]
file = "policy.toml"

[[agency]]
id = "met-police"
display_name = "Metropolitan Police Service"
kind = "police"

[[connector]]
kind = "sql"
id = "police.records"
agency = "met-police"
title = "Police records"
system = "RMS"
url = "sqlite://rms.db?mode=ro"
mapping_file = "police-rms.toml"
"#;
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../connectors/examples");
        Config::parse(text, Path::new("liaison.toml"), &examples).unwrap()
    }

    fn policy(marker: &str) -> PolicySet {
        PolicySet::from_toml(&format!(
            r#"
[[rule]]
id = "withhold"
effect = "deny"
agency = "*"
role = "*"
dataset = "police.records"
purpose = "*"
action = "*"
marker = "{marker}"
description = "test"
"#
        ))
        .unwrap()
    }

    #[test]
    fn check_warns_of_a_marker_the_mapping_never_produces() {
        let config = config();
        let known = with_markers(KnownNames::default(), &config).unwrap();
        let today = time::macros::date!(2026 - 06 - 01);
        let markers = |marker: &str| -> Vec<String> {
            lint_on(&policy(marker), &known, today)
                .into_iter()
                .filter(|l| l.code == LintCode::UnproducedMarker)
                .map(|l| format!("{}: {}", l.subject, l.message))
                .collect()
        };
        assert_eq!(markers("witness-protection"), Vec::<String>::new());
        assert_eq!(
            markers("witness-protecton"),
            [
                "rule `withhold`: names marker `witness-protecton`, which no mapping of dataset \
                 `police.records` produces, so it withholds nothing"
            ]
        );
    }

    #[test]
    fn a_mapping_that_cannot_be_read_is_an_error() {
        let mut config = config();
        config.base_dir = Path::new("/nonexistent").to_path_buf();
        assert!(with_markers(KnownNames::default(), &config).is_err());
    }
}
