//! The one error type of the ledger, and whose fault each error is.

use std::fmt;

use crate::sign::KeyId;

/// Everything that can go wrong in the ledger.
///
/// Messages follow the workspace style: lowercase, no final period, values in backticks. None of
/// them contains entry bodies or database credentials, so they are safe to log; the gateway still
/// maps them to a status that discloses nothing to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The ledger URL names no backend the ledger can use.
    #[error("ledger url has unsupported scheme `{scheme}`; expected `sqlite:` or `postgres:`")]
    UnsupportedUrl {
        /// The scheme found (everything before the first `:`), never the credentials.
        scheme: String,
    },

    /// The ledger URL could not be parsed by the database driver.
    #[error("ledger url is invalid: {reason}")]
    InvalidUrl {
        /// What the driver objected to.
        reason: String,
    },

    /// The database could not durably record or read entries. Nothing was acknowledged: an
    /// append that returned this may or may not have been committed (the connection can fail
    /// after the commit), and retrying with the same `entry_id` is safe.
    #[error("audit ledger unavailable: {reason}")]
    Unavailable {
        /// The database's own message, for the operator's log.
        reason: String,
    },

    /// The append queue is full; the caller should shed the request rather than wait.
    #[error("audit ledger is busy: {capacity} appends already queued")]
    Busy {
        /// How many appends the queue holds.
        capacity: usize,
    },

    /// The ledger has been shut down and accepts no more appends.
    #[error("audit ledger is closed")]
    Closed,

    /// The database holds a schema written by a newer version of the ledger.
    #[error("ledger schema version {found} is newer than the supported version {supported}")]
    SchemaTooNew {
        /// The version recorded in `ledger_schema`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// An entry id is already recorded with a different body.
    #[error("entry `{entry_id}` is already recorded with a different body")]
    Duplicate {
        /// The entry id the caller supplied.
        entry_id: String,
    },

    /// An entry cannot be recorded as given.
    #[error("entry `{entry_id}` is invalid: {reason}")]
    InvalidEntry {
        /// The entry id the caller supplied.
        entry_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The stored ledger does not match its own hashes: it has been altered or damaged.
    #[error("audit ledger is broken at entry {seq}{}: {problem}", DisplayId(entry_id.as_deref()))]
    Broken {
        /// The sequence number where the problem was found.
        seq: u64,
        /// The entry id at that position, when there is a row there.
        entry_id: Option<String>,
        /// What does not match.
        problem: Problem,
    },

    /// A sequence number outside the requested tree.
    #[error("entry {seq} is not in a tree of {tree_size} entries")]
    SeqOutOfRange {
        /// The sequence number asked for (the first entry is 1).
        seq: u64,
        /// The size of the tree it was asked for in.
        tree_size: u64,
    },

    /// A tree size larger than the ledger.
    #[error("tree size {requested} is larger than the ledger ({size} entries)")]
    TreeTooLarge {
        /// The size asked for.
        requested: u64,
        /// The number of entries in the ledger.
        size: u64,
    },

    /// A leaf index outside a Merkle tree.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The zero-based leaf index.
        index: u64,
        /// The number of leaves in the tree.
        size: u64,
    },

    /// Two tree sizes that cannot describe an older and a newer tree.
    #[error("tree size {old} is larger than tree size {new}")]
    InvalidSizes {
        /// The older (smaller) size.
        old: u64,
        /// The newer (larger) size.
        new: u64,
    },

    /// A Merkle proof that does not verify.
    #[error("proof does not verify: {reason}")]
    InvalidProof {
        /// Which check failed.
        reason: &'static str,
    },

    /// A signing or verifying key that cannot be read or used.
    #[error("ledger signing key is invalid: {reason}")]
    InvalidKey {
        /// What is wrong; names the file, never the key material.
        reason: String,
    },

    /// Reading or writing an export or witness file failed.
    #[error("ledger file i/o failed: {reason}")]
    Io {
        /// The operating system's message, with the path.
        reason: String,
    },

    /// A witness file line that is not a validly signed tree head.
    #[error("witness line {line} is invalid: {reason}")]
    InvalidWitness {
        /// The 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// A retention checkpoint that does not allow pruning.
    #[error("cannot prune at this checkpoint: {reason}")]
    InvalidCheckpoint {
        /// Why not.
        reason: &'static str,
    },
}

/// What [`LedgerError::Broken`] found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The stored body does not hash to the stored leaf hash: the body was edited.
    LeafHashMismatch,
    /// The chain hash is not `SHA-256(previous chain hash || leaf hash)`: an entry was replaced,
    /// reordered or removed.
    ChainMismatch,
    /// The sequence numbers are not dense: the entry at the reported position is missing.
    SequenceGap {
        /// The next sequence number present.
        next: u64,
    },
    /// The head row disagrees with the entries about how many there are.
    HeadSizeMismatch {
        /// The size recorded in the head row.
        head_size: u64,
    },
    /// The head row's chain hash is not the chain hash of the last entry.
    HeadChainMismatch,
    /// A stored value cannot be what the ledger wrote (a hash that is not 32 bytes, a negative
    /// sequence number).
    Malformed {
        /// Which value.
        what: &'static str,
    },
    /// The entries do not produce the root of a signed tree head: an entry from the reported
    /// position up to `signed_size` was altered, inserted, removed or reordered and its hashes
    /// recomputed, or the head itself was replaced.
    RootMismatch {
        /// The size of the signed head.
        signed_size: u64,
    },
    /// A signed tree head whose signature does not verify with the ledger's public key.
    BadSignature {
        /// The size of the head.
        signed_size: u64,
    },
    /// A tree head signed by a key other than the ledger's: re-signed by someone else.
    UnknownKey {
        /// The size of the head.
        signed_size: u64,
        /// The id of the key that signed it.
        key_id: KeyId,
    },
    /// Two validly signed tree heads of one size with different roots: the ledger was forked,
    /// showing different histories to different parties.
    ForkedHeads {
        /// The size both heads claim.
        size: u64,
    },
    /// Two signed heads that cannot both be genuine: the later one covers fewer entries, or was
    /// signed earlier.
    InconsistentHeads {
        /// The size of the head met first.
        first: u64,
        /// The size of the head that contradicts it.
        second: u64,
    },
    /// A signed tree head covers entries that are missing: the ledger or export was truncated.
    HeadBeyondEnd {
        /// The size of the head.
        signed_size: u64,
    },
    /// A witnessed tree head is larger than the ledger: entries were removed, or the database was
    /// restored from an older backup.
    RolledBack {
        /// The size of the witnessed head.
        witnessed_size: u64,
    },
    /// An export holds another entry where this one belongs: entries were reordered, removed or
    /// duplicated.
    OutOfSequence {
        /// The sequence number found instead.
        found: u64,
    },
    /// A signed tree head placed after entries it does not cover the end of: head lines of an
    /// export were moved.
    MisplacedHead {
        /// The size of the head.
        signed_size: u64,
    },
    /// The export stops before its end line: it was truncated.
    Truncated,
    /// An export line that cannot be read.
    MalformedLine {
        /// The 1-based line number.
        line: u64,
    },
    /// A stored Merkle tree node differs from the one recomputed from the entries, or is missing.
    NodeMismatch {
        /// The node's level (0 for leaves).
        level: u8,
        /// The node's index within its level.
        index: u64,
    },
}

