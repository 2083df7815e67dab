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
    /// A test-only control endpoint (`/__test/...`) failed.
    #[error("harness control request failed: {0}")]
    Control(String),
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

/// A person who can sign in through the provider's login form with `sub`
/// and `password`; `claims` (e.g. `name`, `roles`, or an `agency` override)
/// reach the ID token through the `profile` and `liaison` scopes.
pub fn user(sub: &str, password: &str, claims: Value) -> Value {
    json!({ "sub": sub, "password": password, "claims": claims })
}

/// A confidential authorization-code client for a DPO console served at
/// `console_url` (e.g. `http://127.0.0.1:8081`): its callback is
/// `/console/callback` and it may return to `/console/login` after logout.
pub fn console_client(id: &str, secret: &str, console_url: &str) -> Value {
    json!({
        "client_id": id, "client_secret": secret,
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": [format!("{console_url}/console/callback")],
        "post_logout_redirect_uris": [format!("{console_url}/console/login")],
        "client_name": "Liaison DPO console",
        "scope": "openid profile liaison",
    })
}

/// One of a provider's signing keys, private half included (test use only).
#[derive(Debug, Clone)]
pub struct ProviderKey {
    /// The key id tokens name.
    pub kid: String,
    /// The algorithm it signs with, e.g. `RS256`.
    pub alg: String,
    /// The key type: `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// PKCS#1 (RSA) or PKCS#8 (EC, Ed25519) private key.
    pub private_pem: String,
    /// SPKI public key.
    pub public_pem: String,
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
        Self::start_with(json!({
            "agency": agency, "audience": "liaison", "signing_alg": alg,
            "access_token_ttl_seconds": 300, "clients": clients,
        }))
        .await
    }

    /// Starts a provider from a whole harness configuration (see the
    /// harness README), for tests that need users, authorization-code
    /// clients or other settings `start` does not offer. `port` and `host`
    /// default to a free loopback port.
    pub async fn start_with(mut config: Value) -> Result<Self, HarnessError> {
        let harness = harness_dir();
        if !harness.join("node_modules/oidc-provider").exists() {
            return Err(HarnessError::NotInstalled(harness.display().to_string()));
        }
        let Some(object) = config.as_object_mut() else {
            return Err(HarnessError::Start(
                "the provider configuration must be a JSON object".into(),
            ));
        };
        object.entry("port").or_insert(json!(0));
        object.entry("host").or_insert(json!("127.0.0.1"));
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Start(e.to_string()))?;
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
        let issuer = ready
            .get("issuer")
            .and_then(Value::as_str)
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
        body.get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| HarnessError::Token(format!("no access token in {body}")))
    }

    /// Stops the provider, as an outage would.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Generates a new signing key and makes it the active one; older keys
    /// stay published until [`retire`](Self::retire). Returns the new `kid`.
    pub async fn rotate(&self) -> Result<String, HarnessError> {
        let body = self
            .control(reqwest::Method::POST, "/__test/rotate")
            .await?;
        body.get("kid")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| HarnessError::Control(format!("no kid in {body}")))
    }

    /// Removes every key but the active one from the key set and the JWKS.
    /// Returns the removed `kid`s.
    pub async fn retire(&self) -> Result<Vec<String>, HarnessError> {
        let body = self
            .control(reqwest::Method::POST, "/__test/retire")
            .await?;
        Ok(body
            .get("retired")
            .and_then(Value::as_array)
            .map(|kids| {
                kids.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The provider's private signing keys as PEM, active key first, for
    /// forging tokens the genuine key signed.
    pub async fn private_keys_pem(&self) -> Result<Vec<ProviderKey>, HarnessError> {
        let body = self
            .control(reqwest::Method::GET, "/__test/keys?format=pem")
            .await?;
        let field = |key: &Value, name: &str| {
            key.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| HarnessError::Control(format!("a key has no `{name}`")))
        };
        body.get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| HarnessError::Control(format!("no keys in {body}")))?
            .iter()
            .map(|key| {
                Ok(ProviderKey {
                    kid: field(key, "kid")?,
                    alg: field(key, "alg")?,
                    kty: field(key, "kty")?,
                    private_pem: field(key, "private_pem")?,
                    public_pem: field(key, "public_pem")?,
                })
            })
            .collect()
    }

    /// The provider's private JWK Set, active key first (its public members
    /// are the published key).
    pub async fn private_jwks(&self) -> Result<Value, HarnessError> {
        self.control(reqwest::Method::GET, "/__test/keys").await
    }

    async fn control(&self, method: reqwest::Method, path: &str) -> Result<Value, HarnessError> {
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.issuer))
            .send()
            .await
            .map_err(|e| HarnessError::Control(e.to_string()))?;
        if !response.status().is_success() {
            return Err(HarnessError::Control(format!(
                "`{path}` returned {}",
                response.status()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| HarnessError::Control(e.to_string()))
    }
}
