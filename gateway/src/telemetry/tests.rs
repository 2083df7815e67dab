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
    // The TLS files it names, beside a copy.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["liaison".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    for (file, pem) in [
        ("otel-collector-ca.pem", cert.pem()),
        ("otel-client.crt", cert.pem()),
        ("otel-client.key", key.serialize_pem()),
    ] {
        std::fs::write(dir.path().join("tls").join(file), pem).unwrap();
    }
    let parse_in =
        |text: &str| Config::parse(&format!("{BASE}{text}"), Path::new("test.toml"), dir.path());

    // As shipped the endpoint is plaintext, where TLS files mean nothing.
    let p = parse_in(&table).unwrap_err().problems;
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "telemetry.otlp_ca");
    let without_tls: String = table
        .lines()
        .filter(|l| !l.starts_with("otlp_c"))
        .map(|l| format!("{l}\n"))
        .collect();
    let t = parse_in(&without_tls).unwrap().telemetry.unwrap();
    assert_eq!(
        t.otlp_endpoint.as_deref(),
        Some("http://otel-collector:4317")
    );
    assert_eq!(t.service_name, "liaison");
    assert_eq!(t.admin_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(t.log_format, LogFormat::Json);

    // Over https the CA and client certificate are read and checked.
    let tls = table.replace("http://otel-collector", "https://otel-collector");
    let t = parse_in(&tls).unwrap().telemetry.unwrap();
    assert_eq!(
        t.otlp_ca.as_deref(),
        Some(Path::new("tls/otel-collector-ca.pem"))
    );
    std::fs::write(dir.path().join("tls/otel-client.key"), "not a key").unwrap();
    let p = parse_in(&tls).unwrap_err().problems;
    assert!(
        p[0].key == "telemetry.otlp_endpoint" && p[0].message.contains("otel-client.key"),
        "{p:?}"
    );
    let p = parse_in(&tls.replace("otlp_client_key", "# otlp_client_key"))
        .unwrap_err()
        .problems;
    assert_eq!(p[0].key, "telemetry.otlp_client_certificate", "{p:?}");
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
