use std::path::Path;

use super::*;

const GOOD: &str = r#"
version = 1

[ledger]
url = "sqlite://ledger.db"

[policy]
file = "policy.toml"

[[agency]]
id = "met-police"
display_name = "Metropolitan Police Service"
kind = "police"

[[issuer]]
url = "https://login.example.police.uk/tenant/v2.0"
agency = "met-police"
audiences = ["api://liaison"]
algorithms = ["RS256"]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"), Path::new("/etc/liaison"))
}

fn problems(text: &str) -> Vec<Problem> {
    parse(text).expect_err("config should be refused").problems
}

#[test]
fn a_complete_config_parses_with_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.server.listen.port(), 50051);
    assert_eq!(*c.issuers[0].leeway_seconds.get_ref(), 30);
    assert_eq!(c.ledger_url(), "sqlite:///etc/liaison/ledger.db");
    assert_eq!(c.policy_path(), Path::new("/etc/liaison/policy.toml"));
}

#[test]
fn the_example_config_in_deploy_parses() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let text = std::fs::read_to_string(deploy.join("liaison.example.toml")).unwrap();
    // The example names files an operator makes (the signing key): make
    // them beside a copy, and refer to the shipped policy from there.
    let dir = tempfile::tempdir().unwrap();
    let key = liaison_ledger::SigningKey::generate().unwrap();
    std::fs::write(
        dir.path().join("ledger-signing.pem"),
        key.to_pkcs8_pem().unwrap(),
    )
    .unwrap();
    let text = text.replace(
        "file = \"demo/policy.toml\"",
        &format!("file = \"{}\"", deploy.join("demo/policy.toml").display()),
    );
    let c = Config::parse(&text, Path::new("liaison.example.toml"), dir.path()).unwrap();
    let keys = c.ledger_keys().unwrap();
    assert_eq!(keys.signing.unwrap().key_id(), key.key_id());
    let missing = Config::parse(&text, Path::new("liaison.example.toml"), &deploy)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("ledger.signing_key_file"), "{missing}");
}

#[test]
fn a_syntax_error_names_its_line() {
    let text = GOOD.replace("kind = \"police\"", "kind = \"police");
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].line, Some(13), "{p:?}");
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let text = GOOD.replace("[ledger]\n", "[ledger]\nurll = \"x\"\n");
    let p = problems(&text);
    assert_eq!(p[0].line, Some(5), "{p:?}");
    assert!(p[0].message.contains("urll"), "{p:?}");
}

#[test]
fn an_unsupported_version_is_refused() {
    let p = problems(&GOOD.replace("version = 1", "version = 2"));
    assert_eq!(p[0].key, "version");
    assert_eq!(p[0].line, Some(2));
}

#[test]
fn hmac_and_none_are_refused_for_issuers() {
    let p = problems(&GOOD.replace("[\"RS256\"]", "[\"HS256\", \"none\"]"));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p.iter()
            .all(|p| p.key == "issuer[0].algorithms" && p.line == Some(19))
    );
    assert!(p[0].message.contains("HMAC"));
}

#[test]
fn plain_http_is_refused_except_for_an_allowed_loopback_issuer() {
    let remote = GOOD.replace(
        "https://login.example.police.uk",
        "http://login.example.police.uk",
    );
    assert_eq!(problems(&remote)[0].key, "issuer[0].url");
    let loopback = GOOD.replace(
        "https://login.example.police.uk/tenant/v2.0\"",
        "http://127.0.0.1:8101\"\nallow_insecure_http = true",
    );
    parse(&loopback).unwrap();
    let not_allowed = GOOD.replace(
        "https://login.example.police.uk/tenant/v2.0",
        "http://127.0.0.1:8101",
    );
    assert_eq!(problems(&not_allowed)[0].key, "issuer[0].url");
}

#[test]
fn an_issuer_for_an_undefined_agency_is_refused() {
    let p = problems(&GOOD.replace("agency = \"met-police\"", "agency = \"kent-police\""));
    assert_eq!(p[0].key, "issuer[0].agency");
    assert_eq!(p[0].line, Some(17));
    assert!(p[0].message.contains("kent-police"));
}

#[test]
fn leeway_is_bounded() {
    let p = problems(&GOOD.replace(
        "algorithms = [\"RS256\"]",
        "algorithms = [\"RS256\"]\nleeway_seconds = 300",
    ));
    assert_eq!(p[0].key, "issuer[0].leeway_seconds");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("version = 1", "version = 9")
        .replace("[\"RS256\"]", "[\"HS512\"]")
        .replace("agency = \"met-police\"", "agency = \"nobody\"");
    assert_eq!(problems(&text).len(), 3);
}

#[test]
fn the_error_message_names_file_and_line() {
    let err = parse(&GOOD.replace("version = 1", "version = 2")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("test.toml:2: `version`"), "{text}");
}

