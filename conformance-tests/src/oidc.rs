//! Starting and using the `oidc-provider` test harness from Rust.
//!
//! Each [`TestProvider`] is one `node server.mjs` process serving one
//! agency's issuer on a free loopback port. The process is killed when the
//! value is dropped, so a failing test never leaves providers behind.
//! Development and test use only: the harness hands out its private keys.

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Why a provider could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// `npm ci` has not been run in the harness folder.
    #[error("oidc-provider is not installed: run `npm ci` in `{0}`")]
    NotInstalled(String),
    /// The process could not be started or did not become ready.
    #[error("oidc-provider did not start: {0}")]
    Start(String),
    /// The token endpoint refused or answered unexpectedly.
    #[error("token request failed: {0}")]
    Token(String),
}

/// The harness folder, `conformance-tests/oidc-provider`.
pub fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

/// A client-credentials client for a provider's configuration.
pub fn client(id: &str, secret: &str, name: &str, roles: &[&str]) -> Value {
    json!({
        "client_id": id, "client_secret": secret, "grant_types": ["client_credentials"],
        "claims": { "roles": roles, "name": name },
    })
}

/// One running provider.
#[derive(Debug)]
pub struct TestProvider {
    /// The issuer URL, `http://127.0.0.1:PORT`.
    pub issuer: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TestProvider {
    /// Starts a provider for `agency`, signing with `alg`, issuing tokens
    /// for the audience `liaison` to `clients`.
    pub async fn start(agency: &str, alg: &str, clients: Value) -> Result<Self, HarnessError> {
        let harness = harness_dir();
        if !harness.join("node_modules/oidc-provider").exists() {
            return Err(HarnessError::NotInstalled(harness.display().to_string()));
        }
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Start(e.to_string()))?;
        let config = json!({
            "port": 0, "host": "127.0.0.1", "agency": agency, "audience": "liaison",
            "signing_alg": alg, "access_token_ttl_seconds": 300, "clients": clients,
        });
        let path = dir.path().join("provider.json");
        std::fs::write(&path, config.to_string())
            .map_err(|e| HarnessError::Start(e.to_string()))?;
        let mut child = Command::new("node")
            .arg(harness.join("server.mjs"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| HarnessError::Start(format!("cannot run node: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| HarnessError::Start("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| HarnessError::Start("not ready within 30 s".into()))?
            .map_err(|e| HarnessError::Start(e.to_string()))?
            .ok_or_else(|| HarnessError::Start("exited before it was ready".into()))?;
        let ready: Value = line
            .strip_prefix("READY ")
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| HarnessError::Start(format!("unexpected first line `{line}`")))?;
        let issuer = ready["issuer"]
            .as_str()
            .ok_or_else(|| HarnessError::Start("READY line has no issuer".into()))?
            .to_owned();
        Ok(Self {
            issuer,
            child,
            _dir: dir,
        })
    }

    /// A client-credentials access token for `(client_id, secret)`.
    pub async fn token(&self, (client_id, secret): (&str, &str)) -> Result<String, HarnessError> {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| HarnessError::Token(e.to_string()))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| HarnessError::Token(e.to_string()))?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| HarnessError::Token(format!("no access token in {body}")))
    }

    /// Stops the provider, as an outage would.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}
