//! The DPO console in a real browser: a real `oidc-provider` for the Met,
//! the console on loopback over a ledger holding recorded shares, and
//! `conformance-tests/browser/run.mjs` driving headless Chromium through
//! sign-in, the dashboard's charts, search, an entry's proof, a subject
//! access report, an export and the review of a break-glass share, with
//! axe checking every page.
//!
//! Needs `npm ci` in `conformance-tests/oidc-provider`, `npm install
//! --no-package-lock` in `conformance-tests/browser` and Chromium at
//! `/usr/bin/chromium` (or `CHROMIUM`). Test credentials below are
//! fixtures for this test only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{path::PathBuf, sync::Arc};

use liaison_conformance::oidc::{TestProvider, console_client, user};
use liaison_gateway::{
    config::Config,
    console::{self, ConsoleConfig, ConsoleState},
    identity::TrustRegistry,
    share::audit,
};
use liaison_ledger::{Ledger, test_util::fresh_sqlite_db};
use liaison_proto::v1 as pb;
use serde_json::json;
use tokio::net::TcpListener;

const CLIENT: (&str, &str) = ("met-dpo-console", "test-fixture-secret-console");
const DPO: (&str, &str) = ("u-dpo-1001", "test-fixture-password-dpo");
const WORKER: (&str, &str) = ("u-sw-2002", "test-fixture-password-sw");
const PERSON: &str = "P-2001-0042";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A share as the audit stage records it.
fn share(n: u32, user: &str, purpose: &str, outcome: pb::AuditOutcome) -> pb::AuditEntry {
    let disclosed = outcome == pb::AuditOutcome::Disclosed;
    pb::AuditEntry {
        format_version: 1,
        entry_id: uuid::Uuid::new_v4().to_string(),
        recorded_at: Some(prost_types::Timestamp {
            seconds: time::OffsetDateTime::now_utc().unix_timestamp()
                - i64::from(40 - n) * 3 * 3600,
            nanos: 0,
        }),
        principal: Some(pb::AuditPrincipal {
            agency_id: "met-police".into(),
            subject: user.into(),
            display_name: format!("Officer {user}"),
            roles: vec!["investigator".into()],
            client_id: "met-case-system".into(),
            issuer: "https://idp.met.example".into(),
            is_system: false,
        }),
        recipient_agency_id: "met-police".into(),
        action: pb::AuditAction::Search as i32,
        method: "/liaison.v1.SharingService/SearchPersons".into(),
        purpose: purpose.into(),
        justification: "Strategy discussion for a child at risk".into(),
        case_reference: format!("MASH-{n:04}"),
        isa_id: "met-hackney-mash".into(),
        isa_version: 2,
        legal_basis: "Children Act 1989 s.47; DPA 2018 Sch.1 para 18".into(),
        policy_version: "sha256:7f3a".into(),
        allowed: outcome != pb::AuditOutcome::Denied,
        matched_rules: vec![format!("isa:met-hackney-mash:{purpose}:allow")],
        disclosures: if disclosed {
            vec![pb::AuditDisclosure {
                dataset_id: "hackney-children".into(),
                person_id: if n.is_multiple_of(3) {
                    PERSON
                } else {
                    "P-2001-0007"
                }
                .into(),
                record_ids: vec![format!("ref-{n}")],
                fields: vec!["name".into(), "date_of_birth".into(), "address".into()],
                digest: "ab".repeat(32),
            }]
        } else {
            vec![]
        },
        outcome: outcome as i32,
        error_reason: if outcome == pb::AuditOutcome::Denied {
            "PURPOSE_NOT_PERMITTED".into()
        } else {
            String::new()
        },
        sources: vec!["hackney-children".into()],
        ..pb::AuditEntry::default()
    }
}

#[tokio::test]
async fn a_dpo_uses_the_console_in_a_browser() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let idp = TestProvider::start_with(json!({
        "agency": "met-police", "audience": "liaison", "signing_alg": "RS256",
        "clients": [console_client(CLIENT.0, CLIENT.1, &url)],
        "users": [
            user(DPO.0, DPO.1, json!({ "name": "Dana Okafor", "roles": ["dpo"] })),
            user(WORKER.0, WORKER.1, json!({ "name": "Sam Okoro", "roles": ["social-worker"] })),
        ],
    }))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("console.secret"), CLIENT.1).unwrap();
    let config = Config::parse(
        &format!(
            r#"
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
url = "{issuer}"
agency = "met-police"
audiences = ["liaison"]
algorithms = ["RS256"]
allow_insecure_http = true
"#,
            issuer = idp.issuer
        ),
        &dir.path().join("liaison.toml"),
        dir.path(),
    )
    .unwrap();
    let console: ConsoleConfig = toml::from_str(&format!(
        r#"
listen = "{addr}"
public_url = "{url}"
[[client]]
issuer = "{issuer}"
client_id = "{client}"
client_secret_file = "console.secret"
scopes = ["profile", "liaison"]
"#,
        issuer = idp.issuer,
        client = CLIENT.0,
    ))
    .unwrap();

    let (ledger_url, _ledger_dir) = fresh_sqlite_db();
    let ledger = Arc::new(Ledger::connect(&ledger_url).await.unwrap());
    for n in 0..40u32 {
        let outcome = match n % 7 {
            3 => pb::AuditOutcome::Denied,
            5 => pb::AuditOutcome::NothingFound,
            _ => pb::AuditOutcome::Disclosed,
        };
        let purpose = [
            "safeguarding-children",
            "missing-person",
            "domestic-abuse-marac",
        ][usize::try_from(n % 3).unwrap()];
        let user = ["pc-4471", "ds-2210", "dc-9034", "pc-1187"][usize::try_from(n % 4).unwrap()];
        let mut entry = share(n, user, purpose, outcome);
        // Two emergency-access shares for the review queue.
        if n == 36 || n == 38 {
            entry.break_glass = Some(pb::BreakGlass {
                reason: format!(
                    "Child reported missing overnight; duty manager unreachable (call {n})"
                ),
            });
        }
        audit::append(&ledger, &entry).await.unwrap();
    }

    let registry = Arc::new(TrustRegistry::from_config(&config, reqwest::Client::new()).unwrap());
    let policy = liaison_policy::PolicySet::from_toml(
        &std::fs::read_to_string(workspace().join("deploy/demo/policy.toml")).unwrap(),
    )
    .unwrap();
    let (_policy_tx, policy) = tokio::sync::watch::channel(Arc::new(
        liaison_policy::PolicyEngine::compile(&policy).unwrap(),
    ));
    let state = ConsoleState::new(&console, &config, registry)
        .unwrap()
        .with_ledger(ledger)
        .with_policy(policy);
    tokio::spawn(async move { axum::serve(listener, console::router(state)).await });

    let root = workspace();
    let browser = root.join("conformance-tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "run `npm install --no-package-lock` in {}",
        browser.display()
    );
    let out = tokio::process::Command::new("node")
        .arg(browser.join("run.mjs"))
        .current_dir(&browser)
        .env("CONSOLE_URL", &url)
        .env("DPO_LOGIN", DPO.0)
        .env("DPO_PASSWORD", DPO.1)
        .env("WORKER_LOGIN", WORKER.0)
        .env("WORKER_PASSWORD", WORKER.1)
        .env("PERSON_ID", PERSON)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the browser walk-through failed:\n{stdout}\n{stderr}"
    );
}
