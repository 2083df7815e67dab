//! The console's sign-in handlers and their pages.

use askama::Template;
use axum::{
    Extension, Form, Json,
    extract::{
        Query, State,
        rejection::{FormRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::{Deserialize, Serialize};

use super::{
    ConsoleState,
    error::ConsoleError,
    guard::{CsrfVerified, SignInBrowser, SignedIn},
    provider::Callback,
    store::{SessionKey, random_token},
};

/// Longest authorization code accepted in a callback.
const MAX_CODE_LEN: usize = 2048;

#[derive(Template)]
#[template(path = "login.html", config = "src/console/askama.toml")]
struct LoginPage<'a> {
    csrf: &'a str,
    providers: Vec<Choice<'a>>,
}

struct Choice<'a> {
    issuer: &'a str,
    agency_name: &'a str,
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub(super) struct StartSignIn {
    issuer: String,
}

/// The provider's redirect back to the console.
#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

/// The signed-in principal, as `GET /console/session` shows it.
#[derive(Debug, Serialize)]
struct SessionView<'a> {
    subject: &'a str,
    display_name: Option<&'a str>,
    agency: &'a str,
    agency_name: Option<&'a str>,
    roles: &'a [String],
    team: Option<&'a str>,
    vetting: Option<&'a str>,
    issuer: &'a str,
    /// The session's form token, for a same-origin script's POSTs; the
    /// same-origin policy keeps it from other sites, as no CORS headers are
    /// ever sent.
    csrf_token: &'a str,
}

/// `GET /console/login`: the providers to choose from. Sets the browser's
/// sign-in cookie if it has none; the form's token is bound to it.
pub(super) async fn login_page(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if state.session(&headers).await.is_some() {
        return Ok(Redirect::to("/console/").into_response());
    }
    let (browser, new_cookie) = match state.sign_in_cookies(&headers).into_iter().next() {
        Some(browser) => (browser, None),
        None => {
            let browser = random_token()?;
            let cookie = state.cookie(state.inner.cookies.sign_in, browser.clone());
            (browser, Some(cookie))
        }
    };
    let csrf = state.sign_in_token(&browser);
    let page = LoginPage {
        csrf: &csrf,
        providers: state
            .inner
            .providers
            .iter()
            .map(|p| Choice {
                issuer: &p.issuer,
                agency_name: &p.agency_name,
            })
            .collect(),
    }
    .render()
    .map_err(ConsoleError::internal)?;
    let mut response = Html(page).into_response();
    if let Some(cookie) = new_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `POST /console/login`: discovers the chosen provider, records the
/// sign-in and sends the browser to the provider.
pub(super) async fn start_sign_in(
    State(state): State<ConsoleState>,
    verified: Option<Extension<CsrfVerified>>,
    browser: Option<Extension<SignInBrowser>>,
    form: Result<Form<StartSignIn>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let browser = match (verified.map(|Extension(v)| v), browser) {
        (Some(CsrfVerified::SignIn), Some(Extension(SignInBrowser(browser)))) => browser,
        (Some(CsrfVerified::Session), _) => return Ok(Redirect::to("/console/").into_response()),
        _ => return Err(ConsoleError::FormTokenMissing),
    };
    let Form(form) = form.map_err(|e| ConsoleError::BadRequest {
        message: format!("the sign-in form is malformed: {}", e.body_text()),
    })?;
    let provider = state
        .provider(&form.issuer)
        .ok_or_else(|| ConsoleError::UnknownIssuer {
            issuer: form.issuer.chars().take(200).collect(),
        })?
        .clone();
    let discovered = provider.discover(&state.inner.http, None).await?;
    let authorization = provider.authorize(&discovered, &state.inner.redirect)?;
    state.inner.pending.lock().await.insert(
        authorization.state,
        provider.issuer.clone(),
        authorization.verifier,
        authorization.nonce,
        browser,
        state.clock.now(),
    );
    Ok(Redirect::to(authorization.url.as_str()).into_response())
}

/// `GET /console/callback`: completes a sign-in and starts a session.
pub(super) async fn callback(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(query) = query.map_err(|e| ConsoleError::BadRequest {
        message: format!("the sign-in response is malformed: {}", e.body_text()),
    })?;
    let sign_in_state = query.state.as_deref().ok_or(ConsoleError::BadRequest {
        message: "the sign-in response has no `state`".into(),
    })?;
    let pending = state
        .inner
        .pending
        .lock()
        .await
        .take(sign_in_state, state.clock.now())
        .ok_or(ConsoleError::UnknownSignIn)?;
    if !state
        .sign_in_cookies(&headers)
        .iter()
        .any(|b| super::guard::tokens_equal(b, &pending.browser))
    {
        return Err(ConsoleError::OtherBrowser);
    }
    let provider = state
        .provider(&pending.issuer)
        .ok_or_else(|| ConsoleError::internal("a sign-in names a provider no longer configured"))?
        .clone();
    if let Some(error) = query.error.as_deref() {
        let well_formed = !error.is_empty()
            && error.len() <= 64
            && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        return Err(ConsoleError::ProviderRefused {
            code: if well_formed { error } else { "unknown_error" }.to_owned(),
        });
    }
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= MAX_CODE_LEN)
        .ok_or(ConsoleError::BadRequest {
            message: "the sign-in response has no usable `code`".into(),
        })?;
    let claims = provider
        .complete(
            &state.inner.http,
            &state.inner.redirect,
            Callback {
                code,
                iss: query.iss.as_deref(),
            },
            pending.verifier,
            &pending.nonce,
        )
        .await?;
    let issuer = state
        .inner
        .registry
        .issuer(&provider.issuer)
        .ok_or_else(|| ConsoleError::NotPermitted {
            // The registry may have suspended or removed it since start-up.
            message: format!("`{}` is not trusted by this gateway now", provider.issuer),
        })?;
    let principal =
        issuer
            .principal_from_claims(&claims)
            .map_err(|e| ConsoleError::NotPermitted {
                message: format!("the sign-in from `{}` was refused: {e}", provider.issuer),
            })?;
    if !state.inner.roles.iter().any(|r| principal.has_role(r)) {
        tracing::info!(agency = %principal.agency, "console sign-in refused: no console role");
        return Err(ConsoleError::NotPermitted {
            message: format!(
                "your account at {} holds none of the roles that may use the console ({})",
                provider.agency_name,
                state
                    .inner
                    .roles
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let now = state.clock.now();
    let (cookie, _) = {
        let mut sessions = state.inner.sessions.lock().await;
        // A new session id at every sign-in: a session id planted in the
        // browser before sign-in (fixation) is ended, never promoted.
        for old in super::cookie_values(&headers, state.inner.cookies.session) {
            sessions.remove(SessionKey::of(&old));
        }
        sessions.create(principal.clone(), now)?
    };
    tracing::info!(
        agency = %principal.agency,
        issuer = %principal.issuer,
        roles = ?principal.roles,
        "console sign-in"
    );
    let mut response = Redirect::to("/console/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookie(state.inner.cookies.session, cookie),
    );
    Ok(response)
}

/// `GET /console/session`: the signed-in principal as JSON, or 401.
pub(super) async fn session(
    State(state): State<ConsoleState>,
    signed_in: Result<SignedIn, ConsoleError>,
) -> Response {
    let signed_in = match signed_in {
        Ok(s) => s,
        Err(e) => {
            return (
                e.status(),
                Json(serde_json::json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    };
    let p = &signed_in.principal;
    Json(SessionView {
        subject: &p.subject,
        display_name: p.display_name.as_deref(),
        agency: &p.agency,
        agency_name: state.provider(&p.issuer).map(|pr| pr.agency_name.as_str()),
        roles: &p.roles,
        team: p.team.as_deref(),
        vetting: p.vetting.as_deref(),
        issuer: &p.issuer,
        csrf_token: &signed_in.csrf_token,
    })
    .into_response()
}

/// `POST /console/logout`: ends the session, deletes the cookie, and sends
/// the browser to the provider's own logout if it has one.
pub(super) async fn logout(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
) -> Result<Response, ConsoleError> {
    state
        .inner
        .sessions
        .lock()
        .await
        .remove(SessionKey::of(&signed_in.cookie));
    let target = match state.provider(&signed_in.principal.issuer) {
        Some(p) => {
            p.end_session_url(&state.inner.http, &state.inner.post_logout)
                .await
        }
        None => None,
    };
    let mut response = match target {
        Some(url) => Redirect::to(url.as_str()).into_response(),
        None => Redirect::to("/console/login").into_response(),
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        state.cookie_removal(state.inner.cookies.session),
    );
    Ok(response)
}

/// The console's stylesheet, served from its own origin so the CSP can
/// forbid every other source.
pub(super) async fn stylesheet() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/console.css"),
    )
        .into_response()
}
