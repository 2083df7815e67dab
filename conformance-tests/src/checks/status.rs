//! What a Liaison error must carry: the documented code, and a
//! `google.rpc.ErrorInfo` in the `liaison.v1` domain whose reason is one
//! `errors.proto` publishes. Integrators branch on the reason, so an error
//! without one is a contract failure even when the code is right.

use liaison_proto::v1::ErrorReason;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{CheckResult, Verdict, fail};

/// The `ErrorInfo.domain` every Liaison error uses.
pub const DOMAIN: &str = "liaison.v1";

/// The parts of an error the checks look at.
#[derive(Debug, Clone, Default)]
pub struct Details {
    /// `ErrorInfo.reason`.
    pub reason: Option<String>,
    /// `ErrorInfo.domain`.
    pub domain: Option<String>,
    /// `ErrorInfo.metadata["audit_entry_id"]`.
    pub audit_entry_id: Option<String>,
    /// `BadRequest` field paths.
    pub fields: Vec<String>,
}

/// Reads the rich error details of a status.
pub fn details(status: &Status) -> Details {
    let d = status.get_error_details();
    Details {
        reason: d.error_info().map(|i| i.reason.clone()),
        domain: d.error_info().map(|i| i.domain.clone()),
        audit_entry_id: d
            .error_info()
            .and_then(|i| i.metadata.get("audit_entry_id").cloned()),
        fields: d
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default(),
    }
}

/// Whether `reason` is published in `errors.proto` (as `ERROR_REASON_…`).
pub fn published(reason: &str) -> bool {
    reason != "UNSPECIFIED"
        && ErrorReason::from_str_name(&format!("ERROR_REASON_{reason}")).is_some()
}

/// Checks an error has `code`, a published reason in the Liaison domain and,
/// when `reasons` is not empty, one of them. Returns the details for further
/// checks.
pub fn expect_error(
    what: &str,
    result: Result<impl Sized, Status>,
    code: Code,
    reasons: &[&str],
) -> Result<Details, Verdict> {
    let status = match result {
        Ok(_) => {
            return Err(fail(format!(
                "{what}: expected {code:?}, but the call succeeded"
            )));
        }
        Err(s) => s,
    };
    if status.code() != code {
        return Err(fail(format!(
            "{what}: expected {code:?}, got {:?}: {}",
            status.code(),
            status.message()
        )));
    }
    let d = details(&status);
    let Some(reason) = d.reason.clone() else {
        return Err(fail(format!(
            "{what}: {code:?} carries no google.rpc.ErrorInfo detail"
        )));
    };
    if d.domain.as_deref() != Some(DOMAIN) {
        return Err(fail(format!(
            "{what}: ErrorInfo.domain is `{}`, not `{DOMAIN}`",
            d.domain.unwrap_or_default()
        )));
    }
    if !published(&reason) {
        return Err(fail(format!(
            "{what}: ErrorInfo.reason `{reason}` is not published in errors.proto"
        )));
    }
    if !reasons.is_empty() && !reasons.contains(&reason.as_str()) {
        return Err(fail(format!(
            "{what}: ErrorInfo.reason is `{reason}`, expected {}",
            reasons.join(" or ")
        )));
    }
    Ok(d)
}

/// Maps an unexpected error to a failure that names the call.
pub fn unexpected(what: &'static str) -> impl FnOnce(Status) -> Verdict {
    move |s| {
        let d = details(&s);
        fail(format!(
            "{what}: expected success, got {:?} ({}): {}",
            s.code(),
            d.reason.unwrap_or_else(|| "no ErrorInfo".into()),
            s.message()
        ))
    }
}

/// Fails unless the status names a field violation at `field`.
pub fn names_field(what: &str, d: &Details, field: &str) -> CheckResult {
    if d.fields.iter().any(|f| f == field) {
        Ok(())
    } else {
        Err(fail(format!(
            "{what}: BadRequest should name `{field}`, names {:?}",
            d.fields
        )))
    }
}
