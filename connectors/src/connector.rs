use std::future::Future;
use std::pin::Pin;

use liaison_proto::v1::{Date, Identifier, Person, Record, RecordKind};

use crate::ConnectorError;

/// A boxed, sendable future, so [`Connector`] stays object-safe and the
/// gateway can hold every connector as `Arc<dyn Connector>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a dataset is, for discovery and for policy decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetDescriptor {
    /// The dataset id, unique within a gateway; the prefix of every person
    /// and record id the connector returns.
    pub id: String,
    /// The agency that holds the data.
    pub agency: String,
    /// A human-readable title.
    pub title: String,
    /// The legacy system's name, for provenance.
    pub system: String,
    /// The record kinds the dataset can return, in `RecordKind` order.
    pub record_kinds: Vec<RecordKind>,
}

/// A search for people. Every criterion given must match; absent criteria
/// match anything. At least one criterion is required.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonQuery {
    /// Given name, matched as a case-insensitive prefix of the given names.
    pub given_name: Option<String>,
    /// Family name, matched exactly but without regard to case.
    pub family_name: Option<String>,
    /// Date of birth, matched exactly.
    pub date_of_birth: Option<Date>,
    /// Postcode, normalised before matching, so `e81dy` finds `E8 1DY`.
    pub postcode: Option<String>,
    /// Identifiers, each normalised for its scheme and matched exactly; a
    /// person must hold every one given.
    pub identifiers: Vec<Identifier>,
}

/// One person's record and the records linked to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fetched {
    /// The person, or `None` when the dataset holds no usable person under
    /// that id.
    pub person: Option<Person>,
    /// The linked records of the kinds asked for.
    pub records: Vec<Record>,
    /// Source rows that could not be mapped, or were mapped only in part.
    pub skipped: Vec<RowProblem>,
    /// Sources behind this one that are missing from the answer.
    pub gaps: Vec<PeerGap>,
}

/// The people a search found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// Matching people, at most the limit asked for, in the source's order.
    pub persons: Vec<Person>,
    /// Source rows that could not be mapped, or were mapped only in part.
    pub skipped: Vec<RowProblem>,
    /// Sources behind this one that are missing from the answer.
    pub gaps: Vec<PeerGap>,
}

/// A source behind a connector that is missing from its answer: a peer
/// gateway's own gap (its source was slow, failed or declined).
///
/// The answer is partial in a way the caller must be told about, as for a
/// local source that fails, so the gateway names it in the share's gaps
/// rather than only in its operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGap {
    /// The missing source, named with whoever reported it:
    /// `<peer agency>/<peer dataset>`.
    pub source: String,
    /// One of the reasons `SourceGap.reason` documents.
    pub reason: String,
    /// The peer's explanation, bounded.
    pub message: String,
}

/// A source row that was skipped, or kept without a field, because its data
/// was malformed.
///
/// Legacy data is untrusted: one bad row must not hide the good ones, and
/// must not pass unnoticed either. The problem never quotes personal data
/// from the row, only codes, column names and ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// The row's id in the source, or empty when the row had none.
    pub source_id: String,
    /// What was wrong and what was done about it.
    pub problem: String,
}

/// Where a change feed has got to: opaque to callers, who keep it and hand
/// it back to resume. Each dataset's cursors are its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ChangeCursor(pub String);

/// One change: a person whose data changed at the source.
///
/// A change names the person, not the rows: the subscriber reads the person
/// again (with `fetch`), so what it receives goes through the same mapping,
/// policy and minimisation as any read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The cursor just after this change; resuming from it skips it.
    pub cursor: ChangeCursor,
    /// The changed person's source id.
    pub source_id: String,
}

/// A page of a change feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The changes after the cursor asked from, oldest first, at most the
    /// limit asked for.
    pub changes: Vec<Change>,
    /// Where to resume: after the last change, or where the caller was when
    /// there were none. With no cursor given, "now".
    pub cursor: ChangeCursor,
    /// Change rows that could not be read.
    pub skipped: Vec<RowProblem>,
    /// Set when the feed no longer remembers the cursor asked from (it was
    /// issued before a restart, by another replica, or is older than the
    /// changes kept): anyone may have changed since, so the caller treats
    /// every person it follows as changed, then resumes from `cursor`.
    /// `changes` is then empty. Re-sending on doubt keeps delivery at least
    /// once; only feeds that keep their log in memory set it.
    pub resync: bool,
}

/// A source of people and records, seen through the common data model.
///
/// Implementations must be cancellation-safe: the gateway applies its own
/// deadlines by dropping the returned future, and a dropped future must
/// leave the connector usable. See `connectors/SPEC.md` for the contract.
pub trait Connector: Send + Sync + std::fmt::Debug + 'static {
    /// The dataset this connector serves.
    fn descriptor(&self) -> &DatasetDescriptor;

    /// Finds people matching `query`, at most `limit` of them.
    fn search<'a>(
        &'a self,
        query: &'a PersonQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<Found, ConnectorError>>;

    /// Reads the person with the given source id (the part of a person id
    /// after `<dataset id>:`) and their records of the given kinds; an empty
    /// `kinds` asks for every kind the dataset offers.
    fn fetch<'a>(
        &'a self,
        source_id: &'a str,
        kinds: &'a [RecordKind],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>>;

    /// Reads the change feed after `after`, at most `limit` changes; with no
    /// cursor, returns none and the cursor for "now". Delivery is at least
    /// once: a caller that resumes from an older cursor sees changes again,
    /// so it keeps the cursor only once it has acted on the changes. The
    /// default is a dataset without a change feed.
    fn changes<'a>(
        &'a self,
        after: Option<&'a ChangeCursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Changes, ConnectorError>> {
        let _ = (after, limit);
        let dataset = self.descriptor().id.clone();
        Box::pin(async move { Err(ConnectorError::ChangesNotOffered { dataset }) })
    }

    /// Reaches the source and checks the mapping against it, for
    /// `liaison config check` and readiness probes. Connectors that cannot
    /// check cheaply may keep the default, which checks nothing.
    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async { Ok(()) })
    }
}
