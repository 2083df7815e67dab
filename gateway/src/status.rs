//! The one place gateway errors become gRPC statuses: a code, an
//! `ErrorInfo{reason, domain}` and, for malformed requests, a `BadRequest`
//! naming the field.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::GatewayError;

/// The `ErrorInfo.domain` of every Liaison error.
pub const DOMAIN: &str = "liaison.v1";

impl From<&GatewayError> for Code {
    fn from(err: &GatewayError) -> Self {
        match err {
            GatewayError::ContextMissing { .. }
            | GatewayError::InvalidField { .. }
            | GatewayError::QueryTooBroad => Code::InvalidArgument,
            GatewayError::Unauthenticated { .. } => Code::Unauthenticated,
            GatewayError::Denied { .. }
            | GatewayError::FunctionNotPermitted { .. }
            | GatewayError::SourcesDeclined { .. } => Code::PermissionDenied,
            GatewayError::NotFound { .. } => Code::NotFound,
            GatewayError::VersionConflict { .. } => Code::Aborted,
            GatewayError::IssuerUnavailable { .. }
            | GatewayError::AuditUnavailable
            | GatewayError::SourcesUnavailable { .. }
            | GatewayError::ShuttingDown => Code::Unavailable,
            GatewayError::DeadlineExceeded => Code::DeadlineExceeded,
            GatewayError::RateLimited { .. }
            | GatewayError::Overloaded
            | GatewayError::SubscriberTooSlow => Code::ResourceExhausted,
            GatewayError::NotImplemented { .. } => Code::Unimplemented,
            GatewayError::Internal { .. } => Code::Internal,
        }
    }
}

impl From<GatewayError> for Status {
    fn from(err: GatewayError) -> Self {
        refusal(err, None)
    }
}