#[test]
fn the_example_federation_connector_parses_when_uncommented_and_names_its_lines() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/liaison.example.toml"),
    )
    .unwrap();
    let block: String = example
        .lines()
        .skip_while(|l| *l != "# kind = \"liaison\"")
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(block.contains("isa_map"), "{block}");
    let text = format!("{GOOD}\n[[connector]]\n{block}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("federation")).unwrap();
    for file in ["kent-ca.pem", "client.pem", "client.key", "client-secret"] {
        std::fs::write(dir.path().join("federation").join(file), "x").unwrap();
    }
    let c = Config::parse(&text, Path::new("test.toml"), dir.path()).unwrap();
    assert_eq!(c.connectors[0].id(), "kent-police.records");

    // Missing files, clear text off loopback and no agreement mapped are
    // each refused, on the line that says so.
    let bad = text
        .replace("https://liaison.kent", "http://liaison.kent")
        .replace(
            "isa_map = { \"met-kent-children\" = \"kent-met-children\" }",
            "isa_map = {}",
        );
    let empty = tempfile::tempdir().unwrap();
    let err = Config::parse(&bad, Path::new("test.toml"), empty.path()).unwrap_err();
    let line = |needle: &str| {
        bad.lines()
            .position(|l| l.starts_with(needle))
            .map(|n| n + 1)
            .unwrap()
    };
    let found: Vec<(Option<usize>, String)> = err
        .problems
        .iter()
        .map(|p| (p.line, p.key.clone()))
        .collect();
    for (needle, key) in [
        ("endpoint", "connector[0].endpoint"),
        ("ca_file", "connector[0].ca_file"),
        ("isa_map", "connector[0].isa_map"),
        (
            "client_secret_file",
            "connector[0].token.client_secret_file",
        ),
    ] {
        assert!(
            found.contains(&(Some(line(needle)), key.to_owned())),
            "{key} at line {}: {found:?}",
            line(needle)
        );
    }
    let shown = err.to_string();
    assert!(shown.contains("must use https"), "{shown}");
}

#[test]
fn an_alert_webhook_must_be_https_or_loopback_and_its_token_readable() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("hook.token");
    std::fs::write(&token, "secret\n").unwrap();
    let with = |table: &str| format!("{GOOD}\n[alerts]\n{table}");
    let remote = problems(&with("webhook_url = \"http://alerts.example/hook\"\n"));
    assert_eq!(remote.len(), 1, "{remote:?}");
    assert_eq!(remote[0].key, "alerts.webhook_url");
    assert_eq!(remote[0].line, Some(GOOD.lines().count() + 3));
    assert!(remote[0].message.contains("https"), "{remote:?}");
    let missing = problems(&with(
        "webhook_url = \"https://alerts.example/hook\"\ntoken_file = \"/nonexistent/token\"\n",
    ));
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].key, "alerts.token_file");
    parse(&with(&format!(
        "webhook_url = \"http://127.0.0.1:9000/hook\"\ntoken_file = {:?}\n",
        token.display().to_string()
    )))
    .unwrap();
}

#[test]
fn the_registry_role_defaults_to_identity_admin_and_can_be_named() {
    assert_eq!(
        parse(GOOD).unwrap().identity.registry_role,
        "identity-admin"
    );
    let named = GOOD.replace(
        "[[agency]]",
        "[identity]\nregistry_role = \"idam\"\n\n[[agency]]",
    );
    assert_eq!(parse(&named).unwrap().identity.registry_role, "idam");
}

#[test]
fn a_proposed_issuer_is_checked_as_the_files_issuers_are() {
    let agencies: BTreeSet<String> = ["met-police".to_owned()].into();
    let one = GOOD.split_once("[[issuer]]").unwrap().1;
    let good = format!("[[issuer]]{one}");
    let issuer = IssuerConfig::parse_one(&good, &agencies).unwrap();
    assert_eq!(*issuer.leeway_seconds.get_ref(), 30);

    let bad = good.replace("[\"RS256\"]", "[\"HS256\"]") + "leeway_seconds = 300\n";
    let message = IssuerConfig::parse_one(&bad, &agencies).unwrap_err();
    assert!(
        message.contains("line 5: `issuer.algorithms`: algorithm `HS256` is HMAC"),
        "{message}"
    );
    assert!(
        message.contains("line 6: `issuer.leeway_seconds`: leeway of 300s is too generous"),
        "{message}"
    );
    let elsewhere =
        IssuerConfig::parse_one(&good, &["hackney-childrens".to_owned()].into()).unwrap_err();
    assert!(
        elsewhere.contains("agency `met-police` is not defined"),
        "{elsewhere}"
    );
    let two = format!("{good}\n{good}");
    assert_eq!(
        IssuerConfig::parse_one(&two, &agencies).unwrap_err(),
        "the text must hold exactly one [[issuer]] table"
    );
    let unknown =
        IssuerConfig::parse_one(&format!("{good}colour = \"blue\"\n"), &agencies).unwrap_err();
    assert!(unknown.starts_with("line 6:"), "{unknown}");
}
