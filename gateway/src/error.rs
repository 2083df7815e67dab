//! The gateway's one error type. Every failure a caller can see is a variant
//! here; `status.rs` maps each to a gRPC code and an AIP-193 reason, and the
//! audit stage records the same reason in the ledger.

use thiserror::Error;

/// Whose fault an error is: it decides the log level, whether the caller
/// may retry, and what the DPO console shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The request was malformed, unauthenticated or not permitted.
    Caller,
    /// A legacy source failed or returned unusable data.
    Connector,
    /// The gateway itself (including its ledger) could not serve.
    Gateway,
}

/// A reason the gateway refuses or fails a request.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GatewayError {
    /// A required share-context field is absent.
    #[error("share context must state `{field}`")]
    ContextMissing {
        /// The request field path, for `BadRequest`.
        field: &'static str,
        /// The AIP-193 reason.
        reason: &'static str,
    },
    /// A field is present but malformed.
    #[error("`{field}` is invalid: {message}")]
    InvalidField {
        /// The request field path.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A search gave too little to identify a person.
    #[error("a search needs an identifier, or a family name with a date of birth or postcode")]
    QueryTooBroad,
    /// Authentication failed.
    #[error("{message}")]
    Unauthenticated {
        /// The AIP-193 reason (`TOKEN_INVALID`, `TOKEN_EXPIRED`, …).
        reason: &'static str,
        /// A message safe to show: never key material or the token.
        message: String,
    },
    /// An issuer's keys cannot be fetched and none remain cached.
    #[error("identity provider `{issuer}` is unavailable")]
    IssuerUnavailable {
        /// The issuer URL.
        issuer: String,
    },
    /// Policy refused the share.
    #[error("{message}")]
    Denied {
        /// The AIP-193 reason from the policy decision.
        reason: &'static str,
        /// The policy's explanation.
        message: String,
    },
    /// The caller may not use an oversight or administration function.
    #[error("{message}")]
    FunctionNotPermitted {
        /// What was refused and why.
        message: String,
    },
    /// The thing asked for does not exist or is not visible to the caller.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, in words.
        what: String,
    },
    /// A change names a base version that is no longer current.
    #[error("{message}")]
    VersionConflict {
        /// What changed meanwhile.
        message: String,
    },
    /// The ledger could not durably record the share, so nothing was sent.
    #[error("the audit ledger could not record this request, so nothing was disclosed")]
    AuditUnavailable,
    /// Every source the request needed declined it: the caller asked for
    /// something their sources' owners do not share, which a retry will
    /// not change.
    #[error("every source declined: {message}")]
    SourcesDeclined {
        /// The datasets that declined.
        datasets: Vec<String>,
        /// Each one's reason.
        message: String,
    },
    /// Every source the request needed failed.
    #[error("no source could answer: {message}")]
    SourcesUnavailable {
        /// Which sources failed and how.
        message: String,
    },
    /// The request's deadline passed.
    #[error("the request's deadline passed")]
    DeadlineExceeded,
    /// The caller's agency is over its rate or concurrency limit.
    #[error("agency `{agency}` is over its {limit} limit; retry after {retry_after:?}")]
    RateLimited {
        /// The agency.
        agency: String,
        /// Which limit: `rate` or `concurrency`.
        limit: &'static str,
        /// When a retry may succeed.
        retry_after: std::time::Duration,
    },
    /// A subscriber did not read its stream as fast as changes arrived, and
    /// its bounded queue filled; it may resume from its last cursor.
    #[error("the subscriber did not keep up with its changes; resume from the last cursor")]
    SubscriberTooSlow,
    /// This replica is stopping; open streams end with it.
    #[error("this gateway is shutting down; resume from the last cursor")]
    ShuttingDown,
    /// The gateway holds as many requests as it may, and sheds this one
    /// rather than queue it.
    #[error("the gateway is at capacity; retry shortly")]
    Overloaded,
    /// The deployment does not offer this function.
    #[error("{message}")]
    NotImplemented {
        /// What is not offered.
        message: String,
    },
    /// An unexpected gateway fault.
    #[error("internal error: {message}")]
    Internal {
        /// What went wrong, without personal data.
        message: String,
    },
}

impl GatewayError {
    /// The AIP-193 reason name, as listed in `errors.proto` without its
    /// `ERROR_REASON_` prefix.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ContextMissing { reason, .. } => reason,
            Self::InvalidField { .. } => "INVALID_FIELD",
            Self::QueryTooBroad => "QUERY_TOO_BROAD",
            Self::Unauthenticated { reason, .. } => reason,
            Self::IssuerUnavailable { .. } => "ISSUER_UNAVAILABLE",
            Self::Denied { reason, .. } => reason,
            Self::FunctionNotPermitted { .. } => "FUNCTION_NOT_PERMITTED",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::VersionConflict { .. } => "VERSION_CONFLICT",
            Self::AuditUnavailable => "AUDIT_UNAVAILABLE",
            Self::SourcesUnavailable { .. } => "SOURCES_UNAVAILABLE",
            Self::SourcesDeclined { .. } => "SOURCES_DECLINED",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Overloaded => "OVERLOADED",
            Self::SubscriberTooSlow => "SUBSCRIBER_TOO_SLOW",
            Self::ShuttingDown => "SHUTTING_DOWN",
            Self::NotImplemented { .. } => "NOT_IMPLEMENTED",
            Self::Internal { .. } => "INTERNAL",
        }
    }

    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::ContextMissing { .. }
            | Self::InvalidField { .. }
            | Self::QueryTooBroad
            | Self::Unauthenticated { .. }
            | Self::Denied { .. }
            | Self::FunctionNotPermitted { .. }
            | Self::NotFound { .. }
            | Self::VersionConflict { .. }
            | Self::DeadlineExceeded
            | Self::RateLimited { .. }
            | Self::SourcesDeclined { .. }
            | Self::SubscriberTooSlow => Fault::Caller,
            Self::SourcesUnavailable { .. } => Fault::Connector,
            Self::IssuerUnavailable { .. }
            | Self::Overloaded
            | Self::ShuttingDown
            | Self::AuditUnavailable
            | Self::NotImplemented { .. }
            | Self::Internal { .. } => Fault::Gateway,
        }
    }

    /// Shorthand for an internal fault.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal {
            message: message.to_string(),
        }
    }
}
