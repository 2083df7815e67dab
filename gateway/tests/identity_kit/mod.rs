//! Fixtures for the identity suites: a tiny issuer ("the lab") whose keys,
//! availability and latency the test controls and whose key fetches it
//! counts; signing keys the test generates or borrows from a real
//! `oidc-provider`; and raw token forging, header and payload as exact JSON
//! text, so duplicated members and odd encodings can be expressed.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use axum::{
    Json, Router,
    extract::{Path as UrlPath, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use liaison_conformance::oidc::TestProvider;
use liaison_gateway::{
    config::Config,
    error::GatewayError,
    identity::{Principal, TrustRegistry},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Mutex};

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// base64url without padding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A key the test can sign with, and its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: Arc<EncodingKey>,
    /// The public JWK, with `kid`, `use` and `alg`.
    pub jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {:?})", self.kid, self.alg)
    }
}

impl SigningKey {
    /// A fresh P-256 key.
    pub fn ec(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: Arc::new(EncodingKey::from_ec_der(pkcs8.as_ref())),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": b64(&point[1..33]), "y": b64(&point[33..]),
            }),
        }
    }

    /// A fresh Ed25519 key.
    pub fn ed(kid: &str) -> Self {
        let pair = Ed25519KeyPair::generate().unwrap();
        let public = pair.public_key().as_ref().to_vec();
        let pkcs8 = pair.to_pkcs8().unwrap();
        Self {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: Arc::new(EncodingKey::from_ed_der(pkcs8.as_ref())),
            jwk: json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
                "x": b64(public),
            }),
        }
    }

    /// A real provider's active signing key: the genuine private key, so
    /// tokens it signs are exactly as trustworthy as the provider's own.
    pub async fn active(provider: &TestProvider) -> Self {
        let pem = provider.private_keys_pem().await.unwrap();
        let key = pem.first().unwrap();
        let jwks = provider.private_jwks().await.unwrap();
        let private = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == key.kid.as_str())
            .unwrap()
            .clone();
        let alg: Algorithm = key.alg.parse().unwrap();
        let encoding = match key.kty.as_str() {
            "RSA" => EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).unwrap(),
            "EC" => EncodingKey::from_ec_pem(key.private_pem.as_bytes()).unwrap(),
            "OKP" => EncodingKey::from_ed_pem(key.private_pem.as_bytes()).unwrap(),
            other => panic!("unexpected key type {other}"),
        };
        Self {
            kid: key.kid.clone(),
            alg,
            encoding: Arc::new(encoding),
            jwk: public_jwk(&private),
        }
    }

    /// The public key as PEM, for the classic HMAC key-confusion forgery.
    pub async fn public_pem(provider: &TestProvider) -> String {
        provider.private_keys_pem().await.unwrap()[0]
            .public_pem
            .clone()
    }

    /// Signs `header` and `payload` given as exact JSON text.
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        sign_raw(header, payload, &self.encoding, self.alg)
    }

    /// Signs claims under a standard header naming this key.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.header(), claims)
    }

    /// Signs claims under `header`.
    pub fn sign_with(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// `{"alg", "kid", "typ": "at+jwt"}` for this key.
    pub fn header(&self) -> Value {
        json!({"alg": alg_name(self.alg), "kid": self.kid, "typ": "at+jwt"})
    }
}

/// The public members of a private JWK.
pub fn public_jwk(private: &Value) -> Value {
    let mut public = private.clone();
    let object = public.as_object_mut().unwrap();
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        object.remove(member);
    }
    object.insert("use".into(), json!("sig"));
    public
}

/// Signs `header.payload` (exact JSON text) with `key` under `alg`.
pub fn sign_raw(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{signature}")
}

/// An unsigned compact token with the given parts.
pub fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string()),
        b64(claims.to_string())
    )
}

/// The JOSE name of an algorithm.
pub fn alg_name(alg: Algorithm) -> String {
    serde_json::to_value(alg)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// Claims a genuine access token from `issuer` would carry.
pub fn claims(issuer: &str, agency: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer, "sub": "forged-client", "aud": "liaison", "client_id": "forged-client",
        "iat": now, "nbf": now, "exp": now + 300, "jti": "j-1",
        "agency": agency, "roles": ["social-worker"], "name": "Test Client",
    })
}

/// A trust registry from `[[agency]]` and `[[issuer]]` configuration text.
pub fn registry(issuers: &str) -> TrustRegistry {
    let text = format!(
        "version = 1\n[ledger]\nurl = \"sqlite://unused.db\"\n[policy]\nfile = \"unused.toml\"\n{issuers}"
    );
    let config = Config::parse(&text, Path::new("identity.toml"), Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"));
    TrustRegistry::from_config(&config, reqwest::Client::new()).unwrap()
}

/// `[[agency]]` and `[[issuer]]` text for one loopback issuer.
pub fn issuer_toml(url: &str, agency: &str, algorithms: &[&str], extra: &str) -> String {
    let algorithms = algorithms
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[agency]]\nid = \"{agency}\"\ndisplay_name = \"{agency}\"\nkind = \"other\"\n\
         [[issuer]]\nurl = \"{url}\"\nagency = \"{agency}\"\naudiences = [\"liaison\"]\n\
         algorithms = [{algorithms}]\nallow_insecure_http = true\n{extra}\n"
    )
}

