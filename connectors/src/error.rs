use std::path::PathBuf;
use std::time::Duration;

/// Whose fault a [`ConnectorError`] is.
///
/// The gateway answers each differently: a caller's mistake is theirs to fix
/// and is never retried, a failing source becomes a named gap in a partial
/// answer, and a configuration fault is the operator's and worth an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The caller asked for something malformed or out of bounds.
    Caller,
    /// The legacy source could not be reached or failed while answering.
    Source,
    /// The connector's configuration or mapping does not fit the source.
    Configuration,
}

/// Everything a connector can fail with.
///
/// Malformed rows are not errors: they are skipped and reported as
/// [`RowProblem`](crate::RowProblem)s beside the rows that could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The configuration or mapping was rejected before any query ran; every
    /// problem found is listed, each with the key it concerns.
    #[error("connector `{dataset}` is misconfigured: {}", problems.join("; "))]
    InvalidConfig {
        /// The dataset id the configuration was for.
        dataset: String,
        /// One entry per problem, `key.path: what is wrong`.
        problems: Vec<String>,
    },
    /// A configuration or mapping file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A configuration or mapping file is not valid TOML for its schema.
    #[error("cannot parse `{}`: {message}", path.display())]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The parser's explanation, with the line it concerns.
        message: String,
    },
    /// Two connectors were configured with one dataset id.
    #[error("dataset `{0}` is configured more than once")]
    DuplicateDataset(String),
    /// The mapping and the source's schema disagree, found while answering.
    #[error("dataset `{dataset}`: mapping does not fit the source: {message}")]
    Mapping {
        /// The dataset.
        dataset: String,
        /// What does not fit.
        message: String,
    },
    /// The source could not be reached.
    #[error("dataset `{dataset}` is unavailable: {source}")]
    Unavailable {
        /// The dataset.
        dataset: String,
        /// The driver's explanation.
        #[source]
        source: sqlx::Error,
    },
    /// The source was reached but a query failed.
    #[error("dataset `{dataset}`: query `{query}` failed: {source}")]
    QueryFailed {
        /// The dataset.
        dataset: String,
        /// The mapping's name for the query, for example `person.search`.
        query: String,
        /// The driver's explanation.
        #[source]
        source: sqlx::Error,
    },
    /// The caller's search could not be run as asked.
    #[error("dataset `{dataset}` cannot run the search: {reason}")]
    InvalidQuery {
        /// The dataset.
        dataset: String,
        /// What is wrong with the query.
        reason: String,
    },
    /// The caller named a source id the dataset could never hold.
    #[error("dataset `{dataset}` has no source id `{source_id}`: {reason}")]
    InvalidSourceId {
        /// The dataset.
        dataset: String,
        /// The id as given, shortened if long.
        source_id: String,
        /// Why it cannot be an id of this dataset.
        reason: String,
    },
    /// The synthetic data set could not be written.
    #[error("cannot generate synthetic data: {source}")]
    Synthetic {
        /// The driver's explanation.
        #[source]
        source: sqlx::Error,
    },
    /// The source did not answer within the call's deadline. Raised by the
    /// resilience middleware, which drops the connector's future.
    #[error("dataset `{dataset}` did not answer `{operation}` within {} ms", after.as_millis())]
    DeadlineExceeded {
        /// The dataset.
        dataset: String,
        /// `search`, `fetch`, `changes` or `check`.
        operation: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The circuit breaker is open: the source failed repeatedly, so calls
    /// fail at once until a trial call succeeds.
    #[error(
        "dataset `{dataset}` is failing and is not being asked; the next trial call is in {} ms",
        retry_in.as_millis()
    )]
    CircuitOpen {
        /// The dataset.
        dataset: String,
        /// How long until a trial call is let through.
        retry_in: Duration,
    },
    /// Every concurrent call slot stayed busy until the deadline, or too
    /// many callers were already waiting for one.
    #[error("dataset `{dataset}` is busy: {limit} calls are in progress and no slot freed in time")]
    Overloaded {
        /// The dataset.
        dataset: String,
        /// The concurrency limit.
        limit: usize,
    },
    /// The source could not be reached (connection refused, reset, name
    /// not resolved, folder missing).
    #[error("dataset `{dataset}` is unreachable: {reason}")]
    Unreachable {
        /// The dataset.
        dataset: String,
        /// What failed, without URLs or credentials.
        reason: String,
    },
    /// The caller resumed a change feed from a cursor the dataset could
    /// not have issued.
    #[error("dataset `{dataset}` did not issue change cursor `{cursor}`")]
    InvalidCursor {
        /// The dataset.
        dataset: String,
        /// The cursor as given, shortened if long.
        cursor: String,
    },
    /// The dataset offers no change feed.
    #[error("dataset `{dataset}` offers no change feed")]
    ChangesNotOffered {
        /// The dataset.
        dataset: String,
    },
    /// An HTTP source answered with an error status.
    #[error("dataset `{dataset}`: request `{request}` was answered with status {status}")]
    HttpStatus {
        /// The dataset.
        dataset: String,
        /// The mapping's name for the request, such as `person.search`.
        request: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The identity provider would not issue the connector an access token
    /// for a peer gateway.
    #[error("dataset `{dataset}`: no access token for the peer gateway: {reason}")]
    TokenRefused {
        /// The dataset.
        dataset: String,
        /// Why, without the secret or the token.
        reason: String,
    },
    /// A peer gateway refused the share under its own agreement: its half
    /// of the decision, recorded in its own ledger.
    #[error("declined by {agency}: {reason}: {message}")]
    Declined {
        /// The local dataset the peer serves.
        dataset: String,
        /// The peer's agency.
        agency: String,
        /// The peer's `ErrorInfo.reason`, such as `PURPOSE_NOT_PERMITTED`.
        reason: String,
        /// The peer's message, shortened.
        message: String,
    },
    /// A peer gateway answered with an error status other than a refusal.
    #[error(
        "dataset `{dataset}`: the peer gateway answered `{operation}` with {code} ({reason}): {message}"
    )]
    PeerStatus {
        /// The dataset.
        dataset: String,
        /// `search` or `fetch`.
        operation: &'static str,
        /// The gRPC status code's name, such as `UNAVAILABLE`.
        code: &'static str,
        /// The peer's `ErrorInfo.reason`, or the code when it gave none.
        reason: String,
        /// The peer's message, shortened.
        message: String,
    },
    /// The source answered with something the connector will not read: not
    /// JSON, larger than allowed, or a link to another host.
    #[error("dataset `{dataset}`: request `{request}` got an unusable answer: {reason}")]
    BadResponse {
        /// The dataset.
        dataset: String,
        /// The mapping's name for the request.
        request: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl ConnectorError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            // A peer's refusal is an answer about this share, not a sign
            // the peer is failing: it must not open the circuit.
            Self::InvalidQuery { .. }
            | Self::InvalidSourceId { .. }
            | Self::InvalidCursor { .. }
            | Self::Declined { .. } => Fault::Caller,
            // Refused credentials and requests the peer does not understand
            // are the operator's to fix; anything else is the peer failing.
            Self::PeerStatus {
                code: "UNAUTHENTICATED" | "UNIMPLEMENTED" | "FAILED_PRECONDITION" | "NOT_FOUND",
                ..
            }
            | Self::TokenRefused { .. } => Fault::Configuration,
            Self::PeerStatus { .. } => Fault::Source,
            Self::Unavailable { .. }
            | Self::QueryFailed { .. }
            | Self::Synthetic { .. }
            | Self::DeadlineExceeded { .. }
            | Self::CircuitOpen { .. }
            | Self::Overloaded { .. }
            | Self::Unreachable { .. }
            | Self::BadResponse { .. } => Fault::Source,
            // Refused credentials or a path the source does not know are
            // the operator's to fix; anything else is the source failing.
            Self::HttpStatus {
                status: 400 | 401 | 403 | 404 | 405,
                ..
            } => Fault::Configuration,
            Self::HttpStatus { .. } => Fault::Source,
            Self::InvalidConfig { .. }
            | Self::ReadConfig { .. }
            | Self::ParseConfig { .. }
            | Self::DuplicateDataset(_)
            | Self::Mapping { .. }
            | Self::ChangesNotOffered { .. } => Fault::Configuration,
        }
    }
}