/// The status for a refused share, naming in `ErrorInfo.metadata` the audit
/// entry that records the refusal, so a caller can cite it to a DPO.
pub fn refusal(err: GatewayError, receipt: Option<&liaison_proto::v1::Receipt>) -> Status {
    {
        let code = Code::from(&err);
        let message = err.to_string();
        let mut metadata: std::collections::HashMap<String, String> = receipt
            .map(|r| [("audit_entry_id".to_owned(), r.entry_id.clone())].into())
            .unwrap_or_default();
        if let GatewayError::SourcesDeclined { datasets, .. } = &err {
            metadata.insert("declined".to_owned(), datasets.join(","));
        }
        let mut details = ErrorDetails::with_error_info(err.reason(), DOMAIN, metadata);
        match &err {
            GatewayError::ContextMissing { field, .. } => {
                details.add_bad_request_violation(*field, message.clone());
            }
            GatewayError::InvalidField { field, message: m } => {
                details.add_bad_request_violation(field.clone(), m.clone());
            }
            GatewayError::QueryTooBroad => {
                details.add_bad_request_violation("query", message.clone());
            }
            GatewayError::RateLimited { retry_after, .. } => {
                details.set_retry_info(Some(*retry_after));
            }
            GatewayError::Overloaded => {
                details.set_retry_info(Some(std::time::Duration::from_millis(100)));
            }
            _ => {}
        }
        Status::with_error_details(code, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<(GatewayError, Code, &'static str)> {
        vec![
            (
                GatewayError::ContextMissing {
                    field: "context.purpose",
                    reason: "PURPOSE_MISSING",
                },
                Code::InvalidArgument,
                "PURPOSE_MISSING",
            ),
            (
                GatewayError::InvalidField {
                    field: "person_id".into(),
                    message: "bad".into(),
                },
                Code::InvalidArgument,
                "INVALID_FIELD",
            ),
            (
                GatewayError::QueryTooBroad,
                Code::InvalidArgument,
                "QUERY_TOO_BROAD",
            ),
            (
                GatewayError::Unauthenticated {
                    reason: "TOKEN_EXPIRED",
                    message: "token has expired".into(),
                },
                Code::Unauthenticated,
                "TOKEN_EXPIRED",
            ),
            (
                GatewayError::IssuerUnavailable {
                    issuer: "https://idp".into(),
                },
                Code::Unavailable,
                "ISSUER_UNAVAILABLE",
            ),
            (
                GatewayError::Denied {
                    reason: "PURPOSE_NOT_PERMITTED",
                    message: "no".into(),
                },
                Code::PermissionDenied,
                "PURPOSE_NOT_PERMITTED",
            ),
            (
                GatewayError::ContextMissing {
                    field: "context.break_glass.reason",
                    reason: "BREAK_GLASS_REASON_MISSING",
                },
                Code::InvalidArgument,
                "BREAK_GLASS_REASON_MISSING",
            ),
            (
                GatewayError::Denied {
                    reason: "BREAK_GLASS_NOT_PERMITTED",
                    message: "no".into(),
                },
                Code::PermissionDenied,
                "BREAK_GLASS_NOT_PERMITTED",
            ),
            (
                GatewayError::FunctionNotPermitted {
                    message: "no".into(),
                },
                Code::PermissionDenied,
                "FUNCTION_NOT_PERMITTED",
            ),
            (
                GatewayError::VersionConflict {
                    message: "agreement `x` is at version 3, not 2".into(),
                },
                Code::Aborted,
                "VERSION_CONFLICT",
            ),
            (
                GatewayError::NotFound {
                    what: "person".into(),
                },
                Code::NotFound,
                "NOT_FOUND",
            ),
            (
                GatewayError::AuditUnavailable,
                Code::Unavailable,
                "AUDIT_UNAVAILABLE",
            ),
            (
                GatewayError::SourcesUnavailable {
                    message: "x".into(),
                },
                Code::Unavailable,
                "SOURCES_UNAVAILABLE",
            ),
            (
                GatewayError::SourcesDeclined {
                    datasets: vec!["met-police.federated".into()],
                    message: "x".into(),
                },
                Code::PermissionDenied,
                "SOURCES_DECLINED",
            ),
            (
                GatewayError::DeadlineExceeded,
                Code::DeadlineExceeded,
                "DEADLINE_EXCEEDED",
            ),
            (
                GatewayError::RateLimited {
                    agency: "met-police".into(),
                    limit: "rate",
                    retry_after: std::time::Duration::from_millis(20),
                },
                Code::ResourceExhausted,
                "RATE_LIMITED",
            ),
            (
                GatewayError::Overloaded,
                Code::ResourceExhausted,
                "OVERLOADED",
            ),
            (
                GatewayError::SubscriberTooSlow,
                Code::ResourceExhausted,
                "SUBSCRIBER_TOO_SLOW",
            ),
            (
                GatewayError::ShuttingDown,
                Code::Unavailable,
                "SHUTTING_DOWN",
            ),
            (
                GatewayError::NotImplemented {
                    message: "x".into(),
                },
                Code::Unimplemented,
                "NOT_IMPLEMENTED",
            ),
            (GatewayError::internal("x"), Code::Internal, "INTERNAL"),
        ]
    }

    #[test]
    fn every_variant_maps_to_its_code_and_reason() {
        for (err, code, reason) in table() {
            let status = Status::from(err.clone());
            assert_eq!(status.code(), code, "{err:?}");
            let details = status.get_error_details();
            let info = details.error_info().expect("error info");
            assert_eq!(info.reason, reason, "{err:?}");
            assert_eq!(info.domain, DOMAIN);
        }
    }

    #[test]
    fn every_reason_is_published_in_errors_proto() {
        let proto = include_str!("../../proto/liaison/v1/errors.proto");
        for (err, _, _) in table() {
            let name = format!("ERROR_REASON_{} =", err.reason());
            assert!(proto.contains(&name), "{name} missing from errors.proto");
        }
        for reason in crate::share::authorize::POLICY_REASONS {
            let name = format!("ERROR_REASON_{reason} =");
            assert!(proto.contains(&name), "{name} missing from errors.proto");
        }
    }

    #[test]
    fn limits_tell_the_caller_when_to_retry() {
        let status = Status::from(GatewayError::RateLimited {
            agency: "met-police".into(),
            limit: "rate",
            retry_after: std::time::Duration::from_millis(250),
        });
        let retry = status.get_error_details().retry_info().cloned();
        assert_eq!(
            retry.and_then(|r| r.retry_delay),
            Some(std::time::Duration::from_millis(250))
        );
    }

    #[test]
    fn missing_field_names_the_field_in_bad_request() {
        let status = Status::from(GatewayError::ContextMissing {
            field: "context.purpose",
            reason: "PURPOSE_MISSING",
        });
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "context.purpose");
    }
}
