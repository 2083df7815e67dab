//! The one error type of the ledger, and whose fault each error is.

use std::fmt;

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
            | Self::InvalidProof { .. } => Fault::Caller,
            Self::UnsupportedUrl { .. }
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
