//! Federated identity: a registry of trusted OpenID Connect issuers, each
//! speaking for exactly one agency, and the verification of their bearer
//! tokens into a [`Principal`].
//!
//! `jsonwebtoken` checks signatures and the registered claims; the gateway
//! adds what its defaults leave out, because a federated gateway trusts many
//! issuers at once and a token accepted by mistake discloses data about
//! people. Before any key is looked up the token is bounded in size, split
//! strictly, and its header and claims are read with duplicate members
//! refused (`jose.rs`); unknown `crit` headers, unencoded payloads, encrypted
//! and nested tokens and foreign `typ`s are refused; `jku`/`x5u`/`jwk`/`x5c`
//! headers are never read. Then: the algorithm must be one the issuer is
//! configured for (never `none` or HMAC) and must suit the key's type and
//! pinned `alg`; `exp`, `iss`, `aud` and `sub` are required; `nbf` is
//! checked; leeway is bounded; `iat` in the future and `exp` beyond the
//! issuer's maximum token lifetime are refused; certificate-bound tokens
//! (RFC 8705) must come with their certificate; and an issuer can only
//! assert its own agency.

mod cache;
mod jose;
mod keys;
mod principal;
pub mod source;
pub mod store;

use std::{
    collections::HashMap,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Validation, errors::ErrorKind};
use serde_json::{Map, Value};

pub use cache::TOKEN_CACHE_ENTRIES;
pub use jose::{MAX_HEADER_BYTES, MAX_TOKEN_BYTES};
pub use keys::{KeyCache, MIN_REFRESH_INTERVAL};
pub use principal::Principal;

use crate::{
    config::{ClaimMapping, Config, IssuerConfig, parse_algorithm},
    error::GatewayError,
};

/// What the audit trail records as the issuer of a token that names none the
/// gateway trusts: an attacker's choice of text never reaches the ledger.
pub const UNTRUSTED_ISSUER: &str = "untrusted";

/// The refusal of a token whose `nbf` is still ahead: one of the two that
/// time reverses, so never remembered by the token cache.
const NOT_YET_VALID: &str = "token is not valid yet";
/// The refusal of a token whose `iat` is still ahead (see [`NOT_YET_VALID`]).
const ISSUED_IN_FUTURE: &str = "token was issued in the future";

/// The trusted issuers, by issuer URL, as the trust registry has them now.
///
/// The map is replaced whole when the registry changes (a version committed
/// on any replica), never edited in place, so a token is always checked
/// against one consistent set of issuers. An issuer whose terms did not
/// change keeps its `Arc` and so its key cache: a change to one agency's
/// issuer never makes the gateway fetch every other provider's keys again.
#[derive(Debug)]
pub struct TrustRegistry {
    /// Read briefly to take the current map; never held across an await.
    issuers: RwLock<Arc<IssuerMap>>,
    /// Moves on every change, so whatever derives from the registry can
    /// tell it is out of date.
    generation: AtomicU64,
    http: reqwest::Client,
    /// Verified tokens; an entry holds only while the registry still maps
    /// its issuer's URL to the same `Arc<TrustedIssuer>` (see `cache.rs`).
    tokens: cache::TokenCache,
}

type IssuerMap = HashMap<String, Arc<TrustedIssuer>>;

/// One issuer and what the gateway accepts from it.
#[derive(Debug)]
pub struct TrustedIssuer {
    /// The issuer URL, as in `iss`.
    pub url: String,
    /// The one agency it speaks for.
    pub agency: String,
    audiences: Vec<String>,
    algorithms: Vec<jsonwebtoken::Algorithm>,
    leeway: u64,
    max_lifetime: u64,
    require_certificate_bound: bool,
    claims: ClaimMapping,
    /// The hash of the terms this issuer was built from.
    content_hash: String,
    /// What the key cache was built with, so new terms that leave them
    /// alone keep the cached keys.
    jwks_hosts: Vec<String>,
    jwks_cache_seconds: u64,
    keys: KeyCache,
}

impl TrustRegistry {
    /// Builds the registry from validated configuration. Keys are fetched
    /// lazily, on the first token from each issuer, so one unreachable
    /// provider never stops the gateway starting.
    pub fn from_config(config: &Config, http: reqwest::Client) -> Result<Self, GatewayError> {
        let mut issuers = HashMap::new();
        for iss in &config.issuers {
            let issuer = TrustedIssuer::build(iss, &http, None)?;
            issuers.insert(issuer.url.clone(), Arc::new(issuer));
        }
        Ok(Self {
            issuers: RwLock::new(Arc::new(issuers)),
            generation: AtomicU64::new(0),
            http,
            tokens: cache::TokenCache::new(TOKEN_CACHE_ENTRIES),
        })
    }

