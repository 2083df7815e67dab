//! What stands in front of every console handler: security headers on
//! every response, the same-origin and form-token checks on every
//! state-changing request, and the [`SignedIn`] extractor.
//!
//! Form tokens are synchronizer tokens: a signed-in browser's token lives
//! in its server-side session. Before sign-in there is no session (and the
//! console keeps no state for anonymous visitors, so they cannot fill its
//! memory); the sign-in form's token is then an HMAC of the browser's
//! sign-in cookie under a key that never leaves the process.

use axum::{
    body::Body,
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use openidconnect::url::form_urlencoded;

use super::{ConsoleState, error::ConsoleError, store::Session};
use crate::identity::Principal;

/// Largest body a console form may have.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The header a script may carry the form token in instead of the form.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The form field carrying the form token.
pub const CSRF_FIELD: &str = "csrf";

/// A signed-in person, for console handlers: the principal their agency's
/// provider vouched for and the form token their pages must embed.
///
/// On a state-changing request (POST and the like) the extractor succeeds
/// only if the request carried this session's form token, so a handler that
/// takes `SignedIn` is CSRF-protected by construction.
#[derive(Clone)]
pub struct SignedIn {
    /// Who is signed in.
    pub principal: std::sync::Arc<Principal>,
    /// The session's form token, for hidden `csrf` fields.
    pub csrf_token: String,
    pub(super) cookie: String,
}

/// Which token a state-changing request was verified with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CsrfVerified {
    /// The signed-in session's synchronizer token.
    Session,
    /// The sign-in form's token, bound to the browser's sign-in cookie.
    SignIn,
}

/// The sign-in cookie a sign-in form's token was verified against.
#[derive(Clone)]
pub(super) struct SignInBrowser(pub String);

impl std::fmt::Debug for SignInBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignInBrowser(..)")
    }
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("agency", &self.principal.agency)
            .field("roles", &self.principal.roles)
            .finish_non_exhaustive()
    }
}

impl SignedIn {
    pub(super) fn new(cookie: String, session: Session) -> Self {
        Self {
            principal: session.principal,
            csrf_token: session.csrf,
            cookie,
        }
    }
}

impl FromRequestParts<ConsoleState> for SignedIn {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let signed_in = match parts.extensions.get::<SignedIn>() {
            Some(s) => s.clone(),
            None => state
                .session(&parts.headers)
                .await
                .ok_or(ConsoleError::NotSignedIn)?,
        };
        if !parts.method.is_safe()
            && parts.extensions.get::<CsrfVerified>() != Some(&CsrfVerified::Session)
        {
            return Err(ConsoleError::FormTokenInvalid);
        }
        Ok(signed_in)
    }
}

/// Adds the console's security headers to every response.
pub(super) async fn security_headers(
    State(state): State<ConsoleState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, state.inner.csp.clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send
    // `Origin: null` on form posts, which the same-origin check must
    // refuse. Nothing leaves for other sites either way.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if state.inner.cookies.secure {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000"),
        );
    }
    response
}

/// Refuses every state-changing request that comes from another site or
/// lacks this browser's form token.
pub(super) async fn require_form_token(
    State(state): State<ConsoleState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method().is_safe() {
        return next.run(request).await;
    }
    match verify(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn verify(state: &ConsoleState, request: Request) -> Result<Request, ConsoleError> {
    same_origin(&state.inner.origin, request.headers())?;
    let (mut parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| ConsoleError::BadRequest {
            message: format!("the form is larger than {MAX_FORM_BYTES} bytes"),
        })?;
    let presented =
        presented_token(&parts.headers, &bytes).ok_or(ConsoleError::FormTokenMissing)?;
    let verified = match state.session(&parts.headers).await {
        Some(signed_in) => {
            let ok = tokens_equal(&presented, &signed_in.csrf_token);
            parts.extensions.insert(signed_in);
            ok.then_some(CsrfVerified::Session)
        }
        None => state
            .sign_in_cookies(&parts.headers)
            .into_iter()
            .find(|browser| tokens_equal(&presented, &state.sign_in_token(browser)))
            .map(|browser| {
                parts.extensions.insert(SignInBrowser(browser));
                CsrfVerified::SignIn
            }),
    }
    .ok_or(ConsoleError::FormTokenInvalid)?;
    parts.extensions.insert(verified);
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Browsers say where a request came from: `Sec-Fetch-Site` (current
/// browsers) and `Origin` (on every POST). Either naming anything but the
/// console's own origin is refused; when neither is sent, the form token
/// alone decides.
pub(super) fn same_origin(origin: &str, headers: &HeaderMap) -> Result<(), ConsoleError> {
    let show = |v: &HeaderValue| -> String {
        v.to_str()
            .map(|s| s.chars().take(100).collect())
            .unwrap_or_else(|_| "an unreadable origin".into())
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return Err(ConsoleError::CrossSite {
            source_site: show(site),
        });
    }
    if let Some(from) = headers.get(header::ORIGIN)
        && from.as_bytes() != origin.as_bytes()
    {
        return Err(ConsoleError::CrossSite {
            source_site: show(from),
        });
    }
    Ok(())
}

fn presented_token(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if let Some(v) = headers.get(CSRF_HEADER) {
        return v.to_str().ok().map(str::to_owned);
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return None;
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned())
}

/// Compares two tokens in constant time.
pub(super) fn tokens_equal(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}
