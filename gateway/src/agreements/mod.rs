//! The register of Information Sharing Agreements and how every replica
//! keeps the policy it enforces in step with it.
//!
//! Agreements live in the ledger's database ([`store`]), one row per
//! version. The policy file is imported into it at start-up and whenever
//! the file changes (GitOps); `AdminService` adds versions at run time.
//! [`source::PolicySource`] compiles the register's current versions with
//! the file's operator rules into the engine the share stack reads through
//! its watch channel, and rebuilds it when the register's change counter
//! moves (PostgreSQL `NOTIFY` at once, polling as the bound) or the file
//! changes.
//!
//! Every version is audited before it takes effect: a change is reserved,
//! appended to the ledger, then committed. A change whose audit append
//! fails is dropped and the caller gets `UNAVAILABLE`.

pub mod source;
pub mod store;

pub use source::{PolicySource, Reloader};
pub use store::{AgreementStore, Change, Reserved, StoreError, StoredVersion};
