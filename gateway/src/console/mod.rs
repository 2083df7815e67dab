//! The DPO web console's sign-in: the OpenID Connect authorization-code
//! flow with PKCE through each agency's own provider, server-side sessions,
//! and the guards every console page relies on.
//!
//! ```text
//! GET  /console/login     choose your organisation (a form, no script)
//! POST /console/login     form token → discovery → 303 to the provider
//!                         (PKCE S256, 256-bit state and nonce, kept here)
//! GET  /console/callback  state (one use, this browser) → iss (RFC 9207)
//!                         → code exchange with the verifier → ID token
//!                         verified → issuer's claim mapping → role check
//!                         → new session → 303 /console/
//! GET  /console/session   the signed-in principal as JSON, or 401
//! POST /console/logout    form token → session ended → provider's logout
//! ```
//!
//! A person is the same [`Principal`](crate::identity::Principal) here as in
//! the API: the issuer's `[[issuer]]` claim mapping applies, and the agency
//! is the issuer's, so an ID token asserting another agency is refused.
//! Only people holding one of `[console] roles` get a session.
//!
//! Sessions and sign-ins in progress live in this process's memory, bounded
//! in number and time; replicas behind a load balancer need affinity for
//! the console until sessions move to the shared database.

mod charts;
mod config;
mod dashboard;
mod entries;
mod error;
mod export;
mod guard;
mod oversee;
mod pages;
mod provider;
mod record;
mod register;
mod restrict;
pub(crate) mod review;
mod store;

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_lc_rs::hmac;
use axum::{
    Router,
    http::{HeaderMap, HeaderValue, header},
    middleware,
    response::Redirect,
    routing::{get, post},
};
use base64::Engine;
use cookie::{Cookie, SameSite};
use liaison_ledger::Ledger;
use openidconnect::RedirectUrl;
use tokio::sync::Mutex;
use tower::ServiceBuilder;

pub use config::{ConsoleClient, ConsoleConfig, MAX_ABSOLUTE_SESSION_HOURS, MAX_SESSION_MINUTES};
pub use error::ConsoleError;
pub use export::MAX_EXPORT;
pub use guard::{CSRF_FIELD, CSRF_HEADER, SignedIn};
pub use store::{Clock, MAX_PENDING_SIGN_INS, MAX_SESSIONS, SIGN_IN_TIMEOUT, SystemClock};

use crate::{config::Config, identity::TrustRegistry, share::authorize::PolicyHandle};
use provider::Provider;
use store::{PendingSignIns, SessionKey, Sessions};

/// Everything the console's handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ConsoleState {
    inner: Arc<Inner>,
    clock: Arc<dyn Clock>,
    /// The ledger the oversight pages read; without one they answer
    /// "unavailable" and sign-in still works.
    ledger: Option<Arc<Ledger>>,
    /// The policy the gateway enforces, for the agreement register.
    policy: Option<PolicyHandle>,
}

#[derive(Debug)]
struct Inner {
    origin: String,
    redirect: RedirectUrl,
    post_logout: String,
    cookies: CookieNames,
    roles: Vec<String>,
    providers: Vec<Arc<Provider>>,
    registry: Arc<TrustRegistry>,
    /// Agency display names by id, for pages.
    agencies: HashMap<String, String>,
    http: reqwest::Client,
    sessions: Mutex<Sessions>,
    pending: Mutex<PendingSignIns>,
    form_key: hmac::Key,
    csp: HeaderValue,
}

/// Cookie names and flags. Over https the names carry the `__Host-`
/// prefix, which browsers honour only for `Secure`, host-only, `Path=/`
/// cookies, so a sibling subdomain cannot plant one; plain-http loopback
/// development cannot use the prefix and drops it with `Secure`.
#[derive(Debug, Clone, Copy)]
struct CookieNames {
    session: &'static str,
    sign_in: &'static str,
    secure: bool,
}

