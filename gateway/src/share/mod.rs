//! The life of a share, as a stack of tower services, one stage per module:
//!
//! ```text
//! Audit → Validate → Authorize → Minimise → Fetch
//! ```
//!
//! Each stage turns its request type into the next stage's, and annotates
//! the [`Facts`] on the way back out, so the audit stage (outermost) can
//! record every outcome — invalid, denied, failed or disclosed — with
//! everything the inner stages learned. `stack.rs` assembles the stages.

pub mod audit;
pub mod authorize;
pub mod fetch;
pub mod minimise;
pub mod stack;
pub mod validate;

use std::{sync::Arc, time::Duration};

use liaison_policy::{Action, Decision};
use liaison_proto::v1 as pb;

pub use stack::{ShareStack, ShareStackBuilder};

use crate::{error::GatewayError, identity::Principal};

/// A share as the RPC layer hands it to the stack: authenticated, but not
/// yet validated.
#[derive(Debug, Clone)]
pub struct ShareCall {
    /// Who is asking.
    pub principal: Arc<Principal>,
    /// The full gRPC method name.
    pub method: &'static str,
    /// What is being done.
    pub action: Action,
    /// The share context as sent, possibly absent or incomplete.
    pub context: Option<pb::ShareContext>,
    /// The operation requested.
    pub operation: Operation,
    /// The caller's network address, for the audit trail.
    pub client_address: String,
    /// The W3C trace id of the request, if traced.
    pub trace_id: String,
    /// The caller's deadline, if it sent one.
    pub deadline: Option<Duration>,
}

/// The operation a share performs.
#[derive(Debug, Clone)]
pub enum Operation {
    /// A federated person search.
    Search {
        /// What to look for, as sent.
        query: Option<pb::PersonQuery>,
        /// Datasets to restrict to; all permitted when empty.
        dataset_ids: Vec<String>,
        /// Requested page size, as sent.
        page_size: i32,
    },
    /// A read of one person's records.
    Read {
        /// The person reference, as sent.
        person_id: String,
        /// Record kinds to restrict to; all when empty.
        kinds: Vec<i32>,
    },
    /// The start of a change subscription.
    Subscribe {
        /// The person references to follow, as sent.
        person_ids: Vec<String>,
        /// Where to resume, as checked at the edge.
        resume: Resume,
    },
}

/// Where a subscription resumes. The cursor's integrity is checked where it
/// enters (it needs the gateway's key), but a forged one is refused by the
/// validation stage, so the refusal is audited like any other.
#[derive(Debug, Clone)]
pub enum Resume {
    /// From now.
    Now,
    /// After a cursor this gateway issued.
    From(crate::subscription::SubscriptionCursor),
    /// The cursor sent was not one this gateway issued for this caller and
    /// agreement; why, for the caller.
    Forged(String),
}

/// A share context that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareContext {
    /// The stated purpose.
    pub purpose: String,
    /// The stated justification.
    pub justification: String,
    /// The agreement relied on.
    pub isa_id: String,
    /// The caller's case reference.
    pub case_reference: String,
    /// The practitioner a system acts for.
    pub on_behalf_of: Option<pb::OnBehalfOf>,
    /// Correlation id across federated gateways.
    pub correlation_id: String,
    /// The reason given for invoking break-glass, trimmed; `None` when the
    /// share is a normal one.
    pub break_glass: Option<String>,
}

/// A validated operation.
#[derive(Debug, Clone)]
pub enum ValidOperation {
    /// A search with a sufficiently specific query.
    Search {
        /// The query.
        query: pb::PersonQuery,
        /// Datasets to restrict to.
        dataset_ids: Vec<String>,
        /// Page size, 1 to 100.
        page_size: usize,
    },
    /// A read of one person in one dataset.
    Read {
        /// The dataset holding the person.
        dataset_id: String,
        /// The person's id in that dataset.
        source_id: String,
        /// The full person reference.
        person_id: String,
        /// Record kinds to restrict to; all when empty.
        kinds: Vec<pb::RecordKind>,
    },
    /// A subscription to changes about some people.
    Subscribe {
        /// The people followed, by dataset: source ids.
        persons: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        /// Each dataset's cursor to resume after; from now when absent.
        cursors: std::collections::BTreeMap<String, liaison_connectors::ChangeCursor>,
    },
}

