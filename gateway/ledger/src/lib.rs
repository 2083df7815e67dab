//! The tamper-evident, append-only audit ledger of Liaison.
//!
//! Every share the gateway handles is recorded here before any data is released (UK DPA 2018
//! s.62 logging). The ledger stores opaque canonical bytes produced by the caller, so it knows
//! nothing of the gateway or its protobuf types; an offline verifier needs only this crate.
//!
//! Two structures make the record tamper-evident:
//!
//! - a **hash chain**: each entry's `chain_hash = SHA-256(previous chain_hash || leaf_hash)`,
//!   with a one-row head that records the size and last chain hash, so [`Ledger::verify`] can
//!   name the first altered, reordered or missing entry in one pass;
//! - an **RFC 9162 Merkle tree** over the leaf hashes ([`merkle`]), so an outsider can be given
//!   an inclusion proof for one entry or a consistency proof between two tree heads.
//!
//! Storage is SQLite (embedded default, `sqlite://path`) or PostgreSQL (`postgres://…`, which
//! several gateway processes may share), chosen by URL in [`Ledger::connect`]. Appends are
//! group-committed: concurrent callers share one fsynced transaction, and each learns of
//! success only once its entry is durable.

mod chain;
mod db;
mod entry;
mod error;
pub mod merkle;
mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
mod writer;

pub use chain::{GENESIS, chain_hash};
pub use entry::{
    EntryFilter, EntryIndex, LedgerStats, NewEntry, Order, Receipt, StoredEntry, TreeHead,
    VerifyReport,
};
pub use error::{Fault, LedgerError, Problem};
pub use merkle::Hash;
pub use store::{Backend, Ledger, LedgerOptions, MAX_PAGE};
