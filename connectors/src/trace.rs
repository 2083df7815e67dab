//! The caller's W3C trace context, carried to connectors that can pass it
//! on to their source (the JSON over HTTP connector sends `traceparent`).
//!
//! It rides in a task-local rather than a parameter of
//! [`Connector`](crate::Connector), so the trait and every connector that
//! has no use for it stay as they are. The gateway wraps each connector
//! call:
//!
//! ```
//! # async fn demo(connector: &dyn liaison_connectors::Connector) {
//! use liaison_connectors::trace::{TraceParent, with_trace_parent};
//! let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! let fetched = with_trace_parent(parent, connector.fetch("100001", &[])).await;
//! # }
//! ```
//!
//! Task-locals do not cross `tokio::spawn`, so the wrapping belongs inside
//! the spawned task.

use std::future::Future;

tokio::task_local! {
    static TRACE_PARENT: Option<TraceParent>;
}

/// A checked `traceparent` header value (W3C Trace Context, version 00).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    /// Accepts a header value of the form
    /// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower case,
    /// with neither id all zeros; anything else is `None`, so nothing a
    /// caller sends can smuggle other text into a source's headers.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (Some(version), Some(trace), Some(parent), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zeros = |s: &str| s.bytes().all(|b| b == b'0');
        let ok = version == "00"
            && hex(trace, 32)
            && hex(parent, 16)
            && hex(flags, 2)
            && !zeros(trace)
            && !zeros(parent);
        ok.then(|| Self(format!("{version}-{trace}-{parent}-{flags}")))
    }

    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Runs `future` with `parent` as the trace context connectors see.
pub async fn with_trace_parent<F: Future>(parent: Option<TraceParent>, future: F) -> F::Output {
    TRACE_PARENT.scope(parent, future).await
}

/// The trace context of the current call, if the caller gave one.
pub fn current() -> Option<TraceParent> {
    TRACE_PARENT.try_with(Clone::clone).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn only_well_formed_trace_parents_are_accepted() {
        assert_eq!(TraceParent::parse(VALID).unwrap().as_str(), VALID);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX-Evil: 1",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_trace_parent_is_seen_inside_the_scope_only() {
        assert_eq!(current(), None);
        let parent = TraceParent::parse(VALID);
        let seen = with_trace_parent(parent.clone(), async { current() }).await;
        assert_eq!(seen, parent);
        assert_eq!(current(), None);
    }
}
