//! The federation connector's access token: OAuth 2.0 client credentials
//! (RFC 6749 §4.4) at the local agency's identity provider, cached until
//! shortly before it expires and refreshed by one caller at a time.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use crate::ConnectorError;
use crate::error::excerpt;

/// How long before its expiry a token is replaced, so a token never
/// expires between being read here and being checked by the peer.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// The largest token response read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// A lifetime assumed when the provider does not state one.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// A client-credentials token source.
pub(crate) struct TokenSource {
    dataset: String,
    http: reqwest::Client,
    url: Url,
    client_id: String,
    secret: String,
    scope: Option<String>,
    // INVARIANT: held across the fetch, so concurrent callers that find no
    // fresh token wait for one fetch instead of each making their own.
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl std::fmt::Debug for TokenSource {
    // The secret and the token are credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("url", &self.url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub(crate) fn new(
        dataset: &str,
        http: reqwest::Client,
        url: Url,
        client_id: String,
        secret: String,
        scope: Option<String>,
    ) -> Self {
        Self {
            dataset: dataset.to_owned(),
            http,
            url,
            client_id,
            secret,
            scope,
            cached: Mutex::new(None),
        }
    }

    /// A token that is good for at least the refresh margin.
    pub(crate) async fn token(&self) -> Result<String, ConnectorError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        let keep = lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + keep,
        });
        Ok(token)
    }

    /// Forgets the cached token, after the peer refused it.
    pub(crate) async fn forget(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<(String, Duration), ConnectorError> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let mut response = self
            .http
            .post(self.url.clone())
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(&form)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
            if body.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
                return Err(self.refused("the token response is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // An OAuth error names what was wrong (`invalid_client`); its
            // description is the provider's text, shortened.
            let error = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return Err(self.refused(&format!(
                "the identity provider answered {} {}",
                status.as_u16(),
                excerpt(&error, 60)
            )));
        }
        let answer: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| self.refused("the answer is not a token response"))?;
        if let Some(kind) = &answer.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(self.refused(&format!(
                "token type `{}` is not a bearer token",
                excerpt(kind, 20)
            )));
        }
        if answer.access_token.is_empty() || answer.access_token.len() > 16 * 1024 {
            return Err(self.refused("the access token is empty or too large"));
        }
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((answer.access_token, lifetime))
    }

    fn refused(&self, reason: &str) -> ConnectorError {
        ConnectorError::TokenRefused {
            dataset: self.dataset.clone(),
            reason: reason.to_owned(),
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> ConnectorError {
        let reason = if e.is_connect() {
            "cannot connect to the identity provider"
        } else if e.is_timeout() {
            "the identity provider timed out"
        } else {
            "the token request failed"
        };
        ConnectorError::Unreachable {
            dataset: self.dataset.clone(),
            reason: reason.to_owned(),
        }
    }
}
