//! Why the current share is being made and for whom, carried to connectors
//! that pass it on to their source: the federation connector
//! (`kind = "liaison"`) sends it to the peer gateway, which authorises and
//! audits its own half of the share from it.
//!
//! Like [`trace`](crate::trace), it rides in a task-local rather than a
//! parameter of [`Connector`](crate::Connector), so the trait and the
//! connectors that have no use for it stay as they are. The gateway wraps
//! each connector call in [`with_share_request`], inside the spawned task.

use std::future::Future;

use liaison_proto::v1::OnBehalfOf;

tokio::task_local! {
    static SHARE_REQUEST: Option<ShareRequest>;
}

/// The validated context of the share a connector call belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareRequest {
    /// The stated purpose.
    pub purpose: String,
    /// The stated justification.
    pub justification: String,
    /// The agreement the local gateway relied on.
    pub isa_id: String,
    /// The caller's case reference.
    pub case_reference: String,
    /// The id shared by every gateway's half of this share.
    pub correlation_id: String,
    /// The practitioner the share is for: the local principal, or the
    /// practitioner a local system client said it acted for.
    pub on_behalf_of: OnBehalfOf,
}

/// Runs `future` with `request` as the share connectors see.
pub async fn with_share_request<F: Future>(request: Option<ShareRequest>, future: F) -> F::Output {
    SHARE_REQUEST.scope(request, future).await
}

/// The share the current call belongs to, if the caller said.
pub fn current() -> Option<ShareRequest> {
    SHARE_REQUEST.try_with(Clone::clone).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_share_is_seen_inside_the_scope_only() {
        assert_eq!(current(), None);
        let request = ShareRequest {
            purpose: "safeguarding-children".into(),
            correlation_id: "c-1".into(),
            ..ShareRequest::default()
        };
        let seen = with_share_request(Some(request.clone()), async { current() }).await;
        assert_eq!(seen, Some(request));
        assert_eq!(current(), None);
    }
}
