//! Server-side state of the console: sign-ins in progress and sessions,
//! both bounded in number and in time, and the clock they are measured by.
//!
//! Sessions are found by the SHA-256 of their cookie value, so the store
//! never holds a usable cookie: a heap dump or a debug print of it cannot be
//! replayed into a browser.

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use openidconnect::{Nonce, PkceCodeVerifier};
use sha2::{Digest, Sha256};

use super::error::ConsoleError;
use crate::identity::Principal;

/// How long a sign-in may take from choosing a provider to the callback.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Most sign-ins in progress at once; past it the oldest is dropped, so a
/// flood of abandoned sign-ins cannot exhaust memory.
pub const MAX_PENDING_SIGN_INS: usize = 1024;

/// Most sessions at once; past it the least recently used is ended.
pub const MAX_SESSIONS: usize = 10_000;

/// Bytes of randomness in session ids, form tokens, `state` and `nonce`.
const TOKEN_BYTES: usize = 32;

/// The console's source of time, so session expiry can be tested without
/// waiting and measured on a monotonic clock.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The process's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A sign-in between choosing a provider and the provider's callback.
pub(super) struct PendingSignIn {
    /// The issuer the person was sent to.
    pub issuer: String,
    /// The PKCE verifier for the code exchange.
    pub verifier: PkceCodeVerifier,
    /// The nonce the ID token must carry.
    pub nonce: Nonce,
    /// The sign-in cookie of the browser that started, which the callback
    /// must present (against login CSRF).
    pub browser: String,
    started: Instant,
}

impl fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Sign-ins in progress, by `state`.
#[derive(Debug, Default)]
pub(super) struct PendingSignIns {
    by_state: HashMap<String, PendingSignIn>,
}

/// One signed-in person.
#[derive(Clone)]
pub(super) struct Session {
    /// Who signed in.
    pub principal: Arc<Principal>,
    /// The synchronizer token every state-changing request must carry.
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("agency", &self.principal.agency)
            .finish_non_exhaustive()
    }
}

/// The key a session is stored under: the SHA-256 of its cookie value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct SessionKey([u8; 32]);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// Sessions, with idle and absolute expiry.
#[derive(Debug)]
pub(super) struct Sessions {
    by_key: HashMap<SessionKey, Session>,
    idle: Duration,
    absolute: Duration,
}

/// A fresh random token: 256 bits, base64url without padding.
pub(super) fn random_token() -> Result<String, ConsoleError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ConsoleError::internal("the system random source failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// True if `value` has the shape of a [`random_token`], checked before a
/// cookie value is used for anything.
pub(super) fn is_token(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl PendingSignIns {
    /// Records a sign-in under `state`, dropping expired ones and, when
    /// full, the oldest.
    pub fn insert(
        &mut self,
        state: String,
        issuer: String,
        verifier: PkceCodeVerifier,
        nonce: Nonce,
        browser: String,
        now: Instant,
    ) {
        if self.by_state.len() >= MAX_PENDING_SIGN_INS {
            self.by_state
                .retain(|_, p| now.saturating_duration_since(p.started) < SIGN_IN_TIMEOUT);
        }
        while self.by_state.len() >= MAX_PENDING_SIGN_INS {
            let oldest = self
                .by_state
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.by_state.remove(&k),
                None => break,
            };
        }
        self.by_state.insert(
            state,
            PendingSignIn {
                issuer,
                verifier,
                nonce,
                browser,
                started: now,
            },
        );
    }

    /// Removes and returns the sign-in for `state` if it has not expired.
    /// A `state` is good for one callback only, so a replayed callback finds
    /// nothing.
    pub fn take(&mut self, state: &str, now: Instant) -> Option<PendingSignIn> {
        self.by_state
            .remove(state)
            .filter(|p| now.saturating_duration_since(p.started) < SIGN_IN_TIMEOUT)
    }

    /// How many sign-ins are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_state.len()
    }
}

impl SessionKey {
    /// The key for a cookie value.
    pub fn of(cookie: &str) -> Self {
        Self(Sha256::digest(cookie.as_bytes()).into())
    }
}

impl Sessions {
    /// An empty store with the configured lifetimes.
    pub fn new(idle: Duration, absolute: Duration) -> Self {
        Self {
            by_key: HashMap::new(),
            idle,
            absolute,
        }
    }

    /// Starts a session for `principal` under a new cookie value, which is
    /// returned with the session's form token.
    pub fn create(
        &mut self,
        principal: Principal,
        now: Instant,
    ) -> Result<(String, Session), ConsoleError> {
        let id = random_token()?;
        let session = Session {
            principal: Arc::new(principal),
            csrf: random_token()?,
            created: now,
            last_seen: now,
        };
        if self.by_key.len() >= MAX_SESSIONS {
            let (idle, absolute) = (self.idle, self.absolute);
            self.by_key.retain(|_, s| alive(s, now, idle, absolute));
        }
        while self.by_key.len() >= MAX_SESSIONS {
            let oldest = self
                .by_key
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => self.by_key.remove(&k),
                None => break,
            };
        }
        self.by_key.insert(SessionKey::of(&id), session.clone());
        Ok((id, session))
    }

    /// The live session for a cookie value, marked as used now. An expired
    /// session is removed.
    pub fn touch(&mut self, key: SessionKey, now: Instant) -> Option<Session> {
        let live = self
            .by_key
            .get(&key)
            .is_some_and(|s| alive(s, now, self.idle, self.absolute));
        if !live {
            self.by_key.remove(&key);
            return None;
        }
        let session = self.by_key.get_mut(&key)?;
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends a session.
    pub fn remove(&mut self, key: SessionKey) -> bool {
        self.by_key.remove(&key).is_some()
    }

    /// How many sessions are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// A session is alive until it has been idle for `idle` or has existed for
/// `absolute`, whichever comes first.
fn alive(s: &Session, now: Instant, idle: Duration, absolute: Duration) -> bool {
    now.saturating_duration_since(s.last_seen) < idle
        && now.saturating_duration_since(s.created) < absolute
}