    /// Makes `issuers` the trusted set. An issuer whose terms are unchanged
    /// is kept as it is (the same `Arc`, the same key cache); one whose
    /// terms changed is rebuilt, keeping its key cache when the settings
    /// the keys depend on are unchanged; one not in `issuers` is dropped.
    /// Terms that cannot be built (only a hand-edited database could hold
    /// them) leave that issuer untrusted and are logged. Returns whether
    /// anything changed; if so, [`TrustRegistry::generation`] has moved.
    pub fn replace<'a>(&self, issuers: impl IntoIterator<Item = &'a IssuerConfig>) -> bool {
        let mut guard = self.issuers.write().unwrap_or_else(PoisonError::into_inner);
        let old = guard.clone();
        let mut next = HashMap::new();
        let mut changed = false;
        for iss in issuers {
            let url = iss.url.get_ref();
            let hash = match store::canonical(iss) {
                Ok((_, hash)) => hash,
                Err(e) => {
                    tracing::error!(issuer = %url, error = %e, "issuer terms unusable; it is not trusted");
                    continue;
                }
            };
            let existing = old.get(url);
            if let Some(existing) = existing.filter(|e| e.content_hash == hash) {
                next.insert(url.clone(), existing.clone());
                continue;
            }
            let keys = existing
                .filter(|e| e.same_key_source(iss))
                .map(|e| e.keys.clone());
            match TrustedIssuer::build(iss, &self.http, keys) {
                Ok(issuer) => {
                    next.insert(url.clone(), Arc::new(issuer));
                    changed = true;
                }
                Err(e) => {
                    tracing::error!(issuer = %url, error = %e, "issuer terms unusable; it is not trusted");
                }
            }
        }
        changed |= old.keys().any(|url| !next.contains_key(url));
        if changed {
            *guard = Arc::new(next);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }

    /// A counter that moves whenever the trusted set changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The trusted issuers now, by URL.
    pub fn snapshot(&self) -> Arc<HashMap<String, Arc<TrustedIssuer>>> {
        self.issuers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The trusted issuers now, in URL order.
    pub fn issuers(&self) -> Vec<Arc<TrustedIssuer>> {
        let mut issuers: Vec<_> = self.snapshot().values().cloned().collect();
        issuers.sort_by(|a, b| a.url.cmp(&b.url));
        issuers
    }

    /// The trusted issuer with this URL.
    pub fn issuer(&self, url: &str) -> Option<Arc<TrustedIssuer>> {
        self.snapshot().get(url).cloned()
    }

    /// Verifies a bearer token presented without a client certificate and
    /// maps it to a principal. A certificate-bound token is refused.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, GatewayError> {
        self.authenticate_bound(token, None).await
    }

    /// Verifies a bearer token and maps it to a principal, enforcing RFC 8705
    /// certificate binding: `peer_cert_sha256` is the SHA-256 digest of the
    /// DER client certificate the TLS layer verified, if any. A token that
    /// carries `cnf.x5t#S256` must match it, and an issuer configured with
    /// `require_certificate_bound` accepts no token without that claim, so a
    /// stolen token is useless without the client's private key.
    pub async fn authenticate_bound(
        &self,
        token: &str,
        peer_cert_sha256: Option<&[u8]>,
    ) -> Result<Principal, GatewayError> {
        self.authenticate_shared(token, peer_cert_sha256)
            .await
            .map(|p| Principal::clone(&p))
    }

    /// [`TrustRegistry::authenticate_bound`], answering a token seen before
    /// from the token cache while what verified it still holds (see
    /// `cache.rs`), and sharing the principal rather than copying it.
    pub async fn authenticate_shared(
        &self,
        token: &str,
        peer_cert_sha256: Option<&[u8]>,
    ) -> Result<Arc<Principal>, GatewayError> {
        let cache_key = cache::TokenCache::key(token, peer_cert_sha256);
        if let Some(hit) = self.tokens.get(&cache_key) {
            if let Some(answer) = hit.answer(self.issuer(hit.issuer_url()).as_ref()).await {
                return answer;
            }
            self.tokens.remove(&cache_key);
        }
        let compact = jose::Compact::parse(token)?;
        let issuer =
            self.issuer(compact.issuer()?)
                .ok_or_else(|| GatewayError::Unauthenticated {
                    reason: "ISSUER_UNTRUSTED",
                    message: "token issuer is not trusted by this gateway".into(),
                })?;
        let (kid, key) = issuer.key_for(&compact).await?;
        let outcome = issuer.verify_with(token, &compact, &key, peer_cert_sha256);
        match self
            .tokens
            .remember(cache_key, &issuer, kid, &key.key, &outcome)
        {
            Some(principal) => Ok(principal),
            None => outcome.map(|(principal, _)| Arc::new(principal)),
        }
    }

    /// The issuer to record for a token that failed authentication: the
    /// trusted issuer URL it names, or [`UNTRUSTED_ISSUER`]. Only a URL from
    /// the registry is ever returned, so the audit trail holds nothing the
    /// caller chose.
    pub fn audit_issuer(&self, token: &str) -> String {
        let issuers = self.snapshot();
        jose::claimed_issuer(token)
            .and_then(|iss| issuers.get_key_value(&iss).map(|(k, _)| k.clone()))
            .unwrap_or_else(|| UNTRUSTED_ISSUER.to_owned())
    }
}

