//! Deny by default: a share must say why (purpose, justification) and under
//! which agreement, and an agreement that does not cover it is a refusal the
//! ledger records. None of these disclose anything, so they run read-only;
//! the gateway still records each refusal, as it must.

use std::sync::Arc;

use liaison_proto::v1 as pb;
use tonic::Code;

use super::{
    CheckResult, Target, contract, ensure, fail,
    status::{expect_error, names_field},
};

async fn missing(
    t: &Target,
    what: &str,
    clear: fn(&mut pb::ShareContext),
    field: &str,
    reason: &str,
) -> CheckResult {
    let mut context = t.share.context();
    clear(&mut context);
    let req = pb::SearchPersonsRequest {
        context: Some(context),
        query: Some(t.share.query()),
        dataset_ids: vec![],
        page_size: 0,
    };
    let r = contract::sharing(t)
        .search_persons(t.as_("sharer", req).await?)
        .await;
    let d = expect_error(what, r, Code::InvalidArgument, &[reason])?;
    names_field(what, &d, field)
}

pub async fn purpose_missing(t: Arc<Target>) -> CheckResult {
    missing(
        &t,
        "SearchPersons without a purpose",
        |c| c.purpose.clear(),
        "context.purpose",
        "PURPOSE_MISSING",
    )
    .await
}

pub async fn justification_missing(t: Arc<Target>) -> CheckResult {
    missing(
        &t,
        "SearchPersons without a justification",
        |c| c.justification.clear(),
        "context.justification",
        "JUSTIFICATION_MISSING",
    )
    .await
}

pub async fn isa_missing(t: Arc<Target>) -> CheckResult {
    missing(
        &t,
        "SearchPersons without an agreement",
        |c| c.isa_id.clear(),
        "context.isa_id",
        "ISA_MISSING",
    )
    .await
}

/// The refusal must name the audit entry that records it, and that entry
/// must say the share was denied.
pub async fn isa_unknown(t: Arc<Target>) -> CheckResult {
    let mut context = t.share.context();
    context.isa_id = "conformance-no-such-agreement".into();
    let req = pb::SearchPersonsRequest {
        context: Some(context),
        query: Some(t.share.query()),
        dataset_ids: vec![],
        page_size: 0,
    };
    let r = contract::sharing(&t)
        .search_persons(t.as_("sharer", req).await?)
        .await;
    let what = "SearchPersons under an unknown agreement";
    let d = expect_error(what, r, Code::PermissionDenied, &["ISA_UNKNOWN"])?;
    let entry_id = d.audit_entry_id.ok_or_else(|| {
        fail(format!(
            "{what}: ErrorInfo.metadata has no `audit_entry_id` for the refusal"
        ))
    })?;
    if !t.has("overseer") {
        return Ok(());
    }
    let req = pb::GetAuditEntryRequest {
        entry_id: entry_id.clone(),
    };
    let entry = contract::oversight(&t)
        .get_audit_entry(t.as_("overseer", req).await?)
        .await
        .map_err(|s| {
            fail(format!(
                "{what}: the refusal's entry `{entry_id}` does not resolve: {:?} {}",
                s.code(),
                s.message()
            ))
        })?
        .into_inner()
        .entry
        .and_then(|e| e.entry)
        .ok_or_else(|| fail(format!("{what}: GetAuditEntry answered without an entry")))?;
    ensure(
        entry.outcome == pb::AuditOutcome::Denied as i32 && !entry.allowed,
        || {
            format!(
                "{what}: the refusal's entry records outcome {} (allowed: {})",
                entry.outcome, entry.allowed
            )
        },
    )
}

pub async fn purpose_not_permitted(t: Arc<Target>) -> CheckResult {
    let mut context = t.share.context();
    context.purpose = "conformance-unlisted-purpose".into();
    let req = pb::SearchPersonsRequest {
        context: Some(context),
        query: Some(t.share.query()),
        dataset_ids: vec![],
        page_size: 0,
    };
    let r = contract::sharing(&t)
        .search_persons(t.as_("sharer", req).await?)
        .await;
    expect_error(
        "SearchPersons for a purpose the agreement does not list",
        r,
        Code::PermissionDenied,
        &["PURPOSE_NOT_PERMITTED", "POLICY_DENIED"],
    )
    .map(|_| ())
}

pub async fn not_recipient(t: Arc<Target>) -> CheckResult {
    let req = pb::SearchPersonsRequest {
        context: Some(t.share.context()),
        query: Some(t.share.query()),
        dataset_ids: vec![],
        page_size: 0,
    };
    let r = contract::sharing(&t)
        .search_persons(t.as_("outsider", req).await?)
        .await;
    expect_error(
        "SearchPersons by an agency that is not a recipient",
        r,
        Code::PermissionDenied,
        &[],
    )
    .map(|_| ())
}
