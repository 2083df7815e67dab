//! One issuer's signing keys: discovered, cached, refreshed.
//!
//! Keys are fetched on first use. They are re-read from the provider at
//! least once a minute (in the background, while the cached keys keep
//! serving), so a key the provider retires stops verifying within about a
//! minute, and at once when a token names a `kid` the cache does not hold
//! (the provider may have rotated). Fetches are single-flight and at most
//! one per [`MIN_REFRESH_INTERVAL`]: a flood of tokens with invented `kid`s
//! is refused from memory and cannot make the gateway hammer an identity
//! provider. If the provider is unreachable, cached keys keep working until
//! the cache lifetime after the last successful fetch, then that issuer's
//! tokens fail closed (`ISSUER_UNAVAILABLE`); other issuers are unaffected.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, Jwk, PublicKeyUse},
};
use openidconnect::core::CoreProviderMetadata;
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::invalid;
use crate::error::GatewayError;

/// The least time between two fetches of one issuer's keys.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// The longest keys are used before they are re-read from the provider
/// (while it answers). Bounds how long a retired key keeps verifying.
pub const MAX_FRESH: Duration = Duration::from_secs(60);

/// Largest discovery document or key set read from a provider.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Most keys kept from one key set; real providers publish a handful.
const MAX_KEYS: usize = 64;

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
#[derive(Debug, Clone)]
pub struct KeyCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    issuer: String,
    /// Hosts other than the issuer's own that may serve its key set.
    jwks_hosts: Vec<String>,
    http: reqwest::Client,
    lifetime: Duration,
    state: RwLock<KeyState>,
    /// Held for the whole of a fetch: one fetch at a time per issuer.
    refresh: Mutex<()>,
    /// Set while a background refresh task exists, so a burst of requests
    /// for stale keys spawns one task, not one each.
    refreshing: AtomicBool,
}

#[derive(Debug, Default)]
struct KeyState {
    keys: HashMap<String, VerifyingKey>,
    /// The last successful fetch.
    fetched_at: Option<Instant>,
    /// The last fetch, successful or not; fetches are rate-limited from it.
    last_attempt: Option<Instant>,
    jwks_uri: Option<String>,
    fetches: u64,
}

/// What the cache can say about a `kid` without asking the provider.
enum Lookup {
    /// Cached and fresh.
    Found(VerifyingKey),
    /// Cached and usable, but a refresh is due.
    Stale(VerifyingKey),
    /// Not usable, and the provider may not be asked yet.
    Refused(GatewayError),
    /// The provider should be asked.
    Fetch,
}

impl KeyCache {
    /// A cache for `issuer`'s keys, usable for `lifetime` after each
    /// successful fetch.
    pub fn new(issuer: String, http: reqwest::Client, lifetime: Duration) -> Self {
        Self::with_jwks_hosts(issuer, Vec::new(), http, lifetime)
    }

