//! One issuer's signing keys: discovered, cached, refreshed.
//!
//! Keys are fetched on first use and refreshed when they age past the cache
//! lifetime or when a token names a `kid` the cache does not hold (the
//! provider may have rotated). Refreshes are single-flight and at most one
//! per [`MIN_REFRESH_INTERVAL`], so a flood of tokens with invented `kid`s
//! cannot make the gateway hammer an identity provider. If the provider is
//! unreachable, cached keys keep working until the cache lifetime ends, then
//! that issuer's tokens fail closed; other issuers are unaffected.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, jwk::JwkSet};
use openidconnect::core::CoreProviderMetadata;
use tokio::sync::{Mutex, RwLock};

use super::invalid;
use crate::error::GatewayError;

/// The least time between two fetches of one issuer's keys.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Largest discovery document or key set read from a provider.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// A verified key and the algorithm its JWK pins, if any.
#[derive(Clone)]
pub struct VerifyingKey {
    /// The key.
    pub key: Arc<DecodingKey>,
    /// The `alg` the JWK declares, which the token must then use.
    pub algorithm: Option<Algorithm>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The cache of one issuer's keys.
#[derive(Debug)]
pub struct KeyCache {
    issuer: String,
    http: reqwest::Client,
    lifetime: Duration,
    state: RwLock<KeyState>,
    refresh: Mutex<()>,
}

#[derive(Debug, Default)]
struct KeyState {
    keys: HashMap<String, VerifyingKey>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
    fetches: u64,
}

impl KeyCache {
    /// A cache for `issuer`'s keys, usable for `lifetime` after each fetch.
    pub fn new(issuer: String, http: reqwest::Client, lifetime: Duration) -> Self {
        Self {
            issuer,
            http,
            lifetime,
            state: RwLock::new(KeyState::default()),
            refresh: Mutex::new(()),
        }
    }

    /// How many times keys were fetched (for tests and metrics).
    pub async fn fetches(&self) -> u64 {
        self.state.read().await.fetches
    }

    /// The key for `kid`, fetching or refreshing keys if needed.
    pub async fn key(&self, kid: &str) -> Result<VerifyingKey, GatewayError> {
        {
            let state = self.state.read().await;
            if let (Some(key), true) = (state.keys.get(kid), self.fresh(&state)) {
                return Ok(key.clone());
            }
        }
        let _single_flight = self.refresh.lock().await;
        {
            // Another task may have refreshed while this one waited.
            let state = self.state.read().await;
            let fresh = self.fresh(&state);
            if let (Some(key), true) = (state.keys.get(kid), fresh) {
                return Ok(key.clone());
            }
            let recently = state
                .last_attempt
                .is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL);
            if recently {
                return match (state.keys.get(kid), fresh) {
                    (Some(key), _) if self.usable(&state) => Ok(key.clone()),
                    (_, true) => Err(invalid(
                        "token is signed with a key the issuer does not publish",
                    )),
                    _ => Err(GatewayError::IssuerUnavailable {
                        issuer: self.issuer.clone(),
                    }),
                };
            }
        }
        let fetched = self.fetch().await;
        let mut state = self.state.write().await;
        state.last_attempt = Some(Instant::now());
        state.fetches += 1;
        match fetched {
            Ok((jwks_uri, keys)) => {
                state.keys = keys;
                state.jwks_uri = Some(jwks_uri);
                state.fetched_at = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "could not refresh issuer keys");
                if !self.usable(&state) {
                    state.keys.clear();
                    return Err(GatewayError::IssuerUnavailable {
                        issuer: self.issuer.clone(),
                    });
                }
            }
        }
        state
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| invalid("token is signed with a key the issuer does not publish"))
    }

    /// Keys are fresh until a scheduled refresh is due (a tenth of the
    /// lifetime, at least a minute), and usable until the lifetime ends.
    fn fresh(&self, state: &KeyState) -> bool {
        let refresh_after = (self.lifetime / 10)
            .max(Duration::from_secs(60))
            .min(self.lifetime);
        state
            .fetched_at
            .is_some_and(|t| t.elapsed() < refresh_after)
    }

    fn usable(&self, state: &KeyState) -> bool {
        state
            .fetched_at
            .is_some_and(|t| t.elapsed() < self.lifetime)
    }

    async fn fetch(&self) -> Result<(String, HashMap<String, VerifyingKey>), String> {
        let known_uri = self.state.read().await.jwks_uri.clone();
        let jwks_uri = match known_uri {
            Some(uri) => uri,
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let body = self.get(&url).await?;
                let metadata: CoreProviderMetadata = serde_json::from_slice(&body)
                    .map_err(|e| format!("discovery document is invalid: {e}"))?;
                if metadata.issuer().as_str().trim_end_matches('/')
                    != self.issuer.trim_end_matches('/')
                {
                    return Err(format!(
                        "discovery document names issuer `{}`",
                        metadata.issuer().as_str()
                    ));
                }
                metadata.jwks_uri().url().to_string()
            }
        };
        let body = self.get(&jwks_uri).await?;
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("key set is invalid: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                tracing::warn!(issuer = %self.issuer, kid = %kid, "skipping unusable key");
                continue;
            };
            let algorithm = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            keys.insert(
                kid,
                VerifyingKey {
                    key: Arc::new(key),
                    algorithm,
                },
            );
        }
        Ok((jwks_uri, keys))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("fetching `{url}` failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("fetching `{url}` returned {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading `{url}` failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!(
                    "`{url}` returned more than {MAX_DOCUMENT_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