impl TrustedIssuer {
    /// Builds an issuer from validated terms, with `keys` if the caller has
    /// a cache for the same key source, else a new one.
    fn build(
        iss: &IssuerConfig,
        http: &reqwest::Client,
        keys: Option<KeyCache>,
    ) -> Result<Self, GatewayError> {
        let algorithms = iss
            .algorithms
            .get_ref()
            .iter()
            .map(|a| parse_algorithm(a).map_err(GatewayError::internal))
            .collect::<Result<Vec<_>, _>>()?;
        let (_, content_hash) = store::canonical(iss).map_err(GatewayError::internal)?;
        let url = iss.url.get_ref().clone();
        let jwks_cache_seconds = *iss.jwks_cache_seconds.get_ref();
        Ok(Self {
            keys: keys.unwrap_or_else(|| {
                KeyCache::with_jwks_hosts(
                    url.clone(),
                    iss.jwks_hosts.clone(),
                    http.clone(),
                    Duration::from_secs(jwks_cache_seconds),
                )
            }),
            url,
            agency: iss.agency.get_ref().clone(),
            audiences: iss.audiences.clone(),
            algorithms,
            leeway: *iss.leeway_seconds.get_ref(),
            max_lifetime: *iss.max_token_lifetime_seconds.get_ref(),
            require_certificate_bound: iss.require_certificate_bound,
            claims: iss.claims.clone(),
            content_hash,
            jwks_hosts: iss.jwks_hosts.clone(),
            jwks_cache_seconds,
        })
    }

    /// Whether `iss` reads its keys exactly as this issuer does, so its
    /// cache (and the keys in it) can carry over to new terms.
    fn same_key_source(&self, iss: &IssuerConfig) -> bool {
        self.url == *iss.url.get_ref()
            && self.jwks_hosts == iss.jwks_hosts
            && self.jwks_cache_seconds == *iss.jwks_cache_seconds.get_ref()
    }

    /// The hash of the terms this issuer was built from.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// This issuer's key cache (for metrics and tests).
    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// Maps claims this issuer has already vouched for (an ID token the DPO
    /// console verified with `openidconnect`) onto a principal, with the same
    /// claim mapping and agency rule as bearer tokens.
    pub fn principal_from_claims(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<Principal, GatewayError> {
        principal::map_claims(self, claims)
    }

    /// The key the token names, fetched if need be, once its algorithm is
    /// one this issuer may use; with the `kid` it was found under.
    async fn key_for<'c>(
        &self,
        compact: &'c jose::Compact,
    ) -> Result<(&'c str, keys::VerifyingKey), GatewayError> {
        let alg = compact.alg;
        if !self.algorithms.contains(&alg) {
            return Err(invalid(format!(
                "algorithm `{alg:?}` is not accepted from this issuer"
            )));
        }
        let kid = compact
            .kid
            .as_deref()
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or_else(|| invalid("token header has no usable `kid`"))?;
        let key = self.keys.key(kid).await?;
        Ok((kid, key))
    }