    /// [`KeyCache::new`], also accepting a key set served from one of
    /// `jwks_hosts` rather than the issuer's own host.
    pub fn with_jwks_hosts(
        issuer: String,
        jwks_hosts: Vec<String>,
        http: reqwest::Client,
        lifetime: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                issuer,
                jwks_hosts,
                http,
                lifetime,
                state: RwLock::new(KeyState::default()),
                refresh: Mutex::new(()),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// Whether `other` is this very cache rather than one built alike.
    #[cfg(test)]
    pub(crate) fn shares_state_with(&self, other: &KeyCache) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// How many times keys were fetched, successfully or not (for tests and
    /// metrics).
    pub async fn fetches(&self) -> u64 {
        self.inner.state.read().await.fetches
    }

    /// The key for `kid`, fetching or refreshing keys if needed.
    pub async fn key(&self, kid: &str) -> Result<VerifyingKey, GatewayError> {
        match self.inner.lookup(kid).await {
            Lookup::Found(key) => return Ok(key),
            Lookup::Stale(key) => {
                self.refresh_in_background();
                return Ok(key);
            }
            Lookup::Refused(e) => return Err(e),
            Lookup::Fetch => {}
        }
        let _single_flight = self.inner.refresh.lock().await;
        // Another task may have fetched while this one waited; if so, the
        // rate limit now holds and the answer comes from its result.
        match self.inner.lookup(kid).await {
            Lookup::Found(key) | Lookup::Stale(key) => return Ok(key),
            Lookup::Refused(e) => return Err(e),
            Lookup::Fetch => {}
        }
        self.inner.refresh().await;
        match self.inner.lookup(kid).await {
            Lookup::Found(key) | Lookup::Stale(key) => Ok(key),
            Lookup::Refused(e) => Err(e),
            Lookup::Fetch => Err(self.inner.unavailable()),
        }
    }

    /// Re-reads the keys without making the caller wait: stale keys keep
    /// serving meanwhile, so a slow or failing provider adds no latency.
    fn refresh_in_background(&self) {
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.refreshing.store(false, Ordering::Release);
            return;
        };
        let inner = Arc::clone(&self.inner);
        runtime.spawn(async move {
            if let Ok(_single_flight) = inner.refresh.try_lock()
                && !inner.recently_attempted().await
            {
                inner.refresh().await;
            }
            inner.refreshing.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    /// Keys are fresh until a refresh is due (half the lifetime, at most
    /// [`MAX_FRESH`], and no sooner than a fetch may happen anyway), and
    /// usable until the lifetime ends.
    fn refresh_after(&self) -> Duration {
        (self.lifetime / 2)
            .min(MAX_FRESH)
            .max(MIN_REFRESH_INTERVAL)
            .min(self.lifetime)
    }

    async fn lookup(&self, kid: &str) -> Lookup {
        let state = self.state.read().await;
        let age = state.fetched_at.map(|t| t.elapsed());
        let fresh = age.is_some_and(|a| a < self.refresh_after());
        let usable = age.is_some_and(|a| a < self.lifetime);
        // INVARIANT: while the last attempt is recent no fetch is in flight,
        // because a fetch only starts once the last attempt is not recent.
        let recent = state
            .last_attempt
            .is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL);
        match state.keys.get(kid) {
            Some(key) if fresh => Lookup::Found(key.clone()),
            Some(key) if usable => Lookup::Stale(key.clone()),
            _ if !recent => Lookup::Fetch,
            _ if usable => Lookup::Refused(invalid(
                "token is signed with a key the issuer does not publish",
            )),
            _ => Lookup::Refused(self.unavailable()),
        }
    }

    async fn recently_attempted(&self) -> bool {
        self.state
            .read()
            .await
            .last_attempt
            .is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL)
    }

    fn unavailable(&self) -> GatewayError {
        GatewayError::IssuerUnavailable {
            issuer: self.issuer.clone(),
        }
    }

    /// Fetches the keys and records the outcome. Callers hold `refresh`.
    async fn refresh(&self) {
        let fetched = self.fetch().await;
        let mut state = self.state.write().await;
        state.last_attempt = Some(Instant::now());
        state.fetches = state.fetches.saturating_add(1);
        if let Some(m) = crate::telemetry::metrics() {
            m.jwks_refresh(&self.issuer, fetched.is_ok());
        }
        match fetched {
            Ok((jwks_uri, keys)) => {
                state.keys = keys;
                state.jwks_uri = Some(jwks_uri);
                state.fetched_at = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "could not refresh issuer keys");
                // Rediscover next time: the provider may have moved its keys.
                state.jwks_uri = None;
            }
        }
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
                let jwks_uri = metadata.jwks_uri().url();
                // Keys fetched over plain HTTP could be anyone's: only a
                // loopback issuer (allowed plain HTTP by configuration) may
                // publish them that way.
                if jwks_uri.scheme() != "https" && !self.issuer.starts_with("http://") {
                    return Err(format!(
                        "discovery names a key set `{jwks_uri}` not served over https"
                    ));
                }
                if !self.may_serve_keys(jwks_uri) {
                    return Err(format!(
                        "discovery names a key set on `{}`, which is neither the issuer's host nor in its jwks_hosts",
                        jwks_uri.host_str().unwrap_or("")
                    ));
                }
                jwks_uri.to_string()
            }
        };
        let body = self.get(&jwks_uri).await?;
        Ok((jwks_uri, self.parse_key_set(&body)?))
    }

    /// Whether `url` may serve this issuer's keys: the issuer's own host
    /// or one the configuration names. A discovery document is the
    /// provider's to write, so without this check a compromised or spoofed
    /// document could make the gateway fetch from any address it can reach
    /// (SSRF), including internal services.
    fn may_serve_keys(&self, url: &openidconnect::url::Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let issuer_host = openidconnect::url::Url::parse(&self.issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        issuer_host.as_deref() == Some(&host.to_ascii_lowercase())
            || self
                .jwks_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    /// Reads a JWK Set one key at a time, so a key of a kind the gateway
    /// cannot use (an encryption key, a curve it does not support) is
    /// skipped rather than making the whole set unusable.
    fn parse_key_set(&self, body: &[u8]) -> Result<HashMap<String, VerifyingKey>, String> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let set: RawSet =
            serde_json::from_slice(body).map_err(|e| format!("key set is invalid: {e}"))?;
        let mut keys = HashMap::new();
        for raw in set.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
                tracing::warn!(issuer = %self.issuer, "skipping a key the gateway cannot read");
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if let Some(key) = self.usable_key(&jwk) {
                if keys.len() >= MAX_KEYS || keys.contains_key(&kid) {
                    tracing::warn!(issuer = %self.issuer, kid = %kid, "skipping a surplus or duplicated key");
                    continue;
                }
                keys.insert(kid, key);
            }
        }
        Ok(keys)
    }

    /// A JWK as a verifying key, if it is a public signature key.
    fn usable_key(&self, jwk: &Jwk) -> Option<VerifyingKey> {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return None;
        }
        // A symmetric key has no place in a federated issuer's key set: it
        // would be a shared secret published to the world.
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            tracing::warn!(issuer = %self.issuer, "skipping a symmetric key in a published key set");
            return None;
        }
        // A key pinned to an algorithm that is not a signature algorithm
        // (`RSA-OAEP`, say) is an encryption key without `use`.
        let algorithm = match jwk.common.key_algorithm {
            None => None,
            Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(VerifyingKey {
            key: Arc::new(key),
            algorithm,
        })
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The P-256 public key of RFC 7515 appendix A.3.
    fn ec(kid: &str) -> serde_json::Value {
        json!({
            "kty": "EC", "crv": "P-256", "kid": kid,
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        })
    }

    fn parse(keys: Vec<serde_json::Value>) -> HashMap<String, VerifyingKey> {
        let cache = KeyCache::new(
            "https://idp.example".into(),
            reqwest::Client::new(),
            Duration::from_secs(3600),
        );
        let body = json!({ "keys": keys }).to_string();
        cache.inner.parse_key_set(body.as_bytes()).unwrap()
    }

    #[test]
    fn keys_come_only_from_the_issuer_host_or_an_allowed_one() {
        let cache = KeyCache::with_jwks_hosts(
            "https://login.example.org/tenant/v2.0".into(),
            vec!["keys.example.net".into()],
            reqwest::Client::new(),
            Duration::from_secs(3600),
        );
        let ok = |u: &str| {
            cache
                .inner
                .may_serve_keys(&openidconnect::url::Url::parse(u).unwrap())
        };
        assert!(ok("https://login.example.org/tenant/discovery/v2.0/keys"));
        assert!(ok("https://LOGIN.example.org/keys"));
        assert!(ok("https://keys.example.net/jwks"));
        assert!(!ok("https://169.254.169.254/latest/meta-data"));
        assert!(!ok("https://login.example.org.evil.test/keys"));
        assert!(!ok("http://localhost:5432/"));
    }

    #[test]
    fn only_public_signature_keys_are_kept_and_one_bad_key_spoils_nothing() {
        let mut pinned = ec("pinned");
        pinned["alg"] = json!("ES256");
        let mut enc = ec("enc");
        enc["use"] = json!("enc");
        let mut oaep = ec("oaep");
        oaep["alg"] = json!("RSA-OAEP");
        let mut unknown_alg = ec("future");
        unknown_alg["alg"] = json!("ES999");
        let keys = parse(vec![
            ec("plain"),
            pinned,
            enc,
            oaep,
            unknown_alg,
            json!({"kty": "oct", "kid": "secret", "k": "c2VjcmV0"}),
            json!({"kty": "XYZ", "kid": "weird"}),
            json!({"kty": "EC", "crv": "P-256", "kid": "broken", "x": 1}),
            json!("not even an object"),
            {
                let mut no_kid = ec("x");
                no_kid.as_object_mut().unwrap().remove("kid");
                no_kid
            },
        ]);
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["pinned", "plain"]);
        assert_eq!(keys["pinned"].algorithm, Some(Algorithm::ES256));
        assert_eq!(keys["plain"].algorithm, None);
    }

    #[test]
    fn the_first_of_two_keys_with_one_kid_wins_and_the_set_is_bounded() {
        let mut second = ec("k");
        second["alg"] = json!("ES256");
        let keys = parse(vec![ec("k"), second]);
        assert_eq!(keys["k"].algorithm, None);
        let many = (0..100).map(|i| ec(&format!("k{i}"))).collect();
        assert_eq!(parse(many).len(), MAX_KEYS);
    }

    #[test]
    fn keys_are_re_read_within_a_minute_but_never_faster_than_fetches_may_happen() {
        let cache = |secs| {
            KeyCache::new(
                "https://i".into(),
                reqwest::Client::new(),
                Duration::from_secs(secs),
            )
        };
        assert_eq!(cache(3_600).inner.refresh_after(), MAX_FRESH);
        assert_eq!(cache(60).inner.refresh_after(), Duration::from_secs(30));
        assert_eq!(cache(12).inner.refresh_after(), MIN_REFRESH_INTERVAL);
        assert_eq!(cache(10).inner.refresh_after(), Duration::from_secs(10));
    }
}
