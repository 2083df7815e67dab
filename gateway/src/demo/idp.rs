//! A minimal OpenID provider for `liaison demo` only: discovery, a JWKS and
//! a token endpoint that issues `client_credentials` access tokens. It
//! generates a fresh ES256 key at every start and holds its clients in
//! memory. DEVELOPMENT ONLY: it has no login, no consent and no revocation,
//! and must never be used to vouch for real people.

use std::{collections::BTreeMap, sync::Arc};

use aws_lc_rs::{
    constant_time::verify_slices_are_equal,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use axum::{
    Form, Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::{net::TcpListener, task::JoinHandle};

/// Lifetime of demo access tokens.
pub const TOKEN_TTL_SECONDS: i64 = 900;

/// A client the demo provider knows.
#[derive(Debug, Clone)]
pub struct DemoClient {
    /// The OAuth client id.
    pub client_id: String,
    /// The client secret, random per run.
    pub secret: String,
    /// Extra claims in its tokens (roles, name, team).
    pub claims: Map<String, Value>,
}

/// A running demo provider.
#[derive(Debug)]
pub struct DemoIdp {
    /// The issuer URL.
    pub issuer: String,
    /// The agency it speaks for.
    pub agency: String,
    /// Its clients.
    pub clients: Vec<DemoClient>,
    /// The server task.
    pub task: JoinHandle<()>,
}

struct Provider {
    issuer: String,
    audience: String,
    kid: String,
    key: EncodingKey,
    jwk: Value,
    clients: BTreeMap<String, DemoClient>,
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Starts a provider on `listener` for `agency`, issuing tokens for
/// `audience` to `clients`.
pub async fn start(
    listener: TcpListener,
    agency: &str,
    audience: &str,
    clients: Vec<DemoClient>,
) -> Result<DemoIdp, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let issuer = format!("http://{addr}");
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| "cannot generate a signing key".to_string())?;
    let der = pair
        .to_pkcs8v1()
        .map_err(|_| "cannot encode the signing key".to_string())?;
    let point = pair.public_key().as_ref().to_vec();
    // An uncompressed P-256 point: 0x04 || x (32 bytes) || y (32 bytes).
    let (x, y) = match point.as_slice() {
        [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
        _ => return Err("unexpected public key encoding".into()),
    };
    let kid = format!("demo-{}", &hex::encode(&point)[2..14]);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    });
    let provider = Arc::new(Provider {
        issuer: issuer.clone(),
        audience: audience.to_owned(),
        kid,
        key: EncodingKey::from_ec_der(der.as_ref()),
        jwk,
        clients: clients
            .iter()
            .map(|c| (c.client_id.clone(), c.clone()))
            .collect(),
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .route("/authorize", get(authorize))
        .with_state(provider);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "demo identity provider stopped");
        }
    });
    Ok(DemoIdp {
        issuer,
        agency: agency.to_owned(),
        clients,
        task,
    })
}

async fn discovery(State(p): State<Arc<Provider>>) -> Json<Value> {
    Json(json!({
        "issuer": p.issuer,
        "authorization_endpoint": format!("{}/authorize", p.issuer),
        "token_endpoint": format!("{}/token", p.issuer),
        "jwks_uri": format!("{}/jwks", p.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
}

async fn jwks(State(p): State<Arc<Provider>>) -> Json<Value> {
    Json(json!({ "keys": [p.jwk] }))
}

async fn authorize() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "unsupported_response_type",
        "the demo provider issues client_credentials tokens only",
    )
}

async fn token(
    State(p): State<Arc<Provider>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if form.grant_type != "client_credentials" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported",
        );
    }
    let (id, secret) = match basic_credentials(&headers) {
        Some(c) => c,
        None => match (form.client_id, form.client_secret) {
            (Some(i), Some(s)) => (i, s),
            _ => {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication failed",
                );
            }
        },
    };
    let Some(client) = p.clients.get(&id) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    };
    if verify_slices_are_equal(client.secret.as_bytes(), secret.as_bytes()).is_err() {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = client.claims.clone();
    claims.insert("iss".into(), json!(p.issuer));
    claims.insert("sub".into(), json!(client.client_id));
    claims.insert("aud".into(), json!(p.audience));
    claims.insert("client_id".into(), json!(client.client_id));
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(now + TOKEN_TTL_SECONDS));
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(p.kid.clone());
    header.typ = Some("at+jwt".into());
    match jsonwebtoken::encode(&header, &claims, &p.key) {
        Ok(token) => Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_SECONDS,
        }))
        .into_response(),
        Err(e) => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &e.to_string(),
        ),
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}
