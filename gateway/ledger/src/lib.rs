//! The tamper-evident, append-only audit ledger of Liaison.
//!
//! Every share the gateway handles is recorded here before any data is released (UK DPA 2018
//! s.62 logging). The ledger stores opaque canonical bytes produced by the caller, so it knows
//! nothing of the gateway or its protobuf types; an offline verifier needs only this crate.
//!
//! Three structures make the record tamper-evident:
//!
//! - a **hash chain**: each entry's `chain_hash = SHA-256(previous chain_hash || leaf_hash)`,
//!   with a one-row head that records the size and last chain hash, so [`Ledger::verify`] can
//!   name the first altered, reordered or missing entry in one pass;
//! - an **RFC 9162 Merkle tree** over the leaf hashes ([`merkle`]), so an outsider can be given
//!   an inclusion proof for one entry or a consistency proof between two tree heads;
//! - **signed tree heads** ([`SignedTreeHead`], Ed25519 over RFC 6962's `TreeHeadSignature`),
//!   made by one elected [`Sealer`] that also stores the tree's nodes so heads and proofs cost
//!   O(log n) reads. Anyone with the public key can check an export offline
//!   ([`verify_export`]); heads published to a witness file ([`WitnessFile`]) catch a database
//!   that was rewritten or restored from an older backup.
//!
//! Storage is SQLite (embedded default, `sqlite://path`) or PostgreSQL (`postgres://…`, which
//! several gateway processes may share), chosen by URL in [`Ledger::connect`]. Appends are
//! group-committed: concurrent callers share one fsynced transaction, and each learns of
//! success only once its entry is durable. Old entries can be removed under a signed checkpoint
//! ([`retention`]).

mod chain;
mod check;
mod db;
mod entry;
mod error;
pub mod export;
pub mod format;
pub mod merkle;
pub mod offline;
mod restrict;
pub mod retention;
pub mod seal;
pub mod sign;
mod sqlite_seal;
mod sqlite_writer;
mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
mod tree;
mod verify;
pub mod witness;
mod writer;

pub use chain::{GENESIS, chain_hash};
pub use entry::{
    EntryFilter, EntryIndex, LedgerStats, NewEntry, Order, Receipt, StoredEntry, TreeHead,
    VerifyReport,
};
pub use error::{Fault, LedgerError, Problem};
pub use export::ExportSummary;
pub use merkle::Hash;
pub use offline::{ExportReport, verify_export, verify_export_file, verify_export_with_witness};
pub use restrict::{IndexUpdate, Restriction};
pub use retention::PruneReport;
pub use seal::{Sealer, SealerHandle, SealerOptions, SealerStatus};
pub use sign::{
    HeadVerifier, KeyId, KeyRing, SignedTreeHead, SigningKey, VerifyingKey, signed_bytes,
};
pub use store::{Backend, Ledger, LedgerOptions, MAX_PAGE};
pub use witness::{WitnessFile, read_witness, read_witness_file};
