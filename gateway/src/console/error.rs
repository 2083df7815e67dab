//! Why the console refuses a request or a sign-in.
//!
//! The console answers browsers over HTTP, not gRPC clients, so its errors
//! are not `GatewayError`s mapped by `status.rs`: each becomes an HTTP
//! status and a short page. They are tagged with whose fault they are, as
//! the gateway's are, and never carry tokens, codes or secrets.

use askama::Template;
use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use crate::error::Fault;

/// A reason the console refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    /// No session, or it has ended.
    #[error("you are not signed in, or your session has ended")]
    NotSignedIn,
    /// A state-changing request came from another site.
    #[error("the request came from `{source_site}`, not from a console page")]
    CrossSite {
        /// The `Origin` or `Sec-Fetch-Site` value seen.
        source_site: String,
    },
    /// A state-changing request carried no form token.
    #[error("the form carried no form token; reload the page and try again")]
    FormTokenMissing,
    /// The form token does not belong to this browser's session.
    #[error("the form token does not match this browser's session; reload the page and try again")]
    FormTokenInvalid,
    /// The request is malformed.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
    },
    /// The sign-in form named a provider the console does not offer.
    #[error("`{issuer}` is not an identity provider this console signs in with")]
    UnknownIssuer {
        /// The issuer asked for.
        issuer: String,
    },
    /// The callback's `state` names no sign-in in progress.
    #[error("this sign-in is unknown, already completed or expired; start again")]
    UnknownSignIn,
    /// The callback arrived in a browser other than the one that started.
    #[error("this sign-in was started in another browser; start again here")]
    OtherBrowser,
    /// The callback's `iss` (RFC 9207) is missing or not the expected issuer.
    #[error("the sign-in response came from `{found}`, not from `{expected}`")]
    IssuerMismatch {
        /// The issuer the sign-in was sent to.
        expected: String,
        /// The issuer the response names (`none` if it names none).
        found: String,
    },
    /// The provider answered the authorization request with an error.
    #[error("the identity provider did not sign you in (`{code}`)")]
    ProviderRefused {
        /// The OAuth error code, if it was a well-formed one.
        code: String,
    },
    /// The provider could not be reached or answered unusably.
    #[error("identity provider `{issuer}` is unavailable: {message}")]
    ProviderUnavailable {
        /// The issuer URL.
        issuer: String,
        /// What failed, without tokens or codes.
        message: String,
    },
    /// The provider's tokens did not verify.
    #[error("the identity provider's ID token was refused: {message}")]
    TokenRefused {
        /// Why.
        message: String,
    },
    /// The person is authenticated but may not use the console.
    #[error("{message}")]
    NotPermitted {
        /// Why, in words the person can act on.
        message: String,
    },
    /// The signed-in person lacks a role a page needs.
    #[error("{message}")]
    Forbidden {
        /// Which role is needed.
        message: String,
    },
    /// The ledger has no such entry, or not one this person may see.
    #[error("{what} was not found")]
    NotFound {
        /// What was looked for, without personal data.
        what: String,
    },
    /// The audit ledger cannot be read now.
    #[error("the audit ledger is unavailable; try again shortly")]
    LedgerUnavailable,
    /// The console cannot be built from its configuration.
    #[error("console configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// An unexpected console fault.
    #[error("internal error: {message}")]
    Internal {
        /// What went wrong, without personal data.
        message: String,
    },
}

#[derive(Template)]
#[template(path = "error.html", config = "src/console/askama.toml")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
    sign_in: bool,
}

impl ConsoleError {
    /// The HTTP status the console answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotSignedIn => StatusCode::UNAUTHORIZED,
            Self::TokenRefused { .. } => StatusCode::UNAUTHORIZED,
            Self::CrossSite { .. }
            | Self::FormTokenMissing
            | Self::FormTokenInvalid
            | Self::ProviderRefused { .. }
            | Self::NotPermitted { .. }
            | Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::LedgerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadRequest { .. }
            | Self::UnknownIssuer { .. }
            | Self::UnknownSignIn
            | Self::OtherBrowser
            | Self::IssuerMismatch { .. } => StatusCode::BAD_REQUEST,
            Self::ProviderUnavailable { .. } => StatusCode::BAD_GATEWAY,
            Self::Config { .. } | Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::ProviderUnavailable { .. }
            | Self::Config { .. }
            | Self::Internal { .. }
            | Self::LedgerUnavailable => Fault::Gateway,
            _ => Fault::Caller,
        }
    }

    /// Shorthand for an internal fault.
    pub(super) fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal {
            message: message.to_string(),
        }
    }

    /// Whether the error is about signing in rather than about a page.
    fn is_sign_in(&self) -> bool {
        matches!(
            self,
            Self::UnknownIssuer { .. }
                | Self::UnknownSignIn
                | Self::OtherBrowser
                | Self::IssuerMismatch { .. }
        )
    }

    fn title(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "You are not signed in",
            StatusCode::FORBIDDEN => "Access refused",
            StatusCode::BAD_REQUEST if self.is_sign_in() => "This sign-in cannot continue",
            StatusCode::BAD_REQUEST => "This request cannot be answered",
            StatusCode::BAD_GATEWAY => "Identity provider unavailable",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::SERVICE_UNAVAILABLE => "Ledger unavailable",
            _ => "Something went wrong",
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self.fault() {
            Fault::Gateway => tracing::error!(error = %self, "console request failed"),
            _ => tracing::info!(error = %self, "console request refused"),
        }
        let page = ErrorPage {
            title: self.title(),
            message: self.to_string(),
            sign_in: self.is_sign_in()
                || matches!(
                    self,
                    Self::NotSignedIn
                        | Self::CrossSite { .. }
                        | Self::FormTokenMissing
                        | Self::FormTokenInvalid
                        | Self::ProviderRefused { .. }
                        | Self::ProviderUnavailable { .. }
                        | Self::TokenRefused { .. }
                        | Self::NotPermitted { .. }
                ),
        };
        match page.render() {
            Ok(html) => (self.status(), Html(html)).into_response(),
            Err(_) => (self.status(), self.to_string()).into_response(),
        }
    }
}
