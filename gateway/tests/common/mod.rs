//! Shared fixtures for the gateway's integration tests: real `oidc-provider`
//! processes for two agencies, the synthetic police records system, the
//! shipped demo policy and mapping, and a gateway serving on loopback.
//!
//! Test credentials below are fixtures for these tests only.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use liaison_gateway::{config::Config, server};
use liaison_proto::v1 as pb;
use serde_json::json;
use tokio::net::TcpListener;
use tonic::{Request, metadata::MetadataValue, transport::Channel};

pub const ISA: &str = "met-hackney-children";
pub const DATASET: &str = "met-police.records";
pub const SOCIAL_WORKER: (&str, &str) = ("hackney-mash-system", "test-fixture-secret-sw");
pub const COUNCIL_DPO: (&str, &str) = ("hackney-dpo-console", "test-fixture-secret-dpo");
pub const TEAM_MANAGER: (&str, &str) = ("hackney-tm-system", "test-fixture-secret-tm");
pub const OFFICER: (&str, &str) = ("met-mash-system", "test-fixture-secret-officer");
pub const MET_GOVERNANCE: (&str, &str) = ("met-ig-console", "test-fixture-secret-met-ig");
pub const HACKNEY_GOVERNANCE: (&str, &str) =
    ("hackney-ig-console", "test-fixture-secret-hackney-ig");
pub const MET_IDENTITY_ADMIN: (&str, &str) = ("met-idam-console", "test-fixture-secret-met-idam");
pub const HACKNEY_IDENTITY_ADMIN: (&str, &str) =
    ("hackney-idam-console", "test-fixture-secret-hackney-idam");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub use liaison_conformance::oidc::{TestProvider as Idp, client};

/// Two agencies' providers, the legacy data, and a gateway.
pub struct World {
    pub dir: tempfile::TempDir,
    pub met: Idp,
    pub hackney: Idp,
    pub gateway: server::Running,
    pub channel: Channel,
}

impl World {
    /// Starts everything; `ledger_url` defaults to a SQLite file in the
    /// world's directory.
    pub async fn start(ledger_url: Option<String>) -> World {
        Self::start_with(ledger_url, |text| text).await
    }

    /// Starts everything, passing the gateway's configuration text through
    /// `tweak` first (e.g. to shorten an issuer's `jwks_cache_seconds`).
    pub async fn start_with(
        ledger_url: Option<String>,
        tweak: impl FnOnce(String) -> String,
    ) -> World {
        Self::start_with_policy(ledger_url, |policy| policy, tweak).await
    }

    /// Starts everything, passing the demo policy's text through `policy`
    /// (e.g. to cover another dataset) and the gateway's configuration
    /// through `tweak`.
    pub async fn start_with_policy(
        ledger_url: Option<String>,
        policy: impl FnOnce(String) -> String,
        tweak: impl FnOnce(String) -> String,
    ) -> World {
        let met = Idp::start(
            "met-police",
            "RS256",
            json!([
                client(OFFICER.0, OFFICER.1, "PC Jordan Reid", &["officer"]),
                client(
                    "met-dpo-console",
                    "test-fixture-secret-met-dpo",
                    "Alex Morgan",
                    &["dpo"]
                ),
                client(
                    MET_GOVERNANCE.0,
                    MET_GOVERNANCE.1,
                    "Dana Lee",
                    &["information-governance"]
                ),
                client(
                    MET_IDENTITY_ADMIN.0,
                    MET_IDENTITY_ADMIN.1,
                    "Jo Patel",
                    &["identity-admin"]
                ),
            ]),
        )
        .await
        .unwrap();
        let hackney = Idp::start(
            "hackney-childrens",
            "ES256",
            json!([
                client(
                    SOCIAL_WORKER.0,
                    SOCIAL_WORKER.1,
                    "Sam Okoro",
                    &["social-worker"]
                ),
                client(COUNCIL_DPO.0, COUNCIL_DPO.1, "Priya Shah", &["dpo"]),
                client(
                    HACKNEY_GOVERNANCE.0,
                    HACKNEY_GOVERNANCE.1,
                    "Chris Adeyemi",
                    &["information-governance"]
                ),
                client(
                    TEAM_MANAGER.0,
                    TEAM_MANAGER.1,
                    "Ruth Adeyemi",
                    &["social-worker", "team-manager"]
                ),
                client(
                    HACKNEY_IDENTITY_ADMIN.0,
                    HACKNEY_IDENTITY_ADMIN.1,
                    "Lee Carter",
                    &["identity-admin"]
                ),
            ]),
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rms = dir.path().join("police-rms.db");
        liaison_connectors::synthetic::generate_police_rms(
            &format!("sqlite://{}?mode=rwc", rms.display()),
            200,
            7,
        )
        .await
        .unwrap();
        let demo = std::fs::read_to_string(repo().join("deploy/demo/policy.toml")).unwrap();
        std::fs::write(dir.path().join("policy.toml"), policy(demo)).unwrap();
        std::fs::copy(
            repo().join("connectors/examples/police-rms.toml"),
            dir.path().join("police-rms.toml"),
        )
        .unwrap();
        let ledger = ledger_url.unwrap_or_else(|| "sqlite://ledger.db".into());
        let text = format!(
            r#"
version = 1
[server]
connector_deadline_ms = 5000
[ledger]
url = "{ledger}"
[policy]
file = "policy.toml"
[[agency]]
id = "met-police"
display_name = "Metropolitan Police Service"
kind = "police"
[[agency]]
id = "hackney-childrens"
display_name = "Hackney Children and Families Service"
kind = "local-authority"
[[issuer]]
url = "{met}"
agency = "met-police"
audiences = ["liaison"]
algorithms = ["RS256"]
allow_insecure_http = true
[[issuer]]
url = "{hackney}"
agency = "hackney-childrens"
audiences = ["liaison"]
algorithms = ["ES256"]
allow_insecure_http = true
[[connector]]
kind = "sql"
id = "{DATASET}"
agency = "met-police"
title = "Met Police records (synthetic)"
system = "Synthetic RMS"
url = "sqlite://{rms}?mode=ro"
mapping_file = "police-rms.toml"
"#,
            met = met.issuer,
            hackney = hackney.issuer,
            rms = rms.display(),
        );
        let path = dir.path().join("liaison.toml");
        std::fs::write(&path, tweak(text)).unwrap();
        let config = Config::load(&path).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = server::start(config, Some(listener), std::future::pending())
            .await
            .unwrap();
        let channel = Channel::from_shared(format!("http://{}", gateway.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        World {
            dir,
            met,
            hackney,
            gateway,
            channel,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("liaison.toml")
    }
}

/// A request carrying a bearer token.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut req = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

pub fn context(purpose: &str) -> pb::ShareContext {
    pb::ShareContext {
        purpose: purpose.into(),
        justification: "Section 47 enquiry following a school referral".into(),
        isa_id: ISA.into(),
        case_reference: "HCK-2026-0042".into(),
        ..Default::default()
    }
}

pub fn leah() -> pb::PersonQuery {
    pb::PersonQuery {
        family_name: "Marsh".into(),
        given_name: "Leah".into(),
        date_of_birth: Some(pb::Date {
            year: 2013,
            month: 5,
            day: 14,
        }),
        ..Default::default()
    }
}

/// The `ErrorInfo` reason and the `BadRequest` fields of a status.
pub fn reason(status: &tonic::Status) -> (String, Vec<String>) {
    use tonic_types::StatusExt;
    let details = status.get_error_details();
    let reason = details
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default();
    let fields = details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    (reason, fields)
}