    /// Checks the token's signature with `key`, then its claims; the
    /// principal and the token's `exp`. Nothing here waits, so the token
    /// cache can remember what it decides.
    fn verify_with(
        &self,
        token: &str,
        compact: &jose::Compact,
        key: &keys::VerifyingKey,
        peer_cert_sha256: Option<&[u8]>,
    ) -> Result<(Principal, i64), GatewayError> {
        let alg = compact.alg;
        if key.algorithm.is_some_and(|a| a != alg) || key.key.family() != alg.family() {
            return Err(invalid("token algorithm does not match its key"));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.url]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.leeway = self.leeway;
        // The signature and registered claims are checked by jsonwebtoken;
        // the claims used afterwards are the gateway's own strict reading of
        // the same signed bytes, so the two can never disagree.
        jsonwebtoken::decode::<serde::de::IgnoredAny>(token, &key.key, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => GatewayError::Unauthenticated {
                    reason: "TOKEN_EXPIRED",
                    message: "token has expired".into(),
                },
                ErrorKind::ImmatureSignature => GatewayError::Unauthenticated {
                    reason: "TOKEN_EXPIRED",
                    message: NOT_YET_VALID.into(),
                },
                ErrorKind::InvalidAudience => invalid("token audience is not accepted"),
                ErrorKind::InvalidIssuer => invalid("token issuer does not match"),
                ErrorKind::InvalidSignature => invalid("token signature does not verify"),
                ErrorKind::InvalidAlgorithm => invalid("token algorithm does not match its key"),
                // jsonwebtoken reports a claim of the wrong type as missing.
                ErrorKind::MissingRequiredClaim(c) if compact.claims.contains_key(c) => {
                    invalid(format!("claim `{c}` is malformed"))
                }
                ErrorKind::MissingRequiredClaim(c) => {
                    invalid(format!("token lacks the required claim `{c}`"))
                }
                ErrorKind::InvalidClaimFormat(c) => invalid(format!("claim `{c}` is malformed")),
                // Header and claims were decoded already; only the
                // signature is left for jsonwebtoken to decode.
                ErrorKind::Base64(_) => invalid("token signature is malformed"),
                _ => invalid("token could not be verified"),
            },
        )?;
        let claims = &compact.claims;
        let exp = self.check_times(claims)?;
        self.check_binding(claims, peer_cert_sha256)?;
        Ok((principal::map_claims(self, claims)?, exp))
    }

    /// The time checks jsonwebtoken leaves out: `iat` is ignored by it, a
    /// null `nbf` passes as absent, and nothing bounds how far ahead `exp`
    /// may be. Answers the token's `exp`.
    fn check_times(&self, claims: &Map<String, Value>) -> Result<i64, GatewayError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let leeway = i64::try_from(self.leeway).unwrap_or(30);
        // jsonwebtoken reads `"nbf": null` as no `nbf` at all.
        if claims
            .get("nbf")
            .is_some_and(|nbf| numeric_date(nbf).is_none())
        {
            return Err(invalid("claim `nbf` is malformed"));
        }
        if let Some(iat) = claims.get("iat") {
            let iat = numeric_date(iat).ok_or_else(|| invalid("claim `iat` is malformed"))?;
            if iat > now.saturating_add(leeway) {
                return Err(invalid(ISSUED_IN_FUTURE));
            }
        }
        // Present and well-formed: jsonwebtoken has checked both.
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or_else(|| invalid("claim `exp` is malformed"))?;
        let max = i64::try_from(self.max_lifetime).unwrap_or(i64::MAX);
        if exp > now.saturating_add(max).saturating_add(leeway) {
            // A token valid for years cannot be revoked in practice; it is
            // a misissued token or a forged one.
            return Err(invalid(
                "token expires later than this issuer's tokens may live",
            ));
        }
        Ok(exp)
    }

    /// RFC 8705 §3: a certificate-bound token is only good with the
    /// certificate it is bound to.
    fn check_binding(
        &self,
        claims: &Map<String, Value>,
        peer_cert_sha256: Option<&[u8]>,
    ) -> Result<(), GatewayError> {
        let thumbprint = match claims.get("cnf") {
            None => None,
            Some(Value::Object(cnf)) => {
                // RFC 7800: every confirmation method present must be
                // checked; a DPoP `jkt` or a bare `jwk` cannot be here, so a
                // token bound that way is refused rather than treated as a
                // plain bearer token.
                if cnf.keys().any(|k| k != "x5t#S256") {
                    return Err(invalid(
                        "token is bound by a confirmation method the gateway cannot check",
                    ));
                }
                match cnf.get("x5t#S256") {
                    Some(Value::String(t)) if !t.is_empty() => Some(t.as_str()),
                    _ => return Err(invalid("claim `cnf` is malformed")),
                }
            }
            Some(_) => return Err(invalid("claim `cnf` is malformed")),
        };
        match (thumbprint, peer_cert_sha256) {
            (None, _) if self.require_certificate_bound => Err(invalid(
                "this issuer's tokens must be bound to a client certificate, and this one is not",
            )),
            (None, _) => Ok(()),
            (Some(_), None) => Err(invalid(
                "token is bound to a client certificate, and none was presented",
            )),
            (Some(thumbprint), Some(digest)) => {
                let presented = URL_SAFE_NO_PAD.encode(digest);
                if aws_lc_rs::constant_time::verify_slices_are_equal(
                    thumbprint.as_bytes(),
                    presented.as_bytes(),
                )
                .is_ok()
                {
                    Ok(())
                } else {
                    Err(invalid("token is bound to a different client certificate"))
                }
            }
        }
    }
}

fn invalid(message: impl Into<String>) -> GatewayError {
    GatewayError::Unauthenticated {
        reason: "TOKEN_INVALID",
        message: message.into(),
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional, floored.
fn numeric_date(value: &Value) -> Option<i64> {
    let n = value.as_number()?;
    n.as_i64()
        .or_else(|| n.as_u64().map(|_| i64::MAX))
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                // INVARIANT: `as` saturates for floats out of range.
                .map(|f| f.floor() as i64)
        })
}

#[cfg(test)]
mod tests;
