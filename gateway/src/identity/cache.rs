//! Verified tokens, remembered so a client presenting the same bearer token
//! on every call pays for one signature check, not one per call.
//!
//! A partner system sends the same access token for its whole lifetime
//! (minutes to an hour), and checking it costs a strict JOSE parse, a
//! signature verification and a claim mapping: far more than the rest of
//! authentication. The cache is keyed on the SHA-256 of the token (and the
//! client certificate it came with, so a certificate-bound token never hits
//! for another connection's certificate) and never holds the token itself.
//!
//! An entry is only as good as what verified it. A hit is honoured only
//! while:
//! - the token has not expired (`exp` plus the issuer's leeway);
//! - the issuer is still trusted on the same terms (the registry still maps
//!   its URL to the very [`TrustedIssuer`] that verified it); and
//! - the key that verified it is still published and usable: the issuer's
//!   key cache is asked for the `kid` as on a miss, and must answer with the
//!   same key. A removed or rotated key, or keys past their cache lifetime
//!   during a provider outage, end every entry they vouched for.
//!
//! Refusals decided after the key was found are remembered too (negative
//! caching), so replaying a forged or expired token costs no signature check
//! either; they are kept briefly and only when time cannot change the answer
//! (a token "not valid yet" is not remembered). A refusal from the cache is
//! audited like any other: the cache saves work, not records.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::DecodingKey;

use super::{Principal, TrustedIssuer};
use crate::error::GatewayError;

/// Tokens remembered at most: some 16 thousand concurrent users or systems,
/// well under a megabyte per thousand entries.
pub const TOKEN_CACHE_ENTRIES: usize = 16_384;

/// How long a refusal is remembered.
const REFUSAL_TTL: Duration = Duration::from_secs(30);

/// The cache key: SHA-256 of the token and the presented certificate's digest.
pub(super) type TokenKey = [u8; 32];

/// What checking one token concluded, and what it relied on.
pub(super) struct Verified {
    issuer: Arc<TrustedIssuer>,
    kid: Box<str>,
    key: Arc<DecodingKey>,
    outcome: Outcome,
}

enum Outcome {
    Accepted {
        principal: Arc<Principal>,
        /// Unix seconds after which the token is expired (`exp` + leeway).
        until: i64,
    },
    Refused {
        reason: &'static str,
        message: String,
        until: Instant,
    },
}

/// The bounded cache.
pub(super) struct TokenCache {
    entries: quick_cache::sync::Cache<TokenKey, Arc<Verified>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl TokenCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
        }
    }

    /// The key for `token` presented with a certificate whose DER digest is
    /// `peer_cert_sha256`, if any.
    pub(super) fn key(token: &str, peer_cert_sha256: Option<&[u8]>) -> TokenKey {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(token.as_bytes());
        if let Some(cert) = peer_cert_sha256 {
            // A separator no token contains, so token+certificate pairs
            // cannot collide with a longer token.
            ctx.update(b"\0");
            ctx.update(cert);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    pub(super) fn get(&self, key: &TokenKey) -> Option<Arc<Verified>> {
        self.entries.get(key)
    }

    pub(super) fn remove(&self, key: &TokenKey) {
        self.entries.remove(key);
    }

    /// Remembers the outcome of checking a token with `key_used`. Refusals
    /// that time could reverse, and failures that are not about the token,
    /// are not remembered.
    pub(super) fn remember(
        &self,
        key: TokenKey,
        issuer: &Arc<TrustedIssuer>,
        kid: &str,
        key_used: &Arc<DecodingKey>,
        outcome: &Result<(Principal, i64), GatewayError>,
    ) -> Option<Arc<Principal>> {
        let (outcome, accepted) = match outcome {
            Ok((principal, exp)) => {
                let principal = Arc::new(principal.clone());
                let leeway = i64::try_from(issuer.leeway).unwrap_or(0);
                (
                    Outcome::Accepted {
                        principal: principal.clone(),
                        until: exp.saturating_add(leeway),
                    },
                    Some(principal),
                )
            }
            Err(GatewayError::Unauthenticated { reason, message }) if lasting(message) => (
                Outcome::Refused {
                    reason,
                    message: message.clone(),
                    until: Instant::now() + REFUSAL_TTL,
                },
                None,
            ),
            Err(_) => return None,
        };
        self.entries.insert(
            key,
            Arc::new(Verified {
                issuer: issuer.clone(),
                kid: kid.into(),
                key: key_used.clone(),
                outcome,
            }),
        );
        accepted
    }
}

impl Verified {
    /// The URL of the issuer that verified the token.
    pub(super) fn issuer_url(&self) -> &str {
        &self.issuer.url
    }

    /// The remembered answer, if everything it relied on still holds;
    /// `None` sends the token through the full check again.
    pub(super) async fn answer(
        &self,
        current: Option<&Arc<TrustedIssuer>>,
    ) -> Option<Result<Arc<Principal>, GatewayError>> {
        let current = current?;
        if !Arc::ptr_eq(current, &self.issuer) {
            return None;
        }
        match &self.outcome {
            Outcome::Accepted { until, .. }
                if time::OffsetDateTime::now_utc().unix_timestamp() > *until =>
            {
                return None;
            }
            Outcome::Refused { until, .. } if Instant::now() >= *until => return None,
            _ => {}
        }
        let key = current.keys.key(&self.kid).await.ok()?;
        if !Arc::ptr_eq(&key.key, &self.key) {
            return None;
        }
        Some(match &self.outcome {
            Outcome::Accepted { principal, .. } => Ok(principal.clone()),
            Outcome::Refused {
                reason, message, ..
            } => Err(GatewayError::Unauthenticated {
                reason,
                message: message.clone(),
            }),
        })
    }
}

/// Refusals that stay refusals however long one waits: everything except a
/// token that is not valid *yet*.
fn lasting(message: &str) -> bool {
    message != super::NOT_YET_VALID && message != super::ISSUED_IN_FUTURE
}
