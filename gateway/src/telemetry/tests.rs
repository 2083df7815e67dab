use std::path::Path;

use crate::config::Config;

use super::*;

const BASE: &str = r#"
version = 1
[ledger]
url = "sqlite://ledger.db"
[policy]
file = "policy.toml"
"#;

fn parse(extra: &str) -> Result<Config, crate::config::ConfigError> {
    Config::parse(
        &format!("{BASE}{extra}"),
        Path::new("test.toml"),
        Path::new("/etc/liaison"),
    )
}

#[test]
fn without_a_telemetry_table_nothing_is_configured() {
    assert!(parse("").unwrap().telemetry.is_none());
}

#[test]
fn the_example_telemetry_table_parses_when_uncommented() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/liaison.example.toml"),
    )
    .unwrap();
    let table: String = example
        .lines()
        .skip_while(|l| *l != "# [telemetry]")
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let t = parse(&table).unwrap().telemetry.unwrap();
    assert_eq!(
        t.otlp_endpoint.as_deref(),
        Some("http://otel-collector:4317")
    );
    assert_eq!(t.service_name, "liaison");
    assert_eq!(t.admin_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(t.log_format, LogFormat::Json);
}

#[test]
fn defaults_are_text_logs_and_the_liaison_service_name() {
    let t = parse("[telemetry]\n").unwrap().telemetry.unwrap();
    assert_eq!(t.service_name, "liaison");
    assert_eq!(t.log_format, LogFormat::Text);
    assert_eq!(t.otlp_endpoint, None);
    assert_eq!(t.admin_listen, None);
}

#[test]
fn a_bad_endpoint_an_empty_name_and_an_unknown_format_are_refused() {
    let p = parse("[telemetry]\notlp_endpoint = \"collector:4317\"\nservice_name = \" \"\n")
        .unwrap_err()
        .problems;
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["telemetry.otlp_endpoint", "telemetry.service_name"],
        "{p:?}"
    );
    assert_eq!(p[0].line, Some(8), "{p:?}");
    assert!(p[0].message.contains("`collector:4317`"), "{p:?}");

    let p = parse("[telemetry]\nlog_format = \"xml\"\n")
        .unwrap_err()
        .problems;
    assert!(p[0].message.contains("xml"), "{p:?}");
}

#[test]
fn no_trace_is_current_outside_a_traced_span() {
    assert_eq!(current_trace_id(), None);
    assert_eq!(current_trace_parent(), None);
}