impl ConsoleState {
    /// Builds the console from its configuration, the gateway's
    /// configuration (issuers, agencies, the directory secret files are
    /// relative to) and the trust registry whose claim mapping turns ID
    /// tokens into principals. Client secrets are read here, once.
    pub fn new(
        console: &ConsoleConfig,
        config: &Config,
        registry: Arc<TrustRegistry>,
    ) -> Result<Self, ConsoleError> {
        let problems = console.problems(&config.issuers);
        if !problems.is_empty() {
            return Err(ConsoleError::Config {
                message: problems
                    .iter()
                    .map(|(_, key, message)| format!("`{key}`: {message}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        let origin = console
            .origin()
            .map_err(|message| ConsoleError::Config { message })?;
        let redirect = RedirectUrl::new(format!("{origin}/console/callback")).map_err(|e| {
            ConsoleError::Config {
                message: format!("the callback URL is invalid: {e}"),
            }
        })?;
        let mut providers = Vec::new();
        for (i, client) in console.clients.iter().enumerate() {
            let url = client.issuer.get_ref();
            // The file's issuers, not the registry's now: an issuer suspended
            // at run time must not stop the gateway starting; sign-in checks
            // the registry as it is then.
            let Some(issuer) = config.issuers.iter().find(|iss| iss.url.get_ref() == url) else {
                return Err(ConsoleError::Config {
                    message: format!("issuer `{url}` is not in the trust registry"),
                });
            };
            let agency = issuer.agency.get_ref();
            let agency_name = config
                .agencies
                .iter()
                .find(|a| a.id.get_ref() == agency)
                .map_or_else(|| agency.clone(), |a| a.display_name.clone());
            providers.push(Arc::new(Provider::new(
                url.clone(),
                agency_name,
                client.client_id.get_ref().clone(),
                read_secret(i, client, config)?,
                &client.scopes,
                issuer.algorithms.get_ref(),
                *issuer.leeway_seconds.get_ref(),
            )?));
        }
        let mut form_action = vec!["'self'".to_owned()];
        for origin in providers.iter().filter_map(|p| p.origin()) {
            if !form_action.contains(&origin) {
                form_action.push(origin);
            }
        }
        let csp = HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action {}; frame-ancestors 'none'; base-uri 'none'",
            form_action.join(" ")
        ))
        .map_err(|e| ConsoleError::Config {
            message: format!("an issuer URL cannot be used in the content security policy: {e}"),
        })?;
        let secure = origin.starts_with("https://");
        let cookies = if secure {
            CookieNames {
                session: "__Host-liaison_session",
                sign_in: "__Host-liaison_sign_in",
                secure,
            }
        } else {
            CookieNames {
                session: "liaison_session",
                sign_in: "liaison_sign_in",
                secure,
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConsoleError::Config {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        let form_key =
            hmac::Key::generate(hmac::HMAC_SHA256, &aws_lc_rs::rand::SystemRandom::new())
                .map_err(|_| ConsoleError::internal("the system random source failed"))?;
        let idle = Duration::from_secs(console.session_minutes.get_ref().saturating_mul(60));
        let absolute = Duration::from_secs(
            console
                .absolute_session_hours
                .get_ref()
                .saturating_mul(3600),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                post_logout: format!("{origin}/console/login"),
                origin,
                redirect,
                cookies,
                roles: console.roles.get_ref().clone(),
                providers,
                registry,
                agencies: config
                    .agencies
                    .iter()
                    .map(|a| (a.id.get_ref().clone(), a.display_name.clone()))
                    .collect(),
                http,
                sessions: Mutex::new(Sessions::new(idle, absolute)),
                pending: Mutex::new(PendingSignIns::default()),
                form_key,
                csp,
            }),
            clock: Arc::new(SystemClock),
            ledger: None,
            policy: None,
        })
    }

    /// Lets the oversight pages read `ledger`.
    pub fn with_ledger(mut self, ledger: Arc<Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Lets the agreement register read the policy `policy` holds, as it
    /// is reloaded.
    pub fn with_policy(mut self, policy: PolicyHandle) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Measures sessions and sign-ins by `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The console's public origin, e.g. `https://liaison.example.org`.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The `Content-Security-Policy` every console response carries.
    pub fn content_security_policy(&self) -> &HeaderValue {
        &self.inner.csp
    }

    /// The signed-in person for a request's cookies, if any; the session's
    /// idle timer restarts.
    async fn session(&self, headers: &HeaderMap) -> Option<SignedIn> {
        let now = self.clock.now();
        let mut sessions = self.inner.sessions.lock().await;
        cookie_values(headers, self.inner.cookies.session)
            .into_iter()
            .filter(|v| store::is_token(v))
            .find_map(|v| {
                sessions
                    .touch(SessionKey::of(&v), now)
                    .map(|s| SignedIn::new(v, s))
            })
    }

    /// The well-formed sign-in cookies a request carries.
    fn sign_in_cookies(&self, headers: &HeaderMap) -> Vec<String> {
        cookie_values(headers, self.inner.cookies.sign_in)
            .into_iter()
            .filter(|v| store::is_token(v))
            .collect()
    }

    /// The sign-in form's token for a browser's sign-in cookie.
    fn sign_in_token(&self, browser: &str) -> String {
        let mut message = b"liaison console sign-in form\0".to_vec();
        message.extend_from_slice(browser.as_bytes());
        let tag = hmac::sign(&self.inner.form_key, &message);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    fn provider(&self, issuer: &str) -> Option<&Arc<Provider>> {
        self.inner.providers.iter().find(|p| p.issuer == issuer)
    }

    /// A cookie as the console sets it: HttpOnly, SameSite=Lax, Path=/, no
    /// Domain, Secure over https, and no expiry, so it ends with the
    /// browser; the server ends sessions by its own clock. Lax rather than
    /// Strict because the callback is a cross-site navigation from the
    /// provider and must carry the sign-in cookie; state changes are
    /// guarded by form tokens, not by SameSite.
    fn cookie(&self, name: &'static str, value: String) -> HeaderValue {
        let cookie = Cookie::build((name, value))
            .http_only(true)
            .secure(self.inner.cookies.secure)
            .same_site(SameSite::Lax)
            .path("/")
            .build();
        cookie_header(&cookie)
    }

    /// A `Set-Cookie` that deletes the named cookie.
    fn cookie_removal(&self, name: &'static str) -> HeaderValue {
        let mut cookie = Cookie::build((name, ""))
            .http_only(true)
            .secure(self.inner.cookies.secure)
            .same_site(SameSite::Lax)
            .path("/")
            .build();
        cookie.make_removal();
        cookie_header(&cookie)
    }
}

/// The console's routes, behind its guards (in request order: security
/// headers on every response, then same-origin and form-token checks on
/// every state-changing request).
pub fn router(state: ConsoleState) -> Router {
    let guards = ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::security_headers,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::require_form_token,
        ));
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(dashboard::dashboard))
        .route(
            "/console/entries",
            get(entries::search_get).post(entries::search_post),
        )
        .route(
            "/console/entries/export",
            get(export::export_get).post(export::export_post),
        )
        .route("/console/entries/{id}", get(entries::entry))
        .route("/console/entries/{id}/restrict", post(restrict::restrict))
        .route("/console/entries/{id}/lift", post(restrict::lift))
        .route("/console/agreements", get(register::register))
        .route(
            "/console/review",
            get(review::queue_page).post(review::mark_reviewed),
        )
        .route(
            "/console/subject",
            get(entries::subject_form).post(entries::subject_report),
        )
        .route(
            "/console/login",
            get(pages::login_page).post(pages::start_sign_in),
        )
        .route("/console/callback", get(pages::callback))
        .route("/console/session", get(pages::session))
        .route("/console/logout", post(pages::logout))
        .route("/console/static/console.css", get(pages::stylesheet))
        .layer(guards)
        .with_state(state)
}

fn read_secret(
    i: usize,
    client: &ConsoleClient,
    config: &Config,
) -> Result<Option<String>, ConsoleError> {
    let secret = match (&client.client_secret_env, &client.client_secret_file) {
        (Some(var), _) => std::env::var(var).map_err(|_| ConsoleError::Config {
            message: format!(
                "environment variable `{var}` named by `console.client[{i}].client_secret_env` is not set"
            ),
        })?,
        (None, Some(path)) => {
            let path = config.base_dir.join(path);
            std::fs::read_to_string(&path).map_err(|e| ConsoleError::Config {
                message: format!(
                    "cannot read the client secret file `{}` of `console.client[{i}]`: {e}",
                    path.display()
                ),
            })?
        }
        (None, None) => return Ok(None),
    };
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(ConsoleError::Config {
            message: format!("the client secret of `console.client[{i}]` is empty"),
        });
    }
    Ok(Some(secret.to_owned()))
}

/// Every value of the named cookie in a request's `Cookie` headers.
fn cookie_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|c| c.name() == name)
        .map(|c| c.value().to_owned())
        .collect()
}

fn cookie_header(cookie: &Cookie<'_>) -> HeaderValue {
    // The console's cookie values are base64url tokens, always valid in a
    // header; an empty value is the fallback should that ever change.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod ledger_tests;
#[cfg(test)]
mod tests;