/// The reason of an authentication failure, and its message.
pub fn refusal(result: Result<Principal, GatewayError>) -> (&'static str, String) {
    match result {
        Ok(p) => panic!("accepted as {p:?}"),
        Err(e) => (e.reason(), e.to_string()),
    }
}

/// An issuer served by the test, at `{base}/{name}`.
#[derive(Debug, Default)]
struct LabIssuer {
    jwks: Value,
    down: bool,
    jwks_fetches: u64,
    discovery_fetches: u64,
}

#[derive(Debug, Default)]
struct LabState {
    issuers: HashMap<String, LabIssuer>,
    delay: Duration,
}

/// A minimal OpenID provider: discovery and JWKS only, for issuers whose
/// keys, availability and latency the test controls, and whose key
/// fetches it counts.
#[derive(Debug, Clone)]
pub struct Lab {
    pub base: String,
    state: Arc<Mutex<LabState>>,
}

impl Lab {
    pub async fn start() -> Lab {
        let state = Arc::new(Mutex::new(LabState::default()));
        let app = Router::new()
            .route("/{name}/.well-known/openid-configuration", get(discovery))
            .route("/{name}/jwks", get(jwks))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Lab { base, state }
    }

    /// The issuer URL for `name`.
    pub fn issuer(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    /// Publishes exactly `keys` for `name`.
    pub async fn publish(&self, name: &str, keys: Vec<Value>) {
        self.state
            .lock()
            .await
            .issuers
            .entry(name.into())
            .or_default()
            .jwks = json!({ "keys": keys });
    }

    /// Makes `name` answer 503, or answer again.
    pub async fn set_down(&self, name: &str, down: bool) {
        self.state
            .lock()
            .await
            .issuers
            .entry(name.into())
            .or_default()
            .down = down;
    }

    /// Delays every answer, as a slow provider would.
    pub async fn set_delay(&self, delay: Duration) {
        self.state.lock().await.delay = delay;
    }

    /// How many times `name`'s key set was fetched.
    pub async fn jwks_fetches(&self, name: &str) -> u64 {
        self.state
            .lock()
            .await
            .issuers
            .get(name)
            .map_or(0, |i| i.jwks_fetches)
    }

    /// How many times `name`'s discovery document was fetched.
    pub async fn discovery_fetches(&self, name: &str) -> u64 {
        self.state
            .lock()
            .await
            .issuers
            .get(name)
            .map_or(0, |i| i.discovery_fetches)
    }
}

async fn discovery(
    State(state): State<Arc<Mutex<LabState>>>,
    UrlPath(name): UrlPath<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let delay = {
        let mut s = state.lock().await;
        let delay = s.delay;
        let Some(issuer) = s.issuers.get_mut(&name) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        issuer.discovery_fetches += 1;
        if issuer.down {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        delay
    };
    tokio::time::sleep(delay).await;
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let issuer = format!("http://{host}/{name}");
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}

async fn jwks(
    State(state): State<Arc<Mutex<LabState>>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let (delay, body) = {
        let mut s = state.lock().await;
        let delay = s.delay;
        let Some(issuer) = s.issuers.get_mut(&name) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        issuer.jwks_fetches += 1;
        if issuer.down {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        (delay, issuer.jwks.clone())
    };
    tokio::time::sleep(delay).await;
    Json(body).into_response()
}

/// A deterministic generator (SplitMix64), so every run feeds the verifier
/// the same mutants and a failure can be reproduced.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

impl SigningKey {
    /// The same key published under another `kid`.
    pub fn with_kid(&self, kid: &str) -> Self {
        let mut key = self.clone();
        key.kid = kid.into();
        key.jwk["kid"] = json!(kid);
        key
    }

    /// The same key under another algorithm of its family.
    pub fn with_alg(&self, alg: Algorithm) -> Self {
        let mut key = self.clone();
        key.alg = alg;
        key
    }
}

/// The clients every identity-suite provider serves.
pub const SYSTEM: (&str, &str) = ("identity-system", "identity-test-secret");

/// Starts a real provider for `agency`.
pub async fn provider(agency: &str, alg: &str) -> TestProvider {
    TestProvider::start(
        agency,
        alg,
        json!([liaison_conformance::oidc::client(
            SYSTEM.0,
            SYSTEM.1,
            "Identity Suite System",
            &["social-worker"]
        )]),
    )
    .await
    .unwrap()
}