/// Whose fault an error is, so the gateway can choose a status and an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller asked for something invalid; retrying the same request will not help.
    Caller,
    /// The gateway or its database failed; the request may succeed later.
    Gateway,
}

/// Formats an optional entry id as `` (`id`)`` for [`LedgerError::Broken`].
struct DisplayId<'a>(Option<&'a str>);

impl LedgerError {
    /// Whose fault this error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Duplicate { .. }
            | Self::InvalidEntry { .. }
            | Self::SeqOutOfRange { .. }
            | Self::TreeTooLarge { .. }
            | Self::IndexOutOfRange { .. }
            | Self::InvalidSizes { .. }
            | Self::InvalidProof { .. }
            | Self::InvalidWitness { .. }
            | Self::InvalidCheckpoint { .. } => Fault::Caller,
            Self::UnsupportedUrl { .. }
            | Self::InvalidKey { .. }
            | Self::Io { .. }
            | Self::InvalidUrl { .. }
            | Self::Unavailable { .. }
            | Self::Busy { .. }
            | Self::Closed
            | Self::SchemaTooNew { .. }
            | Self::Broken { .. } => Fault::Gateway,
        }
    }

    /// Wraps a database error. Every database failure is reported the same way because the
    /// caller's only sensible reaction is the same: refuse the share and retry later.
    pub(crate) fn unavailable(err: &sqlx::Error) -> Self {
        Self::Unavailable {
            reason: err.to_string(),
        }
    }

    pub(crate) fn broken(seq: u64, entry_id: Option<&str>, problem: Problem) -> Self {
        Self::Broken {
            seq,
            entry_id: entry_id.map(str::to_owned),
            problem,
        }
    }
}

