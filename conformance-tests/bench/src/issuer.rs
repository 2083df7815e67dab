//! A tiny in-process identity provider: OpenID discovery and a JWKS for one
//! ES256 key the bench generates, and tokens minted with it. The gateway
//! verifies them exactly as it would a real provider's.

use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::{Json, Router, extract::State, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A running issuer.
pub struct Issuer {
    /// The issuer URL, as tokens carry it in `iss`.
    pub url: String,
    kid: String,
    key: EncodingKey,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Issuer({}, {})", self.url, self.kid)
    }
}

struct Published {
    url: String,
    jwk: Value,
}

impl Issuer {
    /// Generates a key and serves discovery and the JWKS on a loopback port
    /// for the life of the process.
    pub async fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the issuer: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let url = format!("http://{addr}");
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| "cannot generate a signing key".to_string())?;
        let der = pair
            .to_pkcs8v1()
            .map_err(|_| "cannot encode the signing key".to_string())?;
        // An uncompressed P-256 point: 0x04 || x || y.
        let (x, y) = match pair.public_key().as_ref() {
            [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => return Err("unexpected public key encoding".into()),
        };
        let kid = "bench-1".to_string();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        let published = Arc::new(Published {
            url: url.clone(),
            jwk,
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(published);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url,
            kid,
            key: EncodingKey::from_ec_der(der.as_ref()),
        })
    }

    /// A token for a system of `agency` holding `roles`, valid for an hour.
    pub fn token(&self, audience: &str, subject: &str, roles: &[&str]) -> Result<String, String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({
            "iss": self.url,
            "sub": subject,
            "aud": audience,
            "client_id": subject,
            "name": "Benchmark caseworker system",
            "roles": roles,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "jti": format!("bench-{now}"),
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| e.to_string())
    }
}

async fn discovery(State(p): State<Arc<Published>>) -> Json<Value> {
    Json(json!({
        "issuer": p.url,
        "authorization_endpoint": format!("{}/authorize", p.url),
        "token_endpoint": format!("{}/token", p.url),
        "jwks_uri": format!("{}/jwks", p.url),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn jwks(State(p): State<Arc<Published>>) -> Json<Value> {
    Json(json!({ "keys": [p.jwk] }))
}
