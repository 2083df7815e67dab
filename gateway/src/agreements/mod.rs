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
//! fails is dropped and the caller gets `UNAVAILABLE`. That machinery, and
//! the reload loop, is the versioned register's ([`crate::register`]),
//! shared with the trust registry.

pub mod source;
pub mod store;

pub use source::PolicySource;
pub use store::{AgreementStore, Change, Reserved, StoreError, StoredVersion};

use liaison_ledger::{IndexUpdate, Ledger};
use liaison_proto::v1 as pb;
use prost::Message;

/// Fills in the ledger's providing-agency and break-glass columns for
/// entries recorded before the ledger had them, so oversight finds them by
/// either party. Opens the register only when there is work to do.
pub async fn backfill_index(ledger: &Ledger, url: &str) -> Result<u64, StoreError> {
    if !ledger.index_backfill_pending().await? {
        return Ok(0);
    }
    let store = AgreementStore::open(url).await?;
    let done = backfill_with(ledger, &store).await;
    store.close().await;
    done
}

/// [`backfill_index`] with a register already open. Such entries do not
/// name their provider, so it is the provider of the agreement they cite,
/// from every version the register has held; an entry citing none keeps
/// an empty provider.
pub async fn backfill_with(ledger: &Ledger, store: &AgreementStore) -> Result<u64, StoreError> {
    if !ledger.index_backfill_pending().await? {
        return Ok(0);
    }
    let providers = store.parties().await?;
    tracing::info!("indexing older ledger entries by providing agency and break-glass");
    let read = ledger
        .backfill_index(|body| {
            let entry = pb::AuditEntry::decode(body).ok()?;
            let provider = if entry.provider_agency_id.is_empty() {
                providers.get(&entry.isa_id).cloned().unwrap_or_default()
            } else {
                entry.provider_agency_id
            };
            Some(IndexUpdate {
                provider,
                break_glass: entry.break_glass.is_some(),
            })
        })
        .await?;
    tracing::info!(entries = read, "older ledger entries indexed");
    Ok(read)
}
