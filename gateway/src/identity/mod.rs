//! Federated identity: a registry of trusted OpenID Connect issuers, each
//! speaking for exactly one agency, and the verification of their bearer
//! tokens into a [`Principal`].
//!
//! `jsonwebtoken` checks signatures and the registered claims; the gateway
//! adds what its defaults leave out: `exp`, `iss` and `aud` are required,
//! `nbf` is checked, leeway is bounded, unknown `crit` headers, encrypted and
//! nested tokens are refused, `jku`/`x5u`/`jwk` headers are never followed,
//! the algorithm must be one the issuer is configured for (never `none` or
//! HMAC), and an issuer can only assert its own agency.

mod keys;
mod principal;

use std::{collections::HashMap, sync::Arc, time::Duration};

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

pub use keys::KeyCache;
pub use principal::Principal;

use crate::{
    config::{ClaimMapping, Config, parse_algorithm},
    error::GatewayError,
};

/// Largest bearer token accepted, checked before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The trusted issuers, by issuer URL.
#[derive(Debug)]
pub struct TrustRegistry {
    issuers: HashMap<String, Arc<TrustedIssuer>>,
}

/// One issuer and what the gateway accepts from it.
#[derive(Debug)]
pub struct TrustedIssuer {
    /// The issuer URL, as in `iss`.
    pub url: String,
    /// The one agency it speaks for.
    pub agency: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    claims: ClaimMapping,
    keys: KeyCache,
}

impl TrustRegistry {
    /// Builds the registry from validated configuration. Keys are fetched
    /// lazily, on the first token from each issuer, so one unreachable
    /// provider never stops the gateway starting.
    pub fn from_config(config: &Config, http: reqwest::Client) -> Result<Self, GatewayError> {
        let mut issuers = HashMap::new();
        for iss in &config.issuers {
            let algorithms = iss
                .algorithms
                .get_ref()
                .iter()
                .map(|a| parse_algorithm(a).map_err(GatewayError::internal))
                .collect::<Result<Vec<_>, _>>()?;
            let url = iss.url.get_ref().clone();
            issuers.insert(
                url.clone(),
                Arc::new(TrustedIssuer {
                    keys: KeyCache::new(
                        url.clone(),
                        http.clone(),
                        Duration::from_secs(iss.jwks_cache_seconds),
                    ),
                    url,
                    agency: iss.agency.get_ref().clone(),
                    audiences: iss.audiences.clone(),
                    algorithms,
                    leeway: *iss.leeway_seconds.get_ref(),
                    claims: iss.claims.clone(),
                }),
            );
        }
        Ok(Self { issuers })
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &TrustedIssuer> {
        self.issuers.values().map(AsRef::as_ref)
    }

    /// Verifies a bearer token and maps it to a principal.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, GatewayError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("token is larger than the gateway accepts"));
        }
        let segments: Vec<&str> = token.split('.').collect();
        match segments.len() {
            3 => {}
            5 => return Err(invalid("encrypted tokens (JWE) are not accepted")),
            _ => return Err(invalid("token is not a signed JWT")),
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("token header is malformed or names an unsupported algorithm"))?;
        if header.crit.as_ref().is_some_and(|c| !c.is_empty()) {
            // RFC 7515 §4.1.11: a recipient must reject critical extensions
            // it does not understand, and this gateway understands none.
            return Err(invalid(
                "token has a critical header extension the gateway does not understand",
            ));
        }
        if header
            .cty
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("jwt"))
        {
            return Err(invalid("nested tokens are not accepted"));
        }
        let issuer_url = unverified_issuer(&segments)?;
        let issuer =
            self.issuers
                .get(&issuer_url)
                .ok_or_else(|| GatewayError::Unauthenticated {
                    reason: "ISSUER_UNTRUSTED",
                    message: "token issuer is not trusted by this gateway".into(),
                })?;
        issuer.verify(token, &header).await
    }
}

impl TrustedIssuer {
    async fn verify(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
    ) -> Result<Principal, GatewayError> {
        if !self.algorithms.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm `{:?}` is not accepted from this issuer",
                header.alg
            )));
        }
        let kid = header
            .kid
            .as_deref()
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or_else(|| invalid("token header has no usable `kid`"))?;
        let key = self.keys.key(kid).await?;
        if key.algorithm.is_some_and(|a| a != header.alg) {
            return Err(invalid("token algorithm does not match its key"));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.url]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.leeway = self.leeway;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => GatewayError::Unauthenticated {
                    reason: "TOKEN_EXPIRED",
                    message: "token has expired".into(),
                },
                ErrorKind::ImmatureSignature => GatewayError::Unauthenticated {
                    reason: "TOKEN_EXPIRED",
                    message: "token is not valid yet".into(),
                },
                ErrorKind::InvalidAudience => invalid("token audience is not accepted"),
                ErrorKind::InvalidIssuer => invalid("token issuer does not match"),
                ErrorKind::InvalidSignature => invalid("token signature does not verify"),
                ErrorKind::MissingRequiredClaim(c) => {
                    invalid(format!("token lacks the required claim `{c}`"))
                }
                _ => invalid("token could not be verified"),
            })?;
        let claims = data.claims;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Some(iat) = claims.get("iat") {
            let iat = iat
                .as_i64()
                .ok_or_else(|| invalid("claim `iat` is not a number"))?;
            if iat > now.saturating_add(i64::try_from(self.leeway).unwrap_or(30)) {
                return Err(invalid("token was issued in the future"));
            }
        }
        principal::map_claims(self, &claims)
    }
}

fn invalid(message: impl Into<String>) -> GatewayError {
    GatewayError::Unauthenticated {
        reason: "TOKEN_INVALID",
        message: message.into(),
    }
}

/// Reads `iss` from the payload before verification, only to choose which
/// issuer's keys and rules apply; nothing else is trusted until the
/// signature verifies with that issuer's key.
fn unverified_issuer(segments: &[&str]) -> Result<String, GatewayError> {
    let payload = segments
        .get(1)
        .ok_or_else(|| invalid("token is not a signed JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| invalid("token payload is not base64url"))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| invalid("token payload is not JSON"))?;
    value
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| invalid("token lacks the required claim `iss`"))
}

#[cfg(test)]
mod tests;
