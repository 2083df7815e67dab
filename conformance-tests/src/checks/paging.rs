//! Paging and deadlines: a client walking the ledger sees each entry once,
//! and a caller's deadline bounds the call rather than being ignored.

use std::{sync::Arc, time::Duration};

use liaison_proto::v1 as pb;
use tonic::Code;

use super::{
    CheckResult, Target, Verdict, contract, ensure, fail,
    status::{expect_error, unexpected},
};

async fn page(t: &Target, page_token: String) -> Result<pb::ListAuditEntriesResponse, Verdict> {
    let req = pb::ListAuditEntriesRequest {
        page_size: 1,
        page_token,
        ..Default::default()
    };
    contract::oversight(t)
        .list_audit_entries(t.as_("overseer", req).await?)
        .await
        .map(tonic::Response::into_inner)
        .map_err(unexpected("ListAuditEntries"))
}

pub async fn audit_page_tokens(t: Arc<Target>) -> CheckResult {
    let first = page(&t, String::new()).await?;
    ensure(first.entries.len() <= 1, || {
        format!(
            "ListAuditEntries: page_size 1 answered {} entries",
            first.entries.len()
        )
    })?;
    if !first.next_page_token.is_empty() {
        let second = page(&t, first.next_page_token.clone()).await?;
        ensure(second.entries.len() <= 1, || {
            format!(
                "ListAuditEntries: page_size 1 answered {} entries",
                second.entries.len()
            )
        })?;
        if let (Some(a), Some(b)) = (first.entries.first(), second.entries.first()) {
            ensure(a.sequence != b.sequence, || {
                format!(
                    "ListAuditEntries: the second page repeats entry {}",
                    a.sequence
                )
            })?;
        }
    }
    let req = pb::ListAuditEntriesRequest {
        page_size: 1,
        page_token: "conformance-forged-token".into(),
        ..Default::default()
    };
    let r = contract::oversight(&t)
        .list_audit_entries(t.as_("overseer", req).await?)
        .await;
    expect_error(
        "ListAuditEntries with a forged page token",
        r,
        Code::InvalidArgument,
        &["INVALID_FIELD"],
    )
    .map(|_| ())
}

pub async fn search_page_size(t: Arc<Target>) -> CheckResult {
    let found = contract::search(&t, 1).await?;
    ensure(found.matches.len() <= 1, || {
        format!(
            "SearchPersons: page_size 1 answered {} matches",
            found.matches.len()
        )
    })
}

/// With `--allow-writes` the deadline is put on a share, where the gateway
/// must pass it to its connectors; otherwise on ListDatasets.
///
/// A server whose deadline fires in its transport (tonic's `grpc-timeout`
/// layer) answers CANCELLED; gRPC clients that track the deadline report
/// that as DEADLINE_EXCEEDED once it has passed, and so does this check.
pub async fn one_millisecond(t: Arc<Target>) -> CheckResult {
    let deadline = Duration::from_millis(1);
    let started = std::time::Instant::now();
    let outcome = if t.allow_writes {
        let req = pb::SearchPersonsRequest {
            context: Some(t.share.context()),
            query: Some(t.share.query()),
            dataset_ids: vec![],
            page_size: 0,
        };
        let mut req = t.as_("sharer", req).await?;
        req.set_timeout(deadline);
        contract::sharing(&t).search_persons(req).await.map(|_| ())
    } else {
        let mut req = t.as_("sharer", pb::ListDatasetsRequest::default()).await?;
        req.set_timeout(deadline);
        contract::sharing(&t).list_datasets(req).await.map(|_| ())
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(s) if s.code() == Code::DeadlineExceeded => Ok(()),
        Err(s) if s.code() == Code::Cancelled && started.elapsed() >= deadline => Ok(()),
        Err(s) => Err(fail(format!(
            "a 1 ms deadline: expected success or DeadlineExceeded, got {:?}: {}",
            s.code(),
            s.message()
        ))),
    }
}