impl ConnectorError {
    /// Whether trying the same read again may succeed: the source was
    /// unreachable or answered that it was briefly unable to. Only such
    /// errors are retried; a failed query or a refused request would fail
    /// the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Unreachable { .. } => true,
            Self::HttpStatus { status, .. } => matches!(status, 408 | 429 | 500..=599),
            Self::PeerStatus { code, .. } => matches!(*code, "UNAVAILABLE" | "RESOURCE_EXHAUSTED"),
            _ => false,
        }
    }
}

/// Shortens untrusted text quoted in a message, so one hostile value cannot
/// flood logs or error replies.
pub(crate) fn excerpt(text: &str, max_chars: usize) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(max_chars).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_attributed() {
        let caller = ConnectorError::InvalidQuery {
            dataset: "d".into(),
            reason: "r".into(),
        };
        assert_eq!(caller.fault(), Fault::Caller);
        let config = ConnectorError::DuplicateDataset("d".into());
        assert_eq!(config.fault(), Fault::Configuration);
        let source = ConnectorError::Unavailable {
            dataset: "d".into(),
            source: sqlx::Error::PoolTimedOut,
        };
        assert_eq!(source.fault(), Fault::Source);
    }

    #[test]
    fn messages_follow_house_style() {
        let err = ConnectorError::InvalidConfig {
            dataset: "police-rms".into(),
            problems: vec!["a: one".into(), "b: two".into()],
        };
        assert_eq!(
            err.to_string(),
            "connector `police-rms` is misconfigured: a: one; b: two"
        );
        let err = ConnectorError::InvalidSourceId {
            dataset: "police-rms".into(),
            source_id: "abc".into(),
            reason: "must be an integer".into(),
        };
        assert_eq!(
            err.to_string(),
            "dataset `police-rms` has no source id `abc`: must be an integer"
        );
    }

    #[test]
    fn excerpts_are_bounded_and_escaped() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("a\nb", 5), "a\\nb");
    }
}