/// A share that passed validation.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The call as sent.
    pub call: ShareCall,
    /// The validated context.
    pub context: ShareContext,
    /// The validated operation.
    pub operation: ValidOperation,
}

/// A share that policy allowed, with one decision per dataset it may touch.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The validated share.
    pub validated: Validated,
    /// The datasets to consult and the decision (with its field mask) for
    /// each.
    pub plan: Vec<(String, Arc<Decision>)>,
}

/// What the stages learned about a share, for its audit entry.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The validated context, when validation passed.
    pub context: Option<ShareContext>,
    /// The policy version that decided.
    pub policy_version: String,
    /// The agreement's version.
    pub isa_version: u32,
    /// The agreement's legal basis.
    pub legal_basis: String,
    /// The agreement's providing agency, whose DPO oversees the share too;
    /// empty when the agreement named is not known.
    pub provider: String,
    /// Whether policy allowed.
    pub allowed: bool,
    /// The datasets policy allowed under break-glass; empty for a normal
    /// share and for a refused invocation.
    pub break_glass_datasets: Vec<String>,
    /// The rules that matched.
    pub matched_rules: Vec<String>,
    /// What left, per person and dataset.
    pub disclosures: Vec<pb::AuditDisclosure>,
    /// Records withheld for their sensitivity markers.
    pub withheld: Vec<pb::WithheldRecords>,
    /// Datasets consulted.
    pub sources: Vec<String>,
    /// Sources that did not answer.
    pub gaps: Vec<pb::SourceGap>,
}

/// The data a share returns, before its receipt is attached.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per share, moved not copied"
)]
pub enum Payload {
    /// Search results.
    Search {
        /// Matches, best first.
        matches: Vec<pb::PersonMatch>,
        /// Missing sources.
        gaps: Vec<pb::SourceGap>,
    },
    /// A person's records.
    Read {
        /// The person.
        person: Option<pb::Person>,
        /// The records.
        records: Vec<pb::Record>,
        /// Missing sources.
        gaps: Vec<pb::SourceGap>,
    },
    /// A subscription that may start.
    Subscribed {
        /// The datasets to follow and the decision (with its field mask)
        /// for each, made once at the start.
        plan: Vec<(String, Arc<Decision>)>,
        /// Each followed dataset's cursor to read changes after.
        cursors: std::collections::BTreeMap<String, liaison_connectors::ChangeCursor>,
        /// Datasets that cannot be followed.
        gaps: Vec<pb::SourceGap>,
    },
}

impl Payload {
    /// True when nothing about any person is in the payload.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Search { matches, .. } => matches.is_empty(),
            Self::Read {
                person, records, ..
            } => person.is_none() && records.is_empty(),
            Self::Subscribed { .. } => true,
        }
    }
}

/// What an inner stage answers: the facts for the audit entry, and the
/// payload or the error. Inner stages never fail as services; a refusal is
/// an answer that must still be audited.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Facts for the audit entry.
    pub facts: Facts,
    /// The payload, or why there is none.
    pub result: Result<Payload, GatewayError>,
}

impl Answer {
    /// An answer refusing the share before anything was learned.
    pub fn refused(error: GatewayError) -> Self {
        Self {
            facts: Facts::default(),
            result: Err(error),
        }
    }
}

/// A share that was answered and durably audited.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The payload.
    pub payload: Payload,
    /// The audit receipt.
    pub receipt: pb::Receipt,
}

/// A share that was refused or failed, with the receipt of the audit entry
/// that records the refusal, when one could be written.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Why.
    pub error: GatewayError,
    /// The audit entry recording the refusal.
    pub receipt: Option<pb::Receipt>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;