impl From<sqlx::Error> for LedgerError {
    fn from(err: sqlx::Error) -> Self {
        Self::unavailable(&err)
    }
}

/// The SQLite writer thread's errors, reported as the pool's are.
impl From<rusqlite::Error> for LedgerError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Unavailable {
            reason: err.to_string(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LeafHashMismatch => f.write_str("leaf hash mismatch: the body was altered"),
            Self::ChainMismatch => f.write_str("chain hash mismatch"),
            Self::SequenceGap { next } => {
                write!(
                    f,
                    "sequence gap: the entry is missing, the next present is {next}"
                )
            }
            Self::HeadSizeMismatch { head_size } => {
                write!(f, "head mismatch: the head records {head_size} entries")
            }
            Self::HeadChainMismatch => {
                f.write_str("head mismatch: the head chain hash differs from the last entry's")
            }
            Self::Malformed { what } => write!(f, "stored {what} is malformed"),
            Self::RootMismatch { signed_size } => write!(
                f,
                "root mismatch: the entries do not produce the root signed at size {signed_size}"
            ),
            Self::BadSignature { signed_size } => write!(
                f,
                "bad signature: the tree head at size {signed_size} does not verify"
            ),
            Self::UnknownKey {
                signed_size,
                key_id,
            } => write!(
                f,
                "unknown key: the tree head at size {signed_size} is signed by key `{key_id}`"
            ),
            Self::ForkedHeads { size } => write!(
                f,
                "forked heads: two signed tree heads at size {size} have different roots"
            ),
            Self::InconsistentHeads { first, second } => write!(
                f,
                "inconsistent heads: the signed tree heads at sizes {first} and {second} contradict each other"
            ),
            Self::HeadBeyondEnd { signed_size } => write!(
                f,
                "entries missing: a signed tree head covers {signed_size} entries"
            ),
            Self::RolledBack { witnessed_size } => write!(
                f,
                "rolled back: a witnessed tree head covers {witnessed_size} entries"
            ),
            Self::OutOfSequence { found } => {
                write!(f, "out of sequence: entry {found} is in its place")
            }
            Self::MisplacedHead { signed_size } => write!(
                f,
                "misplaced head: the tree head at size {signed_size} does not follow its last entry"
            ),
            Self::Truncated => f.write_str("truncated: the export ends without its end line"),
            Self::MalformedLine { line } => write!(f, "export line {line} is malformed"),
            Self::NodeMismatch { level, index } => write!(
                f,
                "tree node mismatch: stored node {index} at level {level} is missing or altered"
            ),
        }
    }
}

impl fmt::Display for DisplayId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, " (`{id}`)"),
            None => Ok(()),
        }
    }
}
