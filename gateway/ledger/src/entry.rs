//! What goes into the ledger and what comes back out.

use std::fmt;

use time::OffsetDateTime;

use crate::merkle::Hash;
use crate::sign::SignedTreeHead;

/// One entry to append.
///
/// The ledger does not interpret `body`: the gateway serialises the full DPA 2018 s.62 record
/// canonically and the ledger hashes exactly those bytes. The [`EntryIndex`] columns are copies
/// of a few fields so oversight can search without decoding bodies; they are not hashed, so they
/// are a convenience, and the body stays the evidence.
#[derive(Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Unique id chosen by the caller (the id in the share's receipt). Appending the same id
    /// with the same body again returns the original receipt, so a caller may retry an append
    /// whose outcome it did not learn.
    pub entry_id: String,
    /// When the share happened. Stored in UTC with nanosecond precision; must lie between 1677
    /// and 2262, the range of a signed 64-bit nanosecond count.
    pub recorded_at: OffsetDateTime,
    /// The canonical bytes of the record.
    pub body: Vec<u8>,
    /// Search columns.
    pub index: EntryIndex,
}

/// Searchable copies of fields of an entry. Not covered by any hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryIndex {
    /// The agency whose user made the request.
    pub agency: String,
    /// The user who made the request.
    pub subject: String,
    /// The agency that received the data.
    pub recipient: String,
    /// The agency whose data the entry concerns (the providing agency of the agreement relied
    /// on); empty where none is known, as for a failed sign-in.
    pub provider: String,
    /// Whether the share invoked emergency access, whatever its outcome.
    pub break_glass: bool,
    /// What was done (for example `share.search`).
    pub action: String,
    /// The declared purpose.
    pub purpose: String,
    /// The information sharing agreement relied on.
    pub isa_id: String,
    /// How the request ended (for example `disclosed`, `denied`, `invalid`).
    pub outcome: String,
    /// References to the people whose records were consulted or disclosed. Duplicates are
    /// stored once.
    pub subjects: Vec<String>,
}

/// Proof that an entry is durably recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Position in the ledger; the first entry is 1 and there are no gaps.
    pub seq: u64,
    /// The caller's entry id.
    pub entry_id: String,
    /// `merkle::leaf_hash(body)`.
    pub leaf_hash: Hash,
    /// The chain hash after this entry.
    pub chain_hash: Hash,
    /// The entry's time, in UTC.
    pub recorded_at: OffsetDateTime,
}

/// An entry as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Position in the ledger, from 1.
    pub seq: u64,
    /// The caller's entry id.
    pub entry_id: String,
    /// The entry's time, in UTC.
    pub recorded_at: OffsetDateTime,
    /// The canonical bytes of the record.
    pub body: Vec<u8>,
    /// The stored leaf hash (not recomputed; [`Ledger::verify`](crate::Ledger::verify) does that).
    pub leaf_hash: Hash,
    /// The stored chain hash.
    pub chain_hash: Hash,
    /// The search columns.
    pub index: EntryIndex,
}

/// Which entries [`Ledger::list`](crate::Ledger::list) returns. Every field that is set must
/// match; an empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    /// Entries this agency is a party to: its own principals' requests, or shares of its data
    /// (the providing agency). How oversight limits a search to what a DPO may see.
    pub party: Option<String>,
    /// Requesting agency.
    pub agency: Option<String>,
    /// Providing agency.
    pub provider: Option<String>,
    /// Only break-glass entries (`Some(true)`) or only the others (`Some(false)`).
    pub break_glass: Option<bool>,
    /// Requesting user.
    pub subject: Option<String>,
    /// Receiving agency.
    pub recipient: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// Declared purpose.
    pub purpose: Option<String>,
    /// Information sharing agreement.
    pub isa_id: Option<String>,
    /// Outcome.
    pub outcome: Option<String>,
    /// Entries that consulted or disclosed this person.
    pub subject_ref: Option<String>,
    /// Entries recorded at or after this time.
    pub from: Option<OffsetDateTime>,
    /// Entries recorded before this time.
    pub until: Option<OffsetDateTime>,
    /// Page order.
    pub order: Order,
}

/// The order of a page of entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Highest sequence number first: what an investigator usually wants.
    #[default]
    NewestFirst,
    /// Lowest sequence number first: for exports and replays.
    OldestFirst,
}

/// The Merkle root of the first `size` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of entries covered.
    pub size: u64,
    /// RFC 9162 root over their leaf hashes.
    pub root: Hash,
}

/// The result of a successful [`Ledger::verify`](crate::Ledger::verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Number of entries checked (those kept after retention).
    pub entries: u64,
    /// The chain hash after the last entry (equal to the head row's).
    pub head: Hash,
    /// The Merkle root over all leaf hashes.
    pub root: Hash,
    /// The first entry kept: 1, or the one after the retention checkpoint.
    pub first_seq: u64,
    /// Signed heads checked.
    pub heads: u64,
    /// The latest signed head; entries after its size are not yet sealed.
    pub latest_head: Option<SignedTreeHead>,
    /// Witnessed heads matched.
    pub witnessed: u64,
}

/// Counters for the group-commit writer, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Transactions committed.
    pub transactions: u64,
    /// Transactions that failed (every entry in them was answered `Unavailable`).
    pub failed_transactions: u64,
    /// Entries newly recorded by committed transactions.
    pub entries: u64,
    /// The most appends answered by one transaction.
    pub largest_batch: u64,
}

/// Nanoseconds since the Unix epoch, if representable in the 64-bit column.
pub(crate) fn to_nanos(at: OffsetDateTime) -> Option<i64> {
    i64::try_from(at.unix_timestamp_nanos()).ok()
}

pub(crate) fn from_nanos(nanos: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).ok()
}

// Bodies hold personal data: Debug shows their length, never their content, so a stray `{:?}`
// in a log line cannot disclose a record.

impl fmt::Debug for NewEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEntry")
            .field("entry_id", &self.entry_id)
            .field("recorded_at", &self.recorded_at)
            .field("body", &BodyLen(self.body.len()))
            .field("index", &self.index)
            .finish()
    }
}

impl fmt::Debug for StoredEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredEntry")
            .field("seq", &self.seq)
            .field("entry_id", &self.entry_id)
            .field("recorded_at", &self.recorded_at)
            .field("body", &BodyLen(self.body.len()))
            .field("leaf_hash", &hex::encode(self.leaf_hash))
            .field("chain_hash", &hex::encode(self.chain_hash))
            .field("index", &self.index)
            .finish()
    }
}

struct BodyLen(usize);

impl fmt::Debug for BodyLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}
